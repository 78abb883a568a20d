"""The sans-IO rule (STYLE.md, principle 1): cores import no asyncio, socket, file or clock.

Two checks, because each alone has a blind spot:

1. **Static (the rule itself).** Each core module is parsed with ``ast``, and so is
   every vfsd module it pulls in: its vfsd imports, transitively, *and the
   ``__init__`` of every package on the way* (importing ``vfsd.commands.context``
   runs ``vfsd/commands/__init__.py`` first). Every ``import``/``from`` statement is
   looked at, module-level or inside a function (a function-level ``import time``
   still reads a clock when called); only ``if TYPE_CHECKING:`` blocks are skipped,
   as they never run. A forbidden import, a call to the builtin ``open`` or a dynamic
   ``__import__`` is reported with the chain of imports that led to it. Only vfsd's
   own code is judged: what msgpack or the standard library import internally
   (msgpack pulls in ``datetime``, hence ``time``) is not ours to police.
   A runtime ``sys.modules`` diff cannot do this job on its own: the interpreter
   itself loads ``time`` and ``threading`` at start-up, so a core importing them
   would go unnoticed.

2. **Runtime (belt and braces).** A fresh ``python -c`` per core imports it and
   reports which of asyncio/socket/selectors/subprocess/threading/time appeared in
   ``sys.modules`` beyond what the same process held before the import (the
   interpreter's own baseline), and, through an audit hook, every file opened that
   is not Python code being imported. This catches what static reading cannot: a
   third-party dependency that starts a loop or reads a file at import time.

Plus: the public names of ``vfsd.resp.types`` stay stable (uvicorn/trio do the same).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

CORES = [
    "vfsd.resp.parser",
    "vfsd.resp.encoder",
    "vfsd.resp.types",
    "vfsd.resp.fast",
    "vfsd.paths",
    "vfsd.glob",
    "vfsd.codec",
    "vfsd.jsonpath",
    "vfsd.store.keyspace",
    "vfsd.store.cursors",
    "vfsd.store.pointintime",
    "vfsd.metrics",
    "vfsd.active.hlc",
    "vfsd.active.lww",
    "vfsd.active.digest",
    "vfsd.active.broadcast",
    "vfsd.active.profile",
    "vfsd.active.wire",
    "vfsd.active.membership",
    "vfsd.active.gossip",
    "vfsd.active.agent",
    "vfsd.active.keyspace_store",
    "vfsd.active.integrity",
    "vfsd.sim",
    "vfsd.sim.gossip",
    "vfsd.desired.machine",
    "vfsd.commands.context",
    "vfsd.commands.strings",
    "vfsd.commands.keys",
    "vfsd.commands.json",
    "vfsd.peers.frame",
    "vfsd.peers.hello",
    "vfsd.peers.auth",
    "vfsd.peers.connection",
    "vfsd.peers.backoff",
    "vfsd.peers.counters",
    "vfsd.peers.settings",
    "vfsd.scripting.convert",
    "vfsd.scripting.libs",
    "vfsd.scripting.sandbox",
    "vfsd.scripting.sandbox_lua",
    "vfsd.scripting.scripts",
    "vfsd.scripting.functions",
    "vfsd.scripting.calls",
    "vfsd.scripting.engine",
    "vfsd.commands.collections",
    "vfsd.commands.blocking",
    "vfsd.commands.hashes",
    "vfsd.commands.lists",
    "vfsd.commands.sets",
    "vfsd.commands.zsets",
    "vfsd.commands.bits",
    "vfsd.commands.sort",
    "vfsd.store.values",
    "vfsd.store.zset",
    "vfsd.store.blocked",
    "vfsd.resp.output_limits",
    "vfsd.resp.pushes",
    "vfsd.watch.patterns",
    "vfsd.watch.history",
    "vfsd.watch.watchers",
    "vfsd.watch.feed",
    "vfsd.pubsub",
    "vfsd.raft",
    "vfsd.raft.config",
    "vfsd.raft.core",
    "vfsd.raft.memlog",
    "vfsd.raft.messages",
    "vfsd.raft.progress",
    "vfsd.raft.quorum",
    "vfsd.raft.readonly",
    "vfsd.raft.records",
    "vfsd.sim",
    "vfsd.sim.linearizability",
    "vfsd.sim.raft",
]

#: Clocks, sockets, event loops, threads, processes: the brief of a core is to have none.
FORBIDDEN_RUNTIME = {"asyncio", "socket", "selectors", "time", "threading", "subprocess"}
#: Ways to reach files (read, write, or list them).
FILE_ACCESS = {"io", "os", "pathlib", "shutil", "tempfile", "mmap", "fileinput", "tomllib", "importlib"}
FORBIDDEN = FORBIDDEN_RUNTIME | FILE_ACCESS


def _cores_param() -> list[object]:
    return [
        name
        for name in CORES
    ]


# --- static analysis ------------------------------------------------------------

_spec = importlib.util.find_spec("vfsd")
assert _spec is not None and _spec.origin is not None
VFSD_DIR = Path(_spec.origin).parent


def module_file(name: str) -> Path | None:
    """The source file of vfsd module ``name`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != "vfsd":
        return None
    base = VFSD_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class Use:
    module: str  # what is imported or called
    line: int


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run, skipping the bodies of ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports_of(name: str) -> tuple[list[Use], list[Use]]:
    """(imported module names, suspicious calls) of vfsd module ``name``."""
    path = module_file(name)
    assert path is not None, name
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    imported: list[Use] = []
    calls: list[Use] = []
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            imported.extend(Use(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "__future__":
                imported.append(Use(target, node.lineno))
                for alias in node.names:  # ``from vfsd.commands import json`` imports a submodule
                    if module_file(f"{target}.{alias.name}") is not None:
                        imported.append(Use(f"{target}.{alias.name}", node.lineno))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("open", "__import__"):
                calls.append(Use(f"{node.func.id}()", node.lineno))
    return imported, calls


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def violations(root: str) -> list[str]:
    """Every forbidden import or call reachable from importing ``root``, with how it is reached."""
    via: dict[str, str | None] = {root: None}
    queue = deque([root])
    found: list[str] = []

    def chain(name: str) -> str:
        steps = [name]
        while via[steps[-1]] is not None:
            steps.append(via[steps[-1]])  # type: ignore[arg-type]
        return " <- ".join(steps)

    def visit(name: str, parent: str) -> None:
        if name not in via and module_file(name) is not None:
            via[name] = parent
            queue.append(name)

    while queue:
        name = queue.popleft()
        for package in parents(name):  # Python runs each enclosing package's __init__ first
            visit(package, name)
        imported, calls = imports_of(name)
        for use in imported:
            top = use.module.split(".")[0]
            if top == "vfsd":
                visit(use.module, name)
                for package in parents(use.module):
                    visit(package, name)
            elif top in FORBIDDEN:
                found.append(f"import {use.module} at {name}:{use.line} (reached: {chain(name)})")
        found.extend(f"{use.module} at {name}:{use.line} (reached: {chain(name)})" for use in calls)
    return found


@pytest.mark.parametrize("module", _cores_param())
def test_core_imports_no_io_clock_or_concurrency_statically(module: str) -> None:
    assert module_file(module) is not None, f"{module} does not exist"
    problems = violations(module)
    assert not problems, f"{module} is not sans-IO:\n  " + "\n  ".join(problems)


def test_static_check_finds_what_a_shell_imports() -> None:
    """The checker is not vacuous: the asyncio shell is flagged, with its chain."""
    problems = violations("vfsd.server")
    assert any(p.startswith("import asyncio at vfsd.server:") for p in problems), problems
    assert any("import time at vfsd.server:" in p for p in problems), problems


def test_static_check_sees_through_package_inits_and_skips_type_checking() -> None:
    """Parents run first; ``if TYPE_CHECKING:`` imports never run (vfsd.commands.vfs -> vfsd.server)."""
    imported, _ = imports_of("vfsd.commands.vfs")
    assert "vfsd.server" not in {u.module for u in imported}
    assert parents("vfsd.commands.context") == ["vfsd", "vfsd.commands"]


# --- runtime check --------------------------------------------------------------

_PROBE = r"""
import json, sys
WATCH = {watch!r}
CODE = (".py", ".pyc", ".so", ".pyd")
opened = []

def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = args[0].decode(errors="replace") if isinstance(args[0], bytes) else args[0]
        if not path.endswith(CODE) and "__pycache__" not in path:
            opened.append(path)

before = set(sys.modules)
sys.addaudithook(hook)
__import__(sys.argv[1])
print(json.dumps({{"loaded": sorted(WATCH & (set(sys.modules) - before)), "opened": opened}}))
"""


@pytest.fixture(scope="module")
def runtime_report() -> dict[str, dict[str, list[str]]]:
    """Import every core in its own fresh interpreter, all at once, and collect what each loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(VFSD_DIR.parent), os.environ.get("PYTHONPATH", "")])}
    script = _PROBE.format(watch=FORBIDDEN_RUNTIME)
    procs = {
        name: subprocess.Popen([sys.executable, "-c", script, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=str(VFSD_DIR.parent))
        for name in ["sys", *CORES]
    }
    report = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"importing {name} failed:\n{err.decode(errors='replace')}"
        report[name] = json.loads(out)
    return report


def test_runtime_probe_baseline_is_clean(runtime_report: dict[str, dict[str, list[str]]]) -> None:
    assert runtime_report["sys"] == {"loaded": [], "opened": []}


@pytest.mark.parametrize("module", _cores_param())
def test_core_import_loads_no_io_modules_and_opens_no_files(
    module: str, runtime_report: dict[str, dict[str, list[str]]]
) -> None:
    assert runtime_report[module] == {"loaded": [], "opened": []}


# --- stable public names --------------------------------------------------------

RESP_TYPES_PUBLIC = [
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BigNumber",
    "ErrorReply",
    "NullArray",
    "Pairs",
    "Push",
    "SimpleString",
    "Verbatim",
]


def test_resp_types_public_names_are_stable() -> None:
    from vfsd.resp import types

    assert types.__all__ == RESP_TYPES_PUBLIC
    namespace: dict[str, object] = {}
    exec("from vfsd.resp.types import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(RESP_TYPES_PUBLIC)
    # Nothing public is defined there without being exported.
    defined = {
        name for name, obj in vars(types).items()
        if not name.startswith("_")
        and (getattr(obj, "__module__", None) == types.__name__ or type(obj).__module__ == types.__name__)
    }
    assert defined == set(RESP_TYPES_PUBLIC)
    assert types.OK == "OK" and isinstance(types.OK, types.SimpleString)
    assert types.NULL_ARRAY is types.NullArray() and not types.NULL_ARRAY
    assert issubclass(types.ErrorReply, Exception)
