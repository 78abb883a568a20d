"""The gossip cores in the deterministic simulation (vfsd.sim.gossip).

First a few hundred random seeds of small clusters (loss, delay, duplication, reordering,
partitions, crashes with restarts, stalls, clocks minutes apart; then heal and converge to
the expected state). Then one scripted scenario per gossip row of REPLICATION-PITFALLS.md,
and the behaviours users rely on. Thousands more seeds run from the command line:
``vfsd sim gossip --seeds 2000``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from vfsd.active.hlc import physical_ms
from vfsd.active.profile import LAN
from vfsd.active.wire import DEAD, LEFT, SUSPECT, MsgType
from vfsd.sim.gossip import BASE_WALL_MS, SimConfig, Simulation, run_random

QUIET = dict(loss=0.0, duplicate=0.0, delay_ms=(1, 5), partitions=0, crashes=0, stalls=0, skewed=0, ops_per_s=0)


def cluster(n: int, seed: int = 1, **overrides: object) -> Simulation:
    sim = Simulation(SimConfig(**{**QUIET, "seed": seed, "nodes": n, **overrides}))  # type: ignore[arg-type]
    assert sim.boot(), "the cluster did not form"
    return sim


def names(sim: Simulation) -> list[str]:
    return list(sim.nodes)


def everywhere(sim: Simulation, key: bytes, value: bytes | None) -> bool:
    return all(sim.value(n.name, key) == value for n in sim.up_nodes())


# -- random seeds ---------------------------------------------------------------------------

CHUNKS, PER_CHUNK = 10, 20


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_seeds_stay_safe_and_converge_after_healing(chunk: int) -> None:
    failures = []
    for seed in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        result = run_random(seed)
        if not result.ok:
            failures.append(result.summary())
    assert not failures, "\n".join(failures)


def test_a_run_is_a_function_of_its_seed_alone() -> None:
    code = ("from vfsd.sim.gossip import run_random; "
            "r = run_random(7, nodes=(4, 4), safety_ms=3000); print(r.summary(), r.bytes)")
    root = str(Path(__file__).resolve().parents[1])
    outs = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": root}
        outs.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                                timeout=120).stdout)
    assert len(outs) == 1, outs


# -- what users see -------------------------------------------------------------------------

def test_a_write_on_one_node_is_visible_on_all_within_a_gossip_round() -> None:
    sim = cluster(5)
    start = sim.now
    sim.write("n02", b"/run/job", b"running")
    assert sim.run_for(2000, lambda: everywhere(sim, b"/run/job", b"running"))
    assert sim.now - start <= LAN.gossip_interval_ms


def test_lost_pushes_are_repaired_by_anti_entropy() -> None:
    sim = cluster(4)
    sim.drop_types = {MsgType.GOSSIP}
    sim.write("n00", b"/run/a", b"1")
    assert sim.run_for(3 * LAN.sync_interval_ms, lambda: everywhere(sim, b"/run/a", b"1"))


def test_a_partition_with_writes_and_deletes_on_both_sides_converges_with_the_deletes_kept() -> None:
    sim = cluster(5)
    for i in range(10):
        sim.write(f"n0{i % 5}", b"/run/k%d" % i, b"before")
    assert sim.run_for(3000, lambda: all(everywhere(sim, b"/run/k%d" % i, b"before") for i in range(10)))
    sim.partition(["n00", "n01", "n02"], ["n03", "n04"])
    sim.run_for(1000)
    sim.delete("n00", b"/run/k1")
    sim.delete("n03", b"/run/k2")
    sim.write("n01", b"/run/k3", b"majority")
    sim.write("n04", b"/run/k4", b"minority")
    sim.run_for(25_000)  # long enough for both sides to declare the other dead
    assert all(n.agent.membership.get("n03").state == DEAD for n in map(sim.nodes.get, ["n00", "n01", "n02"]))
    sim.heal()
    settled = sim.run_for(10_000, sim.converged)
    assert settled, sim.diagnose()
    assert everywhere(sim, b"/run/k1", None) and everywhere(sim, b"/run/k2", None)
    assert everywhere(sim, b"/run/k3", b"majority") and everywhere(sim, b"/run/k4", b"minority")
    assert all(n.agent.stats().get("resets", 0) == 0 for n in sim.up_nodes())


def test_a_crashed_node_catches_up_and_its_new_writes_beat_its_old_ones_with_its_clock_behind() -> None:
    sim = cluster(3)
    sim.write("n01", b"/run/a", b"old")
    assert sim.run_for(1000, lambda: everywhere(sim, b"/run/a", b"old"))
    old_boot = sim.nodes["n01"].agent.boot
    sim.crash("n01")
    sim.write("n00", b"/run/b", b"while down")
    sim.run_for(2000)
    node = sim.nodes["n01"]
    assert node.persisted_ms is not None  # the only thing that survived: its clock's high-water mark
    node.skew_ms -= 3 * 60_000  # NTP stepped its clock three minutes back while it was down
    sim.partition(["n00", "n02"], ["n01"])
    sim.restart("n01")
    # Its clock resumed above everything it stamped before: a new identity the others accept,
    # and a write the cluster will order after its old one.
    assert node.agent.boot > old_boot
    sim.write("n01", b"/run/a", b"new")
    sim.heal()
    assert sim.run_for(5000, lambda: sim.value("n01", b"/run/b") == b"while down")
    assert sim.run_for(2000, lambda: everywhere(sim, b"/run/a", b"new"))
    assert sim.run_for(5000, sim.converged)
    assert all(n.agent.stats().get("refused_stale_identity", 0) == 0 for n in sim.up_nodes())


def test_a_graceful_leave_is_seen_as_left_at_once() -> None:
    sim = cluster(4)
    node = sim.nodes["n03"]
    node.agent.leave(node.wall())
    node.settle()
    sim.run_for(1000)
    for other in ["n00", "n01", "n02"]:
        m = sim.nodes[other].agent.membership.get("n03")
        assert m is not None and m.state == LEFT, other
        assert not [e for _, who, e in sim.events if who == other and e.name == "n03" and e.state == "suspect"]


# -- REPLICATION-PITFALLS.md, gossip rows -------------------------------------------------

def test_pitfall_partition_past_the_tombstone_horizon_then_heal_the_delete_holds() -> None:
    """Cassandra gc_grace_seconds / scylladb #8970: deleted data returns when repair misses the
    tombstone window. Here the majority collects its tombstones while the minority is away,
    past the horizon; on healing the minority is reset, and the delete holds."""
    short = replace(LAN, horizon_ms=20_000, left_grace_ms=5000)
    sim = cluster(5, profile=short)
    keys = [b"/run/k%d" % i for i in range(10)]
    for i, key in enumerate(keys):
        sim.write(f"n0{i % 5}", key, b"before")
    assert sim.run_for(3000, lambda: all(everywhere(sim, k, b"before") for k in keys))
    sim.partition(["n00", "n01", "n02"], ["n03", "n04"])
    sim.run_for(1000)
    for key in keys[:5]:
        sim.delete("n00", key)
    sim.write("n03", b"/run/minority-early", b"x")
    sim.run_for(short.horizon_ms + 20_000)  # the sides reap each other, then collect their tombstones
    majority = [sim.nodes[n] for n in ("n00", "n01", "n02")]
    assert all(n.agent.membership.get("n03") is None for n in majority)  # reaped
    assert all(not any(k in n.agent.replica.tombstones for k in keys[:5]) for n in majority)  # collected
    assert all(sim.value(n, keys[0]) == b"before" for n in ("n03", "n04"))  # the stale copies
    sim.write("n04", b"/run/minority-late", b"y")
    sim.heal()
    assert sim.run_for(30_000, sim.converged), sim.diagnose()
    for key in keys[:5]:
        assert everywhere(sim, key, None), key  # the deletes held
    for key in keys[5:]:
        assert everywhere(sim, key, b"before")
    assert sum(n.agent.stats().get("resets", 0) for n in sim.up_nodes()) == 2  # the two minority nodes
    assert sim.nodes["n00"].agent.membership.alive_count() == 5


def test_pitfall_a_clock_minutes_fast_cannot_make_causally_later_writes_lose() -> None:
    """Redis Active-Active: LWW on raw wall clocks loses newer writes under skew."""
    sim = cluster(3)
    sim.nodes["n00"].skew_ms = 4 * 60_000  # four minutes fast, within the drift bound
    sim.write("n00", b"/run/leader", b"n00")
    assert sim.run_for(1000, lambda: everywhere(sim, b"/run/leader", b"n00"))
    sim.write("n01", b"/run/leader", b"n01")  # n01 saw n00's write, so its write is later
    assert sim.run_for(1000, lambda: everywhere(sim, b"/run/leader", b"n01"))
    assert not sim.problems


def test_pitfall_a_clock_beyond_the_drift_bound_is_refused_and_drags_no_clock() -> None:
    sim = cluster(3)
    sim.nodes["n02"].skew_ms = 60 * 60_000  # an hour fast
    sim.write("n02", b"/run/future", b"from 2099")
    sim.run_for(3000)
    for name in ("n00", "n01"):
        node = sim.nodes[name]
        assert sim.value(name, b"/run/future") is None
        assert node.agent.stats()["refused_clock_drift"] > 0
        assert physical_ms(node.hlc.last) - node.wall() < 10_000  # not dragged an hour ahead
    sim.write("n00", b"/run/ok", b"1")
    assert sim.run_for(1000, lambda: sim.value("n01", b"/run/ok") == b"1")  # the rest carry on


def test_pitfall_expired_key_churn_keeps_tombstones_and_digests_bounded() -> None:
    """basho/riak #981: expired keys bloat the repair structures."""
    sim = cluster(3)
    peak_tombstones = peak_records = 0
    for second in range(90):
        for i in range(20):
            sim.write(f"n0{i % 3}", b"/run/session/%d-%d" % (second, i), b"s", ttl_ms=500)
        sim.run_for(1000)
        for node in sim.up_nodes():
            peak_tombstones = max(peak_tombstones, len(node.agent.replica.tombstones))
            peak_records = max(peak_records, len(node.agent.replica.digest))
    # 1,800 short-lived keys went by; what is held stays at a few seconds' worth.
    assert peak_tombstones < 20 * 15 and peak_records < 20 * 15
    sim.run_for(20_000)
    for node in sim.up_nodes():
        assert len(node.agent.replica.tombstones) == 0 and len(node.agent.replica.digest) == 0
        assert len(node.agent.replica.digest.buckets) == 0


def test_pitfall_a_node_joining_an_old_cluster_gets_the_full_state_within_the_bound() -> None:
    """basho/riak_kv #1656: repair does nothing for most of a new cluster's first day."""
    small_pages = replace(LAN, max_message_bytes=65_536, gossip_max_bytes=16_384)
    sim = Simulation(SimConfig(**{**QUIET, "seed": 3, "nodes": 4, "profile": small_pages}))
    assert sim.boot()
    sim.crash("n03")  # it joins later
    sim.run_for(2000)
    for i in range(3000):
        sim.write(f"n0{i % 3}", b"/hw/node-%04d/cpu" % i, bytes(100))
    sim.run_for(60_000)  # an old cluster: everything long settled
    start = sim.now
    sim.restart("n03")
    done = sim.run_for(10_000, lambda: len(sim.nodes["n03"].store.data) == 3000)
    assert done and sim.now - start < 2 * LAN.sync_interval_ms, sim.now - start
    stats = sim.nodes["n03"].agent.stats()
    assert stats["records_applied"] >= 3000 and stats["received_sync_records"] > 3  # it came in pages
    assert sim.run_for(5000, sim.converged)


def test_pitfall_a_hostile_entry_is_refused_counted_and_never_spread() -> None:
    """Fly.io Corrosion (2024): one bad update reached every node within seconds."""
    sim = cluster(4)
    victim = sim.nodes["n01"]
    boot = sim.nodes["n00"].agent.boot
    far = (victim.wall() + 3_600_000) << 16
    header = [boot, 10**9, victim.hlc.last, 0, 0]
    bodies = {
        "bad_key": [[], ["n00"], [[b"/ctx/secret"], [victim.hlc.last], [0], [0], [b"x"], [0]]],
        "unknown_kind": [[], ["n00"], [[b"/run/x"], [victim.hlc.last], [0], [99], [b"x"], [0]]],
        "clock_drift": [[], ["n00"], [[b"/run/x"], [far], [0], [0], [b"x"], [0]]],
        "malformed": [[], ["n00"], [[b"/run/x"], ["not a clock"], [0], [0], [b"x"], [0]]],
    }
    for i, body in enumerate(bodies.values()):
        sim.inject("n00", "n01", MsgType.GOSSIP, [boot, 10**9 + i, victim.hlc.last, 0, 0, *body])
    sim.inject("n00", "n01", 77, header)
    sim.inject("n00", "n01", MsgType.GOSSIP, "garbage")
    sim.run_for(3000)
    stats = victim.agent.stats()
    for reason in (*bodies, "unknown_type"):
        assert stats.get("refused_" + reason, 0) >= 1, reason
    for node in sim.up_nodes():
        assert b"/ctx/secret" not in node.store.data and b"/run/x" not in node.store.data
        assert physical_ms(node.hlc.last) - node.wall() < 10_000
    sim.write("n01", b"/run/after", b"fine")  # the node keeps serving
    assert sim.run_for(1000, lambda: everywhere(sim, b"/run/after", b"fine"))


def test_pitfall_an_event_loop_stall_of_two_seconds_is_at_most_a_suspicion_refuted_without_flapping() -> None:
    """Corrosion watchdogs; memberlist Lifeguard."""
    sim = cluster(5, seed=4)
    sim.run_for(3000)
    sim.stall("n02", 2000)
    sim.run_for(30_000)
    events = [(who, e) for _, who, e in sim.events if e.name == "n02"]
    assert not [e for _, e in events if e.state == "dead"]
    suspicions = [who for who, e in events if e.state == "suspect"]
    assert len(suspicions) == len(set(suspicions)) <= 4  # at most once per observer: no flap storm
    if suspicions:
        assert sim.nodes["n02"].agent.membership.incarnation >= 1  # refuted by incarnation
    for name in names(sim):
        if name != "n02":
            assert sim.nodes[name].agent.membership.get("n02").state not in (SUSPECT, DEAD)
    # The stalled node blamed itself, not its peers.
    assert not [e for _, who, e in sim.events if who == "n02" and e.state in ("suspect", "dead")]
    assert sim.nodes["n02"].agent.stats().get("stalls", 0) == 1


def test_tombstones_wait_for_every_member_then_go() -> None:
    sim = cluster(3)
    sim.write("n00", b"/run/a", b"v")
    assert sim.run_for(1000, lambda: everywhere(sim, b"/run/a", b"v"))
    sim.partition(["n00", "n01"], ["n02"])
    sim.delete("n00", b"/run/a")
    sim.run_for(15_000)  # n02 is dead to the others, not yet reaped: it may still hold /run/a
    assert b"/run/a" in sim.nodes["n00"].agent.replica.tombstones
    assert sim.value("n02", b"/run/a") == b"v"
    sim.heal()
    assert sim.run_for(10_000, lambda: everywhere(sim, b"/run/a", None))
    assert sim.run_for(30_000, lambda: all(b"/run/a" not in n.agent.replica.tombstones for n in sim.up_nodes()))
    assert all(n.agent.stats().get("tombstones_collected_by_horizon", 0) == 0 for n in sim.up_nodes())


def test_scaling_run_reaches_every_node_and_detects_a_failure_everywhere() -> None:
    from vfsd.sim.gossip import scaling

    update, failure = scaling(100, seed=2)
    assert update.reached == 1.0 and failure.reached == 1.0
    assert update.rounds < 10
    assert failure.ms <= LAN.suspicion_max_ms(100) + 5 * LAN.probe_interval_ms
    assert BASE_WALL_MS > 0
