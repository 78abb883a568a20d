"""The blocking-pop shell: parks clients whose BLPOP/BZPOPMIN/BLMOVE... found nothing, and
wakes them when a change feeds one of their keys.

Theory of operation
-------------------
A blocking handler that finds every key empty returns ``Block`` (vfsd.commands.blocking).
``park`` files the client in the registry (vfsd.store.blocked) and hands its
shell a Future, which is ``Client.waiting``: the connection stops reading until
the Future resolves, as a blocked Redis client does, and the node goes on
serving everyone else.

Every change event passes ``on_change`` (a Notifier listener, installed only
while someone waits); a key with waiters becomes ready. ``serve`` then runs,
as Redis's handleClientsBlockedOnKeys does after each command: ready keys in
the order they were fed, on each key its waiters first come first, each
re-running its own command (Redis 7.2 re-processes a blocked command, so a
woken BLPOP pops from the first non-empty key in argument order). A waiter is
tried only while its key holds a value of the kind it wants (a list for BL*, a
sorted set for BZ*), so a SET over the key wakes nobody. A pop that feeds
another key (BLMOVE) makes that key ready in the same pass.

When serve runs:
- local and active planes: right after the command that fed the key
  (dispatch calls ``serve``), or after EXEC for a push inside MULTI (EXEC holds
  wake-ups with ``hold``);
- desired plane: the feeding entry applies inside the log's write loop; the
  listener schedules ``serve`` on the loop, and the woken waiter's pop is a log
  entry of its own (``plane.submit``). One waiter per key has a pop in flight
  at a time; if another client took the element first, the pop comes back as
  ``Block`` and the waiter returns to its place in the queue.

Timeouts are loop timers (``call_later``); CLIENT UNBLOCK answers the client
as a timeout or with -UNBLOCKED. A waiter whose pop is in flight when its timer
fires or it is unblocked gets the pop's result if the pop took something (the
element must not be lost), else the timeout/error reply. A client that
disconnects is dropped from the registry (``drop``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any

from vfsd.commands.blocking import TIMED_OUT, UNBLOCKED, Block
from vfsd.store.blocked import BlockedKeys
from vfsd.store.keyspace import KIND

if TYPE_CHECKING:
    from vfsd.commands.table import CommandSpec
    from vfsd.node import Node
    from vfsd.server import Client

log = logging.getLogger(__name__)


class Waiter:
    __slots__ = ("seq", "client", "spec", "argv", "group", "kind", "future", "timer", "in_flight", "outcome")

    def __init__(self, seq: int, client: "Client", spec: "CommandSpec", argv: list[bytes], group: str, kind: int,
                 future: asyncio.Future[Any]) -> None:
        self.seq = seq
        self.client = client
        self.spec = spec
        self.argv = argv
        self.group = group
        self.kind = kind
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        #: A desired-plane pop of this waiter is in the log, not yet applied.
        self.in_flight = False
        #: The reply owed once an in-flight pop comes back empty (a timeout or CLIENT UNBLOCK).
        self.outcome: Any = None


class Blocker:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.keys = BlockedKeys()
        #: The registry's ready keys; dispatch checks this dict after every command.
        self.ready = self.keys.ready
        self._seq = itertools.count()
        self._by_client: dict[int, Waiter] = {}
        #: > 0 while EXEC runs: wake-ups wait for the whole transaction (Redis serves after EXEC).
        self.hold = 0
        self._serving = False
        self._scheduled = False
        self._listening = False

    # -- parking -------------------------------------------------------------------

    def park(self, client: "Client", spec: "CommandSpec", argv: list[bytes], block: Block, group: str,
             future: asyncio.Future[Any] | None = None) -> asyncio.Future[Any]:
        """File ``client`` as waiting on ``block.keys``; returns the Future its reply will come on."""
        loop = asyncio.get_running_loop()
        if future is None:
            future = loop.create_future()
        waiter = Waiter(next(self._seq), client, spec, argv, group, block.kind, future)
        if block.timeout_ms:
            waiter.timer = loop.call_later(block.timeout_ms / 1000, self._timed_out, waiter)
        self._file(waiter, block.keys)
        # The client shell stops reading a connection whose reply is pending, but a blocked client
        # may wait for ever: keep reading its socket so that a disconnect is seen (and the waiter
        # dropped before it could take an element), as Redis does. Commands it sends meanwhile
        # queue in the shell's backlog, which keeps its own paused flag, until the reply is sent.
        # (After this batch: the shell pauses reading once dispatch hands it the Future.)
        loop.call_soon(self._keep_reading, waiter)
        return future

    @staticmethod
    def _keep_reading(waiter: Waiter) -> None:
        transport = waiter.client.transport
        if not waiter.future.done() and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def submit(self, client: "Client", spec: "CommandSpec", argv: list[bytes], plane: Any) -> asyncio.Future[Any]:
        """A blocking command on the desired plane: the pop is a log entry; park it if it comes back empty."""
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        inner = plane.submit([argv], self.node.clock_ms)

        def applied(f: asyncio.Future[Any]) -> None:
            reply = f.result()
            if outer.done():
                return
            if type(reply) is Block:
                self.park(client, spec, argv, reply, "log", outer)
            else:
                outer.set_result(reply)

        inner.add_done_callback(applied)
        return outer

    def _file(self, waiter: Waiter, keys: list[bytes]) -> None:
        self.keys.add(waiter, keys)
        self._by_client[waiter.client.id] = waiter
        if not self._listening:
            self.node.notifier.listeners.append(self.on_change)
            self._listening = True
        # A key may already hold a value: a desired-plane pop that lost a race, or a value that
        # arrived while the pop was in the log. Look again rather than wait for the next change.
        db = self.node.keyspace
        for key in keys:
            entry = db.data.get(key)
            if entry is not None and entry[KIND] == waiter.kind:
                self.keys.signal(key)
                self._schedule()

    def _forget(self, waiter: Waiter) -> None:
        self.keys.remove(waiter)
        if self._by_client.get(waiter.client.id) is waiter:
            del self._by_client[waiter.client.id]
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if not self.keys and self._listening:
            self.node.notifier.listeners.remove(self.on_change)
            self._listening = False

    def _finish(self, waiter: Waiter, reply: Any) -> None:
        self._forget(waiter)
        if not waiter.future.done():
            waiter.future.set_result(reply)

    # -- events ----------------------------------------------------------------------

    def on_change(self, event: str, key: bytes, entry: Any) -> None:
        """Notifier listener: a change to a key with waiters makes it ready."""
        if key in self.keys.by_key:
            self.keys.ready[key] = None
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._serve_soon)

    def _serve_soon(self) -> None:
        self._scheduled = False
        self.serve()

    # -- serving ---------------------------------------------------------------------

    def serve(self) -> None:
        """Serve ready keys (see the module docstring); does nothing while EXEC holds wake-ups."""
        if self.hold or self._serving:
            return
        self._serving = True
        try:
            while True:
                key = self.keys.pop_ready()
                if key is None:
                    break
                self._serve_key(key)
        finally:
            self._serving = False

    def _serve_key(self, key: bytes) -> None:
        node = self.node
        db = node.keyspace
        for waiter in self.keys.waiting_on(key):
            if waiter not in self.keys:
                continue  # served through another of its keys earlier in this pass
            client = waiter.client
            if client.closing or client.transport is None or client.transport.is_closing():
                self.drop(client)
                continue
            entry = db.data.get(key)
            if entry is None or entry[KIND] != waiter.kind or db.is_expired(key, node.now_ms()):
                return  # nothing (of the right kind) left for the rest of this key's queue
            if waiter.group == "log":
                if waiter.in_flight or any(w.in_flight for w in self.keys.waiting_on(key)):
                    return  # one pop per key in the log at a time; its result re-signals the key
                self._pop_through_log(waiter, key)
                return
            plane = node.planes[waiter.group]
            ctx = plane.ctx
            ctx.now_ms = node.now_ms()  # serve may run from a callback, after the batch's clock reading
            try:
                reply = waiter.spec.handler(ctx, waiter.argv)
            except Exception as exc:  # an ErrorReply (WRONGTYPE on a BLMOVE destination) or a bug
                from vfsd.resp.types import ErrorReply

                reply = exc if isinstance(exc, ErrorReply) else ErrorReply(f"ERR internal error: {exc}")
                if not isinstance(exc, ErrorReply):
                    log.exception("serving a blocked %r failed", waiter.argv[0][:64])
            if type(reply) is Block:
                continue
            self._finish(waiter, reply)

    def _pop_through_log(self, waiter: Waiter, key: bytes) -> None:
        waiter.in_flight = True
        plane = self.node.planes["log"]
        future = plane.submit([waiter.argv], self.node.now_ms())

        def applied(f: asyncio.Future[Any]) -> None:
            waiter.in_flight = False
            reply = f.result()
            if type(reply) is Block:
                if waiter.outcome is not None:
                    self._finish(waiter, waiter.outcome)
                elif waiter in self.keys:
                    for k in reply.keys:  # someone else took it; maybe more arrived meanwhile
                        self.keys.signal(k)
                    self._schedule()
                return
            self._finish(waiter, reply)
            self.keys.signal(key)  # the next waiter may find more
            self._schedule()

        future.add_done_callback(applied)

    # -- timeouts, CLIENT UNBLOCK, disconnects -------------------------------------------

    def _timed_out(self, waiter: Waiter) -> None:
        waiter.timer = None
        if waiter.in_flight:
            waiter.outcome = TIMED_OUT
            return
        self._finish(waiter, TIMED_OUT)

    def unblock(self, client_id: int, error: bool) -> bool:
        """CLIENT UNBLOCK: True if the client was blocked in a pop (and is now answered)."""
        waiter = self._by_client.get(client_id)
        if waiter is None or waiter.future.done():
            return False
        reply = UNBLOCKED if error else TIMED_OUT
        if waiter.in_flight:
            waiter.outcome = reply
            return True
        self._finish(waiter, reply)
        return True

    def drop(self, client: "Client") -> None:
        """The client went away: forget its wait."""
        waiter = self._by_client.get(client.id)
        if waiter is not None:
            self._forget(waiter)
            if not waiter.future.done():
                waiter.future.cancel()

    def blocked_clients(self) -> int:
        return len(self._by_client)

    def is_blocked(self, client_id: int) -> bool:
        return client_id in self._by_client
