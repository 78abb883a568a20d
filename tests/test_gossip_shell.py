"""The gossip shell in process (vfsd.active.shell): its obligations to the cores, one at a time.

A real ``Node`` (not listening) and a stand-in transport that records what the shell sends:
the clock mark is on disk before any message stamped past it leaves; a restarted node's
clock resumes above everything it stamped before, even with its wall clock behind; a
damaged mark refuses the start; seeds come from --seeds, --peers and --join.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from vfsd import codec
from vfsd.active.hlc import physical_ms
from vfsd.active.shell import (
    FLUSH_GAP_S,
    HIGH_WATER_FILE,
    STREAM_RECORDS,
    GossipShell,
    HighWaterError,
    read_high_water,
    seed_addresses,
)
from vfsd.config import Config
from vfsd.node import Node, StartupError
from vfsd.peers.counters import PeerCounters
from vfsd.peers.frame import MAX_FRAME_BYTES_LIMIT, FrameDecoder, FrameEncoder
from vfsd.store.keyspace import REV, VALUE

WALL_S = 1_700_000_000.0


class Clock:
    def __init__(self, now_s: float = WALL_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class StubTransport:
    """What the shell uses of a PeerTransport; ``on_send`` sees every message as it is handed over."""

    advertised_address = "127.0.0.1:17001"
    encoder = FrameEncoder()

    def __init__(self, on_send: Any = None) -> None:
        self.on_send = on_send
        self.sent: list[tuple[str | None, int, Any]] = []
        self.counters = PeerCounters()
        self.handler: Any = None
        self.peers: dict[str, tuple[str, int]] = {}

    def register(self, family: int, on_message: Any, **_: Any) -> None:
        self.handler = on_message

    def send(self, peer: str, family: int, mtype: int, body: Any) -> bool:
        return self._sent(peer, mtype, body)

    def send_joined(self, peer: str, family: int, mtype: int, head: list[Any], tail: bytes, tail_count: int) -> bool:
        frame = self.encoder.encode_joined(family, mtype, head, tail, tail_count)
        (decoded,) = FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES_LIMIT).feed(frame)  # the bytes a peer reads
        return self._sent(peer, mtype, decoded.body)

    def send_to_address(self, host: str, port: int, family: int, mtype: int, body: Any) -> bool:
        return self._sent(None, mtype, body)

    def _sent(self, to: str | None, mtype: int, body: Any) -> bool:
        if self.on_send is not None:
            self.on_send(body)
        self.sent.append((to, mtype, body))
        return True

    def connected(self, peer: str) -> bool:
        return peer in self.peers

    def add_peer(self, peer: str, host: str, port: int) -> None:
        self.peers[peer] = (host, port)

    def remove_peer(self, peer: str) -> None:
        self.peers.pop(peer, None)

    async def drain(self, peer: str, max_queued_bytes: int = 0) -> bool:
        return True


def node(tmp_path: Path, clock: Clock, **overrides: Any) -> Node:
    config = Config(node_id="a", data_dir=str(tmp_path / "a"), port=0, seeds="127.0.0.1:17002", save="",
                    **overrides)
    n = Node(config, clock=clock)
    n.data_dir.acquire()
    return n


def test_the_clock_mark_is_on_disk_before_a_message_stamped_past_it_leaves(tmp_path: Path) -> None:
    clock = Clock()
    n = node(tmp_path, clock)
    mark_path = tmp_path / "a" / HIGH_WATER_FILE
    checked: list[int] = []

    def on_send(body: Any) -> None:
        stamped = physical_ms(body[2])  # header: boot, seq, hlc, seen, view
        mark = read_high_water(mark_path)
        assert mark is not None and stamped <= mark
        checked.append(stamped)

    async def run() -> None:
        shell = GossipShell(n, StubTransport(on_send))  # type: ignore[arg-type]
        shell.start()  # joins the seed: a message at once
        for step in range(30):  # 30 s of clock, past several reservations of the mark
            clock.now_s += 1
            n.write_document(b"/run/a/%d" % step, {"step": step})
            shell._flush()
            shell._tick()
        await shell.stop()

    asyncio.run(run())
    assert checked and max(checked) > int(WALL_S * 1000) + 20_000


def test_a_lone_write_is_pushed_at_once_and_a_stream_in_batches_a_gap_apart(tmp_path: Path) -> None:
    n = node(tmp_path, Clock())

    async def run() -> None:
        shell = GossipShell(n, StubTransport())  # type: ignore[arg-type]
        shell.start()
        loop = asyncio.get_running_loop()
        flushes: list[tuple[float, int]] = []  # (loop time, paths written since the last push)
        push = shell._flush

        def flush() -> None:
            flushes.append((loop.time(), len(shell.written)))
            push()

        shell._flush = flush  # type: ignore[method-assign]
        await asyncio.sleep(0.02)
        n.write_document(b"/run/one", {"n": 1})
        await asyncio.sleep(0)  # one turn of the loop: the write's push has run
        assert flushes == [(flushes[0][0], 1)]
        n.write_document(b"/run/two", {"n": 2})  # right after a push of one path: at once as well
        await asyncio.sleep(0)
        assert len(flushes) == 2 and flushes[1][1] == 1
        for i in range(STREAM_RECORDS):  # a stream's batch: pushed at once (the last push was small)
            n.write_document(b"/run/s/%d" % i, {"i": i})
        await asyncio.sleep(0)
        assert len(flushes) == 3 and flushes[2][1] == STREAM_RECORDS
        n.write_document(b"/run/after", {"n": 3})  # after a stream's push: FLUSH_GAP_S after it
        await asyncio.sleep(0)
        assert len(flushes) == 3
        deadline = loop.time() + 5
        while len(flushes) < 4 and loop.time() < deadline:
            await asyncio.sleep(0.001)
        assert flushes[3][1] == 1 and flushes[3][0] - flushes[2][0] >= FLUSH_GAP_S
        await shell.stop()

    asyncio.run(run())


def test_a_restarted_node_stamps_above_its_earlier_writes_with_its_clock_behind(tmp_path: Path) -> None:
    clock = Clock()
    first = node(tmp_path, clock)

    async def write_and_stop(n: Node) -> int:
        shell = GossipShell(n, StubTransport())  # type: ignore[arg-type]
        shell.start()
        n.write_document(b"/run/a/x", {"v": 1})
        rev = n.keyspace.data[b"/run/a/x"][REV]
        shell._flush()  # the write leaves the node: from here on it must never be beaten by an older one
        await shell.stop()
        return rev

    before = asyncio.run(write_and_stop(first))
    first.data_dir.release()
    clock.now_s -= 120  # the wall clock went back two minutes; nothing was dumped
    second = node(tmp_path, clock)

    async def write_again(n: Node) -> int:
        shell = GossipShell(n, StubTransport())  # type: ignore[arg-type]
        shell.start()
        n.write_document(b"/run/a/x", {"v": 2})
        rev = n.keyspace.data[b"/run/a/x"][REV]
        await shell.stop()
        return rev

    assert asyncio.run(write_again(second)) > before
    second.data_dir.release()


def test_a_damaged_clock_mark_refuses_the_start_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / HIGH_WATER_FILE).write_text("{not json")
    with pytest.raises(HighWaterError, match=HIGH_WATER_FILE):
        read_high_water(tmp_path / "a" / HIGH_WATER_FILE)
    (tmp_path / "a" / HIGH_WATER_FILE).write_text(json.dumps({"high_water_ms": -5}))
    with pytest.raises(HighWaterError):
        read_high_water(tmp_path / "a" / HIGH_WATER_FILE)
    n = Node(Config(node_id="a", data_dir=str(tmp_path / "a"), port=0, peer_port=0, seeds="127.0.0.1:17002",
                    save=""), clock=Clock())

    async def start() -> None:
        try:
            await n.start()
        finally:
            await n.stop(save=False)

    with pytest.raises(StartupError, match="cannot start gossip.*gossip-clock.json"):
        asyncio.run(start())


def test_seeds_are_seeds_then_the_other_raft_peers_then_join_once_each() -> None:
    config = Config(node_id="b", seeds="10.0.0.9:17000,10.0.0.1:17001",
                    peers="a=10.0.0.1:17001,b=10.0.0.2:17001,c=[::1]:17001", join="10.0.0.3:17001")
    assert seed_addresses(config) == ["10.0.0.9:17000", "10.0.0.1:17001", "[::1]:17001", "10.0.0.3:17001"]
    assert seed_addresses(Config(node_id="a")) == []


def test_members_and_info_describe_the_cluster_as_this_node_sees_it(tmp_path: Path) -> None:
    clock = Clock()
    n = node(tmp_path, clock)

    async def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        shell = GossipShell(n, StubTransport())  # type: ignore[arg-type]
        shell.start()
        shell.agent.membership.on_alive("b", 7, 0, "127.0.0.1:17002", int(clock.now_s * 1000))
        shell._settle()
        members, info = shell.members(), shell.info()
        await shell.stop()
        return members, info

    members, info = asyncio.run(run())
    assert [(m["id"], m["state"], m["address"]) for m in members] == [
        ("a", "alive", "127.0.0.1:17001"), ("b", "alive", "127.0.0.1:17002")]
    assert info["members_alive"] == 2 and info["refused_total"] == 0 and info["gossip_profile"] == "lan"
    assert info["anti_entropy_deferred"] == info["anti_entropy_yielded"] == 0
    doc = codec.unpack(n.keyspace.data[b"/itg/b"][VALUE])
    assert (doc["state"], doc["observer"], doc["boot"]) == ("alive", "a", 7)
