"""Central dispatch: every check a handler can rely on happens here, once.

Order (as Redis's processCommand): look the command up, check arity, check
authentication, check the RESP2 subscribed context, queue inside MULTI, route
the keys to their plane, then run the handler — at once, or as a log entry on
the desired plane (the reply is then a Future the client shell waits on).
A write proposed to the log first passes its spec's ``check`` (argument
errors known in advance never become log entries).

Blocking pops: a handler's ``Block`` becomes a Future from the node's Blocker
(vfsd.blocking), or the command's null reply inside EXEC; and after every
command that fed a key someone waits on, the Blocker serves it, as Redis does
after each command.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from vfsd.commands.blocking import Block
from vfsd.commands.context import probe
from vfsd.commands.errors import wrong_arity
from vfsd.commands.locks import is_lease_path
from vfsd.commands.observe import observed, remember_reads
from vfsd.commands.table import MONITOR_AFTER, MONITOR_BEFORE, TABLE, CommandSpec
from vfsd.paths import GROUP, PLANE_NAMES, PathError
from vfsd.resp.types import ErrorReply

if TYPE_CHECKING:
    from vfsd.server import Client

log = logging.getLogger(__name__)

LOOKUP: dict[bytes, CommandSpec] = {}
#: Commands that take the fast path: one key, a key-scope handler, no subcommands. Empty while something
#: needs every command on the general path (``hold_general_path``: MONITOR, CLIENT PAUSE).
FAST: dict[bytes, CommandSpec] = {}
_FAST_ALL: dict[bytes, CommandSpec] = {}
#: Script commands that take the fast path: node-scope handlers that run or propose the script themselves
#: (``vfsd.commands.scripting``), so a plain client's EVALSHA skips only checks that cannot refuse it. Held
#: empty with FAST.
FAST_SCRIPTS: dict[bytes, CommandSpec] = {}
_FAST_SCRIPTS_ALL: dict[bytes, CommandSpec] = {}
SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
_general_holds = 0

NOAUTH = ErrorReply("NOAUTH Authentication required.")
IN_MULTI_IMMEDIATE = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})
SUBSCRIBED_ALLOWED = frozenset({"subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe",
                                "sunsubscribe", "vfs.watch", "vfs.unwatch", "ping", "quit", "reset"})


def build_lookup() -> None:
    """Index the table by the command's bytes in lower and upper case (the common spellings)."""
    LOOKUP.clear()
    _FAST_ALL.clear()
    _FAST_SCRIPTS_ALL.clear()
    for name, spec in TABLE.items():
        if "internal" in spec.flags:
            continue
        for spelling in (name.encode(), name.upper().encode()):
            LOOKUP[spelling] = spec
            if (spec.scope == "key" and spec.first_key == 1 and spec.last_key == 1 and spec.key_positions is None
                    and not spec.is_blocking):
                _FAST_ALL[spelling] = spec
            elif name in SCRIPT_COMMANDS and spec.scope == "node":
                _FAST_SCRIPTS_ALL[spelling] = spec
    FAST.clear()
    FAST_SCRIPTS.clear()
    if not _general_holds:
        FAST.update(_FAST_ALL)
        FAST_SCRIPTS.update(_FAST_SCRIPTS_ALL)


def hold_general_path(hold: bool) -> None:
    """Send every command through the general path (``hold`` True) until as many releases (``hold`` False)
    as holds came. The two paths answer alike; only the general one feeds MONITOR and holds commands during
    CLIENT PAUSE, so while either is on no command may skip it."""
    global _general_holds
    _general_holds += 1 if hold else -1
    assert _general_holds >= 0, "hold_general_path released more often than held"
    if _general_holds == 0:
        FAST.update(_FAST_ALL)
        FAST_SCRIPTS.update(_FAST_SCRIPTS_ALL)
    elif hold and _general_holds == 1:
        FAST.clear()
        FAST_SCRIPTS.clear()


def unknown_command(argv: list[bytes]) -> ErrorReply:
    args = "".join(f"'{a[:128].decode(errors='replace')}' " for a in argv[1:])
    name = argv[0][:128].decode(errors="replace")
    return ErrorReply(f"ERR unknown command '{name}', with args beginning with: {args}")


def resolve(argv: list[bytes]) -> CommandSpec:
    """The spec (or subcommand spec) for argv; ErrorReply for unknown names or bad arity."""
    spec = LOOKUP.get(argv[0])
    if spec is None:
        spec = LOOKUP.get(argv[0].lower())
        if spec is None:
            raise unknown_command(argv)
    if "container" in spec.flags:
        if len(argv) < 2:
            if spec.arity == -1:  # COMMAND alone: the container's own handler answers
                return spec
            raise wrong_arity(spec.name)
        sub = spec.subcommands.get(argv[1].decode(errors="replace").lower())
        if sub is None:
            raise ErrorReply(
                f"ERR unknown subcommand '{argv[1][:128].decode(errors='replace')}'. Try {spec.name.upper()} HELP."
            )
        spec = sub
    if not spec.arity_ok(len(argv)):
        raise wrong_arity(spec.full_name)
    return spec


def plane_group(client: "Client", spec: CommandSpec, argv: list[bytes]) -> str | None:
    """The replication group of a command's first key; ErrorReply for a bad path or a write spanning groups;
    None when a malformed command names no key (LMPOP 0 ...): its handler answers the error on any plane."""
    router = client.node.router
    known = client.node.keyspace.data  # existing keys were validated when written
    keys = spec.keys(argv)
    if not keys:
        return None
    try:
        first_plane = router.plane_of(keys[0], known)
        first = GROUP[first_plane]
        for key in keys[1:]:
            plane = router.plane_of(key, known)
            if GROUP[plane] != first and spec.is_write:  # reads are local on every plane: they may span
                raise ErrorReply(
                    f"ERR '{spec.name}' spans planes: '{keys[0].decode(errors='replace')}' ({PLANE_NAMES[first_plane]}) "
                    f"and '{key.decode(errors='replace')}' ({PLANE_NAMES[plane]}); send one command per plane"
                )
    except PathError as exc:
        raise ErrorReply(str(exc)) from None
    return first


#: Writes that, with exactly this many arguments, have nothing to refuse in advance (the parser
#: bounded their sizes already): the probe is skipped for them (it costs ~12 µs per write).
NOTHING_TO_REFUSE = {b"set": 3, b"SET": 3}


def refusal(node: Any, spec: CommandSpec, argv: list[bytes]) -> ErrorReply | None:
    """Why a write must not be proposed to the log, if it must not: its declared ``check``
    (arguments Redis parses before it looks at the key, limits), then a ``probe`` of its
    handler up to its first touch of state. Either way the error is known in advance."""
    if NOTHING_TO_REFUSE.get(argv[0]) == len(argv):
        return None
    if spec.check is not None:
        try:
            spec.check(argv, node.settings)
        except ErrorReply as err:
            return err
    return probe(spec.handler, argv, node.clock_ms, node.settings.max_bulk_bytes)


def propose(node: Any, plane: Any, spec: CommandSpec, argv: list[bytes], client: "Client | None" = None) -> Any:
    """Propose a write to a deferred (log) plane: refused at once if its arguments are wrong
    (``refusal``), else one entry carrying the string limit it must apply with, so every
    replica applies it the same whatever its own settings. Lease paths get the lock rules
    (vfsd.commands.locks): EXPIRE/PEXPIRE extend only for the holder's connection."""
    refused = refusal(node, spec, argv)
    if refused is not None:
        return refused
    if client is not None and len(argv) > 1 and is_lease_path(node, argv[1]):
        return _propose_lease(node, plane, spec, argv, client)
    return plane.submit([argv], node.clock_ms, max_bulk_bytes=node.settings.max_bulk_bytes)


def _propose_lease(node: Any, plane: Any, spec: CommandSpec, argv: list[bytes], client: "Client") -> Any:
    name = argv[0].lower()
    if name in (b"expire", b"pexpire", b"expireat", b"pexpireat", b"persist"):
        op = node.locks.rewrite_expire(client, argv)
        if not isinstance(op, list):
            return op
        return plane.submit([op], node.clock_ms)
    future = plane.submit([argv], node.clock_ms, max_bulk_bytes=node.settings.max_bulk_bytes)
    if name == b"set" and b"NX" in (a.upper() for a in argv[3:]):
        def granted(f: asyncio.Future[Any]) -> None:
            if f.result() is not None and not isinstance(f.result(), ErrorReply):
                node.locks.granted_here(client, argv[1], argv[2])
        future.add_done_callback(granted)
    return future


def read_linearizably(node: Any, plane: Any, spec: CommandSpec, argv: list[bytes], client: "Client") -> Any:
    """A read of a replicated desired path, run once every write committed before it began is
    applied here (``plane.read_then``). A tracking client's keys are remembered as a deferred read
    runs (not when it was sent), so an invalidation can only follow its reply; an immediate one is
    remembered by ``observed``, as any read."""

    def read(later: bool) -> Any:
        ctx = plane.ctx
        ctx.now_ms = node.now_ms() if later else node.clock_ms
        ctx.reading = True
        if later and client.tracking is not None:
            remember_reads(client, spec, argv)
        return spec.handler(ctx, argv)

    return plane.read_then(read)


def desired_write(client: "Client", argv: list[bytes]) -> bool:
    """Whether ``argv`` is a plain one-key write to a desired path (the fast path's kind), which
    may be pipelined behind another such write of the same connection."""
    spec = FAST.get(argv[0])
    if spec is None or not spec.is_write or not client.authenticated or client.multi is not None \
            or client.subscribed or client.observed or len(argv) < 2:
        return False
    key = argv[1]
    if key[:1] != b"/":
        return False
    node = client.node
    try:
        return node.plane_for[node.router.plane_of(key, node.keyspace.data)].deferred
    except PathError:
        return False


def dispatch(client: "Client", argv: list[bytes]) -> Any:
    """Run one command for ``client``; returns a reply, or a Future of one."""
    spec = FAST.get(argv[0])
    if spec is not None and client.authenticated and client.multi is None and not client.subscribed \
            and not client.observed:
        # The hot path, equivalent to the general one below for a plain client running a
        # one-key command: check arity, route the key, run or propose.
        arity = spec.arity
        n = len(argv)
        if (n == arity) if arity >= 0 else (n >= -arity):
            node = client.node
            key = argv[1]
            try:
                if key[:1] != b"/":
                    plane = node.local_plane
                else:
                    plane = node.plane_for[node.router.plane_of(key, node.keyspace.data)]
                if plane.deferred:
                    if spec.is_write:
                        return propose(node, plane, spec, argv, client)
                    if plane.linearizable and not client.readonly:
                        return read_linearizably(node, plane, spec, argv, client)
                ctx = plane.ctx
                ctx.now_ms = node.clock_ms
                ctx.reading = not spec.is_write
                reply = spec.handler(ctx, argv)
                if node.blocking_ready:
                    node.blocking.serve()
                return reply
            except PathError as exc:
                return ErrorReply(str(exc))
            except ErrorReply as err:
                return err
            except Exception as exc:
                log.exception("command %r failed", argv[0][:64])
                return ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc}")
    elif spec is None:
        spec = FAST_SCRIPTS.get(argv[0])
        if spec is not None and client.authenticated and client.multi is None and not client.subscribed \
                and not client.observed and spec.arity_ok(len(argv)):
            # EVALSHA and its kin for a plain client: what the general path does for a node-scope command
            # that nothing holds, watches or queues (its handler routes the script by its KEYS).
            try:
                return spec.handler(client, argv)
            except ErrorReply as err:
                return err
            except Exception as exc:
                log.exception("command %r failed", argv[0][:64])
                return ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc}")
    return dispatch_checked(client, argv)


def dispatch_checked(client: "Client", argv: list[bytes]) -> Any:
    """The general path: every check, in Redis's order; then what watches commands run (MONITOR, and for an
    observed client CLIENT TRACKING and CLIENT REPLY, ``vfsd.commands.observe``)."""
    if client.observed:
        return observed(client, argv, run_checked)
    return run_checked(client, argv)[1]


def run_checked(client: "Client", argv: list[bytes]) -> tuple[CommandSpec | None, Any]:
    """``(spec, reply)`` of one command; ``spec`` is None unless the command ran (rather than being refused
    before it could, or queued inside MULTI): what ran is what MONITOR shows and tracking remembers."""
    try:
        spec = LOOKUP.get(argv[0])
        if spec is None or spec.parent is not None or "container" in spec.flags:
            spec = resolve(argv)
        else:
            arity = spec.arity
            n = len(argv)
            if (n != arity) if arity >= 0 else (n < -arity):
                raise wrong_arity(spec.name)
        if not client.authenticated and "no_auth" not in spec.flags:
            raise NOAUTH
        if client.modes.monitor and (spec.is_write or "readonly" in spec.flags or "may_replicate" in spec.flags):
            raise ErrorReply("ERR Replica can't interact with the keyspace")  # Redis: a monitor is a replica
        if client.multi is not None or client.proto == 2 and client.subscribed:
            name = spec.parent.name if spec.parent else spec.name
            if client.proto == 2 and client.subscriptions() and name not in SUBSCRIBED_ALLOWED:
                raise ErrorReply(
                    f"ERR Can't execute '{spec.full_name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
                    "RESET are allowed in this context"
                )
            if client.multi is not None and name not in IN_MULTI_IMMEDIATE:
                return None, client.queue(spec, argv)
            if "no_multi" in spec.flags and client.multi is not None:
                raise ErrorReply("ERR Command not allowed inside a transaction")
    except ErrorReply as err:
        if client.multi is not None:
            client.multi_error = True
        return None, err
    node = client.node
    pause = node.pause
    if pause.active and pause.holds(client, spec):
        return None, pause.postpone(client, argv)
    monitors = node.monitors
    if monitors.clients:  # (MONITOR empties FAST, so that every command comes this way)
        feed = spec.monitor_feed
        if feed == MONITOR_BEFORE:
            monitors.feed(client, argv)
        reply = _run(client, node, spec, argv)
        if feed == MONITOR_AFTER:
            monitors.feed(client, argv)
        return spec, reply
    return spec, _run(client, node, spec, argv)


def _run(client: "Client", node: Any, spec: CommandSpec, argv: list[bytes]) -> Any:
    try:
        if spec.scope == "node":
            return spec.handler(client, argv)
        group = plane_group(client, spec, argv) or "local"
        plane = node.planes[group]
        if spec.is_write and plane.deferred:
            if spec.is_blocking and not node.blocking.hold:
                refused = refusal(node, spec, argv)
                if refused is not None:
                    return refused
                return node.blocking.submit(client, spec, argv, plane)
            return propose(node, plane, spec, argv, client)
        if plane.deferred and plane.linearizable and not spec.is_write and not client.readonly \
                and not spec.is_blocking and not node.blocking.hold:
            return read_linearizably(node, plane, spec, argv, client)
        ctx = plane.ctx
        ctx.now_ms = node.clock_ms
        ctx.reading = not spec.is_write
        reply = spec.handler(ctx, argv)
        if type(reply) is Block:
            if node.blocking.hold:  # inside EXEC a client may not block (CLIENT_DENY_BLOCKING)
                return reply.null_reply
            return node.blocking.park(client, spec, argv, reply, group)
        if node.blocking_ready:
            node.blocking.serve()
        return reply
    except ErrorReply as err:
        if client.multi is not None:
            client.multi_error = True
        return err
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug must cost one reply, never the node
        log.exception("command %r failed", argv[0][:64])
        return ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc}")
