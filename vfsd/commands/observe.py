"""Around each command of an *observed* client: one that tracks keys or whose replies are switched off.

Dispatch's fast path is for plain clients; a client with ``observed`` set takes
the general path, which ends here (``observed``), because three connection modes
act after a command has run:

- CLIENT TRACKING (``vfsd.tracking``): the keys a read-only command read are
  remembered; CLIENT CACHING lasts one command (or one transaction); while the
  command runs the client is the tracker's *current* client, so that the
  invalidations its own writes raise come after its reply (NOLOOP: not at all).
- CLIENT REPLY OFF|SKIP: the reply is dropped (pushes still go out: pub/sub
  messages, invalidations, MONITOR lines), as Redis's CLIENT_REPLY_OFF and
  CLIENT_REPLY_SKIP do, the skip lasting exactly one command.
- MONITOR: a monitoring client's own commands are shown after their replies.

A command run inside EXEC comes here too (EXEC dispatches what it queued): it
is only remembered; the transaction as a whole is what gets the rest.

A dropped reply is an empty ``Replies`` (the shell encodes nothing for it); a
dropped reply that is still to come (a Future: a desired-plane write) resolves to
one, so later commands keep waiting their turn behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vfsd.commands.pubsub import Replies
from vfsd.resp.types import ErrorReply

if TYPE_CHECKING:
    from vfsd.commands.table import CommandSpec
    from vfsd.server import Client

Run = Callable[["Client", list[bytes]], tuple["CommandSpec | None", Any]]


class ClientModes:
    """A connection's CLIENT REPLY, NO-TOUCH and NO-EVICT modes, and whether MONITOR is on."""

    __slots__ = ("reply_off", "reply_skip", "reply_skip_next", "no_touch", "no_evict", "monitor", "running",
                 "own_lines")

    def __init__(self) -> None:
        self.reply_off = False
        #: This command's reply is dropped (the command before it was CLIENT REPLY SKIP).
        self.reply_skip = False
        #: Set by CLIENT REPLY SKIP: the next command's reply is dropped.
        self.reply_skip_next = False
        self.no_touch = False
        self.no_evict = False
        self.monitor = False
        #: MONITOR lines of this (monitoring) client's own command, sent after its reply.
        self.own_lines: list[Any] = []
        #: A command of this client is running (one dispatched inside it is part of it: EXEC's).
        self.running = False

    def reset(self) -> None:
        """RESET: replies on, NO-TOUCH and NO-EVICT off (MONITOR is ended by its owner)."""
        self.reply_off = self.reply_skip = self.reply_skip_next = False
        self.no_touch = self.no_evict = False


def refresh(client: "Client") -> None:
    """Recompute whether ``client`` needs ``observed`` around its commands (and so the general path)."""
    modes = client.modes
    client.observed = (client.tracking is not None or modes.reply_off or modes.reply_skip
                       or modes.reply_skip_next or modes.monitor)


def observed(client: "Client", argv: list[bytes], run: Run) -> Any:
    """Run one command of an observed client (see the module docstring)."""
    modes = client.modes
    tracker = client.node.tracker
    if modes.running or client.node.blocking.hold:  # inside EXEC: remember what it read; the rest is EXEC's
        spec, reply = run(client, argv)
        remember_reads(client, spec, argv)
        return reply
    modes.running = True
    if modes.reply_skip_next:  # the command before was CLIENT REPLY SKIP: this reply is dropped
        modes.reply_skip, modes.reply_skip_next = True, False
    current = client.tracking is not None and tracker.current is None
    if current:
        tracker.current = client
    try:
        spec, reply = run(client, argv)
        state = client.tracking
        if state is not None and not isinstance(reply, asyncio.Future):
            # (still current: what the table drops for room comes after). A read still to come (a
            # linearizable desired-path read) remembers its keys itself, as it runs.
            remember_reads(client, spec, argv)
            # CLIENT CACHING covers the next command, or the next transaction (as Redis's resetClient).
            if state.caching and client.multi is None and argv[0].lower() != b"client":
                state.caching = False
    finally:
        modes.running = False
        if current and tracker.current is client:
            tracker.current = None
    pending = tracker.take_pending() if current and tracker.pending else None
    if modes.own_lines:  # a monitor's own commands: their lines follow their replies, as in Redis
        pending = (pending or []) + modes.own_lines
        modes.own_lines = []
    drop = modes.reply_off or modes.reply_skip
    modes.reply_skip = False
    refresh(client)
    if not drop and pending is None:
        return reply
    if isinstance(reply, asyncio.Future):
        return _later(client, reply, drop, pending)
    return _reply_then(client, reply, drop, pending)


def _reply_then(client: "Client", reply: Any, drop: bool, pending: list[Any] | None) -> Replies:
    """The reply (unless dropped), then the pushes owed after it."""
    if type(reply) is ErrorReply:  # counted here: the shell only counts replies that are errors themselves
        client.stats.count_error(str(reply))
    out = Replies() if drop else Replies(reply) if type(reply) is Replies else Replies([reply])
    if pending is not None:
        out.extend(pending)
    return out


def remember_reads(client: "Client", spec: "CommandSpec | None", argv: list[bytes]) -> None:
    """Remember the keys a read-only key command of a tracking client read (if its mode remembers reads)."""
    state = client.tracking
    if (state is not None and spec is not None and spec.scope == "key" and "readonly" in spec.flags
            and state.remembers_reads()):
        client.node.tracker.remember(client, spec.keys(argv))


def _later(client: "Client", reply: "asyncio.Future[Any]", drop: bool,
           pending: list[Any] | None) -> "asyncio.Future[Any]":
    """A reply still to come (a desired-plane write), dropped or followed by pushes: resolves when it does."""
    out: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(f: "asyncio.Future[Any]") -> None:
        if out.done():
            return
        result = f.result() if not f.cancelled() else ErrorReply("ERR request cancelled")
        out.set_result(_reply_then(client, result, drop, pending))

    reply.add_done_callback(done)
    return out
