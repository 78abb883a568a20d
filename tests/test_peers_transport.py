"""The peer transport (vfsd.peers.transport) on 127.0.0.1: two and three in-process
transports, and hand-driven raw sockets for what a well-behaved peer never sends.

Every wait polls with a deadline (``until``); every transport and socket a test
opens is closed by the fixtures, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from vfsd.peers.auth import Authenticator, NoAuth, SharedSecretAuth
from vfsd.peers.connection import PeerConnection
from vfsd.peers.counters import PeerCounters
from vfsd.peers.frame import (
    CLOSE,
    GOSSIP,
    HELLO,
    PEER,
    RAFT,
    WIRE,
    FrameDecoder,
    LocalProtocolError,
    RemoteProtocolError,
    encode_frame,
)
from vfsd.peers.hello import Hello
from vfsd.peers.settings import PeerSettings
from vfsd.peers.transport import PeerInfo, PeerTransport, PeerUnreachable

REG = WIRE.copy()
MSG = REG.message(RAFT, 60001, "test")  # numbers the real families will not reach
GMSG = REG.message(GOSSIP, 60001, "test")
CLUSTER = "test-cluster"
KiB = 1024
MiB = 1024 * KiB
FAST = PeerSettings(reconnect_base_ms=10, reconnect_max_ms=100, tick_interval_ms=20, connect_timeout_ms=1000,
                    handshake_timeout_ms=2000, keepalive_interval_ms=300, idle_timeout_ms=3000)


async def until(predicate: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


class Node:
    """A transport plus what its raft family received and which events it saw."""

    def __init__(self, node_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("settings", FAST)
        self.t = PeerTransport(node_id, f"{node_id}-m1", kwargs.pop("cluster", CLUSTER), "127.0.0.1", 0,
                               registry=REG, **kwargs)
        self.got: list[tuple[str, int, Any]] = []
        self.events: list[tuple[str, Any]] = []
        self.t.register(RAFT, lambda peer, mtype, body: self.got.append((peer, mtype, body)),
                        on_connect=lambda info: self.events.append(("up", info)),
                        on_disconnect=lambda peer, reason: self.events.append(("down", (peer, reason))))

    @property
    def id(self) -> str:
        return self.t.node_id

    def add(self, other: "Node") -> None:
        self.t.add_peer(other.id, "127.0.0.1", other.t.port)

    def from_peer(self, peer: str) -> list[Any]:
        return [body for p, _, body in self.got if p == peer]


@contextlib.asynccontextmanager
async def started_nodes() -> AsyncIterator[Callable[..., Any]]:
    """A factory of started Nodes; every one is stopped on the way out."""
    started: list[Node] = []

    async def make(node_id: str, **kwargs: Any) -> Node:
        node = Node(node_id, **kwargs)
        await node.t.start()
        started.append(node)
        return node

    try:
        yield make
    finally:
        for node in started:
            await node.t.stop()


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Any]]:
    async with started_nodes() as make:
        yield make


async def pair(nodes: Callable[..., Any], **kwargs: Any) -> tuple[Node, Node]:
    a, b = await nodes("a", **kwargs), await nodes("b", **kwargs)
    a.add(b)
    b.add(a)
    await until(lambda: a.t.connected("b") and b.t.connected("a"), "a and b connected")
    return a, b


# --- a raw socket that says exactly what a test wants ---------------------------------


def hello_for(node_id: str, auth: Authenticator, *, cluster: str = CLUSTER, boot_id: int = 1,
              nonce: bytes = b"n" * 16, max_frame_bytes: int = MiB) -> Hello:
    return Hello(version=1, cluster_id=cluster, node_id=node_id, member_id=f"{node_id}-m1", address="",
                 boot_id=boot_id, max_frame_bytes=max_frame_bytes, auth=auth.scheme, nonce=nonce)


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received = bytearray()
        self.core: PeerConnection | None = None

    @classmethod
    async def connect(cls, port: int, rcvbuf: int | None = None) -> "RawPeer":
        sock = socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def handshake(self, node_id: str = "x", auth: Authenticator | None = None, **hello: Any) -> PeerConnection:
        auth = auth or NoAuth()
        core = PeerConnection(hello_for(node_id, auth, **hello), auth, now_ms=0, handshake_timeout_ms=10**9,
                              idle_timeout_ms=10**9, keepalive_interval_ms=10**8, registry=REG,
                              counters=PeerCounters(REG))
        self.core = core
        self.send(core.data_to_send())
        while not core.is_open:
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, f"the transport closed the handshake: {core.closed_by_peer or self.received!r}"
            self.received += data
            core.feed(data, 0)
            self.send(core.data_to_send())
            assert not core.closed, core.close_reason
        return core

    async def until_closed(self, timeout_s: float = 5.0) -> dict[str, Any] | None:
        """Read to EOF; the body of the CLOSE frame the transport sent, if any."""
        async with asyncio.timeout(timeout_s):
            while data := await self.reader.read(65536):
                self.received += data
        decoder = FrameDecoder(max_frame_bytes=64 * MiB, registry=REG)
        frames = decoder.feed(bytes(self.received))
        closes = [f.body for f in frames if (f.family, f.type) == (PEER, CLOSE)]
        return closes[-1] if closes else None

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def raw_peers() -> AsyncIterator[Callable[..., Any]]:
    """A factory of connected RawPeers; every one is closed on the way out."""
    opened: list[RawPeer] = []

    async def connect(port: int, **kwargs: Any) -> RawPeer:
        peer = await RawPeer.connect(port, **kwargs)
        opened.append(peer)
        return peer

    try:
        yield connect
    finally:
        for peer in opened:
            peer.close()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Any]]:
    async with raw_peers() as connect:
        yield connect


# --- delivery ------------------------------------------------------------------------


async def test_two_transports_deliver_in_order_both_ways(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    for i in range(3000):
        assert a.t.send("b", RAFT, MSG, i)
        assert b.t.send("a", RAFT, MSG, {"i": i, "pad": b"x" * (i % 300)})
        if i % 500 == 0:
            await asyncio.sleep(0)  # let some go out mid-stream
    await until(lambda: len(b.got) == 3000 and len(a.got) == 3000, "3000 messages each way")
    assert b.from_peer("a") == list(range(3000))
    assert [m["i"] for m in a.from_peer("b")] == list(range(3000))
    assert [e for e, _ in a.events] == ["up"] and [e for e, _ in b.events] == ["up"]
    info = a.events[0][1]
    assert isinstance(info, PeerInfo) and info.node_id == "b" and info.member_id == "b-m1"
    assert info.address == f"127.0.0.1:{b.t.port}"
    stats = a.t.stats()
    assert stats["frames_out"]["raft"] == 3000 and stats["frames_in"]["raft"] == 3000
    assert stats["bytes_out"]["raft"] == b.t.stats()["bytes_in"]["raft"] > 3000 * 9
    assert stats["connections"] == 1 and stats["queued_frames"] == 0
    assert a.t.info()["frames_out_raft"] == 3000


async def test_three_transports_one_connection_per_pair_and_order_per_sender(nodes: Callable[..., Any]) -> None:
    trio = [await nodes(name) for name in ("a", "b", "c")]
    for x in trio:
        for y in trio:
            if x is not y:
                x.add(y)
    await until(lambda: all(x.t.stats()["connections"] == 2 for x in trio), "a full mesh")
    for n in range(400):
        for x in trio:
            for y in trio:
                if x is not y:
                    x.t.send(y.id, RAFT, MSG, [x.id, n])
    await until(lambda: all(len(x.got) == 800 for x in trio), "400 messages from each peer")
    for x in trio:
        for y in trio:
            if x is not y:
                assert x.from_peer(y.id) == [[y.id, n] for n in range(400)]
    # One TCP connection per pair, the same one seen from both ends, dialled by the smaller id
    # (both sides dialled at once, so the tie-break decided).
    for x in trio:
        for y in trio:
            if x.id < y.id:
                xy, yx = x.t.peers()[y.id], y.t.peers()[x.id]
                assert xy["local"] == yx["remote"] and xy["remote"] == yx["local"]
                assert xy["outbound"] and not yx["outbound"]
    assert sum(x.t.stats()["duplicates_closed"] for x in trio) >= 3


async def test_reconnects_after_the_remote_stops_and_starts_again(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    a.t.send("b", RAFT, MSG, "before")
    await until(lambda: b.from_peer("a") == ["before"], "the first message")
    await b.t.stop()
    await until(lambda: not a.t.connected("b"), "a to see b gone")
    assert a.events[-1] == ("down", ("b", "peer:shutdown"))
    await until(lambda: a.t.stats()["dial_failures"] >= 2, "a to keep redialling")
    a.t.send("b", RAFT, MSG, "while down")  # dropped when the next dial fails, or delivered: never stuck
    await b.t.start()  # same port, a new boot
    await until(lambda: a.t.connected("b") and b.t.connected("a"), "a and b connected again")
    assert a.t.stats()["reconnects"] >= 1
    a.t.send("b", RAFT, MSG, "after")
    await until(lambda: "after" in b.from_peer("a"), "the message after the restart")
    assert b.from_peer("a")[0] == "before" and b.from_peer("a")[-1] == "after"
    stats = a.t.stats()
    assert stats["queued_frames"] == 0
    assert a.t.peers()["b"]["state"] == "open"


async def test_a_restarted_transport_redials_a_peer_it_was_still_handshaking_with(nodes: Callable[..., Any]) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accepts, and never says a word

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        a = await nodes("a")
        a.t.add_peer("mute", "127.0.0.1", server.sockets[0].getsockname()[1])
        await until(lambda: len(accepted) == 1 and a.t.peers()["mute"]["state"] == "connecting", "a handshaking")
        await a.t.stop()
        assert a.t.peers()["mute"]["state"] == "idle"
        await a.t.start()
        await until(lambda: len(accepted) == 2, "a dialling again after its restart")
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_remove_peer_closes_the_connection_and_stops_redialling(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    b.t.remove_peer("a")  # b forgets a, but a still wants b: a redials and b accepts it as transient
    a.t.remove_peer("b")
    await until(lambda: not b.t.connected("a") and not a.t.connected("b"), "both sides closed")
    assert not a.t.send("b", RAFT, MSG, 1) and a.t.stats()["dropped_frames"]["unknown_peer"] == 1
    dials = a.t.stats()["connections_dialed"]
    await asyncio.sleep(0.2)  # no condition to wait for: checking that nothing happens
    assert a.t.stats()["connections_dialed"] == dials and "b" not in a.t.peers()


async def test_dial_by_address_learns_the_peer_id(nodes: Callable[..., Any]) -> None:
    a, b = await nodes("a"), await nodes("b")
    assert await a.t.dial("127.0.0.1", b.t.port) == "b"
    assert a.t.connected("b") and not a.t.peers()["b"]["persistent"]
    assert await a.t.dial("127.0.0.1", b.t.port) == "b"  # already connected
    assert a.t.send("b", RAFT, MSG, "hi")
    await until(lambda: b.t.connected("a"), "b to have checked a's proof too")
    assert b.t.send("a", RAFT, MSG, "hi back")  # the dialled side knows a too, by its HELLO
    await until(lambda: b.from_peer("a") == ["hi"] and a.from_peer("b") == ["hi back"], "both messages")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(PeerUnreachable):
        await a.t.dial("127.0.0.1", port)


async def test_send_to_address_reaches_a_seed_whose_id_is_unknown(nodes: Callable[..., Any]) -> None:
    a, b = await nodes("a"), await nodes("b")
    for i in range(5):
        assert a.t.send_to_address("127.0.0.1", b.t.port, RAFT, MSG, i)
    await until(lambda: b.from_peer("a") == [0, 1, 2, 3, 4], "the seed to get all five in order")
    assert a.t.send_to_address("127.0.0.1", b.t.port, RAFT, MSG, 5)  # now straight onto the connection
    await until(lambda: b.from_peer("a")[-1:] == [5], "the sixth")
    c = await nodes("c", cluster="another")
    a.t.send_to_address("127.0.0.1", c.t.port, RAFT, MSG, "lost")
    await until(lambda: a.t.stats()["dropped_frames"]["unreachable"] == 1, "the refused seed's message dropped")
    assert c.t.stats()["protocol_errors"]["cluster"] == 1 and c.got == []


async def test_a_wrong_cluster_dial_says_why(nodes: Callable[..., Any]) -> None:
    a, c = await nodes("a"), await nodes("c", cluster="another")
    with pytest.raises(PeerUnreachable, match="cluster"):
        await a.t.dial("127.0.0.1", c.t.port)


async def test_shared_secret_peers_connect_and_a_wrong_secret_does_not(nodes: Callable[..., Any]) -> None:
    a = await nodes("a", authenticator=SharedSecretAuth(b"sesame"))
    b = await nodes("b", authenticator=SharedSecretAuth(b"sesame"))
    c = await nodes("c", authenticator=SharedSecretAuth(b"guess"))
    d = await nodes("d")  # no authentication at all
    for x in (b, c, d):
        a.add(x)
    await until(lambda: a.t.connected("b"), "a and b (same secret)")
    await until(lambda: a.t.stats()["protocol_errors"]["auth"] >= 2, "a to refuse c and d")
    assert not a.t.connected("c") and not a.t.connected("d")
    await until(lambda: c.t.stats()["protocol_errors"]["auth"] >= 1, "c to refuse a's proof too")
    assert c.t.stats()["connections"] == 0 and d.t.stats()["connections"] == 0
    a.t.send("b", RAFT, MSG, "authenticated")
    await until(lambda: b.from_peer("a") == ["authenticated"], "the message")


# --- backpressure ----------------------------------------------------------------------


async def test_a_peer_that_never_reads_is_held_to_the_queue_bound(nodes: Callable[..., Any], raw: Any) -> None:
    bound = 256 * KiB
    settings = PeerSettings(send_queue_max_bytes=bound, send_queue_max_frames=10_000, max_frame_bytes=64 * KiB,
                            write_buffer_high_bytes=64 * KiB)
    a = await nodes("a", settings=settings)
    stuck = await raw(a.t.port, rcvbuf=4096)
    await stuck.handshake("stuck")
    await until(lambda: a.t.connected("stuck"), "the stuck peer's handshake")
    body = b"z" * 1000
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        peak_queue = 0
        for _ in range(20):  # 20 MB offered in all: 80 times the bound
            for _ in range(1000):
                a.t.send("stuck", RAFT, MSG, body)
            await asyncio.sleep(0)  # let the writes go out (as far as the socket takes them)
            peak_queue = max(peak_queue, a.t.queued("stuck")[1])
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert peak_queue <= bound
    dropped = a.t.stats()["dropped_frames"]["queue_full"]
    assert dropped > 15_000  # nearly all of it, oldest first
    # Queue bound + asyncio's buffer (at most 2 x high water) + bookkeeping; 20 MB if unbounded.
    assert grown < bound + 4 * settings.write_buffer_high_bytes + 2 * MiB, grown
    assert a.t.connected("stuck")  # a slow peer is not cut off for being slow
    a.t.send("stuck", RAFT, MSG, b"latest")
    assert a.t.peers()["stuck"]["queued_frames"] <= bound // 1000


async def test_drain_gives_a_sender_backpressure_instead_of_drops(nodes: Callable[..., Any], raw: Any) -> None:
    settings = FAST.replace(send_queue_max_bytes=MiB, max_frame_bytes=MiB, write_buffer_high_bytes=64 * KiB)
    a, b = await pair(nodes, settings=settings)
    body = b"c" * 10_000
    for n in range(500):  # 5 MB through a 1 MiB queue, none lost: wait whenever it is half full
        a.t.send("b", RAFT, MSG, [n, body])
        if a.t.queued("b")[1] > 512 * KiB:
            assert await asyncio.wait_for(a.t.drain("b", 256 * KiB), 10)
    assert await asyncio.wait_for(a.t.drain("b"), 10) and a.t.queued("b") == (0, 0)
    await until(lambda: len(b.got) == 500, "all 500 chunks")
    assert [m[0] for m in b.from_peer("a")] == list(range(500))
    assert a.t.stats()["dropped_frames"]["queue_full"] == 0
    assert not await a.t.drain("nobody")
    stuck = await raw(a.t.port, rcvbuf=4096)
    await stuck.handshake("stuck")
    await until(lambda: a.t.connected("stuck"), "the stuck peer")
    for _ in range(2000):  # until the kernel's buffers are full and the queue holds the rest
        a.t.send("stuck", RAFT, MSG, body)
        await asyncio.sleep(0)
        if a.t.queued("stuck")[1] > 512 * KiB:
            break
    assert a.t.queued("stuck")[1] > 512 * KiB
    waiting = asyncio.ensure_future(a.t.drain("stuck"))
    await asyncio.sleep(0.05)  # checking that it does not return while nothing drains
    assert not waiting.done()
    a.t.remove_peer("stuck")
    assert await asyncio.wait_for(waiting, 5) is False


async def test_a_message_over_the_peers_limit_is_dropped_at_the_sender(nodes: Callable[..., Any]) -> None:
    small = FAST.replace(max_frame_bytes=64 * KiB)
    a, b = await pair(nodes, settings=small)
    assert not a.t.send("b", RAFT, MSG, b"x" * (64 * KiB))
    assert a.t.stats()["dropped_frames"]["oversize"] == 1
    assert a.t.send("b", RAFT, MSG, b"x" * (60 * KiB))
    await until(lambda: len(b.got) == 1, "the message that fits")
    assert a.t.connected("b")


# --- bad input from a raw socket ---------------------------------------------------------


def body_frame(family: int, mtype: int, body: Any, version: int = 1) -> bytes:
    return encode_frame(family, mtype, body, registry=REG, version=version)


def hello_frame(node_id: str = "x", version: int = 1, **changes: Any) -> bytes:
    body = {**hello_for(node_id, NoAuth()).to_body(), **changes}
    return body_frame(PEER, HELLO, body, version=version)


BEFORE_HANDSHAKE = {
    "garbage": b"GET / HTTP/1.1\r\nHost: vfsd\r\n\r\n",
    "version": hello_frame(version=2),
    "cluster": hello_frame(cluster_id="someone-else"),
    "oversize": struct.pack(">IBBH", 1 << 30, 1, PEER, HELLO),
    "bad_hello": hello_frame(nonce=b"short"),
    "before_handshake": hello_frame() + body_frame(RAFT, MSG, "sneaky"),
    "wrong_peer": hello_frame(node_id="b"),  # claims the id of the node it talks to
}
AFTER_HANDSHAKE = {
    "unknown_family": struct.pack(">IBBH", 1, 1, 99, 1) + b"\xc0",
    "unknown_type": struct.pack(">IBBH", 1, 1, RAFT, 999) + b"\xc0",
    "oversize": struct.pack(">IBBH", 32 * MiB, 1, RAFT, MSG),  # over b's 16 MiB
    "bad_body": struct.pack(">IBBH", 2, 1, RAFT, MSG) + b"\xc1\xc1",
    "version": body_frame(RAFT, MSG, 1, version=7),
    "unexpected": hello_frame(),
}


async def assert_refused(b: Node, a: Node, peer: RawPeer, reason: str) -> None:
    before = b.t.stats()["protocol_errors"][reason]
    told = await peer.until_closed()
    assert told is not None and told["reason"] == reason, (told, peer.received[-200:])
    await until(lambda: b.t.stats()["protocol_errors"][reason] == before + 1, f"{reason} counted")
    # ... and b keeps serving its real peer.
    n = len(b.from_peer("a"))
    a.t.send("b", RAFT, MSG, f"after {reason}")
    await until(lambda: len(b.from_peer("a")) == n + 1, "a message from the well-behaved peer")
    assert a.t.connected("b")


@pytest.mark.parametrize("reason", sorted(BEFORE_HANDSHAKE))
async def test_bad_input_before_the_handshake_closes_that_connection_only(
        nodes: Callable[..., Any], raw: Any, reason: str) -> None:
    a, b = await pair(nodes)
    peer = await raw(b.t.port)
    peer.send(BEFORE_HANDSHAKE[reason])
    await assert_refused(b, a, peer, reason)
    assert b.t.stats()["connections"] == 1 and all(p == "a" for p, _, _ in b.got)


@pytest.mark.parametrize("reason", sorted(AFTER_HANDSHAKE))
async def test_bad_input_after_the_handshake_closes_that_connection_only(
        nodes: Callable[..., Any], raw: Any, reason: str) -> None:
    a, b = await pair(nodes)
    peer = await raw(b.t.port)
    await peer.handshake("x")
    peer.send(body_frame(RAFT, MSG, "fine"))
    await until(lambda: b.from_peer("x") == ["fine"], "x's good message")
    peer.send(AFTER_HANDSHAKE[reason])
    await assert_refused(b, a, peer, reason)
    await until(lambda: not b.t.connected("x"), "x gone")
    assert ("down", ("x", reason)) in b.events


async def test_a_truncated_frame_is_counted_when_the_connection_ends(nodes: Callable[..., Any], raw: Any) -> None:
    a, b = await pair(nodes)
    peer = await raw(b.t.port)
    await peer.handshake("x")
    peer.send(body_frame(RAFT, MSG, b"y" * 1000)[:500])
    peer.writer.write_eof()
    await peer.until_closed()
    await until(lambda: b.t.stats()["protocol_errors"]["truncated"] == 1, "truncated counted")
    a.t.send("b", RAFT, MSG, "still here")
    await until(lambda: b.from_peer("a") == ["still here"], "b still serving a")


async def test_unauthenticated_peers_are_refused_by_a_transport_with_a_secret(
        nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b", authenticator=SharedSecretAuth(b"sesame"))
    peer = await raw(b.t.port)
    peer.send(hello_frame())  # says auth "none"
    told = await peer.until_closed()
    assert told is not None and told["reason"] == "auth"
    peer = await raw(b.t.port)
    with pytest.raises(AssertionError, match="closed"):
        await peer.handshake("x", SharedSecretAuth(b"guess"))
    assert (await peer.until_closed() or {}).get("reason") == "auth"
    peer = await raw(b.t.port)
    await peer.handshake("x", SharedSecretAuth(b"sesame"))
    peer.send(body_frame(RAFT, MSG, "with the secret"))
    await until(lambda: b.from_peer("x") == ["with the secret"], "the authenticated message")
    assert b.t.stats()["protocol_errors"]["auth"] == 2


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b", settings=FAST.replace(handshake_timeout_ms=200))
    peer = await raw(b.t.port)
    told = await peer.until_closed()
    assert told is not None and told["reason"] == "handshake_timeout"
    assert b.t.stats()["protocol_errors"]["handshake_timeout"] == 1


async def test_an_open_peer_that_falls_silent_is_closed_after_the_idle_timeout(
        nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b", settings=FAST.replace(keepalive_interval_ms=50, idle_timeout_ms=300))
    peer = await raw(b.t.port)
    await peer.handshake("x")  # and then answers nothing, not even PINGs
    told = await peer.until_closed()
    assert told is not None and told["reason"] == "idle_timeout"
    frames = FrameDecoder(max_frame_bytes=MiB, registry=REG).feed(bytes(peer.received))
    assert any(f.family == PEER and f.type == 4 for f in frames)  # b pinged first


async def test_connections_over_max_connections_are_refused(nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b", settings=FAST.replace(max_connections=2))
    keep = [await raw(b.t.port), await raw(b.t.port)]
    await keep[0].handshake("x")
    extra = await raw(b.t.port)
    told = await extra.until_closed()
    assert told is not None and told["reason"] == "too_many_connections"
    assert b.t.connected("x")


def test_protected_mode_refuses_unauthenticated_peers_beyond_loopback() -> None:
    class Stub:
        def __init__(self, host: str) -> None:
            self.peername = (host, 4242)

    t = PeerTransport("b", "b-m1", CLUSTER, registry=REG)
    assert t._refusal(Stub("10.0.0.7")).reason == "protected"  # type: ignore[arg-type, union-attr]
    assert t._refusal(Stub("127.0.0.1")) is None  # type: ignore[arg-type]
    assert t._refusal(Stub("::1")) is None  # type: ignore[arg-type]
    assert t._refusal(Stub("::ffff:127.0.0.1")) is None  # type: ignore[arg-type]
    assert t._refusal(Stub("::ffff:10.0.0.7")) is not None  # type: ignore[arg-type]
    secret = PeerTransport("b", "b-m1", CLUSTER, registry=REG, authenticator=SharedSecretAuth(b"k"))
    assert secret._refusal(Stub("10.0.0.7")) is None  # type: ignore[arg-type]
    open_mode = PeerTransport("b", "b-m1", CLUSTER, registry=REG, settings=FAST.replace(protected_mode=False))
    assert open_mode._refusal(Stub("10.0.0.7")) is None  # type: ignore[arg-type]


# --- duplicate connections ----------------------------------------------------------------


async def test_simultaneous_dials_leave_one_connection_dialled_by_the_smaller_id(nodes: Callable[..., Any]) -> None:
    async def race(a: Node, b: Node) -> None:
        a.add(b)
        b.add(a)
        await until(lambda: a.t.connected("b") and b.t.connected("a"), "connected")
        await until(lambda: a.t.peers()["b"]["local"] == b.t.peers()["a"]["remote"], "both ends on one connection")
        assert a.t.peers()["b"]["outbound"] and not b.t.peers()["a"]["outbound"]
        a.t.send("b", RAFT, MSG, "one")
        await until(lambda: b.from_peer("a") == ["one"], "delivery on the winner")
        await a.t.stop()
        await b.t.stop()

    for _ in range(3):  # the race goes differently each time; the outcome must not
        await race(await nodes("a"), await nodes("b"))


async def test_a_second_connection_from_the_same_dialler_replaces_the_first(
        nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b")
    first = await raw(b.t.port)
    await first.handshake("x", boot_id=5, nonce=b"1" * 16)
    await until(lambda: b.t.connected("x"), "x's first connection")
    second = await raw(b.t.port)
    await second.handshake("x", boot_id=5, nonce=b"2" * 16)  # x gave up on the first (half-open, say)
    told = await first.until_closed()
    assert told is not None and told["reason"] == "duplicate"
    second.send(body_frame(RAFT, MSG, "on the second"))
    await until(lambda: b.from_peer("x") == ["on the second"], "delivery on the second")
    assert [e for e, _ in b.events] == ["up"]  # same boot: the family saw no flap
    assert b.t.stats()["duplicates_closed"] == 1


async def test_a_restarted_peer_replaces_its_stale_connection(nodes: Callable[..., Any], raw: Any) -> None:
    b = await nodes("b")
    old = await raw(b.t.port)
    await old.handshake("x", boot_id=1, nonce=b"1" * 16)
    new = await raw(b.t.port)
    await new.handshake("x", boot_id=2, nonce=b"2" * 16)  # a new boot: the old connection is dead
    assert (await old.until_closed() or {}).get("reason") == "duplicate"
    await until(lambda: len(b.events) == 3, "down and up again")
    assert [e for e, _ in b.events] == ["up", "down", "up"]
    assert b.events[1] == ("down", ("x", "replaced")) and b.events[2][1].boot_id == 2


# --- handlers ------------------------------------------------------------------------------


async def test_a_handler_that_raises_is_counted_and_the_connection_stays(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    seen: list[Any] = []

    def flaky(peer: str, mtype: int, body: Any) -> None:
        if body == "boom":
            raise ValueError("a bug in the family")
        seen.append(body)

    b.t.register(GOSSIP, flaky)
    for body in ("one", "boom", "two"):
        a.t.send("b", GOSSIP, GMSG, body)
    await until(lambda: seen == ["one", "two"], "the messages around the failing one")
    assert b.t.stats()["handler_errors"]["gossip"] == 1 and a.t.connected("b")


async def test_on_read_runs_once_after_the_messages_of_one_read(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    log: list[Any] = []
    b.t.register(GOSSIP, lambda peer, mtype, body: log.append(body), on_read=lambda: log.append("read"))
    for body in range(5):
        a.t.send("b", GOSSIP, GMSG, body)  # one event-loop iteration: one write, so (on loopback) one read
    await until(lambda: log and log[-1] == "read" and 4 in log, "the five messages and the end of their read")
    assert [x for x in log if x != "read"] == [0, 1, 2, 3, 4]
    assert log[0] != "read" and all(log[i - 1] != "read" for i, x in enumerate(log) if x == "read")
    # A failing on_read is counted like any handler's failure; the connection stays.
    b.t._families[GOSSIP].on_read = lambda: 1 / 0
    a.t.send("b", GOSSIP, GMSG, 5)
    await until(lambda: b.t.stats()["handler_errors"]["gossip"] == 1, "the failure counted")
    assert 5 in log and a.t.connected("b")


async def test_a_family_refusing_a_message_closes_the_connection(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)

    def strict(peer: str, mtype: int, body: Any) -> None:
        if not isinstance(body, int):
            raise RemoteProtocolError("bad_message", "a gossip body must be an integer")

    b.t.register(GOSSIP, strict)
    a.t.send("b", GOSSIP, GMSG, "not an int")
    await until(lambda: b.t.stats()["protocol_errors"]["bad_message"] == 1, "the refusal counted")
    await until(lambda: a.t.stats()["refused_by_peer"]["bad_message"] == 1, "a told why")
    await until(lambda: a.t.connected("b") and b.t.connected("a"), "a persistent peer reconnects")


async def test_messages_of_a_family_without_handler_are_dropped_and_counted(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    a.t.send("b", GOSSIP, GMSG, "nobody listens")
    a.t.send("b", RAFT, MSG, "raft does")
    await until(lambda: b.from_peer("a") == ["raft does"], "the raft message")
    assert b.t.stats()["dropped_frames"]["no_handler"] == 1


async def test_register_and_send_refuse_a_callers_mistakes(nodes: Callable[..., Any]) -> None:
    a = await nodes("a")
    with pytest.raises(ValueError):
        a.t.register(RAFT, lambda *args: None)  # registered already
    with pytest.raises(ValueError):
        a.t.register(PEER, lambda *args: None)
    with pytest.raises(ValueError):
        a.t.register(77, lambda *args: None)

    async def coroutine(peer: str, mtype: int, body: Any) -> None:
        pass

    with pytest.raises(TypeError):
        a.t.register(GOSSIP, coroutine)
    a.t.add_peer("b", "127.0.0.1", 1)
    with pytest.raises(LocalProtocolError):
        a.t.send("b", RAFT, 999, None)
    with pytest.raises(LocalProtocolError):
        a.t.send("b", RAFT, MSG, object())
    with pytest.raises(ValueError):
        a.t.add_peer("a", "127.0.0.1", 1)


async def test_stop_tells_every_peer_and_leaves_nothing_running(nodes: Callable[..., Any]) -> None:
    a, b = await pair(nodes)
    c = await nodes("c")
    c.add(a)
    await until(lambda: a.t.connected("c"), "c connected")
    tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
    await a.t.stop()
    await until(lambda: ("down", ("a", "peer:shutdown")) in b.events and ("down", ("a", "peer:shutdown")) in c.events,
                "both peers told")
    assert a.t.stats()["connections"] == 0 and a.t.stats()["handshaking"] == 0
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - tasks_before
    assert not [t for t in leftover if "peers" in repr(t.get_coro())]


def test_from_config_builds_the_nodes_transport() -> None:
    from vfsd.config import load

    config = load(env={"VFSD_NODE_ID": "n1", "VFSD_PORT": "7001", "VFSD_CLUSTER_ID": "prod",
                       "VFSD_PEER_SECRET": "sesame", "VFSD_PEER_MAX_FRAME_BYTES": "1mb"}).resolved()
    t = PeerTransport.from_config(config, member_id="m-1")
    assert (t.node_id, t.cluster_id, t.bind, t.port) == ("n1", "prod", "127.0.0.1", 17001)
    assert isinstance(t.authenticator, SharedSecretAuth) and t.settings.max_frame_bytes == MiB
    plain = PeerTransport.from_config(load(env={"VFSD_NODE_ID": "n2"}).resolved(), member_id="m-2")
    assert isinstance(plain.authenticator, NoAuth) and plain.cluster_id == "vfsd"



# --- the same on uvloop, the loop ``vfsd serve`` runs ----------------------------------------

ON_UVLOOP = [
    test_two_transports_deliver_in_order_both_ways,
    test_reconnects_after_the_remote_stops_and_starts_again,
    test_a_peer_that_never_reads_is_held_to_the_queue_bound,
    test_bad_input_after_the_handshake_closes_that_connection_only,
    test_simultaneous_dials_leave_one_connection_dialled_by_the_smaller_id,
    test_a_restarted_peer_replaces_its_stale_connection,
]


@pytest.mark.parametrize("test", ON_UVLOOP, ids=lambda test: test.__name__.removeprefix("test_"))
def test_on_uvloop_too(test: Callable[..., Any]) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def run() -> None:
        async with started_nodes() as make_nodes, raw_peers() as make_raw:
            given = {"nodes": make_nodes, "raw": make_raw, "reason": "bad_body"}
            await test(**{name: given[name] for name in inspect.signature(test).parameters})

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert "uvloop" in type(runner.get_loop()).__module__
        runner.run(run())
