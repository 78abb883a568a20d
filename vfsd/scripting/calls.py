"""What ``redis.call`` may do, and where it runs: one script invocation's view of the node.

Every ``redis.call`` goes through the same command table as a client's command
(arity, flags and plane routing checked here, once), with Redis's texts for the
checks a script adds: an unknown command, a wrong arity, a ``noscript`` command,
a write from a read-only script.

Planes (DESIGN.md §1). A script runs in one of two modes:

- immediate (its KEYS are local or active-plane keys, or it has none): it runs at
  once on this node; each command it calls is routed by its own keys to the local
  or active plane. Desired-state keys cannot be reached this way, since their
  writes only happen when a log entry applies: declare them in KEYS.
- deterministic (its KEYS are desired or lease keys): the script and its
  arguments are one log entry, run by the state machine at apply time on every
  node. Every key a command touches must be one of the declared KEYS (the entry
  was routed by them), and commands whose output depends on the node or the clock
  (Redis's ``nondeterministic_output`` ones: TIME, INFO, KEYS, SCAN, DBSIZE ...) are
  refused, so every replica computes the same writes and the same reply.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from vfsd.commands.table import TABLE, CommandSpec
from vfsd.paths import GROUP, PathError, Router
from vfsd.resp.types import OK, ErrorReply, SimpleString
from vfsd.scripting.sandbox import Run

__all__ = ["DETERMINISTIC_NODE_COMMANDS", "Invocation", "lookup"]

#: Node-scope commands a desired-plane script may call: their output depends only on their arguments.
DETERMINISTIC_NODE_COMMANDS = frozenset({"ping", "echo", "select"})

UNKNOWN = ErrorReply("ERR Unknown Redis command called from script")
ARITY = ErrorReply("ERR Wrong number of args calling Redis command from script")
NOSCRIPT = ErrorReply("ERR This Redis command is not allowed from script")
READ_ONLY = ErrorReply("ERR Write commands are not allowed from read-only scripts.")


_SPELLINGS: dict[bytes, CommandSpec] = {}  # b"GET", b"get" ... -> spec: one probe on the hot path
#: The spellings seen so far of commands ``Invocation.call`` may run without its general checks:
#: one key at argv[1], a key-scope handler, allowed in scripts, no subcommands.
_PLAIN: dict[bytes, CommandSpec] = {}


def _is_plain(spec: CommandSpec) -> bool:
    return (spec.scope == "key" and spec.first_key == 1 and spec.last_key == 1 and spec.key_positions is None
            and spec.parent is None and "noscript" not in spec.flags and "container" not in spec.flags)


def lookup(argv: list[bytes]) -> CommandSpec | None:
    """The spec (or subcommand spec) of argv, or None; internal commands are not callable."""
    spec = _SPELLINGS.get(argv[0])
    if spec is None:
        spec = TABLE.get(argv[0].decode(errors="replace").lower())
        if spec is None or "internal" in spec.flags:
            return None
        if len(_SPELLINGS) < 4096:
            _SPELLINGS[argv[0]] = spec
            if _is_plain(spec):
                _PLAIN[argv[0]] = spec
    if "container" in spec.flags and len(argv) >= 2:
        sub = spec.subcommands.get(argv[1].decode(errors="replace").lower())
        return sub if sub is not None else spec
    return spec


def _deterministic_node_command(name: str, argv: list[bytes]) -> Any:
    if name == "ping":
        if len(argv) > 2:
            raise ErrorReply("ERR wrong number of arguments for 'ping' command")
        return argv[1] if len(argv) == 2 else SimpleString("PONG")
    if name == "echo":
        return argv[1]
    if name == "select":
        if argv[1] != b"0":
            raise ErrorReply("ERR DB index is out of range")
        return OK
    raise NOSCRIPT


class Invocation(Run):
    """One run of a script or function: its mode, what it may touch, and whether it wrote."""

    __slots__ = ("read_only", "wrote", "is_eval", "deterministic", "declared", "ctxs", "router", "now_ms",
                 "node_command", "caller", "argv", "started_ms", "busy", "observer", "local_ctx")

    def __init__(self, name: str, *, read_only: bool, is_eval: bool, ctxs: Mapping[str, Any], router: Router,
                 now_ms: int, declared: Collection[bytes] | None = None,
                 node_command: Callable[[Any, CommandSpec, list[bytes]], Any] | None = None,
                 max_steps: int = 0, caller: Any = None, argv: list[bytes] | None = None) -> None:
        super().__init__(name, self.call, max_steps=max_steps)
        self.read_only = read_only
        self.wrote = False
        self.is_eval = is_eval
        #: Declared keys of a deterministic (desired-plane) run; None for an immediate run.
        self.declared = None if declared is None else set(declared)
        self.deterministic = declared is not None
        #: Replication group -> the Ctx commands run through ("log" alone for a deterministic run).
        self.ctxs = ctxs
        #: Where a plain command on a local key runs (None: a deterministic run, which has only the log).
        self.local_ctx = None if self.deterministic else ctxs.get("local")
        self.router = router
        #: Every command of the run sees this time (Redis freezes the clock for a script too).
        self.now_ms = now_ms
        self.node_command = node_command
        self.caller = caller
        self.argv = argv or []
        self.started_ms = 0
        self.busy = False
        #: Called with ``(spec, argv)`` after each command the script ran (MONITOR, client-side caching); None
        #: when nothing watches.
        self.observer: Callable[[CommandSpec, list[bytes]], None] | None = None

    def reuse(self, name: str, *, read_only: bool, is_eval: bool, now_ms: int, caller: Any,
              argv: list[bytes], started_ms: int) -> "Invocation":
        """Reset an immediate-mode invocation for the next run (one object per node, no allocation)."""
        self.name = name
        self.resp = 2
        self.steps = 0
        self.work = 0
        self.verdict = None
        self.read_only = read_only
        self.wrote = False
        self.is_eval = is_eval
        self.now_ms = now_ms
        self.caller = caller
        self.argv = argv
        self.started_ms = started_ms
        self.busy = False
        return self

    def call(self, argv: list[bytes]) -> Any:
        """One ``redis.call``: the reply, or ErrorReply raised."""
        spec = _PLAIN.get(argv[0])
        ctx = self.local_ctx
        if spec is not None and ctx is not None and self.observer is None:
            # The common case, equivalent to ``call_checked`` for a plain command on a local key in an
            # immediate run that nothing observes (its spelling was looked up and classified once, by
            # ``lookup``).
            n = len(argv)
            arity = spec.arity
            if ((n == arity) if arity >= 0 else (n >= -arity)) and argv[1][:1] != b"/":
                if spec.is_write:
                    if self.read_only:
                        raise READ_ONLY
                    self.wrote = True
                ctx.now_ms = self.now_ms
                return spec.handler(ctx, argv)
        return self.call_checked(argv)

    def call_checked(self, argv: list[bytes]) -> Any:
        """One ``redis.call`` through every check."""
        spec = lookup(argv)
        if spec is None or "container" in spec.flags:
            raise UNKNOWN
        if not spec.arity_ok(len(argv)):
            raise ARITY
        if "noscript" in spec.flags:
            raise NOSCRIPT
        if self.read_only and spec.is_write:
            raise READ_ONLY
        if spec.scope == "node":
            name = spec.parent.name if spec.parent else spec.name
            if self.deterministic and name not in DETERMINISTIC_NODE_COMMANDS:
                raise ErrorReply(f"ERR '{spec.full_name}' is not allowed in a script on the desired plane: its output "
                                 "depends on the node or the clock, and the script runs on every node")
            if self.node_command is None:  # applying a log entry: no client, no node
                return _deterministic_node_command(name, argv)
            if spec.is_write:
                self.wrote = True
            reply = self.node_command(self.caller, spec, argv)
            if hasattr(reply, "add_done_callback"):
                raise ErrorReply(f"ERR '{spec.full_name}' cannot run inside a script")
            if self.observer is not None:
                self.observer(spec, argv)
            return reply
        ctx = self.ctxs[self.route(spec, argv)]
        ctx.now_ms = self.now_ms
        if spec.is_write:
            self.wrote = True
        if self.observer is None:
            return spec.handler(ctx, argv)
        try:
            return spec.handler(ctx, argv)
        finally:
            self.observer(spec, argv)

    def route(self, spec: CommandSpec, argv: list[bytes]) -> str:
        """The group a command's keys are on, if this run may touch them."""
        keys = spec.keys(argv)
        if self.deterministic:
            for key in keys:
                if key not in self.declared:  # type: ignore[operator]
                    raise ErrorReply(
                        f"ERR script on the desired plane touched '{key[:200].decode(errors='replace')}', which is "
                        "not in its KEYS: a desired-plane script may only touch the keys it declares")
            return "log"
        first: str | None = None
        for key in keys:
            try:
                plane = self.router.plane_of(key)
            except PathError as exc:
                raise ErrorReply(str(exc)) from None
            group = GROUP[plane]
            if group == "log":
                raise ErrorReply(
                    f"ERR script touched '{key[:200].decode(errors='replace')}' on the {plane} plane without declaring "
                    "it: desired-state keys must be passed in KEYS (the script then runs as one log entry)")
            if first is None:
                first = group
            elif group != first and spec.is_write:
                raise ErrorReply(f"ERR '{spec.name}' spans planes inside a script; send one command per plane")
        return first or "local"
