"""The client port: a thin asyncio shell around the RESP codec and dispatch.

Each connection feeds received bytes to its ``RequestParser``, runs every
complete command through ``dispatch`` and writes the batch of replies with a
single write (pipelining costs one syscall per batch). A command on the
desired plane answers with a Future; the connection then holds its later
commands back until it resolves, so replies keep their order and a client
reads its own writes.

Output is bounded per client by ``client-output-buffer-limit``
(``resp.output_limits``). A batch stops running when the replies queued for
a normal client pass its soft limit: the rest of the batch waits in the
backlog, reading stops, and both resume once the transport has drained
(``resume_writing``). A client whose queue passes its hard limit, or stays
past its soft limit longer than the soft seconds, is disconnected and counted.
Large replies are written as the pieces the encoder made (the value's own
bytes object among them), never joined into one copy.

Pushes (pub/sub messages, VFS.WATCH events) arrive already encoded
(``resp.pushes``); each client queues their pieces and the ``PushFlusher``
writes every client's queue once per event-loop iteration, so a burst of
messages to many subscribers costs one write per subscriber, not one per
message. A push raised by the client's own command goes into that command's
batch instead, to keep its place among the replies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from collections import deque
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from vfsd.commands.dispatch import desired_write, dispatch
from vfsd.commands.introspection import connection_closed, last_command_name
from vfsd.commands.observe import ClientModes
from vfsd.commands.pubsub import Replies
from vfsd.commands.table import CommandSpec
from vfsd.paths import GROUP, LOCAL, PLANE_NAMES, PathError
from vfsd.resp.encoder import encode_into
from vfsd.resp.fast import FastRequestParser as RequestParser
from vfsd.resp.output_limits import ClassLimit, LimitClock
from vfsd.resp.pushes import Message, encoded_message
from vfsd.resp.types import QUEUED, ErrorReply, SimpleString
from vfsd.store.keyspace import REV
from vfsd.tracking import TrackingState
from vfsd.watch.watchers import Watch

if TYPE_CHECKING:
    from vfsd.node import Node

log = logging.getLogger(__name__)

#: Most pipelined desired writes of one connection gathered into one log entry.
PIPELINE_MAX = 1024
Future = asyncio.Future

_ids = itertools.count(1)

#: An argument at least this large is joined from its received pieces on a worker thread, not on the event
#: loop (``bytes.join`` releases the GIL for large joins): one large SET must not stall other clients for the
#: copy. Smaller ones are joined where they complete (a few milliseconds at most).
JOIN_OFF_LOOP_BYTES = 4 << 20
#: A batch whose replies total more than this is written as pieces (writelines) rather than joined: the
#: large values among them are then handed to the socket as they are, never copied.
JOIN_MAX_BYTES = 256 * 1024
#: Pieces at least this large are never copied into a joined run (see ``_coalesce``).
LARGE_PIECE_BYTES = 64 * 1024
#: One catch-up step of a VFS.WATCH replay: at most about this many changes and this many bytes of output.
CATCH_UP_CHANGES = 1024
CATCH_UP_BYTES = 1 << 20

PROTECTED = (
    b"-DENIED Running in protected mode because no password is set for the default user. In this mode "
    b"connections are only accepted from the loopback interface. To accept other clients, set a password "
    b"(--requirepass or VFSD_REQUIREPASS), or disable protected mode (protected_mode = false in [security]).\r\n"
)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host in ("localhost",)


class Client(asyncio.Protocol):
    def __init__(self, node: "Node") -> None:
        self.node = node
        settings = node.settings
        self.id = next(_ids)
        self.stats = node.stats  # bumped on every batch; CONFIG RESETSTAT zeroes it in place
        self.parser = RequestParser(
            max_bulk_bytes=settings.max_bulk_bytes,
            max_array_len=settings.max_array_len,
            max_inline_bytes=settings.max_inline_bytes,
            max_query_buffer_bytes=settings.max_query_buffer_bytes,
            defer_bulk_bytes=JOIN_OFF_LOOP_BYTES,
        )
        self.proto = 2
        self.authenticated = not settings.requirepass
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.transport: asyncio.Transport | None = None
        self.addr = "?"
        self.laddr = "?"
        self.fd = -1
        self.created = time.monotonic()
        self.last_active_ms = int(time.time() * 1000)
        self.last_argv: list[bytes] = []
        self.multi: list[tuple[CommandSpec, list[bytes]]] | None = None
        self.multi_error = False
        self.multi_group: str | None = None
        self.multi_plane = LOCAL  # the plane of the transaction's first key command, for error texts
        self.watches: dict[bytes, int | None] = {}
        self.watch_dirty = False  # set by the keyspace when a WATCHed key changes
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.shard_channels: set[bytes] = set()
        self.vfs_watches: dict[bytes, Watch] = {}
        #: CLIENT TRACKING's options while it is on (``vfsd.tracking``); CLIENT REPLY, NO-TOUCH, NO-EVICT, MONITOR.
        self.tracking: TrackingState | None = None
        self.modes = ClientModes()
        #: Its commands take dispatch's general path and ``commands.observe`` (tracking, or replies switched off).
        self.observed = False
        #: Subscribed to anything (a channel, pattern, shard channel or VFS.WATCH): kept by the pubsub
        #: commands, since dispatch's fast path reads it on every command.
        self.subscribed = False
        #: READONLY: desired-path reads are served from this node's state as it is (possibly stale),
        #: without a linearizable read round, until READWRITE (as on a Redis Cluster replica).
        self.readonly = False
        self.backlog: deque[list[bytes]] = deque()
        self.waiting: asyncio.Future[Any] | None = None
        self.closing = False
        self._paused_reading = False
        self._write_paused = False
        self._batch: list[bytes] | None = None  # replies of the batch being run, not yet written
        self._batch_bytes = 0  # pushes added to that batch
        # Output: pushes queued since the last flush, and what the transport held at the last look (an
        # upper bound until the next: the transport only ever drains between looks).
        self._pushq: list[bytes] = []
        self._pushq_bytes = 0
        self._transport_bytes = 0
        self._limit_clock = LimitClock()
        self._push_check_at = node.output_limits.pubsub.check_at_bytes  # subscribers' class; see deliver()
        self._output_paused = False  # commands held back until the replies drain (normal soft limit)
        self._catch_up_scheduled = False
        self._joins_pending = 0  # batches held while their large arguments are joined off the loop

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.addr = _fmt_addr(peer)
        self.laddr = _fmt_addr(sock)
        sock_obj = transport.get_extra_info("socket")
        self.fd = sock_obj.fileno() if sock_obj is not None else -1
        node = self.node
        if node.settings.protected_mode and not node.settings.requirepass and peer and not is_loopback(str(peer[0])):
            transport.write(PROTECTED)
            transport.close()
            self.closing = True
            node.stats.rejected_connections += 1
            return
        if self.id in node.clients:  # accepted while a script was busy, now on the event loop
            return
        if len(node.clients) >= node.settings.maxclients:
            node.stats.rejected_connections += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self.closing = True
            return
        node.clients[self.id] = self
        node.stats.total_connections_received += 1
        soft = node.output_limits.normal.soft_bytes
        if 0 < soft < 64 * 1024:  # asyncio's default high-water mark: pause_writing must come by the soft limit
            transport.set_write_buffer_limits(high=soft)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.node.clients.pop(self.id, None)
        self.unsubscribe_all()
        self.unwatch_all()
        self.node.blocking.drop(self)
        locks = self.node.locks
        if self.id in locks.held or self.id in locks.sessions or locks.waiting:
            locks.client_closed(self)
        if self.tracking is not None or self.modes.monitor:
            connection_closed(self)
        if self.waiting is not None:
            self.waiting = None
        self.backlog.clear()
        self._pushq = []
        self._pushq_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.stats.net_input_bytes += len(data)
        commands = self.parser.feed(data)
        if self.parser.deferred:
            self._join_large_arguments(commands)
            return
        if self.waiting is not None or self.backlog or self._output_paused or self._joins_pending:
            self.backlog.extend(commands)
            self._pause_reading()
            return
        self.run(commands)

    def _join_large_arguments(self, commands: list[list[bytes]]) -> None:
        """Hold ``commands`` (and reading) while their large arguments are joined on a worker thread."""
        large = list(self.parser.deferred)
        self.parser.deferred.clear()
        self.backlog.extend(commands)
        self._pause_reading()
        self._joins_pending += 1
        future = asyncio.get_running_loop().run_in_executor(None, _join_all, large)
        future.add_done_callback(lambda f: self._large_arguments_joined(f, large))

    def _large_arguments_joined(self, future: asyncio.Future[list[bytes]], large: list[Any]) -> None:
        self._joins_pending -= 1
        if self.closing or future.cancelled():
            return
        for bulk, value in zip(large, future.result()):
            bulk.resolve(value)
        if not self._joins_pending and self.waiting is None and not self._output_paused:
            self._continue_backlog()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None:
            self._transport_bytes = self.transport.get_write_buffer_size()
        if self._output_paused:
            self._unpause()
        elif self.waiting is None and not self.backlog:
            self._resume_reading()
        if not self.closing and any(not w.live for w in self.vfs_watches.values()):
            self._catch_up()

    # -- running commands -------------------------------------------------------

    def output_class(self) -> ClassLimit:
        """This client's client-output-buffer-limit class: pubsub once subscribed to anything, else normal."""
        limits = self.node.output_limits
        return limits.pubsub if self.subscribed else limits.normal  # (self.subscribed: subscriptions() > 0)

    def run(self, commands: list[list[bytes]]) -> None:
        """Run a batch of parsed commands and write their replies at once.

        Stops early, leaving the rest in the backlog, when the replies queued for a
        normal client pass its soft limit (see the module docstring).
        """
        out: list[bytes] = []
        self._batch = out
        self._batch_bytes = 0
        stats = self.stats
        node = self.node
        now_ms = node.tick()
        limits = node.output_limits
        limit = limits.pubsub if self.subscribed else limits.normal  # output_class, inlined
        # Bytes this batch may add before the limits need a look; replies are counted as they are made.
        budget = limit.check_at_bytes - self._transport_bytes - self._pushq_bytes
        produced = 0
        done = 0
        timer = node.command_timer  # SLOWLOG and LATENCY: each command timed while either is on
        slow_ns = timer.threshold_ns
        clock = perf_counter_ns
        started = clock() if slow_ns >= 0 else 0
        for argv in commands:
            done += 1
            mark = len(out)
            reply = dispatch(self, argv)
            kind = type(reply)
            if kind is bytes:
                encode_into(out, reply, self.proto)
                produced += len(reply) + 16
            elif kind is SimpleString or kind is int or reply is None:
                encode_into(out, reply, self.proto)
                produced += 16
            elif kind is Replies:
                for part in reply:
                    encode_into(out, part, self.proto)
                produced += sum(map(len, out[mark:]))
            elif isinstance(reply, Future):
                if slow_ns >= 0 and clock() - started >= slow_ns:
                    timer.record(self, argv, clock() - started)
                if done < len(commands) and desired_write(self, argv):
                    reply, done = self._pipeline(reply, commands, done)
                self.backlog = deque(commands[done:])
                self.waiting = reply
                self._pause_reading()
                reply.add_done_callback(self._resumed)
                break
            else:
                if kind is ErrorReply:
                    stats.count_error(str(reply))
                encode_into(out, reply, self.proto)  # self.proto: HELLO may have just switched it
                produced += sum(map(len, out[mark:]))
            if slow_ns >= 0:  # this command's time, its reply's encoding included
                ended = clock()
                if ended - started >= slow_ns:
                    timer.record(self, argv, ended - started)
                started = ended
            if self.closing:
                break
            if produced + self._batch_bytes >= budget and done < len(commands):
                if self._over_limit(produced + self._batch_bytes, now_ms):
                    if not self.closing:  # paused: the rest runs once the replies have drained
                        self.backlog = deque(commands[done:])
                    break
                limit = self.output_class()
                budget = limit.hard_bytes - self._transport_bytes - self._pushq_bytes if limit.hard_bytes else float("inf")
        else:
            if self.parser.error is not None and not self.closing:
                out.append(b"-ERR Protocol error: " + str(self.parser.error).encode() + b"\r\n")
                stats.protocol_errors += 1
                self.closing = True
        if done:
            stats.total_commands_processed += done
            self.last_argv = commands[done - 1]
            self.last_active_ms = now_ms
        self._batch = None
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            self._write(out, now_ms)
        if self.closing and transport is not None:
            transport.close()
        elif self._output_paused and not self._write_paused:
            # The transport is below its high-water mark already: nothing to wait for.
            asyncio.get_running_loop().call_soon(self._unpause)

    def _pipeline(self, first: Future[Any], commands: list[list[bytes]], done: int) -> tuple[Future[Any], int]:
        """The desired writes that follow a desired write in this batch are proposed at once (the
        Raft plane puts the writes of one event-loop iteration in one entry; the one-voter log
        fsyncs them together) instead of one after the other's commit: one future for all their
        replies, written in order. A command of any other kind ends the run and waits."""
        futures: list[Any] = [first]
        while done < len(commands) and desired_write(self, commands[done]) and len(futures) < PIPELINE_MAX:
            futures.append(dispatch(self, commands[done]))
            done += 1
        if len(futures) == 1:
            return first, done
        whole: Future[Any] = asyncio.get_running_loop().create_future()
        remaining = [sum(1 for f in futures if isinstance(f, Future))]

        def one_done(_f: Future[Any]) -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and not whole.done():
                whole.set_result(Replies(f.result() if isinstance(f, Future) else f for f in futures))

        for f in futures:
            if isinstance(f, Future):
                f.add_done_callback(one_done)
        return whole, done

    def _over_limit(self, batch_bytes: int, now_ms: int) -> bool:
        """Mid-batch look at the limits; True when the batch must stop (cut off, or paused at the soft limit)."""
        queued = self._queued_bytes() + batch_bytes
        limit = self.output_class()
        reason = limit.verdict(queued, now_ms, self._limit_clock)
        if reason is not None:
            self._cut_off(reason, queued)
            return True
        if limit is self.node.output_limits.normal and limit.soft_bytes and queued >= limit.soft_bytes:
            self._pause_output()
            return True
        return False

    def _pause_output(self) -> None:
        """Hold this client's commands (and stop reading it) until its replies drain (resume_writing)."""
        if not self._output_paused:
            self._output_paused = True
            self.stats.client_output_pauses += 1
        self._pause_reading()

    def _unpause(self) -> None:
        if self._output_paused:
            self._output_paused = False
            self._continue_backlog()

    def _queued_bytes(self) -> int:
        """Output not yet sent: what the transport holds plus the pushes waiting for the next flush."""
        transport = self.transport
        self._transport_bytes = transport.get_write_buffer_size() if transport is not None else 0
        return self._transport_bytes + self._pushq_bytes

    def _write(self, pieces: list[bytes], now_ms: int) -> None:
        """Hand a batch to the transport (joined when small, as pieces when large), then check the limits."""
        transport = self.transport
        assert transport is not None
        size = sum(map(len, pieces))
        if size <= JOIN_MAX_BYTES or len(pieces) == 1:
            transport.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        else:
            transport.writelines(_coalesce(pieces))
        self.stats.net_output_bytes += size
        self._transport_bytes = queued = transport.get_write_buffer_size()  # _queued_bytes, inlined
        queued += self._pushq_bytes
        limits = self.node.output_limits
        limit = limits.pubsub if self.subscribed else limits.normal  # output_class, inlined
        if queued >= limit.check_at_bytes:
            reason = limit.verdict(queued, now_ms, self._limit_clock)
            if reason is not None:
                self._cut_off(reason, queued)
            elif limit is self.node.output_limits.normal and limit.soft_bytes and queued >= limit.soft_bytes:
                self._pause_output()
        elif self._limit_clock.soft_since_ms is not None:
            self._limit_clock.soft_since_ms = None

    def _cut_off(self, reason: str, queued: int) -> None:
        """Disconnect a client past its output limit (Redis: "closed for overcoming of output buffer limits")."""
        if self.closing:
            return
        log.warning("client id=%d addr=%s closed for overcoming of output buffer limits (%s limit, %d bytes queued)",
                    self.id, self.addr, reason, queued)
        self.node.stats.client_output_limit_disconnections += 1
        self.closing = True
        self._pushq = []
        self._pushq_bytes = 0
        if self.transport is not None:
            self.transport.abort()

    def _continue_backlog(self) -> None:
        """Run what was held back (a desired-plane reply came, or the output drained), then read again."""
        if self.closing or self.transport is None or self.transport.is_closing() or self._joins_pending:
            return
        backlog, self.backlog = self.backlog, deque()
        if backlog or self.parser.error is not None:
            self.run(list(backlog))
        if self.waiting is None and not self._write_paused and not self._output_paused and not self.backlog:
            self._resume_reading()

    def _resumed(self, future: asyncio.Future[Any]) -> None:
        if self.waiting is not future:
            return
        self.waiting = None
        if self.transport is None or self.transport.is_closing():
            return
        reply = future.result() if not future.cancelled() else ErrorReply("ERR request cancelled")
        out: list[bytes] = []
        for part in reply if type(reply) is Replies else (reply,):  # several (a pipeline), or none (dropped)
            if type(part) is ErrorReply:
                self.node.stats.count_error(str(part))
            encode_into(out, part, self.proto)
        self._write(out, self.node.tick())
        if self.closing:
            return
        if self._output_paused:  # the reply alone passed the soft limit: let it drain first
            if not self._write_paused:
                asyncio.get_running_loop().call_soon(self._unpause)
            return
        self._continue_backlog()

    def close_after_write(self) -> None:
        """Close once the replies of the current batch are written (QUIT)."""
        self.closing = True

    def _pause_reading(self) -> None:
        if not self._paused_reading and self.transport is not None and not self.transport.is_closing():
            self._paused_reading = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused_reading and self.transport is not None and not self.transport.is_closing():
            self._paused_reading = False
            self.transport.resume_reading()

    def kill(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # -- transactions -----------------------------------------------------------

    def queue(self, spec: CommandSpec, argv: list[bytes]) -> Any:
        """Queue a command inside MULTI; a command outside the transaction's plane group is refused."""
        assert self.multi is not None
        if "no_multi" in spec.flags:
            self.multi_error = True
            return ErrorReply("ERR Command not allowed inside a transaction")
        if spec.scope == "key":
            from vfsd.commands.dispatch import plane_group

            try:
                group = plane_group(self, spec, argv)
            except ErrorReply as err:
                self.multi_error = True
                return err
            if group is None:  # a malformed command naming no key: its handler answers on any plane
                pass
            elif self.multi_group is None:
                self.multi_group = group
                self.multi_plane = self.node.router.plane_of(spec.keys(argv)[0])
            elif group != self.multi_group:
                self.multi_error = True
                key = spec.keys(argv)[0]
                plane = self.node.router.plane_of(key)
                return ErrorReply(
                    f"ERR transaction spans planes: '{key.decode(errors='replace')}' is on the {PLANE_NAMES[plane]} "
                    f"plane, earlier commands on the {PLANE_NAMES[self.multi_plane]} plane; use one transaction "
                    "per plane"
                )
        self.multi.append((spec, argv))
        return QUEUED

    def revision(self, key: bytes) -> int | None:
        node = self.node
        entry = node.keyspace.data.get(key)
        if entry is None or node.keyspace.is_expired(key, node.now_ms()):
            return None
        return entry[REV]

    def watch(self, keys: list[bytes]) -> None:
        for key in keys:
            if key[:1] == b"/":
                try:
                    self.node.router.plane_of(key)
                except PathError as exc:
                    raise ErrorReply(str(exc)) from None
            if key not in self.watches:
                self.watches[key] = self.revision(key)
                self.node.keyspace.watch(key, self)

    def unwatch_all(self) -> None:
        keyspace = self.node.keyspace
        for key in self.watches:
            keyspace.unwatch(key, self)
        self.watches.clear()
        self.watch_dirty = False

    def watch_group_keys(self, group: str) -> list[tuple[bytes, int | None]]:
        router = self.node.router
        return [(k, r) for k, r in self.watches.items() if GROUP[router.plane_of(k)] == group]

    def watches_dirty(self) -> bool:
        """Any change since WATCH (the flag), or a key that lapsed meanwhile (its revision)."""
        return self.watch_dirty or any(self.revision(k) != r for k, r in self.watches.items())

    # -- pub/sub ----------------------------------------------------------------

    def subscriptions(self) -> int:
        """What makes a client "subscribed" (RESP2 subscribed context, the pubsub output class)."""
        return len(self.channels) + len(self.patterns) + len(self.shard_channels) + len(self.vfs_watches)

    def pubsub_count(self) -> int:
        """The count (un)subscribe replies carry: channels, patterns and VFS watches (shard channels count apart,
        as in Redis 7), so a client sees 0 only once it has left subscribed mode for them all."""
        return len(self.channels) + len(self.patterns) + len(self.vfs_watches)

    def deliver(self, message: Message) -> None:
        """Queue a push (already encoded, see ``resp.pushes``); the flusher writes it this iteration.

        The hot line of a fan-out: one call per message per subscriber, so the limit it checks
        against is cached (``_push_check_at``, refreshed at each flush) rather than looked up.
        """
        pieces, size = message.frames[self.proto]  # type: ignore[misc]
        batch = self._batch
        if batch is not None:  # raised by this client's own command: keep it in order with its replies
            batch += pieces
            self._batch_bytes += size
            return
        queue = self._pushq
        if not queue:
            if self.closing:
                return
            self.node.flusher.add(self)
        queue += pieces
        queued = self._pushq_bytes + size
        self._pushq_bytes = queued
        if queued + self._transport_bytes >= self._push_check_at:
            self._check_push_limits()

    def _check_push_limits(self) -> None:
        limit = self.output_class()
        queued = self._queued_bytes()
        if queued >= limit.check_at_bytes:
            reason = limit.verdict(queued, self.node.now_ms(), self._limit_clock)
            if reason is not None:
                self._cut_off(reason, queued)

    def flush_pushes(self) -> None:
        """Write the queued pushes in one go (called by the PushFlusher, once per loop iteration)."""
        queue, size = self._pushq, self._pushq_bytes
        if not queue:
            return
        self._pushq = []
        self._pushq_bytes = 0
        transport = self.transport
        if self.closing or transport is None or transport.is_closing():
            return
        if size <= JOIN_MAX_BYTES:
            transport.write(b"".join(queue))
        else:
            transport.writelines(_coalesce(queue))
        self.stats.net_output_bytes += size
        self._transport_bytes = transport.get_write_buffer_size()
        self._push_check_at = self.node.output_limits.pubsub.check_at_bytes

    def unsubscribe_all(self) -> None:
        pubsub = self.node.pubsub
        for channel in self.channels:
            pubsub.unsubscribe(self, channel)
        for pattern in self.patterns:
            pubsub.punsubscribe(self, pattern)
        for channel in self.shard_channels:
            pubsub.sunsubscribe(self, channel)
        self.channels.clear()
        self.patterns.clear()
        self.shard_channels.clear()
        watchers = self.node.watchers
        for watch in self.vfs_watches.values():
            watchers.unwatch(watch)
        self.vfs_watches.clear()
        self.subscribed = False

    # -- VFS.WATCH ---------------------------------------------------------------

    def add_watch(self, pattern: bytes, *, ordered: bool, after: int | None, values: bool) -> Watch:
        """Start (or restart) a VFS.WATCH on ``pattern``; raises Compacted for a FROM out of the window."""
        node = self.node
        watchers = node.watchers
        old = self.vfs_watches.pop(pattern, None)
        if old is not None:
            watchers.unwatch(old)
        watch = watchers.watch(self, pattern, ordered=ordered, after=after, values=values,
                               current_revision=node.planes["log"].machine.applied_index)
        self.vfs_watches[pattern] = watch
        self.subscribed = True
        if not watch.live:
            self._schedule_catch_up()
        return watch

    def remove_watch(self, pattern: bytes) -> bool:
        watch = self.vfs_watches.pop(pattern, None)
        if watch is None:
            return False
        self.node.watchers.unwatch(watch)
        self.subscribed = bool(self.subscriptions())
        return True

    def watch_compacted(self, watch: Watch, oldest: int) -> None:
        """The window moved past a watch still catching up: it ends, and says why."""
        if self.vfs_watches.get(watch.pattern) is watch:
            del self.vfs_watches[watch.pattern]
        self.deliver(encoded_message([b"vfs.unwatch", watch.pattern, self.pubsub_count(), b"compacted", oldest]))
        self.subscribed = bool(self.subscriptions())

    def _schedule_catch_up(self) -> None:
        if not self._catch_up_scheduled:
            self._catch_up_scheduled = True
            asyncio.get_running_loop().call_soon(self._catch_up)

    def _catch_up(self) -> None:
        """One replay step for each watch still behind, paced by this client's socket."""
        self._catch_up_scheduled = False
        if self.closing or self.transport is None or self._write_paused:
            return  # resume_writing calls again once the socket has drained
        watchers = self.node.watchers
        # A step stays well inside the subscriber's limit (a single revision larger than that still goes whole).
        step_bytes = int(min(CATCH_UP_BYTES, self.node.output_limits.pubsub.check_at_bytes // 4))
        behind = False
        for watch in list(self.vfs_watches.values()):
            if not watch.live and not watchers.catch_up(watch, CATCH_UP_CHANGES, step_bytes):
                behind = True
        if behind and not self._write_paused:
            self._schedule_catch_up()  # after this iteration's flush; resume_writing restarts a paused one

    # -- introspection ----------------------------------------------------------

    def flags(self) -> str:
        """CLIENT LIST's flags, in Redis's order (networking.c, catClientInfoString)."""
        modes = self.modes
        tracking = self.tracking
        flags = "O" if modes.monitor else ""
        if self.subscriptions():
            flags += "P"
        if self.multi is not None:
            flags += "x"
        if self.node.blocking.is_blocked(self.id) or self.node.pause.is_holding(self):
            flags += "b"
        if tracking is not None:
            flags += "t" + ("R" if tracking.broken_redirect else "") + ("B" if tracking.bcast else "")
        if self.watches and self.watches_dirty():
            flags += "d"
        if self.closing:
            flags += "c"
        if self.readonly:
            flags += "r"
        if modes.no_evict:
            flags += "e"
        if modes.no_touch:
            flags += "T"
        return flags or "N"

    def output_bytes(self) -> int:
        """omem: replies and pushes queued and not yet sent."""
        return self._queued_bytes()

    def info_line(self) -> str:
        """One CLIENT LIST line. obl/oll: bytes and pieces of pushes waiting for this iteration's flush;
        omem: everything queued and unsent (the transport's buffer plus those); argv-mem: commands
        parsed but held back (a desired-plane reply pending, or output paused at the soft limit)."""
        now = time.monotonic()
        qbuf = self.parser.buffered_bytes
        omem = self.output_bytes()
        argv_mem = sum(len(arg) for argv in self.backlog for arg in argv)
        events = ("" if self._paused_reading else "r") + ("w" if omem else "")
        return (
            f"id={self.id} addr={self.addr} laddr={self.laddr} fd={self.fd} name={self.name.decode(errors='replace')} "
            f"age={int(now - self.created)} idle={max(0, self.node.now_ms() - self.last_active_ms) // 1000} flags={self.flags()} db=0 "
            f"sub={len(self.channels)} psub={len(self.patterns)} ssub={len(self.shard_channels)} "
            f"multi={-1 if self.multi is None else len(self.multi)} watch={len(self.watches)} "
            f"qbuf={qbuf} qbuf-free=0 argv-mem={argv_mem} multi-mem=0 rbs=0 rbp=0 obl={self._pushq_bytes} "
            f"oll={len(self._pushq)} omem={omem} tot-mem={omem + qbuf + argv_mem} events={events} "
            f"cmd={last_command_name(self.last_argv)} user=default "
            f"redir={self.tracking.redirect if self.tracking is not None else -1} resp={self.proto} "
            f"lib-name={self.lib_name.decode(errors='replace')} lib-ver={self.lib_ver.decode(errors='replace')}"
        )


def _join_all(large: list[Any]) -> list[bytes]:
    """Worker-thread side of ``_join_large_arguments``."""
    return [bulk.join() for bulk in large]


def _coalesce(pieces: list[bytes]) -> list[bytes]:
    """Join runs of small pieces; leave large ones (a big value) as they are, for writelines."""
    out: list[bytes] = []
    run: list[bytes] = []
    for piece in pieces:
        if len(piece) >= LARGE_PIECE_BYTES:
            if run:
                out.append(b"".join(run))
                run = []
            out.append(piece)
        else:
            run.append(piece)
    if run:
        out.append(b"".join(run))
    return out


class PushFlusher:
    """Writes each client's queued pushes once per event-loop iteration (many messages, one write).

    The first push queued in an iteration schedules one ``flush`` with ``call_soon``; it first
    seals the VFS.WATCH groups of the revision being applied, then writes every waiting client.
    """

    def __init__(self, node: "Node") -> None:
        self.node = node
        self._waiting: list[Client] = []
        self._scheduled = False

    def add(self, client: Client) -> None:
        self._waiting.append(client)
        if not self._scheduled:
            self.schedule()

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self.node.watchers.seal()
        waiting, self._waiting = self._waiting, []
        for client in waiting:
            client.flush_pushes()


def _fmt_addr(addr: Any) -> str:
    if not addr:
        return "?"
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
