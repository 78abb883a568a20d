"""The gossip agent (vfsd.active.agent): what the shell sees, message by message.

Two or three agents wired by hand: every frame one hands out is passed to another
explicitly, so each test shows exactly what crosses the wire.
"""

from __future__ import annotations

import random

from vfsd.active.agent import GossipAgent, Ready
from vfsd.active.gossip import PULL_WINDOW, YIELD_RECORDS
from vfsd.active.hlc import HLC, physical_ms
from vfsd.active.profile import LAN
from vfsd.active.wire import MsgType
from vfsd.sim.gossip import MemoryStore

T0 = 1_700_000_000_000


class Node:
    def __init__(self, name: str, seed: int = 1, hlc: HLC | None = None) -> None:
        self.name = name
        self.store = MemoryStore()
        self.hlc = hlc or HLC()
        self.agent = GossipAgent(name, f"{name}:7946", self.store, self.hlc, random.Random(seed), T0)
        self.persisted: int | None = None

    def ready(self) -> Ready:
        r = self.agent.ready()
        if r.persist_high_water_ms is not None:
            self.persisted = r.persist_high_water_ms
        return r

    def write(self, key: bytes, value: bytes, now: int) -> None:
        old = self.store.version(key)
        rev = self.hlc.now(now)
        self.store.data[key] = (0, value, rev, self.name, 0)
        self.agent.wrote(key, old, rev)
        self.agent.flush(now)


def pump(nodes: dict[str, Node], now: int, rounds: int = 50, drop: set[int] | None = None) -> None:
    """Deliver every message until the cluster is quiet (addresses resolve to names)."""
    for _ in range(rounds):
        moved = False
        for node in list(nodes.values()):
            for out in node.ready().messages:
                to = out.to or out.address.split(":")[0]  # type: ignore[union-attr]
                if to in nodes and (drop is None or out.type not in drop):
                    nodes[to].agent.receive(node.name, out.type, out.body, now)
                    moved = True
        if not moved:
            return


def joined(n: int = 3) -> dict[str, Node]:
    nodes = {f"n{i}": Node(f"n{i}", seed=i) for i in range(n)}
    for name, node in nodes.items():
        if name != "n0":
            node.agent.join(["n0:7946"], T0)
    pump(nodes, T0)
    for node in nodes.values():
        node.agent.tick(T0 + 10)
    pump(nodes, T0 + 10)
    return nodes


def test_join_through_a_seed_teaches_everyone_everyone() -> None:
    nodes = joined(3)
    for node in nodes.values():
        assert node.agent.membership.alive_count() == 3
        assert not node.agent.replica.fresh


def test_the_first_ready_asks_to_persist_a_high_water_mark_before_anything_is_sent() -> None:
    node = Node("n0")
    node.agent.join(["n1:7946"], T0)
    ready = node.ready()
    assert ready.messages and ready.persist_high_water_ms is not None
    newest = max(out.body[2] for out in ready.messages)  # header.hlc
    assert physical_ms(newest) <= ready.persist_high_water_ms
    assert node.ready().persist_high_water_ms is None  # reserved: no disk write per message


def test_a_local_write_is_pushed_at_once_and_rewrites_coalesce() -> None:
    nodes = joined(3)
    a = nodes["n0"]
    for i in range(50):  # a collector rewriting one path in a burst: only the last value travels
        old = a.store.version(b"/sum/n0/cpu")
        rev = a.hlc.now(T0 + 20)
        a.store.data[b"/sum/n0/cpu"] = (0, b"%d" % i, rev, "n0", 0)
        a.agent.wrote(b"/sum/n0/cpu", old, rev)
    a.agent.flush(T0 + 20)
    ready = a.ready()
    gossip = [o for o in ready.messages if o.type == MsgType.GOSSIP]
    assert {o.to for o in gossip} == {"n1", "n2"}
    keys, _hlcs, _origins, _kinds, values, _deadlines = gossip[0].body[5 + 2]  # the records' columns
    assert keys == [b"/sum/n0/cpu"] and values == [b"49"]


def test_records_from_an_unknown_sender_or_an_old_identity_are_refused() -> None:
    nodes = joined(2)
    b = nodes["n1"]
    a = nodes["n0"]
    a.write(b"/run/x", b"1", T0 + 30)
    (out,) = [o for o in a.ready().messages if o.type == MsgType.GOSSIP]
    b.agent.receive("stranger", out.type, out.body, T0 + 31)
    assert b.agent.counters["refused_unknown_sender"] == 1 and b"/run/x" not in b.store.data
    old = list(out.body)
    old[0] = a.agent.boot - 1  # an older process of n0
    b.agent.receive("n0", out.type, old, T0 + 31)
    assert b.agent.counters["refused_stale_identity"] == 1 and b"/run/x" not in b.store.data
    b.agent.receive("n0", out.type, out.body, T0 + 31)
    assert b.store.data[b"/run/x"][1] == b"1"


def test_a_data_message_overtaken_by_a_later_one_from_its_sender_is_dropped() -> None:
    nodes = joined(2)
    a, b = nodes["n0"], nodes["n1"]
    a.write(b"/run/x", b"first", T0 + 40)
    first = [o for o in a.ready().messages if o.type == MsgType.GOSSIP][0]
    a.write(b"/run/y", b"second", T0 + 41)
    second = [o for o in a.ready().messages if o.type == MsgType.GOSSIP][0]
    b.agent.receive("n0", second.type, second.body, T0 + 42)
    b.agent.receive("n0", first.type, first.body, T0 + 43)  # arrived late: it might carry stale state
    assert b.agent.counters["refused_overtaken"] == 1
    assert b"/run/y" in b.store.data and b"/run/x" not in b.store.data
    b.agent.receive("n0", second.type, second.body, T0 + 44)  # a duplicate is dropped the same way
    assert b.agent.counters["refused_overtaken"] == 2


def test_a_fresh_replica_refuses_pushes_until_its_first_pull_is_answered() -> None:
    nodes = joined(2)
    a = nodes["n0"]
    late = Node("n2", seed=9)
    late.agent.membership.on_alive("n0", a.agent.boot, 0, "n0:7946", T0)
    a.agent.membership.on_alive("n2", late.agent.boot, 0, "n2:7946", T0)
    a.write(b"/run/x", b"1", T0 + 50)
    for out in a.ready().messages:
        if out.to == "n2" and out.type == MsgType.GOSSIP:
            late.agent.receive("n0", out.type, out.body, T0 + 51)
    assert late.agent.counters.get("refused_fresh") == 1 and not late.store.data


def test_what_a_node_wrote_alone_is_restamped_when_it_joins() -> None:
    seed_node = Node("n0")
    seed_node.hlc.now(T0 + 120_000)  # the cluster's clock is two minutes ahead of ours
    alone = Node("n1", seed=2)
    alone.write(b"/hw/n1/cpu", b"inventory", T0)
    before = alone.store.version(b"/hw/n1/cpu")
    assert not [o for o in alone.ready().messages if o.type == MsgType.GOSSIP]  # nothing pushed alone
    nodes = {"n0": seed_node, "n1": alone}
    alone.agent.join(["n0:7946"], T0)
    pump(nodes, T0)  # the seed pulls from the newcomer at once, too
    after = alone.store.version(b"/hw/n1/cpu")
    assert after is not None and after[0] > before[0] and after[0] > seed_node.hlc.last - (1 << 16) * 1000
    assert seed_node.store.data[b"/hw/n1/cpu"][1] == b"inventory"


def test_stats_name_everything_info_gossip_reports() -> None:
    nodes = joined(2)
    stats = nodes["n0"].agent.stats()
    for key in ("members_alive", "members_suspect", "members_dead", "members_left", "records", "tombstones",
                "queued_paths", "max_drift_ms_seen", "messages_sent", "health", "incarnation"):
        assert key in stats
    assert stats["members_alive"] == 2


def test_seeds_that_never_answer_are_retried() -> None:
    node = Node("n0")
    node.agent.join(["n9:7946"], T0)
    first = [o for o in node.ready().messages if o.address == "n9:7946"]
    assert len(first) == 1
    node.agent.tick(T0 + 10 * LAN.probe_interval_ms)
    again = [o for o in node.ready().messages if o.address == "n9:7946"]
    assert len(again) == 1


def test_in_a_small_cluster_a_push_reaches_everyone_and_is_neither_retransmitted_nor_relayed() -> None:
    nodes = joined(5)  # 4 peers each: within push_nodes, so every push goes to all of them
    a = nodes["n0"]
    a.write(b"/run/x", b"1", T0 + 20)
    pushes = [o for o in a.ready().messages if o.type == MsgType.GOSSIP]
    assert {o.to for o in pushes} == {"n1", "n2", "n3", "n4"}
    assert not a.agent.replica.queue  # sent to everyone: nothing left to retransmit
    for out in pushes:
        nodes[out.to].agent.receive("n0", out.type, out.body, T0 + 21)
    for name in ("n1", "n2", "n3", "n4"):
        node = nodes[name]
        assert node.store.data[b"/run/x"][1] == b"1"
        assert not node.agent.replica.queue  # every other member has it already: no relay
        node.agent.tick(T0 + 400)  # the next gossip round carries no record
        assert not [o for o in node.ready().messages if o.type == MsgType.GOSSIP and o.body[5 + 2][0]]


def test_in_a_large_cluster_a_push_goes_to_push_nodes_members_and_the_epidemic_does_the_rest() -> None:
    nodes = joined(12)
    a = nodes["n0"]
    a.write(b"/run/y", b"2", T0 + 20)
    pushes = [o for o in a.ready().messages if o.type == MsgType.GOSSIP]
    assert len(pushes) == LAN.push_nodes < 11  # (8 sends: its retransmit limit for 12 members, used up at once)
    first = nodes[pushes[0].to]
    first.agent.receive("n0", pushes[0].type, pushes[0].body, T0 + 21)
    assert b"/run/y" in first.agent.replica.queue  # relayed: not every member has it
    pump(nodes, T0 + 21)
    for t in range(1, 20):
        for node in nodes.values():
            node.agent.tick(T0 + 21 + t * LAN.gossip_interval_ms)
        pump(nodes, T0 + 21 + t * LAN.gossip_interval_ms)
    assert all(n.store.data.get(b"/run/y", (0, None))[1] == b"2" for n in nodes.values())


def test_a_stream_of_pushes_defers_the_periodic_pull_but_not_past_its_bound() -> None:
    nodes = joined(3)
    replica = nodes["n0"].agent.replica
    now = T0 + 100
    pulls_at: list[int] = []
    for _ in range(2 * LAN.sync_busy_max_ms // LAN.sync_interval_ms):
        replica.stream_records += LAN.sync_busy_records  # a stream of writes, every interval
        now += LAN.sync_interval_ms
        started = replica.counters.get("pulls_started", 0)
        for node in nodes.values():
            node.agent.tick(now)
        if replica.counters.get("pulls_started", 0) > started:
            pulls_at.append(now)
        pump(nodes, now)
    assert replica.counters.get("pulls_deferred", 0) >= len(pulls_at) * 10
    gaps = [b - a for a, b in zip(pulls_at, pulls_at[1:])]
    assert gaps and all(LAN.sync_busy_max_ms <= g <= LAN.sync_busy_max_ms + LAN.sync_interval_ms for g in gaps)
    # Once the stream eases, the next interval pulls again.
    before = replica.counters.get("pulls_started", 0)
    nodes["n0"].agent.tick(now + LAN.sync_interval_ms)
    assert replica.counters.get("pulls_started", 0) == before + 1
    assert all(n.agent.membership.alive_count() == 3 for n in nodes.values())


def test_a_periodic_pull_gives_way_to_a_stream_that_begins_while_it_runs() -> None:
    nodes = joined(3)
    a = nodes["n0"]
    replica = a.agent.replica
    assert replica.last_sync_ms >= T0  # the join's pull, completed, counts as the last one
    a.agent.tick(replica.next_sync_ms)  # a periodic pull in quiet times: it completes
    replica.stream_records += YIELD_RECORDS - 1  # (a trickle of writes does not stop it)
    pump(nodes, replica.next_sync_ms)
    assert replica.counters.get("pulls_yielded", 0) == 0
    last = replica.last_sync_ms
    now = replica.next_sync_ms
    a.agent.tick(now)  # the next quiet interval ended: the periodic pull starts
    assert replica.pulls and replica.counters.get("pulls_started", 0) >= 1
    completed = replica.counters.get("pulls_completed", 0)
    replica.stream_records += YIELD_RECORDS  # ... and a stream begins before the first reply
    pump(nodes, now)
    assert replica.counters.get("pulls_yielded", 0) == 1
    assert not replica.pulls and replica.counters.get("pulls_completed", 0) == completed
    assert replica.last_sync_ms == last  # given up as if never made: the deferral's bound counts from before it
    # The stream goes on: the next interval was busy, so it is deferred, not pulled.
    replica.stream_records += LAN.sync_busy_records
    now = replica.next_sync_ms
    started = replica.counters.get("pulls_started", 0)
    a.agent.tick(now)
    assert replica.counters.get("pulls_started", 0) == started
    assert replica.counters.get("pulls_deferred", 0) == 1
    # Once the deferral reaches its bound the pull runs, stream or not, to its end.
    replica.last_sync_ms = now - LAN.sync_busy_max_ms
    replica.stream_records += LAN.sync_busy_records
    now = replica.next_sync_ms
    a.agent.tick(now)
    replica.stream_records += LAN.sync_busy_records
    pump(nodes, now)
    assert replica.counters.get("pulls_completed", 0) == completed + 1
    assert replica.counters.get("pulls_yielded", 0) == 1


def test_the_repair_pull_of_a_refuted_suspect_gives_way_to_a_stream_but_not_that_of_a_dead_member() -> None:
    nodes = joined(3)
    a = nodes["n0"]
    replica, members = a.agent.replica, a.agent.membership

    def comes_back(via_dead: bool, now: int) -> None:
        m = members.get("n1")
        assert m is not None
        (members.on_dead if via_dead else members.on_suspect)("n1", m.boot, m.incarnation, "n2", now)
        members.on_alive("n1", m.boot, m.incarnation + 1, m.address, now)
        a.agent.tick(now)  # (acts on the membership events: the repair pull from n1 starts)
        assert [p.peer for p in replica.pulls.values()] == ["n1"]
        replica.stream_records += YIELD_RECORDS  # a stream of writes goes on meanwhile
        pump(nodes, now)

    completed = replica.counters.get("pulls_completed", 0)
    comes_back(via_dead=False, now=T0 + 20)  # still pushed to while suspect: the stream's pushes cover it
    assert replica.counters.get("pulls_yielded", 0) == 1 and not replica.pulls
    comes_back(via_dead=True, now=T0 + 30)  # pushed nothing while dead: repaired now, stream or not
    assert replica.counters.get("pulls_completed", 0) == completed + 1
    assert replica.counters.get("pulls_yielded", 0) == 1


def test_a_batch_larger_than_one_push_goes_newest_first_over_several_pushes_each_path_once() -> None:
    nodes = joined(3)
    a = nodes["n0"]
    value = b"v" * 1000
    keys = [b"/run/batch/%03d" % i for i in range(200)]  # ~200 KB: more than gossip_max_bytes (64 KiB)
    for key in keys:  # one batch of writes (marked), then the pushes
        a.store.data[key] = (0, value, a.hlc.now(T0 + 20), "n0", 0)
        a.agent.wrote(key, None, a.store.data[key][2])
    sent: list[list[bytes]] = []
    for step in range(10):
        a.agent.flush(T0 + 20 + step)
        pushes = [o for o in a.ready().messages if o.type == MsgType.GOSSIP and o.body[5 + 2][0]]
        if not pushes:
            break
        assert {o.to for o in pushes} == {"n1", "n2"}
        assert pushes[0].body[5 + 2] is pushes[1].body[5 + 2]  # one payload for both peers
        batch = pushes[0].body[5 + 2][0]  # the keys column
        assert sum(len(k) + len(value) for k in batch) <= LAN.gossip_max_bytes
        sent.append(batch)
        for out in pushes:
            nodes[out.to].agent.receive("n0", out.type, out.body, T0 + 21 + step)
    assert len(sent) == 4 and sent[0][0] == keys[-1]  # newest first; ~64 per push
    assert sorted(k for batch in sent for k in batch) == keys  # every path once, none twice
    assert not a.agent.replica.queue
    for name in ("n1", "n2"):
        assert all(nodes[name].store.data[k][1] == value for k in keys)


def test_a_pull_that_finds_thousands_of_buckets_changed_keeps_a_window_of_requests() -> None:
    nodes = joined(2)
    a, b = nodes["n0"], nodes["n1"]
    keys = [b"/run/w/%05d" % i for i in range(6000)]
    for key in keys:  # both hold every key ...
        a.write(key, b"old", T0 + 20)
    pump(nodes, T0 + 20)
    assert b.agent.replica.digest.root() == a.agent.replica.digest.root()
    for key in keys:  # ... then every one is rewritten on a, its pushes lost
        old = a.store.version(key)
        rev = a.hlc.now(T0 + 30)
        a.store.data[key] = (0, b"new", rev, "n0", 0)
        a.agent.wrote(key, old, rev)
    a.agent.flush(T0 + 30)
    a.ready()
    b.agent.replica.pull("n0", T0 + 40)
    b.agent.tick(T0 + 40)  # (the agent hands out what its cores queued)
    most = 0
    for step in range(2000):
        sent = b.ready().messages
        asks = [o for o in sent if o.type in (MsgType.SYNC_DESCEND, MsgType.SYNC_VERSIONS)]
        pulls = list(b.agent.replica.pulls.values())
        most = max(most, len(asks), *(p.pending for p in pulls))
        for out in sent:
            a.agent.receive("n1", out.type, out.body, T0 + 40 + step)
        for out in a.ready().messages:
            b.agent.receive("n0", out.type, out.body, T0 + 40 + step)
        if not pulls:
            break
    assert most == PULL_WINDOW  # full, never more: 6000 keys make 256 version lists at level 2
    assert b.agent.replica.counters.get("pulls_completed", 0) >= 1
    assert b.agent.replica.digest.root() == a.agent.replica.digest.root()
    assert all(b.store.data[key][1] == b"new" for key in keys)
