"""SWIM membership with Lifeguard (vfsd.active.membership) and the named profiles.

Each test drives one node's membership by hand: messages in, messages and events out,
simulated time. References: SWIM (Das et al. 2002) §3-4; Lifeguard (Dadgar et al. 2018)
§IV; hashicorp/memberlist config.go, state.go, suspicion.go, awareness.go.
"""

from __future__ import annotations

import random

import pytest

from vfsd.active.membership import Membership, Suspicion, identity_hash
from vfsd.active.profile import LAN, LOCAL, PROFILES, WAN, GossipProfile
from vfsd.active.wire import (
    ALIVE,
    ALIVE_OP,
    DEAD,
    DEAD_OP,
    LEFT,
    REAPED,
    SUSPECT,
    SUSPECT_OP,
    Ack,
    Nack,
    Ping,
    PingReq,
)

T0 = 1_000_000


def node(name: str = "a", peers: int = 4, profile: GossipProfile = LAN, seed: int = 1, boot: int = 10) -> Membership:
    m = Membership(name, f"{name}:1", boot, profile, random.Random(seed), T0)
    for i in range(peers):
        m.on_alive(f"p{i}", 20 + i, 0, f"p{i}:1", T0)
    m.events.clear()
    m.updates.clear()
    return m


def sent(m: Membership, kind: type) -> list:
    out = [(to, msg) for to, msg in m.out if isinstance(msg, kind)]
    return out


# -- profiles: memberlist's defaults and formulas ------------------------------------------

def test_lan_profile_is_memberlists_default_lan_config() -> None:
    assert (LAN.probe_interval_ms, LAN.probe_timeout_ms, LAN.indirect_checks) == (1000, 500, 3)
    assert (LAN.suspicion_mult, LAN.suspicion_max_timeout_mult, LAN.awareness_max_multiplier) == (4, 6, 8)
    assert (LAN.gossip_interval_ms, LAN.gossip_nodes, LAN.retransmit_mult, LAN.gossip_to_the_dead_ms) == (
        200, 3, 4, 30_000)
    assert (LOCAL.probe_timeout_ms, LOCAL.indirect_checks, LOCAL.retransmit_mult, LOCAL.suspicion_mult,
            LOCAL.gossip_interval_ms) == (200, 1, 2, 3, 100)
    assert (WAN.probe_interval_ms, WAN.probe_timeout_ms, WAN.suspicion_mult, WAN.gossip_nodes,
            WAN.gossip_interval_ms) == (5000, 3000, 6, 4, 500)
    assert set(PROFILES) == {"local", "lan", "wan"}


def test_timeouts_scale_with_log_n() -> None:
    # suspicion = mult * max(1, log10(max(1, n))) * probe interval (memberlist util.go)
    assert LAN.suspicion_min_ms(1) == LAN.suspicion_min_ms(10) == 4000
    assert LAN.suspicion_min_ms(1000) == 12_000 and LAN.suspicion_max_ms(1000) == 72_000
    assert LAN.suspicion_min_ms(10_000) == 16_000
    # retransmits = mult * ceil(log10(n + 1))
    assert [LAN.retransmit_limit(n) for n in (1, 9, 10, 99, 1000, 10_000)] == [4, 4, 8, 8, 16, 20]
    # confirmations wanted: suspicion_mult - 2, none in a cluster too small to give them
    assert LAN.confirmations_wanted(3) == 0 and LAN.confirmations_wanted(4) == 2
    # pushPullScale: unscaled to 32 nodes, then + 1 per doubling
    assert [LAN.sync_interval_for(n) for n in (32, 33, 64, 1000)] == [2000, 4000, 4000, 12_000]


def test_suspicion_timeout_shrinks_with_confirmations_as_lifeguard_says() -> None:
    lo, hi = 4000, 24_000
    steps = [GossipProfile.suspicion_timeout_ms(lo, hi, 2, c) for c in range(4)]
    assert steps[0] == hi and steps[2] == lo and steps[3] == lo and steps[0] > steps[1] > steps[2]
    s = Suspicion("x", 0, 2, lo, hi)
    assert s.deadline_ms == hi
    assert not s.confirm("x")  # the first accuser does not count again
    assert s.confirm("y") and s.deadline_ms == steps[1]
    assert not s.confirm("y")
    assert s.confirm("z") and s.deadline_ms == lo
    assert not s.confirm("w")  # enough


def test_bad_profiles_are_refused() -> None:
    with pytest.raises(ValueError):
        GossipProfile(probe_timeout_ms=2000)  # longer than the interval
    with pytest.raises(ValueError):
        GossipProfile(gossip_nodes=0)
    with pytest.raises(ValueError):
        GossipProfile(left_grace_ms=LAN.horizon_ms)


# -- probing ------------------------------------------------------------------------------

def start_probe(m: Membership) -> tuple[str, Ping]:
    m.tick(m.next_probe_ms)
    (to, ping), = sent(m, Ping)
    m.out.clear()
    return to, ping


def test_a_probe_acked_is_a_success_and_every_member_is_probed_once_per_round() -> None:
    m = node(peers=4)
    targets = []
    for _ in range(4):
        to, ping = start_probe(m)
        assert ping.target == to
        targets.append(to)
        m.on_ack(to, Ack(ping.probe), m.next_probe_ms - 1)
        assert m._probe is None
    assert sorted(targets) == ["p0", "p1", "p2", "p3"]  # a shuffled round-robin
    assert m.health == 0 and not m.events


def test_no_ack_leads_to_indirect_probes_then_suspicion() -> None:
    m = node(peers=5)
    to, ping = start_probe(m)
    start = m._probe.deadline_ms - LAN.probe_interval_ms
    m.tick(start + LAN.probe_timeout_ms)
    reqs = sent(m, PingReq)
    assert len(reqs) == LAN.indirect_checks and all(r.target == to for _, r in reqs)
    assert to not in {dest for dest, _ in reqs}
    for dest, _ in reqs:  # the relays could not reach it either: each says so
        m.on_nack(dest, Nack(ping.probe), start + 600)
    m.tick(start + LAN.probe_interval_ms)
    assert m.get(to).state == SUSPECT
    assert m.health == 0  # every nack came: the fault is not ours
    ev = m.events[-1]
    assert (ev.name, ev.state, ev.previous) == (to, "suspect", "alive")
    assert m.updates.where and to in m.updates


def test_missing_nacks_raise_local_health_and_stretch_our_timeouts() -> None:
    m = node(peers=5)
    to, ping = start_probe(m)
    start = m._probe.deadline_ms - LAN.probe_interval_ms
    m.tick(start + LAN.probe_timeout_ms)
    now = start + LAN.probe_interval_ms
    m.tick(now)  # no ack, no nack: maybe we are the slow one
    assert m.health == LAN.indirect_checks
    probe = m._probe  # the next probe started in the same tick, with stretched timeouts
    assert probe.deadline_ms == now + 4 * LAN.probe_interval_ms
    assert probe.timeout_ms == now + 4 * LAN.probe_timeout_ms


def test_an_indirect_ack_saves_the_target() -> None:
    m = node(peers=5)
    to, ping = start_probe(m)
    start = m._probe.deadline_ms - LAN.probe_interval_ms
    m.tick(start + LAN.probe_timeout_ms)
    relay = sent(m, PingReq)[0][0]
    m.on_ack(relay, Ack(ping.probe), start + 700)
    m.tick(start + LAN.probe_interval_ms)
    assert m.get(to).state == ALIVE


def test_a_relay_pings_the_target_and_forwards_the_ack_or_a_nack() -> None:
    m = node(peers=3)
    m.on_ping_req("p0", PingReq(77, "p1", "p1:1"), T0)
    (to, ping), = sent(m, Ping)
    assert to == "p1"
    m.on_ack("p1", Ack(ping.probe), T0 + 10)
    assert ("p0", Ack(77)) in m.out
    m.out.clear()
    m.on_ping_req("p0", PingReq(78, "p2", "p2:1"), T0 + 20)
    m.tick(T0 + 20 + LAN.probe_timeout_ms)
    assert ("p0", Nack(78)) in m.out


def test_a_relays_nack_reaches_the_requester_before_its_probe_is_judged() -> None:
    # Lifeguard §IV-A: nacks tell the requester that the fault is the target's. The requester
    # asks relays probe_timeout_ms into its probe and judges it at the end of the interval; a
    # relay waiting a full probe_timeout_ms would nack just as the probe is judged (LAN: at 1000
    # of 1000 ms), and every failed probe would count against the requester's own health.
    for profile in (LOCAL, LAN, WAN):
        requester = node("a", peers=5, profile=profile)
        relay = node("r", peers=5, profile=profile)
        to, ping = start_probe(requester)
        start = requester._probe.deadline_ms - profile.probe_interval_ms
        requester.tick(start + profile.probe_timeout_ms)
        asked = start + profile.probe_timeout_ms + 2  # a 2 ms hop
        relay.on_ping_req("a", PingReq(ping.probe, to, f"{to}:1"), asked)
        deadline = asked + relay.relay_nack_ms()
        relay.tick(deadline - 1)
        assert ("a", Nack(ping.probe)) not in relay.out
        relay.tick(deadline)
        assert ("a", Nack(ping.probe)) in relay.out
        assert deadline + 2 < start + profile.probe_interval_ms, profile.name
        for dest, _ in sent(requester, PingReq):
            requester.on_nack(dest, Nack(ping.probe), deadline + 2)
        requester.tick(start + profile.probe_interval_ms)
        assert requester.get(to).state == SUSPECT and requester.health == 0, profile.name


def test_a_member_suspected_by_another_is_probed_next_out_of_turn() -> None:
    m = node(peers=9)
    m._order = iter(["p1", "p2", "p3"])
    m.on_suspect("p5", 25, 0, "p1", T0)  # someone else's suspicion reaches us
    to, ping = start_probe(m)
    assert to == "p5" and ping.updates[0][:2] == (SUSPECT_OP, "p5")
    m.tick(m._probe.deadline_ms)  # our probe fails too: a confirmation, within one interval
    assert m.get("p5").suspicion.confirmations == 1
    (to, ping), = sent(m, Ping)  # the next probe started in the same tick
    assert to == "p1"  # and the round-robin resumed where it was
    m.out.clear()
    # A suspect refuted before its turn is not probed out of turn.
    m.on_ack(to, Ack(ping.probe), m.next_probe_ms - 1)
    m.on_suspect("p6", 26, 0, "p2", m.next_probe_ms)
    m.on_alive("p6", 26, 1, "p6:1", m.next_probe_ms)
    to, _ = start_probe(m)
    assert to == "p2"


def test_a_ping_for_someone_else_is_not_answered() -> None:
    m = node()
    m.on_ping("p0", Ping(5, "zz"), T0)
    assert not m.out and m.counters["misdirected_pings"] == 1
    m.on_ping("p0", Ping(6, "a"), T0)
    assert sent(m, Ack) == [("p0", Ack(6, []))]


# -- suspicion, death, refutation -----------------------------------------------------------

def test_a_suspect_is_declared_dead_when_its_timer_runs_out_sooner_with_confirmations() -> None:
    m = node(peers=9)
    n = m.alive_count()
    m.on_suspect("p0", 20, 0, "p1", T0)
    s = m.get("p0").suspicion
    assert s.deadline_ms == T0 + LAN.suspicion_max_ms(n)
    m.on_suspect("p0", 20, 0, "p2", T0 + 100)
    m.on_suspect("p0", 20, 0, "p3", T0 + 200)
    assert s.deadline_ms == T0 + LAN.suspicion_min_ms(n)
    m.tick(T0 + LAN.suspicion_min_ms(n) - 1)
    assert m.get("p0").state == SUSPECT
    m.tick(T0 + LAN.suspicion_min_ms(n))
    assert m.get("p0").state == DEAD
    assert [e.state for e in m.events if e.name == "p0"] == ["suspect", "dead"]
    assert m.get("p0").flaps == 1


def test_our_own_failed_probe_of_a_suspect_is_a_confirmation_we_gossip() -> None:
    m = node(peers=9)
    m.on_suspect("p0", 20, 0, "p1", T0)
    m.updates.clear()
    m._order = iter(["p0"])
    to, ping = start_probe(m)
    assert to == "p0" and ping.updates[0][:2] == (SUSPECT_OP, "p0")  # told, so it can refute
    m.tick(m._probe.deadline_ms)
    assert m.get("p0").suspicion.confirmations == 1
    assert m.updates.tiers[m.updates.where["p0"]]["p0"] == (SUSPECT_OP, "p0", 20, 0, "a")


def test_we_refute_a_suspicion_or_death_of_ourselves_with_a_higher_incarnation() -> None:
    m = node()
    m.on_suspect("a", 10, 0, "p1", T0)
    assert m.incarnation == 1 and m.health == 1
    assert m.updates.tiers[0]["a"] == (ALIVE_OP, "a", 10, 1, "a:1")
    m.on_dead("a", 10, 5, "p1", T0)
    assert m.incarnation == 6
    m.on_suspect("a", 9, 99, "p1", T0)  # about an older process of ours: not us
    assert m.incarnation == 6


def test_alive_overrides_suspect_and_dead_only_with_a_higher_incarnation() -> None:
    m = node()
    m.on_suspect("p0", 20, 0, "p1", T0)
    assert not m.on_alive("p0", 20, 0, "p0:1", T0)  # the same incarnation: still suspect
    assert m.get("p0").state == SUSPECT
    assert m.on_alive("p0", 20, 1, "p0:1", T0)
    assert m.get("p0").state == ALIVE and m.get("p0").suspicion is None
    m.on_dead("p0", 20, 1, "p1", T0)
    assert m.get("p0").state == DEAD
    m.on_suspect("p0", 20, 1, "p2", T0)  # dead stays dead
    assert m.get("p0").state == DEAD
    assert m.on_alive("p0", 20, 2, "p0:1", T0) and m.get("p0").state == ALIVE


def test_a_graceful_leave_is_left_not_dead() -> None:
    m = node()
    other = node("p0", peers=0, boot=20)
    other.on_alive("a", 10, 0, "a:1", T0)
    other.leave(T0)
    update = other.updates.tiers[0]["p0"]
    assert update == (DEAD_OP, "p0", 20, 0, "p0")
    m.apply(update, T0)
    assert m.get("p0").state == LEFT
    assert m.events[-1].state == "left"
    other.tick(T0 + 10_000)
    assert not other.out  # a node that left probes no one


def test_dead_members_are_reaped_after_the_horizon_and_never_readmitted_with_that_identity() -> None:
    m = node(peers=3)
    m.on_dead("p0", 20, 0, "p1", T0)
    m.on_dead("p1", 21, 0, "p1", T0)  # left
    m.tick(T0 + LAN.left_grace_ms + 1000)
    assert m.get("p1") is None and m.get("p0").state == DEAD
    m.tick(T0 + LAN.horizon_ms + 1000)
    assert m.get("p0") is None
    assert m.reaped == {"p1": 21, "p0": 20}
    assert {e.name for e in m.events if e.state == "reaped"} == {"p0", "p1"}
    assert not m.on_alive("p0", 20, 9, "p0:1", T0 + LAN.horizon_ms + 2000)  # the old identity: refused
    assert m.counters["stale_identity"] == 1
    assert m.on_alive("p0", 99, 0, "p0:1", T0 + LAN.horizon_ms + 2000)  # restarted since: welcome
    assert "p0" not in m.reaped


def test_a_restarted_member_is_a_new_identity_and_the_old_one_counts_a_little_longer() -> None:
    m = node(peers=2)
    view = m.view
    assert m.on_alive("p0", 500, 0, "p0:1", T0)
    assert m.get("p0").boot == 500 and m.get("p0").incarnation == 0
    assert ("p0", 20) in dict.fromkeys(m.identities()) and ("p0", 500) in dict.fromkeys(m.identities())
    assert m.view == view ^ identity_hash("p0", 20) ^ identity_hash("p0", 500)
    m.on_suspect("p0", 20, 3, "p1", T0)  # news about the old process is ignored
    assert m.get("p0").state == ALIVE
    m.tick(T0 + LAN.left_grace_ms + 1000)
    assert ("p0", 20) not in dict.fromkeys(m.identities())


def test_rows_teach_unknown_members_in_their_state_and_a_reported_death_is_only_suspected() -> None:
    m = node(peers=1)
    m.merge_rows([("q1", "q1:1", 5, 0, ALIVE, 0), ("q2", "q2:1", 6, 2, DEAD, 0), ("q3", "", 7, 0, REAPED, 0),
                  ("p0", "p0:1", 20, 0, DEAD, 0), ("a", "a:1", 10, 0, DEAD, 0)], T0)
    assert m.get("q1").state == ALIVE and m.get("q2").state == DEAD  # learnt in its state
    assert m.reaped["q3"] == 7
    assert m.get("p0").state == SUSPECT  # we knew it alive: we suspect, we do not bury
    assert m.incarnation == 1  # rows saying we are dead: refuted


def test_views_agree_exactly_when_the_identity_sets_do() -> None:
    a, b = node("a", peers=0), node("b", peers=0)
    a.on_alive("b", 10, 0, "b:1", T0)
    b.on_alive("a", 10, 0, "a:1", T0)
    assert a.view == b.view
    a.on_alive("c", 3, 0, "c:1", T0)
    assert a.view != b.view
    b.merge_rows([("c", "c:1", 3, 0, SUSPECT, 0)], T0)
    assert a.view == b.view  # the state does not matter, the identities do


# -- Lifeguard: our own stalls --------------------------------------------------------------

def test_a_stall_blames_us_not_the_target_and_gives_suspects_time_to_refute() -> None:
    m = node(peers=5)
    start_probe(m)
    m.on_suspect("p1", 21, 0, "p2", T0)
    deadline = m.get("p1").suspicion.deadline_ms
    late = deadline + 5  # we were blocked past the deadline
    m.stalled(late, 3000)
    assert m._probe is None and m.health == 1
    assert m.get("p1").suspicion.deadline_ms == late + LAN.probe_interval_ms
    m.on_alive("p1", 21, 1, "p1:1", late + 1)  # the refutation that queued up while we were blocked
    m.tick(late + LAN.probe_interval_ms)
    assert m.get("p1").state == ALIVE
    assert not [e for e in m.events if e.state == "dead"]
