"""Running scripts and functions in a sandbox: the EVAL cache, compiled libraries, and the
desired plane's script entries.

``Engine`` pairs one ``Sandbox`` with its script cache and its compiled copies of
the function libraries (the libraries themselves live in a ``functions.Registry``
that only applied log entries change). The node has one engine for immediate runs;
the desired-state machine has its own (``DesiredScripting``), so what a replica
computes at apply time never depends on what clients ran on that node before:

- a fresh compile of the entry's body (no cache) and of the library a call needs,
- a full garbage collection before each run,
- ``math.random`` seeded from the entry's log index,
- time = the entry's time, a budget of VM instructions carried in the entry.

What is left to chance is how close a script gets to the memory limit: Lua's
memory accounting after a full collection can differ by a few KiB between
replicas with different histories, so a script that peaks within that margin of
``script-max-memory`` could fail on one node and not another (README, "Scripting").

Entry ops (``vfsd.desired.machine``):

    [vfs.eval,  body, read_only, max_instructions, numkeys, key..., arg...]
    [vfs.fcall, name, read_only, max_instructions, numkeys, key..., arg...]
    [vfs.function, load, replace, max_instructions, code]
    [vfs.function, delete, name] | [vfs.function, flush] | [vfs.function, restore, policy, max_instructions, payload]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lupa.lua51 as lua

from vfsd.commands.errors import NOT_INTEGER, parse_int
from vfsd.paths import Router
from vfsd.resp.types import OK, ErrorReply
from vfsd.scripting.calls import Invocation
from vfsd.scripting.functions import FunctionInfo, Library, Registrar, Registry, parse_dump, parse_metadata
from vfsd.scripting.sandbox import HOOK_STEPS, Run, Sandbox, ScriptError
from vfsd.scripting.scripts import Script, ScriptCache, parse_shebang

__all__ = ["DesiredScripting", "Engine", "split_keys"]

#: FUNCTION LOAD's own limit while a library body registers its functions (Redis: 500 ms).
LOAD_MAX_INSTRUCTIONS = 50_000_000


def split_keys(argv: list[bytes], *, fcall: bool = False) -> tuple[list[bytes], list[bytes]]:
    """KEYS and ARGV of ``EVAL body numkeys key... arg...`` (or FCALL), with Redis's errors."""
    try:
        numkeys = parse_int(argv[2])
    except ErrorReply:
        raise ErrorReply("ERR Bad number of keys provided") if fcall else NOT_INTEGER from None
    if numkeys > len(argv) - 3:
        raise ErrorReply("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        raise ErrorReply("ERR Number of keys can't be negative")
    return argv[3:3 + numkeys], argv[3 + numkeys:]


def steps_for(max_instructions: int) -> int:
    return max(1, max_instructions // HOOK_STEPS) if max_instructions > 0 else 0


class Engine:
    def __init__(self, sandbox: Sandbox, registry: Registry) -> None:
        self.sandbox = sandbox
        self.registry = registry
        self.cache = ScriptCache(self._compile)
        self._libraries: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self._generation = -1

    def _compile(self, body: bytes) -> Any:
        try:
            return self.sandbox.compile_eval(body)
        except ScriptError as exc:
            raise ErrorReply(f"ERR Error compiling script (new function): {exc}") from None

    # -- scripts -------------------------------------------------------------------------

    def script(self, body: bytes) -> Script:
        return self.cache.load(body)

    def run_script(self, script: Script, keys: list[bytes], args: list[bytes], run: Invocation) -> Any:
        return self.sandbox.execute_eval(script.function, keys, args, run)

    # -- functions -----------------------------------------------------------------------

    def compile_library(self, code: bytes, *, max_instructions: int = LOAD_MAX_INSTRUCTIONS) -> tuple[Library, dict[str, Any]]:
        """Compile a library and learn its functions; ErrorReply with Redis's texts."""
        _, name, offset = parse_metadata(code)
        sandbox = self.sandbox
        registrar = Registrar(name, sandbox.is_table, lambda t: t.items(),
                              lambda v: lua.lua_type(v) == "function")
        # The shebang line is replaced by nothing but its newline, so line numbers match.
        body = code[offset:]
        try:
            sandbox.compile_library(body, registrar, Run(name, _no_calls, max_steps=steps_for(max_instructions)))
        except ScriptError as exc:
            raise ErrorReply(f"ERR {exc}") from None
        if not registrar.functions:
            raise ErrorReply("ERR No functions registered")
        library = Library(name, code, {n: info for n, (info, _) in registrar.functions.items()})
        return library, {n: fn for n, (_, fn) in registrar.functions.items()}

    def function(self, name: str) -> tuple[FunctionInfo, Any]:
        info = self.registry.functions.get(name)
        if info is None:
            raise ErrorReply("ERR Function not found")
        if self._generation != self.registry.generation:  # drop copies of libraries that changed
            current = self.registry.libraries
            self._libraries = {n: c for n, c in self._libraries.items()
                               if n in current and current[n].code == c[0]}
            self._generation = self.registry.generation
        compiled = self._libraries.get(info.library)
        if compiled is None:
            library = self.registry.libraries[info.library]
            _, functions = self.compile_library(library.code)
            compiled = self._libraries[info.library] = (library.code, functions)
        return info, compiled[1][name]

    def run_function(self, fn: Any, keys: list[bytes], args: list[bytes], run: Invocation) -> Any:
        return self.sandbox.execute_function(fn, keys, args, run)


def _no_calls(argv: list[bytes]) -> Any:
    raise ErrorReply("ERR redis.call is not available while a library loads")


class DesiredScripting:
    """The state machine's scripting: applies script and function entries deterministically."""

    def __init__(self, router: Router, make_sandbox: Callable[[], Sandbox]) -> None:
        self.router = router
        self.registry = Registry()
        self._make_sandbox = make_sandbox
        self._engine: Engine | None = None
        #: Set by the shell: called every hook period of a run (the busy handling; see sandbox.py).
        self.on_tick: Callable[[Run | None], bytes | None] | None = None

    @property
    def engine(self) -> Engine:
        """Created on first use: a node that never scripts its desired state pays nothing."""
        if self._engine is None:
            sandbox = self._make_sandbox()
            sandbox.on_tick = self._tick
            self._engine = Engine(sandbox, self.registry)
        return self._engine

    def _tick(self, run: Run | None) -> bytes | None:
        return self.on_tick(run) if self.on_tick is not None else None

    def _fresh(self, index: int) -> Engine:
        engine = self.engine
        engine.cache.flush()
        engine._libraries.clear()
        engine.sandbox.reset(seed=index)
        return engine

    def apply_eval(self, ctx: Any, argv: list[bytes], index: int) -> Any:
        body, read_only, budget = argv[1], argv[2] == b"1", int(argv[3])
        keys, args = split_keys(argv[2:])
        engine = self._fresh(index)
        try:
            flags, _ = parse_shebang(body)
            script = engine.script(body)
        except ErrorReply as err:
            return err
        read_only = read_only or (flags is not None and "no-writes" in flags)
        run = Invocation(script.sha, read_only=read_only, is_eval=True, ctxs={"log": ctx}, router=self.router,
                         now_ms=ctx.now_ms, declared=keys, max_steps=steps_for(budget))
        try:
            return engine.run_script(script, keys, args, run)
        finally:
            engine.cache.flush()

    def apply_fcall(self, ctx: Any, argv: list[bytes], index: int) -> Any:
        name, read_only, budget = argv[1].decode(errors="replace"), argv[2] == b"1", int(argv[3])
        keys, args = split_keys(argv[2:], fcall=True)
        engine = self._fresh(index)
        try:
            info, fn = engine.function(name)
        except ErrorReply as err:
            return err
        if read_only and not info.read_only:
            return ErrorReply("ERR Can not execute a script with write flag using *_ro command.")
        run = Invocation(name, read_only=info.read_only, is_eval=False, ctxs={"log": ctx}, router=self.router,
                         now_ms=ctx.now_ms, declared=keys, max_steps=steps_for(budget))
        return engine.run_function(fn, keys, args, run)

    def apply_function(self, ctx: Any, argv: list[bytes], index: int) -> Any:
        action = argv[1]
        registry = self.registry
        if action == b"load":
            engine = self._fresh(index)
            library, _ = engine.compile_library(argv[4], max_instructions=int(argv[3]))
            registry.install(library, replace=argv[2] == b"1")
            return library.name.encode()
        if action == b"delete":
            registry.delete(argv[2].decode(errors="replace"))
            return OK
        if action == b"flush":
            registry.flush()
            return OK
        if action == b"restore":
            engine = self._fresh(index)
            codes = parse_dump(argv[4])
            libraries = []
            for code in codes:
                library, _ = engine.compile_library(code, max_instructions=int(argv[3]))
                libraries.append(library)
            registry.restore(libraries, argv[2].decode())
            return OK
        return ErrorReply(f"ERR unknown function entry '{action.decode(errors='replace')}'")

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> list[bytes]:
        return self.registry.codes()

    def restore(self, codes: list[bytes]) -> None:
        """Reinstall libraries from a snapshot (they were checked when first loaded)."""
        self.registry.flush()
        for code in codes:
            engine = self.engine
            try:
                library, _ = engine.compile_library(code, max_instructions=0)
            except ErrorReply:  # it loaded once; keep it listed even if it no longer compiles here
                _, name, _ = parse_metadata(code)
                library = Library(name, code)
            self.registry.install(library, replace=True)

