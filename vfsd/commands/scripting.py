"""Scripting commands: EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT FCALL FCALL_RO FUNCTION.

Where a script runs is decided by its KEYS (``vfsd.scripting.calls``): on local
and active keys (or none) at once, on this node; on desired and lease keys as one
log entry, applied on every node (EVALSHA's entry carries the body, since another
replica's cache may not hold it). A read-only script (EVAL_RO, ``no-writes``) on
desired keys reads this node's applied state at once, as any read does.

FUNCTION LOAD, DELETE, FLUSH and RESTORE change desired state: each is a log
entry, so libraries survive restarts and replicate with the log. A library is
compiled here first, so a broken one is refused before anything is logged.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import TYPE_CHECKING, Any

from vfsd.commands.observe import remember_reads
from vfsd.commands.table import MONITOR_NEVER, command, container
from vfsd.paths import GROUP, PathError
from vfsd.resp.types import OK, ErrorReply, SimpleString
from vfsd.scripting.busy import NOTBUSY, BusyScripts, _monotonic_ms
from vfsd.scripting.calls import Invocation, lookup
from vfsd.scripting.engine import Engine, split_keys
from vfsd.scripting.functions import parse_dump
from vfsd.scripting.sandbox import Sandbox
from vfsd.scripting.scripts import NOSCRIPT, Script

if TYPE_CHECKING:
    from vfsd.node import Node
    from vfsd.server import Client

log = logging.getLogger("vfsd.scripting")
LOG_LEVELS = (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)  # redis.LOG_DEBUG .. LOG_WARNING
#: numkeys as scripts send it most (one probe instead of parsing); anything else goes through split_keys.
SMALL_NUMKEYS = {b"%d" % n: n for n in range(16)}


class NodeScripting:
    """The node's scripting: its Lua runtime for immediate runs and the busy-script handling."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        settings = node.settings
        self.sandbox = Sandbox(max_memory_bytes=settings.script_max_memory_bytes, log=self._log,
                               command_exists=lambda name: lookup([name]) is not None)
        machine = node.planes["log"].machine
        self.engine = Engine(self.sandbox, machine.scripting.registry)
        self.busy = BusyScripts(node)
        self.sandbox.on_tick = self.busy.tick
        machine.scripting.on_tick = self.busy.tick
        self._immediate_ctxs = {"local": node.planes["local"].ctx, "eventual": node.planes["eventual"].ctx}
        self._desired_ctxs = {"log": node.planes["log"].ctx}
        self._spare = Invocation("", read_only=False, is_eval=True, ctxs=self._immediate_ctxs, router=node.router,
                                 now_ms=0, node_command=self._node_command)
        self._spare_in_use = False
        self._monitors = node.monitors

    def done(self, run: Invocation) -> None:
        """A run ended: stop any busy polling, release the reusable invocation."""
        if run.busy:
            self.busy.finish()
        if run is self._spare:
            run.caller = None
            run.argv = []
            self._spare_in_use = False

    @staticmethod
    def _node_command(client: "Client", spec: Any, argv: list[bytes]) -> Any:
        return spec.handler(client, argv)

    @staticmethod
    def _log(level: int, message: bytes) -> None:
        log.log(LOG_LEVELS[level], "%s", message.decode(errors="replace"))

    def group_of(self, keys: list[bytes]) -> str:
        """The one replication group a script's KEYS are on ("local" with no keys)."""
        for key in keys:
            if key[:1] == b"/":
                break
        else:
            return "local"  # no path among them: all local keys
        node = self.node
        router, known = node.router, node.keyspace.data
        first: tuple[bytes, str] | None = None
        try:
            for key in keys:
                plane = router.plane_of(key, known)
                if first is None:
                    first = (key, plane)
                elif GROUP[plane] != GROUP[first[1]]:
                    raise ErrorReply(
                        f"ERR script keys span planes: '{first[0][:200].decode(errors='replace')}' ({first[1]}) and "
                        f"'{key[:200].decode(errors='replace')}' ({plane}); a script's KEYS must be on one plane")
        except PathError as exc:
            raise ErrorReply(str(exc)) from None
        return "local" if first is None else GROUP[first[1]]

    def invocation(self, client: "Client", argv: list[bytes], name: str, group: str, keys: list[bytes], *,
                   read_only: bool, is_eval: bool) -> Invocation:
        node = self.node
        if group == "log":  # read-only on desired keys: read this node's applied state, declared keys only
            run = Invocation(name, read_only=read_only, is_eval=is_eval, ctxs=self._desired_ctxs, router=node.router,
                             now_ms=node.clock_ms, declared=keys, caller=client, argv=argv,
                             node_command=self._node_command)
        elif not self._spare_in_use:  # the common case: reuse the one immediate-mode invocation
            self._spare_in_use = True
            run = self._spare.reuse(name, read_only=read_only, is_eval=is_eval, now_ms=node.clock_ms,
                                    caller=client, argv=argv, started_ms=_monotonic_ms())
            run.observer = self._observer(client)
            return run
        else:
            run = Invocation(name, read_only=read_only, is_eval=is_eval, ctxs=self._immediate_ctxs,
                             router=node.router, now_ms=node.clock_ms, caller=client, argv=argv,
                             node_command=self._node_command)
        run.started_ms = _monotonic_ms()
        run.observer = self._observer(client)
        return run

    def _observer(self, client: "Client") -> Any:
        """What watches the commands a script runs for ``client``: MONITOR's ``[0 lua]`` lines, and the keys
        it reads for a tracking client (Redis 7 tracks what a script read, not what it declared)."""
        monitors = self.node.monitors
        if not monitors.clients and (client is None or client.tracking is None):
            return None

        def observe(spec: Any, argv: list[bytes]) -> None:
            if monitors.clients and spec.monitor_feed != MONITOR_NEVER:
                monitors.feed_script(argv)
            if client is not None:
                remember_reads(client, spec, argv)

        return observe

    def eval(self, client: "Client", argv: list[bytes], script: Script, *, ro: bool) -> Any:
        numkeys = SMALL_NUMKEYS.get(argv[2])
        if numkeys is not None and numkeys <= len(argv) - 3:
            keys = argv[3:3 + numkeys]
        else:
            keys, _ = split_keys(argv)  # and its errors
            numkeys = len(keys)
        flags = script.flags
        if flags is None:  # compatibility mode: writes allowed unless called as *_RO
            read_only = ro
        else:
            read_only = "no-writes" in flags
            if ro and not read_only:
                raise ErrorReply("ERR Can not execute a script with write flag using *_ro command.")
            read_only = True if ro else read_only
        for key in keys:
            if key[:1] == b"/":
                group = self.group_of(keys)
                break
        else:
            group = "local"
        if group == "local" and not self._spare_in_use:  # the common case, on the reusable invocation
            self._spare_in_use = True
            run = self._spare  # Invocation.reuse, inlined
            run.name, run.resp, run.steps, run.work, run.verdict, run.read_only = script.sha, 2, 0, 0, None, read_only
            run.wrote, run.is_eval, run.now_ms, run.caller, run.argv = False, True, self.node.clock_ms, client, argv
            run.started_ms, run.busy = int(monotonic() * 1000), False
            run.observer = None if not self._monitors.clients and client.tracking is None else self._observer(client)
            try:
                return self.sandbox.execute_eval_argv(script.function, numkeys, argv, run)
            finally:
                if run.busy:
                    self.busy.finish()
                run.caller = None
                run.argv = []
                self._spare_in_use = False
        args = argv[3 + numkeys:]
        node = self.node
        if group == "log" and not read_only:
            op = [b"vfs.eval", script.body, b"0", b"%d" % node.settings.script_max_instructions, *argv[2:]]
            return node.planes["log"].submit([op], node.clock_ms)
        run = self.invocation(client, argv, script.sha, group, keys, read_only=read_only, is_eval=True)
        try:
            return self.engine.run_script(script, keys, args, run)
        finally:
            self.done(run)

    def fcall(self, client: "Client", argv: list[bytes], *, ro: bool) -> Any:
        name = argv[1].decode(errors="replace")
        info, fn = self.engine.function(name)
        keys, args = split_keys(argv, fcall=True)
        if ro and not info.read_only:
            raise ErrorReply("ERR Can not execute a script with write flag using *_ro command.")
        group = self.group_of(keys)
        node = self.node
        if group == "log" and not info.read_only:
            op = [b"vfs.fcall", argv[1], b"1" if ro else b"0", b"%d" % node.settings.script_max_instructions,
                  *argv[2:]]
            return node.planes["log"].submit([op], node.clock_ms)
        run = self.invocation(client, argv, name, group, keys, read_only=info.read_only, is_eval=False)
        try:
            return self.engine.run_function(fn, keys, args, run)
        finally:
            self.done(run)

    def submit_function(self, op: list[bytes]) -> Any:
        node = self.node
        return node.planes["log"].submit([op], node.clock_ms)


def _scripting(client: "Client") -> NodeScripting:
    return client.node.scripting


def _script_keys(argv: list[bytes]) -> list[int]:
    """Key positions of EVAL/FCALL (for COMMAND GETKEYS): numkeys arguments after it."""
    try:
        n = int(argv[2])
    except (ValueError, IndexError):
        return []
    return list(range(3, 3 + n)) if 0 <= n <= len(argv) - 3 else []


EVAL_FLAGS = "noscript stale skip_monitor may_replicate no_mandatory_keys no_multi"


@command("eval", arity=-3, flags=EVAL_FLAGS, acl="@scripting", group="scripting", scope="node", since="2.6.0",
         key_positions=_script_keys, summary="Executes a server-side Lua script.",
         arguments="script numkeys [key ...] [arg ...]")
def eval_(client: "Client", argv: list[bytes]) -> Any:
    scripting = _scripting(client)
    return scripting.eval(client, argv, scripting.engine.script(argv[1]), ro=False)


@command("eval_ro", arity=-3, flags=EVAL_FLAGS.replace("may_replicate ", "readonly "), acl="@scripting",
         group="scripting", scope="node", since="7.0.0", key_positions=_script_keys,
         summary="Executes a read-only server-side Lua script.", arguments="script numkeys [key ...] [arg ...]")
def eval_ro(client: "Client", argv: list[bytes]) -> Any:
    scripting = _scripting(client)
    return scripting.eval(client, argv, scripting.engine.script(argv[1]), ro=True)


def _cached(client: "Client", sha: bytes) -> Script:
    """The script of an EVALSHA digest, in either case; NOSCRIPT if it is not cached."""
    script = None
    if len(sha) == 40:
        script = _scripting(client).engine.cache.get(sha.decode(errors="replace").lower())
    if script is None:
        raise NOSCRIPT
    return script


@command("evalsha", arity=-3, flags=EVAL_FLAGS, acl="@scripting", group="scripting", scope="node", since="2.6.0",
         key_positions=_script_keys, summary="Executes a server-side Lua script by SHA1 digest.",
         arguments="sha1 numkeys [key ...] [arg ...]")
def evalsha(client: "Client", argv: list[bytes]) -> Any:
    scripting = client.node.scripting
    script = scripting.engine.cache.digests.get(argv[1])  # the digest as SCRIPT LOAD returned it
    return scripting.eval(client, argv, script or _cached(client, argv[1]), ro=False)


@command("evalsha_ro", arity=-3, flags=EVAL_FLAGS.replace("may_replicate ", "readonly "), acl="@scripting",
         group="scripting", scope="node", since="7.0.0", key_positions=_script_keys,
         summary="Executes a read-only server-side Lua script by SHA1 digest.",
         arguments="sha1 numkeys [key ...] [arg ...]")
def evalsha_ro(client: "Client", argv: list[bytes]) -> Any:
    return _scripting(client).eval(client, argv, _cached(client, argv[1]), ro=True)


@command("fcall", arity=-3, flags=EVAL_FLAGS, acl="@scripting", group="scripting", scope="node", since="7.0.0",
         key_positions=_script_keys, summary="Invokes a function.", arguments="function numkeys [key ...] [arg ...]")
def fcall(client: "Client", argv: list[bytes]) -> Any:
    return _scripting(client).fcall(client, argv, ro=False)


@command("fcall_ro", arity=-3, flags=EVAL_FLAGS.replace("may_replicate ", "readonly "), acl="@scripting",
         group="scripting", scope="node", since="7.0.0", key_positions=_script_keys,
         summary="Invokes a read-only function.", arguments="function numkeys [key ...] [arg ...]")
def fcall_ro(client: "Client", argv: list[bytes]) -> Any:
    return _scripting(client).fcall(client, argv, ro=True)


# -- SCRIPT --------------------------------------------------------------------------

container("script", group="scripting", summary="A container for Lua scripts management commands.", since="2.6.0")


@command("load", arity=3, flags="noscript stale", acl="@scripting", group="scripting", scope="node", parent="script",
         since="2.6.0", summary="Loads a server-side Lua script to the script cache.", arguments="script")
def script_load(client: "Client", argv: list[bytes]) -> bytes:
    return _scripting(client).engine.script(argv[2]).sha.encode()


@command("exists", arity=-3, flags="noscript", acl="@scripting", group="scripting", scope="node", parent="script",
         since="2.6.0", summary="Determines whether server-side Lua scripts exist in the script cache.",
         arguments="sha1 [sha1 ...]")
def script_exists(client: "Client", argv: list[bytes]) -> list[int]:
    cache = _scripting(client).engine.cache
    return [1 if cache.get(sha.decode(errors="replace").lower()) is not None else 0 for sha in argv[2:]]


def _flush_mode(argv: list[bytes], error: str) -> None:
    if len(argv) > 3 or (len(argv) == 3 and argv[2].upper() not in (b"ASYNC", b"SYNC")):
        raise ErrorReply(error)


@command("flush", arity=-2, flags="noscript", acl="@scripting", group="scripting", scope="node", parent="script",
         since="2.6.0", summary="Removes all server-side Lua scripts from the script cache.", arguments="[ASYNC|SYNC]")
def script_flush(client: "Client", argv: list[bytes]) -> Any:
    _flush_mode(argv, "ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    _scripting(client).engine.cache.flush()
    return OK


@command("kill", arity=2, flags="noscript allow_busy", acl="@scripting", group="scripting", scope="node",
         parent="script", since="2.6.0", summary="Terminates a server-side Lua script during execution.")
def script_kill(client: "Client", argv: list[bytes]) -> Any:
    return NOTBUSY  # a busy script is killed from inside its hook (vfsd.scripting.busy)


@command("debug", arity=3, flags="noscript", acl="@scripting", group="scripting", scope="node", parent="script",
         since="3.2.0", summary="Sets the debug mode of server-side Lua scripts (not supported).")
def script_debug(client: "Client", argv: list[bytes]) -> Any:
    raise ErrorReply("ERR SCRIPT DEBUG is not supported by vfsd")


@command("help", arity=2, flags="loading stale", acl="@scripting", group="scripting", scope="node", parent="script",
         summary="Returns helpful text about the different subcommands.", since="5.0.0")
def script_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return [SimpleString(s) for s in (
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "EXISTS <sha1> [<sha1> ...]", "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]", "    Flush the Lua scripts cache.",
        "KILL", "    Kill the currently executing Lua script.",
        "LOAD <script>", "    Load a script into the scripts cache without executing it.",
        "HELP", "    Print this help.")]


# -- FUNCTION ------------------------------------------------------------------------

container("function", group="scripting", summary="A container for function commands.", since="7.0.0")


@command("load", arity=-3, flags="write noscript deny_oom", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Creates a library.", arguments="[REPLACE] function-code")
def function_load(client: "Client", argv: list[bytes]) -> Any:
    replace = False
    i = 2
    while i < len(argv) - 1:
        if argv[i].upper() != b"REPLACE":
            raise ErrorReply(f"ERR Unknown option given: {argv[i].decode(errors='replace')}")
        replace = True
        i += 1
    if i >= len(argv):
        raise ErrorReply("ERR Function code is missing")
    scripting = _scripting(client)
    code = argv[i]
    library, _ = scripting.engine.compile_library(code)  # refuse a broken library before logging it
    registry = scripting.engine.registry
    if library.name in registry.libraries and not replace:
        raise ErrorReply(f"ERR Library '{library.name}' already exists")
    for name in library.functions:
        owner = registry.functions.get(name)
        if owner is not None and owner.library != library.name:
            raise ErrorReply(f"ERR Function {name} already exists")
    return scripting.submit_function([b"vfs.function", b"load", b"1" if replace else b"0",
                                      b"%d" % client.node.settings.script_max_instructions, code])


@command("list", arity=-2, flags="noscript", acl="@scripting", group="scripting", scope="node", parent="function",
         since="7.0.0", summary="Returns information about all libraries.",
         arguments="[LIBRARYNAME library-name-pattern] [WITHCODE]")
def function_list(client: "Client", argv: list[bytes]) -> Any:
    with_code = False
    pattern: bytes | None = None
    i = 2
    while i < len(argv):
        arg = argv[i].lower()
        if not with_code and arg == b"withcode":
            with_code = True
        elif pattern is None and arg == b"libraryname":
            if i >= len(argv) - 1:
                raise ErrorReply("ERR library name argument was not given")
            i += 1
            pattern = argv[i]
        else:
            raise ErrorReply(f"ERR Unknown argument {argv[i].decode(errors='replace')}")
        i += 1
    return _scripting(client).engine.registry.list_reply(pattern, with_code)


@command("delete", arity=3, flags="write noscript", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Deletes a library and its functions.", arguments="library-name")
def function_delete(client: "Client", argv: list[bytes]) -> Any:
    scripting = _scripting(client)
    if argv[2].decode(errors="replace") not in scripting.engine.registry.libraries:
        raise ErrorReply("ERR Library not found")
    return scripting.submit_function([b"vfs.function", b"delete", argv[2]])


@command("flush", arity=-2, flags="write noscript", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Deletes all libraries and functions.", arguments="[ASYNC|SYNC]")
def function_flush(client: "Client", argv: list[bytes]) -> Any:
    _flush_mode(argv, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    return _scripting(client).submit_function([b"vfs.function", b"flush"])


@command("dump", arity=2, flags="noscript", acl="@scripting", group="scripting", scope="node", parent="function",
         since="7.0.0", summary="Dumps all libraries into a serialized binary payload.")
def function_dump(client: "Client", argv: list[bytes]) -> bytes:
    return _scripting(client).engine.registry.dump()


@command("restore", arity=-3, flags="write noscript deny_oom", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Restores all libraries from a payload.",
         arguments="serialized-value [FLUSH|APPEND|REPLACE]")
def function_restore(client: "Client", argv: list[bytes]) -> Any:
    if len(argv) > 4:
        raise ErrorReply("ERR syntax error")
    policy = argv[3].upper() if len(argv) == 4 else b"APPEND"
    if policy not in (b"FLUSH", b"APPEND", b"REPLACE"):
        raise ErrorReply("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")
    parse_dump(argv[2])  # a damaged payload is refused before it is logged
    return _scripting(client).submit_function([b"vfs.function", b"restore", policy,
                                               b"%d" % client.node.settings.script_max_instructions, argv[2]])


def function_stats(node: "Node", running: Invocation | None) -> dict[str, Any]:
    registry = node.scripting.engine.registry
    script: dict[str, Any] | None = None
    if running is not None:
        script = {"name": running.name.encode(), "command": list(running.argv),
                  "duration_ms": BusyScripts.now_ms() - running.started_ms}
    return {"running_script": script,
            "engines": {"LUA": {"libraries_count": len(registry.libraries),
                                "functions_count": len(registry.functions)}}}


@command("stats", arity=2, flags="noscript allow_busy", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Returns information about a function during execution.")
def function_stats_cmd(client: "Client", argv: list[bytes]) -> Any:
    return function_stats(client.node, None)


@command("kill", arity=2, flags="noscript allow_busy", acl="@scripting", group="scripting", scope="node",
         parent="function", since="7.0.0", summary="Terminates a function during execution.")
def function_kill(client: "Client", argv: list[bytes]) -> Any:
    return NOTBUSY


@command("help", arity=2, flags="loading stale", acl="@scripting", group="scripting", scope="node",
         parent="function", summary="Returns helpful text about the different subcommands.", since="7.0.0")
def function_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return [SimpleString(s) for s in (
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>", "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>", "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]", "    Return general information on all the libraries.",
        "STATS", "    Return information about the current function running.",
        "KILL", "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]", "    Delete all the libraries.",
        "DUMP", "    Return a serialized payload representing the current libraries.",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]", "    Restore the libraries represented by the given payload.",
        "HELP", "    Print this help.")]
