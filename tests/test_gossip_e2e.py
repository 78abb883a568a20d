"""The active plane across five real ``vfsd serve`` processes on loopback, joined by gossip.

One cluster serves the whole module (``--seeds``, the ``local`` gossip profile so failure
detection takes seconds rather than tens of them). Every node's peer port sits behind a
fault-injecting proxy (tests/faultproxy.py) and advertises the proxy's address, so every
peer connection runs through it and a test can cut the network between groups of nodes.
Each test leaves the cluster whole: every node up and alive in everyone's ``/itg``.

What is checked: a write on one node is visible on all; a delete stays deleted; a node
stopped with SIGSTOP becomes suspect then dead in ``/itg/<node>`` on the others (watchable
with PSUBSCRIBE), and alive again after SIGCONT; a node killed with kill -9 and restarted
catches up; garbage, oversize, wrong-cluster and hostile gossip frames and timestamps from
the far future are refused and counted in INFO gossip while the node keeps serving; a
partition with writes and deletes on both sides converges after healing, deletes kept.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import VfsdProcess, free_port, wait_for
from tests.faultproxy import FaultProxy
from vfsd.active.wire import MsgType
from vfsd.peers.frame import GOSSIP, PEER
from vfsd.peers.transport import PeerTransport, PeerUnreachable

NODES = 5
#: With the local profile and five members: the first failed probe within about two probe
#: intervals (1 s each), then a suspicion of 3 s with one confirmation (18 s at most).
DEAD_WITHIN_S = 25.0
ALIVE_WITHIN_S = 10.0
CONVERGE_WITHIN_S = 10.0


class Cluster:
    def __init__(self, root: Path, proxy: FaultProxy, n: int = NODES) -> None:
        self.proxy = proxy
        self.nodes: dict[str, VfsdProcess] = {}
        self.peer_ports: dict[str, int] = {}
        advertised: dict[str, int] = {}
        for i in range(1, n + 1):
            name = f"n{i}"
            self.peer_ports[name] = free_port()
            advertised[name] = proxy.add(name, self.peer_ports[name])
        seeds = ",".join(f"127.0.0.1:{advertised[s]}" for s in ("n1", "n2"))
        for name in advertised:
            self.nodes[name] = VfsdProcess(
                root / name, "--node-id", name, "--peer-port", str(self.peer_ports[name]), "--seeds", seeds,
                env={"VFSD_GOSSIP_PROFILE": "local", "VFSD_PEER_ADVERTISE": f"127.0.0.1:{advertised[name]}"})
        self.clients: dict[str, redis.Redis] = {}

    def start(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda p: p.start(timeout=30), self.nodes.values()))
        self.clients = {name: p.client() for name, p in self.nodes.items()}

    def stop(self) -> None:
        for client in self.clients.values():
            client.close()
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(_quiet_stop, self.nodes.values()))

    def c(self, name: str) -> redis.Redis:
        return self.clients[name]

    def pid(self, name: str) -> int:
        proc = self.nodes[name].proc
        assert proc is not None
        return proc.pid

    def state_of(self, observer: str, name: str) -> str | None:
        raw = self.c(observer).execute_command("JSON.GET", f"/itg/{name}")
        return None if raw is None else json.loads(raw)["state"]

    def wait_all(self, predicate: Callable[[str], bool], names: list[str] | None = None, timeout: float = 10.0,
                 what: str = "condition") -> None:
        wait_for(lambda: all(predicate(n) for n in (names or list(self.nodes))), timeout=timeout, interval=0.05,
                 what=what)

    def wait_whole(self, timeout: float = ALIVE_WITHIN_S) -> None:
        """Every node sees every node alive, in /itg and in its membership."""
        names = list(self.nodes)

        def whole(observer: str) -> bool:
            info = gossip_info(self.c(observer))
            return int(info["members_alive"]) == len(names) and all(self.state_of(observer, n) == "alive"
                                                                      for n in names)

        self.wait_all(whole, timeout=timeout, what="every member alive on every node")


def _quiet_stop(proc: VfsdProcess) -> None:
    try:
        proc.stop()
    except AssertionError:
        pass


def gossip_info(client: redis.Redis) -> dict[str, Any]:
    return client.info("gossip")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    proxy = FaultProxy()
    c = Cluster(tmp_path_factory.mktemp("gossip"), proxy)
    try:
        c.start()
        c.wait_whole(timeout=20)
        yield c
    finally:
        c.stop()
        proxy.close()


@pytest.fixture
def whole(cluster: Cluster) -> Iterator[Cluster]:
    cluster.wait_whole()
    yield cluster


def values_everywhere(c: Cluster, key: str) -> set[bytes | None]:
    return {c.c(n).get(key) for n in c.nodes}


# -- replication -------------------------------------------------------------------------------


def test_a_write_on_one_node_is_visible_on_every_node(whole: Cluster) -> None:
    c = whole
    c.c("n3").set("/run/e2e/hello", "from n3")
    c.c("n5").execute_command("JSON.SET", "/hw/e2e/doc", "$", '{"cores": 8}')
    c.c("n1").hset("/run/e2e/hash", mapping={"a": "1", "b": "2"})
    c.wait_all(lambda n: c.c(n).get("/run/e2e/hello") == b"from n3", what="/run/e2e/hello on every node")
    c.wait_all(lambda n: c.c(n).execute_command("JSON.GET", "/hw/e2e/doc", ".cores") == b"8",
               what="/hw/e2e/doc on every node")
    c.wait_all(lambda n: c.c(n).hgetall("/run/e2e/hash") == {b"a": b"1", b"b": b"2"}, what="the hash everywhere")
    # The same revision and origin everywhere: the remote copy is the write itself, not a rewrite.
    versions = set()
    for n in c.nodes:
        stat = c.c(n).execute_command("VFS.STAT", "/run/e2e/hello")
        fields = dict(zip(stat[::2], stat[1::2]))
        versions.add((fields[b"revision"], fields[b"origin"]))
    assert len(versions) == 1 and next(iter(versions))[1] == b"n3", versions


def test_a_delete_stays_deleted_on_every_node(whole: Cluster) -> None:
    c = whole
    c.c("n1").set("/run/e2e/doomed", "x")
    c.wait_all(lambda n: c.c(n).get("/run/e2e/doomed") == b"x", what="/run/e2e/doomed everywhere")
    collected = {n: int(gossip_info(c.c(n)).get("tombstones_collected", 0)) for n in c.nodes}
    assert c.c("n4").delete("/run/e2e/doomed") == 1
    c.wait_all(lambda n: c.c(n).exists("/run/e2e/doomed") == 0, what="the delete everywhere")
    # Through several anti-entropy rounds (1 s each in this profile) nobody brings it back.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert values_everywhere(c, "/run/e2e/doomed") == {None}
        time.sleep(0.1)
    # Once every member has acknowledged the delete, every node collects its tombstone, and
    # the key stays deleted without it.
    c.wait_all(lambda n: int(gossip_info(c.c(n)).get("tombstones_collected", 0)) > collected[n],
               timeout=CONVERGE_WITHIN_S, what="the tombstone collected everywhere")
    assert values_everywhere(c, "/run/e2e/doomed") == {None}


def test_a_replicated_write_raises_keyspace_notifications(whole: Cluster) -> None:
    c = whole
    pubsub = c.c("n2").pubsub()
    pubsub.psubscribe("__keyspace@0__:/run/e2e/watched*")
    assert wait_for(lambda: pubsub.get_message(timeout=0.1), what="psubscribe confirmation")["type"] == "psubscribe"
    c.c("n5").set("/run/e2e/watched", "v")
    c.c("n5").delete("/run/e2e/watched")
    events: list[bytes] = []

    def both() -> bool:
        message = pubsub.get_message(timeout=0.1)
        if message is not None and message["type"] == "pmessage":
            events.append(message["data"])
        return b"del" in events

    wait_for(both, what="set and del notifications on n2")
    assert events == [b"set", b"del"]
    pubsub.close()


# -- failure detection ---------------------------------------------------------------------------


def test_a_stopped_node_turns_suspect_then_dead_and_alive_again_after_sigcont(whole: Cluster) -> None:
    c = whole
    watcher = c.c("n1").pubsub()
    watcher.psubscribe("__keyspace@0__:/itg/*")
    wait_for(lambda: watcher.get_message(timeout=0.1), what="psubscribe confirmation")
    before = json.loads(c.c("n1").execute_command("JSON.GET", "/itg/n4"))
    others = ["n1", "n2", "n3", "n5"]
    seen: list[str] = []
    started = time.monotonic()
    os.kill(c.pid("n4"), signal.SIGSTOP)
    try:
        def dead_on_n1() -> bool:
            state = c.state_of("n1", "n4")
            if state is not None and (not seen or seen[-1] != state):
                seen.append(state)
            return state == "dead"

        wait_for(dead_on_n1, timeout=DEAD_WITHIN_S, interval=0.02, what="n4 dead in n1's /itg")
        detected_s = time.monotonic() - started
        c.wait_all(lambda n: c.state_of(n, "n4") == "dead", names=others, timeout=5, what="n4 dead everywhere")
        assert "suspect" in seen and seen.index("suspect") < seen.index("dead"), seen
        assert detected_s < DEAD_WITHIN_S
        # /itg/n4 on n2 may be n1's replicated document before n2's own membership hears of
        # the death (the dead rumour follows within a gossip round or two): wait for it.
        wait_for(lambda: int(gossip_info(c.c("n2"))["members_dead"]) == 1, timeout=5,
                 what="n4 dead in n2's membership table")
    finally:
        os.kill(c.pid("n4"), signal.SIGCONT)
    c.wait_all(lambda n: c.state_of(n, "n4") == "alive", names=others, timeout=ALIVE_WITHIN_S,
               what="n4 alive again")
    after = json.loads(c.c("n1").execute_command("JSON.GET", "/itg/n4"))
    assert after["incarnation"] > before["incarnation"]  # it refuted its death
    assert after["boot"] == before["boot"]  # the same process, not a restart
    events = []
    while (message := watcher.get_message(timeout=0.05)) is not None:
        if message["type"] == "pmessage" and message["channel"] == b"__keyspace@0__:/itg/n4":
            events.append(message["data"])
    assert events.count(b"json.set") >= 3  # suspect, dead, alive (at least)
    watcher.close()
    # The node serves and replicates as before.
    c.c("n4").set("/run/e2e/after-stop", "ok")
    c.wait_all(lambda n: c.c(n).get("/run/e2e/after-stop") == b"ok", what="n4's write everywhere")


def test_a_node_killed_and_restarted_catches_up(whole: Cluster) -> None:
    c = whole
    c.c("n2").set("/run/e2e/old", "before the crash")
    c.wait_all(lambda n: c.c(n).get("/run/e2e/old") == b"before the crash", what="/run/e2e/old everywhere")
    old_boot = json.loads(c.c("n1").execute_command("JSON.GET", "/itg/n5"))["boot"]
    c.clients["n5"].close()
    c.nodes["n5"].kill9()
    for i in range(50):
        c.c("n1").set(f"/run/e2e/while-down/{i}", str(i))
    c.c("n3").delete("/run/e2e/old")
    c.nodes["n5"].restart()
    c.clients["n5"] = c.nodes["n5"].client()
    five = c.c("n5")
    wait_for(lambda: all(five.get(f"/run/e2e/while-down/{i}") == str(i).encode() for i in range(50)),
             timeout=CONVERGE_WITHIN_S, what="n5 has every write made while it was down")
    wait_for(lambda: five.exists("/run/e2e/old") == 0, timeout=CONVERGE_WITHIN_S, what="n5 has the delete")
    c.wait_all(lambda n: c.state_of(n, "n5") == "alive", timeout=ALIVE_WITHIN_S, what="n5 alive everywhere")
    assert json.loads(c.c("n1").execute_command("JSON.GET", "/itg/n5"))["boot"] > old_boot  # a new identity


def test_a_delete_made_while_a_node_was_away_holds_when_it_comes_back_with_its_dump(whole: Cluster) -> None:
    c = whole
    c.c("n2").set("/run/e2e/zombie", "written by n2")
    c.c("n2").set("/run/e2e/kept", "written by n2")
    c.wait_all(lambda n: c.c(n).exists("/run/e2e/zombie", "/run/e2e/kept") == 2, what="n2's writes everywhere")
    c.clients["n2"].close()
    assert c.nodes["n2"].stop() == 0  # SIGTERM: the dump holds both paths
    assert c.c("n1").delete("/run/e2e/zombie") == 1
    c.nodes["n2"].restart()
    c.clients["n2"] = c.nodes["n2"].client()
    c.wait_whole()
    c.wait_all(lambda n: c.c(n).exists("/run/e2e/zombie") == 0 and c.c(n).get("/run/e2e/kept") == b"written by n2",
               timeout=CONVERGE_WITHIN_S, what="the delete everywhere, n2's other write kept")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # through the anti-entropy rounds that follow
        assert values_everywhere(c, "/run/e2e/zombie") == {None}
        time.sleep(0.1)


def test_a_node_that_leaves_is_left_at_once_and_its_documents_go_when_it_is_forgotten(whole: Cluster) -> None:
    c = whole
    three = c.c("n3")
    three.execute_command("JSON.SET", "/hw/n3/e2e", "$", '{"cores": 2}')  # as its Props collector would
    three.execute_command("JSON.SET", "/sum/n3", "$", '{"load": 0.5}')
    c.wait_all(lambda n: c.c(n).exists("/hw/n3/e2e", "/sum/n3") == 2, what="n3's documents everywhere")
    others = ["n1", "n2", "n4", "n5"]
    c.clients["n3"].close()
    left_at = time.monotonic()
    assert c.nodes["n3"].stop() == 0  # SIGTERM: a graceful leave
    c.wait_all(lambda n: c.state_of(n, "n3") == "left", names=others, timeout=5, what="n3 left, not dead")
    assert time.monotonic() - left_at < 5
    # Kept while it is gone (marked stale by /itg/n3), deleted everywhere once it is forgotten
    # (left_grace_ms after it left: 15 s in the local profile).
    assert all(c.c(n).exists("/hw/n3/e2e", "/sum/n3") == 2 for n in others)
    c.wait_all(lambda n: c.c(n).exists("/hw/n3/e2e", "/sum/n3", "/itg/n3") == 0, names=others, timeout=30,
               what="n3's documents deleted once it was reaped")
    assert time.monotonic() - left_at > 10
    c.nodes["n3"].restart()
    c.clients["n3"] = c.nodes["n3"].client()
    c.wait_whole(timeout=15)  # back as a new member


# -- bad input on the peer port --------------------------------------------------------------------

def _raw_peer(port: int, data: bytes) -> bytes:
    """Send ``data`` to a peer port and read until it closes (what it answered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return got


async def _hostile_peer(port: int, target: str) -> None:
    """A peer of another cluster (refused at its HELLO), then one of ours that sends bad gossip."""
    stranger = PeerTransport("stranger", "stranger-1", "another-cluster", port=0)
    stranger.register(GOSSIP, lambda *a: None)
    await stranger.start()
    try:
        with pytest.raises(PeerUnreachable):
            await stranger.dial("127.0.0.1", port)
    finally:
        await stranger.stop()
    intruder = PeerTransport("intruder", "intruder-1", "vfsd", port=0)
    intruder.register(GOSSIP, lambda *a: None)
    await intruder.start()
    try:
        peer = await intruder.dial("127.0.0.1", port)
        assert peer == target
        far_future = (int(time.time() * 1000) + 86_400_000) << 16
        now = int(time.time() * 1000) << 16
        sends = [
            (MsgType.PING, "not a message"),  # malformed
            (MsgType.PING, [7, 1, far_future, 0, 0, 1, target, []]),  # a clock a day ahead
            # A record of a kind no node stores, under a replicated root: never applied, never relayed.
            (MsgType.GOSSIP, [7, 2, now, 0, 0, [], ["intruder"], [[b"/hw/evil"], [now], [0], [99], [b"x"], [0]]]),
            (MsgType.GOSSIP, [7, 3, now, 0, 0, [], ["intruder"], [[b"not-a-path"], [now], [0], [0], [b"x"], [0]]]),
        ]
        for mtype, body in sends:
            assert intruder.send(peer, GOSSIP, int(mtype), body)
        assert await intruder.drain(peer)
        await asyncio.sleep(0.2)  # let the frames arrive before the connection closes
    finally:
        await intruder.stop()


def test_bad_gossip_input_is_refused_and_counted_and_the_node_keeps_serving(whole: Cluster) -> None:
    c = whole
    port = c.peer_ports["n2"]  # the node's own peer port, not the proxy
    before = gossip_info(c.c("n2"))
    # Garbage: not vfsd frames at all. Oversize: a HELLO header announcing 2 GiB.
    _raw_peer(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _raw_peer(port, struct.pack(">IBBH", 2**31, 1, PEER, 1) + b"\x00" * 64)
    asyncio.run(_hostile_peer(port, "n2"))
    info = wait_for(lambda: (i := gossip_info(c.c("n2")))["refused_unknown_kind"] > before["refused_unknown_kind"]
                    and i, what="the hostile gossip counted")
    for field in ("peer_refused_garbage", "peer_refused_oversize", "peer_refused_cluster", "refused_malformed",
                  "refused_clock_drift", "refused_unknown_kind", "refused_bad_key"):
        assert info[field] > before[field], field
    assert info["max_hlc_drift_ms"] >= 86_000_000
    # Nothing of it was applied or relayed, and the clocks did not jump a day.
    assert values_everywhere(c, "/hw/evil") == {None}
    assert int(info["hlc_ms"]) < time.time() * 1000 + 60_000
    c.c("n2").set("/run/e2e/still-serving", "yes")
    c.wait_all(lambda n: c.c(n).get("/run/e2e/still-serving") == b"yes", what="n2 still replicates")


def test_flushall_on_one_node_empties_the_active_plane_everywhere_and_membership_writes_itg_again(
        whole: Cluster) -> None:
    c = whole
    c.c("n1").set("/run/e2e/flushed", "x")
    c.c("n1").set("local-key", "stays")  # a local key: that node's alone
    c.wait_all(lambda n: c.c(n).exists("/run/e2e/flushed") == 1, what="/run/e2e/flushed everywhere")
    c.c("n2").flushall()
    c.wait_all(lambda n: not any(k.startswith(b"/run/") for k in c.c(n).keys("/run/*")), what="/run empty everywhere")
    assert c.c("n1").get("local-key") == b"stays"
    c.wait_whole(timeout=15)  # every /itg/<node> written again (they are checked every 5 s)


# -- partition ---------------------------------------------------------------------------------------


def test_a_partition_with_writes_and_deletes_on_both_sides_converges_after_healing(whole: Cluster) -> None:
    c = whole
    side_a, side_b = ["n1", "n2"], ["n3", "n4", "n5"]
    c.c("n1").set("/run/p/shared", "before")
    c.c("n1").set("/run/p/deleted-by-b", "x")
    c.c("n3").set("/run/p/deleted-by-a", "y")
    for key in ("/run/p/shared", "/run/p/deleted-by-b", "/run/p/deleted-by-a"):
        c.wait_all(lambda n, k=key: c.c(n).exists(k) == 1, what=f"{key} everywhere")
    c.proxy.partition(set(side_a), set(side_b))
    try:
        c.c("n1").set("/run/p/from-a", "a")
        c.c("n2").delete("/run/p/deleted-by-a")
        c.c("n1").set("/run/p/shared", "a")
        c.c("n4").set("/run/p/from-b", "b")
        c.c("n3").delete("/run/p/deleted-by-b")
        c.c("n5").set("/run/p/shared", "b")  # concurrent with a's: one of the two wins, the same everywhere
        c.wait_all(lambda n: c.state_of(n, "n3") == "dead", names=side_a, timeout=DEAD_WITHIN_S,
                   what="side a sees n3 dead")
        c.wait_all(lambda n: c.state_of(n, "n1") == "dead", names=side_b, timeout=DEAD_WITHIN_S,
                   what="side b sees n1 dead")
        # Each side kept its own changes and saw none of the other's.
        assert {c.c(n).get("/run/p/from-b") for n in side_a} == {None}
        assert {c.c(n).get("/run/p/from-a") for n in side_b} == {None}
        assert {c.c(n).get("/run/p/shared") for n in side_a} == {b"a"}
    finally:
        c.proxy.heal()
    healed = time.monotonic()

    def converged(n: str) -> bool:
        r = c.c(n)
        return (r.get("/run/p/from-a") == b"a" and r.get("/run/p/from-b") == b"b"
                and r.exists("/run/p/deleted-by-a", "/run/p/deleted-by-b") == 0)

    try:
        c.wait_all(converged, timeout=CONVERGE_WITHIN_S, what="both sides' changes everywhere")
    except AssertionError as exc:
        keys = ["/run/p/from-a", "/run/p/from-b", "/run/p/shared", "/run/p/deleted-by-a", "/run/p/deleted-by-b"]
        seen = {n: (c.c(n).mget(keys), {k: v for k, v in gossip_info(c.c(n)).items() if k.startswith("members_")})
                for n in c.nodes}
        raise AssertionError(f"{exc}; each node holds {seen}") from None
    # The two writes of /run/p/shared were concurrent (neither side saw the other's): last-writer-wins
    # by hybrid logical clock picks one, and every node agrees on which.
    wait_for(lambda: len(values_everywhere(c, "/run/p/shared")) == 1, timeout=CONVERGE_WITHIN_S,
             what="one value of /run/p/shared everywhere")
    assert values_everywhere(c, "/run/p/shared") <= {b"a", b"b"}
    converge_s = time.monotonic() - healed
    c.wait_whole()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # the deletes hold through the repair that follows
        assert values_everywhere(c, "/run/p/deleted-by-a") == {None}
        assert values_everywhere(c, "/run/p/deleted-by-b") == {None}
        time.sleep(0.1)
    assert converge_s < CONVERGE_WITHIN_S
