"""The client port: a thin asyncio shell around the RESP codec and dispatch.

Each connection feeds received bytes to its ``RequestParser``, runs every
complete command through ``dispatch`` and writes the batch of replies with a
single ``transport.write`` (pipelining costs one syscall per batch). A command
on the desired plane answers with a Future; the connection then holds its
later commands back until it resolves, so replies keep their order and a client
reads its own writes. Backpressure is explicit: a client that does not read its
replies stops being read from, and a subscriber that falls too far behind is
disconnected, as Redis's client-output-buffer-limit does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from vfsd.commands.dispatch import dispatch
from vfsd.commands.pubsub import Replies
from vfsd.commands.table import CommandSpec
from vfsd.paths import GROUP, LOCAL, PLANE_NAMES, PathError
from vfsd.resp.encoder import encode_into
from vfsd.resp.fast import FastRequestParser as RequestParser
from vfsd.resp.types import QUEUED, ErrorReply, Push
from vfsd.store.keyspace import REV

if TYPE_CHECKING:
    from vfsd.node import Node

log = logging.getLogger(__name__)
Future = asyncio.Future

_ids = itertools.count(1)

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
        self.last_cmd = b"NULL"
        self.multi: list[tuple[CommandSpec, list[bytes]]] | None = None
        self.multi_error = False
        self.multi_group: str | None = None
        self.multi_plane = LOCAL  # the plane of the transaction's first key command, for error texts
        self.watches: dict[bytes, int | None] = {}
        self.watch_dirty = False  # set by the keyspace when a WATCHed key changes
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.backlog: deque[list[bytes]] = deque()
        self.waiting: asyncio.Future[Any] | None = None
        self.closing = False
        self._paused_reading = False
        self._write_paused = False
        self._batch: list[bytes] | None = None  # replies of the batch being run, not yet written

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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.node.clients.pop(self.id, None)
        self.unsubscribe_all()
        self.unwatch_all()
        self.node.blocking.drop(self)
        if self.waiting is not None:
            self.waiting = None
        self.backlog.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.stats.net_input_bytes += len(data)
        commands = self.parser.feed(data)
        if self.waiting is not None or self.backlog:
            self.backlog.extend(commands)
            self._pause_reading()
            return
        self.run(commands)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.waiting is None:
            self._resume_reading()

    # -- running commands -------------------------------------------------------

    def run(self, commands: list[list[bytes]]) -> None:
        """Run a batch of parsed commands and write their replies at once."""
        out: list[bytes] = []
        self._batch = out
        stats = self.stats
        now_ms = self.node.tick()
        done = 0
        for argv in commands:
            done += 1
            reply = dispatch(self, argv)
            kind = type(reply)
            if kind is Replies:
                for part in reply:
                    encode_into(out, part, self.proto)
            elif isinstance(reply, Future):
                self.backlog = deque(commands[done:])
                self.waiting = reply
                self._pause_reading()
                reply.add_done_callback(self._resumed)
                break
            else:
                if kind is ErrorReply:
                    stats.count_error(str(reply))
                encode_into(out, reply, self.proto)  # self.proto: HELLO may have just switched it
            if self.closing:
                break
        else:
            if self.parser.error is not None and not self.closing:
                out.append(b"-ERR Protocol error: " + str(self.parser.error).encode() + b"\r\n")
                stats.protocol_errors += 1
                self.closing = True
        if done:
            stats.total_commands_processed += done
            self.last_cmd = commands[done - 1][0]
            self.last_active_ms = now_ms
        self._batch = None
        transport = self.transport
        if out and transport is not None:
            data = b"".join(out)
            stats.net_output_bytes += len(data)
            transport.write(data)
        if self.closing and transport is not None:
            transport.close()

    def _resumed(self, future: asyncio.Future[Any]) -> None:
        if self.waiting is not future:
            return
        self.waiting = None
        if self.transport is None or self.transport.is_closing():
            return
        reply = future.result() if not future.cancelled() else ErrorReply("ERR request cancelled")
        out: list[bytes] = []
        if type(reply) is ErrorReply:
            self.node.stats.count_error(str(reply))
        encode_into(out, reply, self.proto)
        self.transport.write(b"".join(out))
        backlog, self.backlog = self.backlog, deque()
        if backlog or self.parser.error is not None:
            self.run(list(backlog))
        if self.waiting is None and not self._write_paused:
            self._resume_reading()

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
        return len(self.channels) + len(self.patterns)

    def deliver(self, message: list[bytes]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._batch is not None:  # raised by this client's own command: keep it in order with its replies
            encode_into(self._batch, Push(message), self.proto)
            return
        out: list[bytes] = []
        encode_into(out, Push(message), self.proto)
        transport.write(b"".join(out))
        if transport.get_write_buffer_size() > self.node.settings.pubsub_output_limit_bytes:
            log.warning("client id=%d addr=%s closed for overcoming of output buffer limits", self.id, self.addr)
            self.node.stats.client_output_limit_disconnections += 1
            self.closing = True
            transport.abort()

    def unsubscribe_all(self) -> None:
        pubsub = self.node.pubsub
        for channel in self.channels:
            pubsub.unsubscribe(self, channel)
        for pattern in self.patterns:
            pubsub.punsubscribe(self, pattern)
        self.channels.clear()
        self.patterns.clear()

    # -- introspection ----------------------------------------------------------

    def flags(self) -> str:
        flags = ""
        if self.subscriptions():
            flags += "P"
        if self.multi is not None:
            flags += "x"
        return flags or "N"

    def info_line(self) -> str:
        now = time.monotonic()
        return (
            f"id={self.id} addr={self.addr} laddr={self.laddr} fd={self.fd} name={self.name.decode(errors='replace')} "
            f"age={int(now - self.created)} idle={max(0, self.node.now_ms() - self.last_active_ms) // 1000} flags={self.flags()} db=0 "
            f"sub={len(self.channels)} psub={len(self.patterns)} ssub=0 "
            f"multi={-1 if self.multi is None else len(self.multi)} watch={len(self.watches)} "
            f"qbuf={self.parser.buffered_bytes} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 "
            f"omem={self.transport.get_write_buffer_size() if self.transport else 0} tot-mem=0 events=r "
            f"cmd={self.last_cmd[:32].decode(errors='replace').lower()} user=default redir=-1 resp={self.proto} "
            f"lib-name={self.lib_name.decode(errors='replace')} lib-ver={self.lib_ver.decode(errors='replace')}"
        )


def _fmt_addr(addr: Any) -> str:
    if not addr:
        return "?"
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
