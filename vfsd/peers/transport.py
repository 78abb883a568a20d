"""The peer port's asyncio shell: listener, dialing, send queues, dispatch to families.

Theory of operation
-------------------
A ``PeerTransport`` listens on the peer port and keeps at most one open
connection per peer; each connection's protocol (handshake, control frames,
timeouts) is a pure ``PeerConnection`` that this shell feeds bytes and time.
Raft and gossip are *families*: each registers a handler for its messages and,
if it wants them, connect/disconnect events; they share every connection.

Peers. A peer is known by its node id. ``add_peer(id, host, port)`` makes it
*persistent*: the transport dials it, and redials it whenever its connection is
lost, until ``remove_peer``. A node that connects to us, or that ``dial(host,
port)`` reaches (gossip joins through seed addresses whose ids it does not know
yet), is *transient*: known while its connection is open, forgotten when it
closes, unless ``add_peer`` made it persistent meanwhile.

Sending. ``send(peer, family, type, body)`` never blocks and never raises for
a runtime condition: it encodes the frame and appends it to the peer's send
queue, and a write of everything queued for that peer is scheduled once per
event-loop iteration (one ``write()`` for all the messages sent in that
iteration, up to write_buffer_high_bytes per call). While the peer is not
connected, or its socket is backed up (asyncio paused writing), frames wait in
the queue, which is bounded in bytes and frames: past the bound the OLDEST
frames are dropped and counted ("queue_full"). When a dial fails, what was queued
for that peer is dropped ("unreachable"): Raft and gossip retransmit what
matters, and stale messages delivered after an outage help no one (etcd's
rafthttp likewise drops, rather than buffers, for an unreachable peer).
Messages on one connection arrive in the order they were sent; across a
reconnection, or the switch from a duplicate connection to the winner, a message
may be lost or overtaken, which Raft and gossip already tolerate.

One connection per pair. Two nodes may dial each other at once, or a peer may
restart while its old connection still looks open here. When a second
connection to a peer opens, one is kept and the other closed with CLOSE
"duplicate", by a rule both ends evaluate alike: a connection from a new boot
(``boot_id``) or member id of the peer replaces the old one (the old one is dead);
of two from the same boot, if both were dialled by the same node the newer wins,
otherwise the one dialled by the node with the smaller id wins.

Bad input. Whatever a peer sends, the worst outcome is that its connection is
closed with a CLOSE frame naming the reason, and counted: malformed, truncated or
oversize frames, unknown families or types, a wrong version or cluster, a failed
or missing authentication, silence past the timeouts. A family handler that
raises ``RemoteProtocolError`` has the connection closed the same way
("bad_message"); any other exception from a handler is logged (at most once a
minute per family) and counted, and the message dropped. No exception leaves a
callback into the event loop.

Reconnecting: capped exponential backoff with jitter (``backoff``), reset once a
connection has completed its handshake. Every socket has TCP_NODELAY (small Raft
and gossip messages must not wait for Nagle's algorithm).

Threads: every method runs on the transport's event loop. Code on another thread
(a log writer that has just fsynced, say) hands its sends over with
``loop.call_soon_threadsafe(transport.send, ...)``.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vfsd.peers.auth import Authenticator, NoAuth, SharedSecretAuth
from vfsd.peers.backoff import Backoff
from vfsd.peers.connection import PeerConnection
from vfsd.peers.counters import PeerCounters
from vfsd.peers.frame import (
    PEER,
    PROTOCOL_VERSION,
    WIRE,
    Frame,
    FrameEncoder,
    Registry,
    RemoteProtocolError,
)
from vfsd.peers.hello import Hello
from vfsd.peers.settings import PeerSettings

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, int, Any], None]
ConnectHandler = Callable[["PeerInfo"], None]
DisconnectHandler = Callable[[str, str], None]

NONCE_BYTES = 16
LOG_EVERY_S = 60.0


class PeerUnreachable(ConnectionError):
    """``dial`` could not reach the address, or the peer there refused the handshake."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"peer {address} unreachable: {reason}")
        self.address = address
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who a connected peer is, as its HELLO said (given to on_connect handlers)."""

    node_id: str
    member_id: str
    #: ``host:port`` of its peer port, as it advertises it.
    address: str
    boot_id: int
    #: True when this node dialled the connection.
    outbound: bool


@dataclass(slots=True)
class _Family:
    on_message: MessageHandler
    on_connect: ConnectHandler | None
    on_disconnect: DisconnectHandler | None
    on_read: Callable[[], None] | None = None


class _Peer:
    """What the transport keeps per peer: where it is, its send queue, its connection."""

    __slots__ = ("id", "address", "persistent", "queue", "queued_bytes", "conn", "pending", "retry", "backoff",
                 "ever_open", "flush_scheduled", "drainers")

    def __init__(self, peer_id: str, address: tuple[str, int] | None, persistent: bool, backoff: Backoff) -> None:
        self.id = peer_id
        self.address = address
        self.persistent = persistent
        self.queue: deque[tuple[int, bytes]] = deque()
        self.queued_bytes = 0
        #: The open connection messages go to, if any.
        self.conn: _PeerProtocol | None = None
        #: An outbound connection being dialled or handshaking for this peer.
        self.pending: _PeerProtocol | None = None
        self.retry: asyncio.TimerHandle | None = None
        self.backoff = backoff
        self.ever_open = False
        self.flush_scheduled = False
        #: drain() calls waiting: (most queued bytes they wait for, future).
        self.drainers: list[tuple[int, asyncio.Future[bool]]] = []


class _PeerProtocol(asyncio.Protocol):
    """One TCP connection: feeds its ``PeerConnection`` and hands messages to the transport."""

    def __init__(self, owner: "PeerTransport", *, outbound: bool, peer: _Peer | None = None,
                 waiter: asyncio.Future[str] | None = None, dialled: tuple[str, int] | None = None) -> None:
        self.owner = owner
        self.outbound = outbound
        #: The peer this connection carries: the target of a dial, or known once the handshake opens.
        self.peer = peer
        self.waiter = waiter
        self.dialled = dialled
        self.core: PeerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.peername: Any = None
        self.sockname: Any = None
        #: Largest frame the peer accepts (its HELLO says, once open).
        self.send_limit = owner.settings.max_frame_bytes

    # asyncio callbacks: none lets an exception out (a bug here closes this connection only).

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        try:
            self.owner._connection_made(self)
        except Exception:
            log.exception("peer connection set-up failed")
            transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core is None or core.closed:
            return
        try:
            owner = self.owner
            messages = core.feed(data, owner._now_ms())
            out = core.data_to_send()
            if out:
                self.transport.write(out)  # type: ignore[union-attr]
            if core.newly_open:
                core.newly_open = False
                if not core.closed:  # opened and closed by the same read: never adopted
                    owner._on_open(self)
            if messages:
                owner._deliver(self, messages)
            if core.closed:
                self._close_after_write()
        except Exception:
            log.exception("peer connection failed on input")
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.owner._connection_lost(self, exc)
        except Exception:
            log.exception("peer connection teardown failed")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        peer = self.peer
        if peer is not None and peer.conn is self:
            try:
                self.owner._flush(peer)
            except Exception:
                log.exception("peer flush failed")
                self.abort()

    def write_control(self) -> None:
        """Write what the core wants sent; close the socket if the core is closed."""
        core = self.core
        transport = self.transport
        if core is None or transport is None or transport.is_closing():
            return
        out = core.data_to_send()
        if out:
            transport.write(out)
        if core.closed:
            self._close_after_write()

    def _close_after_write(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # writes what is buffered (the CLOSE frame), then closes

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class PeerTransport:
    """The peer port of one node (see the module docstring).

    ``node_id``, ``member_id`` and ``cluster_id`` go into every HELLO this node
    sends; ``bind``/``port`` is where it listens (port 0: any free port, see
    ``port`` after ``start``); ``advertise`` is the ``host:port`` peers are told
    to dial back (default: bind:port). ``authenticator`` defaults to ``NoAuth``
    (see ``vfsd.peers.auth``); ``rng`` (a seeded ``random.Random`` for a
    reproducible run) draws the reconnect jitter. Handshake nonces and the boot
    id come from the operating system's CSPRNG, never from ``rng``.
    """

    def __init__(self, node_id: str, member_id: str, cluster_id: str, bind: str = "127.0.0.1", port: int = 0, *,
                 advertise: str | None = None, authenticator: Authenticator | None = None,
                 settings: PeerSettings | None = None, rng: random.Random | None = None,
                 registry: Registry = WIRE) -> None:
        self.node_id = node_id
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.bind = bind
        self.port = port
        self._advertise = advertise
        self.authenticator: Authenticator = authenticator or NoAuth()
        self.settings = settings or PeerSettings()
        self._max_frame_bytes = self.settings.max_frame_bytes
        self._queue_max_bytes = self.settings.send_queue_max_bytes
        self._queue_max_frames = self.settings.send_queue_max_frames
        self.rng = rng or random.Random()
        self.registry = registry
        self.counters = PeerCounters(registry)
        self.boot_id = int.from_bytes(os.urandom(8), "big")
        self._encoder = FrameEncoder(registry)
        self._families: dict[int, _Family] = {}
        self._peers: dict[str, _Peer] = {}
        #: Every live connection, open or handshaking.
        self._conns: set[_PeerProtocol] = set()
        #: Messages for addresses whose node id is not known yet (send_to_address), while dialling.
        self._address_queues: dict[tuple[str, int], _Peer] = {}
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._logged: dict[str, float] = {}
        # Validate our own HELLO now, not at the first connection.
        self._hello(os.urandom(NONCE_BYTES))

    @classmethod
    def from_config(cls, config: Any, member_id: str, **kwargs: Any) -> "PeerTransport":
        """The transport a node's resolved ``Config`` describes: its node id, cluster id,
        bind address, peer port and advertised address, the shared secret (if any) and the limits."""
        secret = config.peer_secret
        kwargs.setdefault("authenticator", SharedSecretAuth(secret.encode()) if secret else NoAuth())
        kwargs.setdefault("settings", PeerSettings.from_config(config))
        kwargs.setdefault("advertise", getattr(config, "peer_advertise", "") or None)
        return cls(config.node_id, member_id, config.cluster_id, config.bind, config.peer_port, **kwargs)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the listener and dial the persistent peers."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = False
        self.boot_id = int.from_bytes(os.urandom(8), "big")  # a restart is a new boot to peers
        self._server = await loop.create_server(
            lambda: _PeerProtocol(self, outbound=False), self.bind, self.port, reuse_address=True, backlog=511)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = loop.create_task(self._tick_loop())
        for peer in self._peers.values():
            if peer.persistent:
                self._dial(peer)
        log.info("peer port listening on %s:%d (node %s, cluster %s, auth %s)", self.bind, self.port,
                 self.node_id, self.cluster_id, self.authenticator.scheme)

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Close every connection (with CLOSE "shutdown") and the listener; drop what is queued."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        now = self._now_ms()
        for peer in self._peers.values():
            if peer.retry is not None:
                peer.retry.cancel()
                peer.retry = None
            self._drop_queue(peer, "removed")
        for waiting in self._address_queues.values():
            self._drop_queue(waiting, "removed")
        for conn in list(self._conns):
            if conn.core is not None:
                conn.core.close("shutdown", "the node is stopping", now)
                conn.write_control()
            elif conn.transport is not None:
                conn.transport.close()
        deadline = time.monotonic() + timeout_s
        while self._conns and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._conns):  # a peer that does not read its CLOSE
            conn.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for peer in list(self._peers.values()):
            peer.conn = peer.pending = None  # what an aborted connection's callback has not cleared yet
            if not peer.persistent:
                del self._peers[peer.id]  # transient peers live as long as their connection
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._address_queues.clear()

    # -- peers --------------------------------------------------------------------------

    def add_peer(self, peer_id: str, host: str, port: int) -> None:
        """Keep a connection to ``peer_id`` at ``host:port``: dial it now, redial it when lost."""
        if peer_id == self.node_id:
            raise ValueError(f"{peer_id!r} is this node")
        peer = self._peers.get(peer_id)
        if peer is None:
            peer = self._peers[peer_id] = self._new_peer(peer_id, (host, port), persistent=True)
        else:
            peer.persistent = True
            peer.address = (host, port)
        if self._loop is not None and not self._stopping:
            self._dial(peer)

    def remove_peer(self, peer_id: str) -> None:
        """Forget ``peer_id``: close its connection ("removed"), drop its queue, stop redialling."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return
        peer.persistent = False
        if peer.retry is not None:
            peer.retry.cancel()
            peer.retry = None
        self._drop_queue(peer, "removed")
        now = self._now_ms()
        for conn in (peer.conn, peer.pending):
            if conn is not None and conn.core is not None:
                conn.core.close("removed", "this node removed the peer", now)
                conn.write_control()
            elif conn is not None:
                conn.abort()

    def peers(self) -> dict[str, dict[str, Any]]:
        """Every known peer: state (open, connecting, backoff, idle), address, queue, round trip,
        and the socket addresses of its open connection."""
        out = {}
        for peer in self._peers.values():
            conn = peer.conn
            core = conn.core if conn is not None else None
            remote = core.remote if core is not None else None
            if conn is not None:
                state = "open"
            elif peer.pending is not None:
                state = "connecting"
            elif peer.retry is not None:
                state = "backoff"
            else:
                state = "idle"
            out[peer.id] = {
                "state": state, "persistent": peer.persistent,
                "address": f"{peer.address[0]}:{peer.address[1]}" if peer.address else "",
                "member_id": remote.member_id if remote else "", "outbound": conn.outbound if conn else False,
                "queued_frames": len(peer.queue), "queued_bytes": peer.queued_bytes,
                "rtt_ms": core.rtt_ms if core is not None else None,
                "local": _fmt(conn.sockname) if conn else "", "remote": _fmt(conn.peername) if conn else "",
            }
        return out

    def connected(self, peer_id: str) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.conn is not None

    def queued(self, peer_id: str) -> tuple[int, int]:
        """(frames, bytes) waiting to be written to ``peer_id``: a sender that wants
        backpressure instead of drops (a benchmark, a bulk transfer) can wait on this."""
        peer = self._peers.get(peer_id)
        return (len(peer.queue), peer.queued_bytes) if peer is not None else (0, 0)

    async def drain(self, peer_id: str, max_queued_bytes: int = 0) -> bool:
        """Wait until at most ``max_queued_bytes`` are queued for ``peer_id`` (handed to the
        socket); False at once if the peer is unknown, or when its queue is dropped.

        For a sender that must not lose messages to the drop-oldest bound: a stream
        of snapshot chunks, a benchmark. Messages of other senders may queue meanwhile.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        if peer.queued_bytes <= max_queued_bytes:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        peer.drainers.append((max_queued_bytes, future))
        return await future

    # -- families -----------------------------------------------------------------------

    def register(self, family: int, on_message: MessageHandler, *, on_connect: ConnectHandler | None = None,
                 on_disconnect: DisconnectHandler | None = None, on_read: Callable[[], None] | None = None) -> None:
        """Deliver ``family``'s messages to ``on_message(peer_id, type, body)``.

        Handlers run on the event loop, synchronously, in the order messages
        arrive; they must not block (start a task for slow work). ``on_connect(info)``
        runs when a peer's connection opens, before its first message;
        ``on_disconnect(peer_id, reason)`` when it closes; ``on_read()`` once the
        messages of one read from a connection have all been delivered (to act once
        for all of them, at once, rather than per message or in a later iteration).
        """
        if family == PEER or self.registry.types_of(family) is None:
            raise ValueError(f"family {family} cannot be registered")
        if family in self._families:
            raise ValueError(f"family {self.registry.family_name(family)} has a handler already")
        for handler in (on_message, on_connect, on_disconnect, on_read):
            if handler is not None and inspect.iscoroutinefunction(handler):
                raise TypeError("peer handlers are plain functions; start a task inside for async work")
        self._families[family] = _Family(on_message, on_connect, on_disconnect, on_read)

    # -- sending ------------------------------------------------------------------------

    def send(self, peer_id: str, family: int, mtype: int, body: Any) -> bool:
        """Queue a message for ``peer_id``; False if it was dropped at once (and counted).

        Never blocks. Raises only for a caller's bug (LocalProtocolError): an
        undeclared family or type, or a body that is not plain msgpack data.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            self.counters.dropped_frames["unknown_peer"] += 1
            return False
        return self._enqueue(peer, family, self._encoder.encode(family, mtype, body))

    def send_joined(self, peer_id: str, family: int, mtype: int, head: list[Any], tail: bytes,
                    tail_count: int) -> bool:
        """``send`` of the body ``[*head, *fields]`` where ``tail = encoder.pack_fields(fields)``
        (``FrameEncoder.encode_joined``): fields shared by many messages are packed once."""
        peer = self._peers.get(peer_id)
        if peer is None:
            self.counters.dropped_frames["unknown_peer"] += 1
            return False
        return self._enqueue(peer, family, self._encoder.encode_joined(family, mtype, head, tail, tail_count))

    @property
    def encoder(self) -> FrameEncoder:
        """The transport's frame encoder (``pack_fields`` for ``send_joined``)."""
        return self._encoder

    def send_to_address(self, host: str, port: int, family: int, mtype: int, body: Any) -> bool:
        """Send to whichever node listens at ``host:port`` (a gossip seed), dialling it if
        needed; False if dropped at once. Never blocks; a failed dial drops the message.
        While the dial runs, messages wait in a queue with the same bounds as a peer's."""
        data = self._encoder.encode(family, mtype, body)
        address = (host, port)
        for peer in self._peers.values():
            if peer.address == address and peer.conn is not None:
                return self._enqueue(peer, family, data)
        waiting = self._address_queues.get(address)
        if waiting is None:
            if self._loop is None or self._stopping:
                self.counters.dropped_frames["unreachable"] += 1
                return False
            waiting = self._address_queues[address] = self._new_peer(f"{host}:{port}", address, persistent=False)
            self._spawn(self._dial_address(address))
        return self._enqueue(waiting, family, data)

    async def dial(self, host: str, port: int, timeout_s: float | None = None) -> str:
        """Connect to ``host:port`` and return the node id its HELLO gave (PeerUnreachable if
        it cannot be reached or refuses). The peer is transient unless add_peer'd."""
        for peer in self._peers.values():
            if peer.address == (host, port) and peer.conn is not None:
                return peer.id
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[str] = loop.create_future()
        where = f"{host}:{port}"
        limit_s = timeout_s if timeout_s is not None else \
            (self.settings.connect_timeout_ms + self.settings.handshake_timeout_ms) / 1000
        self.counters.connections_dialed += 1
        made: list[_PeerProtocol] = []

        def protocol() -> _PeerProtocol:
            made.append(_PeerProtocol(self, outbound=True, waiter=waiter, dialled=(host, port)))
            return made[-1]

        try:
            async with asyncio.timeout(limit_s):
                await loop.create_connection(protocol, host, port)
                return await waiter
        except TimeoutError:
            self.counters.dial_failures += 1
            waiter.cancel()
            for conn in made:  # a handshake still running when time ran out goes too
                conn.abort()
            raise PeerUnreachable(where, "timed out") from None
        except OSError as exc:
            if isinstance(exc, PeerUnreachable):
                raise  # the handshake failed (counted where the connection was lost)
            self.counters.dial_failures += 1
            raise PeerUnreachable(where, exc.strerror or str(exc)) from None

    # -- statistics ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Every counter and gauge (nested: per family, per reason)."""
        out = self.counters.snapshot()
        out["connections"] = sum(1 for p in self._peers.values() if p.conn is not None)
        out["handshaking"] = sum(1 for c in self._conns if c.core is not None and not c.core.is_open)
        out["peers_known"] = len(self._peers)
        out["queued_frames"] = sum(len(p.queue) for p in self._peers.values())
        out["queued_bytes"] = sum(p.queued_bytes for p in self._peers.values())
        return out

    def info(self) -> dict[str, int]:
        """``stats()`` flattened to ``name_key: value`` pairs, as INFO prints them."""
        flat: dict[str, int] = {}
        for name, value in self.stats().items():
            if isinstance(value, dict):
                for key, n in value.items():
                    flat[f"{name}_{key}"] = n
            else:
                flat[name] = value
        return flat

    # -- internals: connections ---------------------------------------------------------

    def _now_ms(self) -> float:
        loop = self._loop
        return (loop.time() if loop is not None else time.monotonic()) * 1000

    @property
    def advertised_address(self) -> str:
        """``host:port`` this node tells peers to dial (its HELLO's address)."""
        return self._advertised()

    def _advertised(self) -> str:
        return self._advertise if self._advertise is not None else f"{self.bind}:{self.port}"

    def _hello(self, nonce: bytes) -> Hello:
        return Hello(version=PROTOCOL_VERSION, cluster_id=self.cluster_id, node_id=self.node_id,
                     member_id=self.member_id, address=self._advertised(), boot_id=self.boot_id,
                     max_frame_bytes=self.settings.max_frame_bytes, auth=self.authenticator.scheme,
                     nonce=nonce).check_local()

    def _new_peer(self, peer_id: str, address: tuple[str, int] | None, persistent: bool) -> _Peer:
        s = self.settings
        return _Peer(peer_id, address, persistent, Backoff(s.reconnect_base_ms, s.reconnect_max_ms, self.rng))

    def _connection_made(self, conn: _PeerProtocol) -> None:
        transport = conn.transport
        assert transport is not None
        s = self.settings
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=s.write_buffer_high_bytes, low=s.write_buffer_high_bytes // 4)
        conn.peername = transport.get_extra_info("peername")
        conn.sockname = transport.get_extra_info("sockname")
        channel = {"peername": conn.peername, "peercert": transport.get_extra_info("peercert"),
                   "ssl_object": transport.get_extra_info("ssl_object")}
        now = self._now_ms()
        conn.core = PeerConnection(
            self._hello(os.urandom(NONCE_BYTES)), self.authenticator, now_ms=now,
            handshake_timeout_ms=s.handshake_timeout_ms, idle_timeout_ms=s.idle_timeout_ms,
            keepalive_interval_ms=s.keepalive_interval_ms,
            expect_node_id=conn.peer.id if conn.peer is not None else None, channel=channel,
            registry=self.registry, counters=self.counters)
        self._conns.add(conn)
        if conn.outbound:
            if conn.peer is not None:
                conn.peer.pending = conn  # in place of the dial's placeholder
        else:
            self.counters.connections_accepted += 1
            refusal = self._refusal(conn)
            if self._stopping:
                conn.core.close("shutdown", "the node is stopping", now)
            elif refusal is not None:
                conn.core.refuse(refusal, now)
        conn.write_control()

    def _refusal(self, conn: _PeerProtocol) -> RemoteProtocolError | None:
        """Why an inbound connection is turned away at once, before this node says who it is."""
        if len(self._conns) > self.settings.max_connections:
            return RemoteProtocolError("too_many_connections", f"more than {self.settings.max_connections}")
        if self.settings.protected_mode and self.authenticator.scheme == NoAuth.scheme \
                and not _is_loopback(conn.peername):
            return RemoteProtocolError(
                "protected", "no peer authentication is configured, so only loopback peers are accepted "
                             "(set peer_secret, or protected_mode = false)")
        return None

    def _on_open(self, conn: _PeerProtocol) -> None:
        """A connection finished its handshake: adopt it, or resolve a duplicate."""
        core = conn.core
        assert core is not None and core.remote is not None
        remote = core.remote
        conn.send_limit = core.send_limit
        if conn.waiter is not None and not conn.waiter.done():
            conn.waiter.set_result(remote.node_id)
        if self._stopping:
            return
        peer = self._peers.get(remote.node_id)
        if peer is None:
            peer = self._peers[remote.node_id] = self._new_peer(
                remote.node_id, conn.dialled or _parse_address(remote.address), persistent=False)
        if peer.pending is conn:
            peer.pending = None
        conn.peer = peer
        current = peer.conn
        if current is None:
            self._adopt(peer, conn)
            return
        winner = self._tie_break(current, conn)
        loser = conn if winner is current else current
        self.counters.duplicates_closed += 1
        log.debug("peer %s: two connections, keeping the %s one", peer.id, "new" if winner is conn else "old")
        if winner is conn:
            restarted = _remote(current).boot_id != remote.boot_id or _remote(current).member_id != remote.member_id
            peer.conn = None
            if restarted:
                self._emit_disconnect(peer.id, "replaced")
            self._close(loser, "duplicate", f"{peer.id} has a newer connection")
            self._adopt(peer, conn, reconnect=False, announce=restarted)
        else:
            self._close(loser, "duplicate", f"{peer.id} keeps its other connection")

    def _tie_break(self, old: _PeerProtocol, new: _PeerProtocol) -> _PeerProtocol:
        a, b = _remote(old), _remote(new)
        if a.boot_id != b.boot_id or a.member_id != b.member_id:
            return new  # the peer restarted: the old connection is dead, whatever it looks like here
        old_dialler = self.node_id if old.outbound else a.node_id
        new_dialler = self.node_id if new.outbound else b.node_id
        if old_dialler == new_dialler:
            return new  # the dialler gave up on the old one (it would not dial again otherwise)
        return old if old_dialler < new_dialler else new

    def _adopt(self, peer: _Peer, conn: _PeerProtocol, *, reconnect: bool = True, announce: bool = True) -> None:
        peer.conn = conn
        peer.backoff.reset()
        if peer.retry is not None:
            peer.retry.cancel()
            peer.retry = None
        if reconnect and peer.ever_open:
            self.counters.reconnects += 1
        peer.ever_open = True
        if announce:
            remote = _remote(conn)
            log.debug("peer %s connected (%s)", peer.id, "outbound" if conn.outbound else "inbound")
            info = PeerInfo(remote.node_id, remote.member_id, remote.address, remote.boot_id, conn.outbound)
            for family, handlers in self._families.items():
                if handlers.on_connect is not None:
                    self._call(family, handlers.on_connect, info)
        if peer.queue and peer.conn is conn:
            self._flush(peer)

    def _close(self, conn: _PeerProtocol, reason: str, detail: str) -> None:
        if conn.core is not None:
            conn.core.close(reason, detail, self._now_ms())
            conn.write_control()

    def _connection_lost(self, conn: _PeerProtocol, exc: Exception | None) -> None:
        self._conns.discard(conn)
        core = conn.core
        if core is None:
            return
        core.connection_lost(self._now_ms())
        reason = core.close_reason or "eof"
        if conn.waiter is not None and not conn.waiter.done():
            self.counters.dial_failures += 1
            where = f"{conn.dialled[0]}:{conn.dialled[1]}" if conn.dialled else "?"
            conn.waiter.set_exception(PeerUnreachable(where, _describe(core, exc)))
        if core.error is not None:
            self._log_limited(f"protocol:{core.error.reason}", logging.WARNING,
                              "peer connection from %s closed: %s (%s)", _fmt(conn.peername),
                              core.error.reason, core.error.detail)
        peer = conn.peer
        if peer is None:
            return
        if peer.conn is conn:
            peer.conn = None
            self._emit_disconnect(peer.id, reason)
            if self._peers.get(peer.id) is not peer or self._stopping:
                return
            if peer.persistent:
                if peer.pending is None:
                    self._schedule_redial(peer)
            elif peer.pending is None:
                self._drop_queue(peer, "unreachable")
                del self._peers[peer.id]
        elif peer.pending is conn:
            peer.pending = None
            self._dial_failed(peer, reason, _describe(core, exc))

    def _emit_disconnect(self, peer_id: str, reason: str) -> None:
        log.debug("peer %s disconnected: %s", peer_id, reason)
        for family, handlers in self._families.items():
            if handlers.on_disconnect is not None:
                self._call(family, handlers.on_disconnect, peer_id, reason)

    # -- internals: dialling ------------------------------------------------------------

    def _dial(self, peer: _Peer) -> None:
        if peer.retry is not None:
            peer.retry.cancel()
            peer.retry = None
        if self._stopping or peer.conn is not None or peer.pending is not None or peer.address is None:
            return
        if self._peers.get(peer.id) is not peer:
            return
        self._spawn(self._dial_peer(peer))

    async def _dial_peer(self, peer: _Peer) -> None:
        assert self._loop is not None and peer.address is not None
        host, port = peer.address
        self.counters.connections_dialed += 1
        placeholder = _PeerProtocol(self, outbound=True, peer=peer)  # marks the dial as under way
        peer.pending = placeholder
        try:
            async with asyncio.timeout(self.settings.connect_timeout_ms / 1000):
                await self._loop.create_connection(
                    lambda: _PeerProtocol(self, outbound=True, peer=peer, dialled=(host, port)), host, port)
        except (OSError, TimeoutError) as exc:
            if peer.pending is placeholder:
                peer.pending = None
                reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
                self._dial_failed(peer, "connect", reason)
        finally:  # made and lost before this coroutine resumed, or cancelled by stop()
            if peer.pending is placeholder:
                peer.pending = None

    def _dial_failed(self, peer: _Peer, reason: str, detail: str) -> None:
        duplicate = reason == "peer:duplicate"  # the peer keeps another connection with us: not a failure
        if not duplicate:
            self.counters.dial_failures += 1
        if self._stopping or self._peers.get(peer.id) is not peer:
            return
        if peer.conn is None and not duplicate:
            # The peer may have a winning connection to us on its way: keep the queue then.
            self._drop_queue(peer, "unreachable")
        self._log_limited(f"dial:{peer.id}", logging.INFO, "peer %s unreachable: %s", peer.id, detail)
        if peer.persistent and peer.conn is None:
            self._schedule_redial(peer)

    def _schedule_redial(self, peer: _Peer) -> None:
        assert self._loop is not None
        if peer.retry is not None:
            peer.retry.cancel()
        delay_ms = peer.backoff.next_ms()
        peer.retry = self._loop.call_later(delay_ms / 1000, self._dial, peer)

    async def _dial_address(self, address: tuple[str, int]) -> None:
        try:
            peer_id = await self.dial(*address)
        except PeerUnreachable as exc:
            waiting = self._address_queues.pop(address, None)
            if waiting is not None:
                self._drop_queue(waiting, "unreachable")
            self._log_limited(f"dial:{address}", logging.INFO, "%s", exc)
            return
        waiting = self._address_queues.pop(address, None)
        if waiting is None:
            return
        peer = self._peers.get(peer_id)
        if peer is None:  # open and closed again already
            self._drop_queue(waiting, "unreachable")
            return
        for family, data in waiting.queue:
            self._enqueue(peer, family, data)

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("peer task failed", exc_info=task.exception())

    # -- internals: sending and receiving -----------------------------------------------

    def _enqueue(self, peer: _Peer, family: int, data: bytes) -> bool:
        conn = peer.conn
        size = len(data)
        if size > (conn.send_limit if conn is not None else self._max_frame_bytes):
            limit = conn.send_limit if conn is not None else self._max_frame_bytes
            self.counters.dropped_frames["oversize"] += 1
            self._log_limited(f"oversize:{family}", logging.WARNING, "dropped a %s message of %d bytes for %s: "
                              "over its max_frame_bytes %d", self.registry.family_name(family), size, peer.id, limit)
            return False
        queue = peer.queue
        queue.append((family, data))
        peer.queued_bytes += size
        max_bytes, max_frames = self._queue_max_bytes, self._queue_max_frames
        if peer.queued_bytes > max_bytes or len(queue) > max_frames:
            dropped = self.counters.dropped_frames
            while peer.queued_bytes > max_bytes or len(queue) > max_frames:
                _, old = queue.popleft()
                peer.queued_bytes -= len(old)
                dropped["queue_full"] += 1
            self._log_limited(f"queue_full:{peer.id}", logging.WARNING,
                              "peer %s is not keeping up: dropping its oldest queued messages", peer.id)
        if conn is not None and not peer.flush_scheduled and not conn.paused:
            peer.flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_soon, peer)
        return True

    def flush_now(self) -> None:
        """Write what is queued for every peer at once, instead of at the end of this event-loop
        iteration (for a caller about to block the loop briefly: Raft fsyncing a small batch right
        after sending the appends that other nodes can fsync meanwhile)."""
        for peer in self._peers.values():
            if peer.flush_scheduled and peer.queue:
                self._flush(peer)

    def _flush_soon(self, peer: _Peer) -> None:
        peer.flush_scheduled = False
        try:
            self._flush(peer)
        except Exception:
            log.exception("peer flush failed")
            if peer.conn is not None:
                peer.conn.abort()

    def _flush(self, peer: _Peer) -> None:
        """Write what is queued for ``peer``, in write_buffer_high_bytes chunks, until asyncio pauses us."""
        conn = peer.conn
        if conn is None or conn.paused:
            return
        transport = conn.transport
        core = conn.core
        if transport is None or core is None or transport.is_closing():
            return
        queue = peer.queue
        high = self.settings.write_buffer_high_bytes
        limit = conn.send_limit
        counters = self.counters
        frames_out, bytes_out, dropped = counters.frames_out, counters.bytes_out, counters.dropped_frames
        while queue and not conn.paused:
            chunk: list[bytes] = []
            size = 0
            while queue and size < high:
                family, data = queue.popleft()
                n = len(data)
                if n > limit:  # queued before we knew this peer's limit
                    peer.queued_bytes -= n
                    dropped["oversize"] += 1
                    continue
                chunk.append(data)
                size += n
                frames_out[family] += 1
                bytes_out[family] += n
            peer.queued_bytes -= size
            if chunk:
                # writelines: uvloop (and asyncio from 3.12) hand the frames to one writev/sendmsg
                # call, with no join copying every body once more.
                transport.writelines(chunk)
        core.note_sent(self._now_ms())
        if peer.drainers:
            self._wake_drainers(peer, True)

    def _wake_drainers(self, peer: _Peer, drained: bool) -> None:
        """Resolve the drain() calls ``peer``'s queue now satisfies (all of them, with False, if not ``drained``)."""
        waiting = []
        for limit, future in peer.drainers:
            if future.done():
                continue
            if not drained:
                future.set_result(False)
            elif peer.queued_bytes <= limit:
                future.set_result(True)
            else:
                waiting.append((limit, future))
        peer.drainers = waiting

    def _deliver(self, conn: _PeerProtocol, messages: list[Frame]) -> None:
        core = conn.core
        assert core is not None and core.remote is not None
        peer_id = core.remote.node_id
        families = self._families
        dropped = self.counters.dropped_frames
        read_by: list[tuple[int, _Family]] = []
        try:
            for frame in messages:
                handlers = families.get(frame.family)
                if handlers is None:
                    dropped["no_handler"] += 1
                    continue
                if handlers.on_read is not None and (frame.family, handlers) not in read_by:
                    read_by.append((frame.family, handlers))
                try:
                    handlers.on_message(peer_id, frame.type, frame.body)
                except RemoteProtocolError as exc:
                    core.fail(exc, self._now_ms())
                    conn.write_control()
                    return
                except Exception:
                    self.counters.handler_errors[frame.family] += 1
                    self._log_limited(f"handler:{frame.family}", logging.ERROR, "%s handler failed on a message "
                                      "from %s", self.registry.family_name(frame.family), peer_id, exc_info=True)
        finally:
            for family, handlers in read_by:
                self._call(family, handlers.on_read)  # type: ignore[arg-type]

    def _call(self, family: int, handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            self.counters.handler_errors[family] += 1
            self._log_limited(f"handler:{family}", logging.ERROR, "%s connection handler failed",
                              self.registry.family_name(family), exc_info=True)

    def _drop_queue(self, peer: _Peer, reason: str) -> None:
        if peer.queue:
            self.counters.dropped_frames[reason] += len(peer.queue)
            peer.queue.clear()
            peer.queued_bytes = 0
        if peer.drainers:
            self._wake_drainers(peer, False)

    async def _tick_loop(self) -> None:
        interval_s = self.settings.tick_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            now = self._now_ms()
            for conn in list(self._conns):
                core = conn.core
                if core is None or core.closed:
                    continue
                try:
                    core.tick(now)
                    conn.write_control()
                except Exception:
                    log.exception("peer keepalive failed")
                    conn.abort()

    def _log_limited(self, key: str, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._logged) > 4096:  # keys include peer ids and addresses: keep the table bounded
                self._logged.clear()
            self._logged[key] = now
            log.log(level, msg, *args, exc_info=exc_info)


def _remote(conn: _PeerProtocol) -> Hello:
    assert conn.core is not None and conn.core.remote is not None
    return conn.core.remote


def _describe(core: PeerConnection, exc: Exception | None) -> str:
    if core.error is not None:
        return f"{core.error.reason}: {core.error.detail}"
    if core.closed_by_peer is not None:
        reason, detail = core.closed_by_peer
        return f"refused by the peer ({reason}: {detail})"
    return str(exc) if exc is not None else "connection closed"


def _is_loopback(peername: Any) -> bool:
    if not peername:
        return True  # a Unix socket or a socket pair: local by construction
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack listener
    return (mapped or address).is_loopback


def _parse_address(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _fmt(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
