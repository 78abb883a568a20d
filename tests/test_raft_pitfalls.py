"""The Raft rows of REPLICATION-PITFALLS.md, each as a scenario on the core.

Two rows are checked in test_raft_paper.py, where the mechanism behind them is:
"a node returning from a partition deposes a healthy leader" is
test_a_partitioned_follower_returns_without_deposing_the_leader, and "a leader cut
off from the majority keeps serving reads" is
test_an_isolated_leader_never_serves_a_read_and_fails_it_when_it_steps_down. The
random simulation (test_raft_sim.py) runs all of these faults together.
"""

from __future__ import annotations

import random

import pytest

from tests.raft_harness import CLUSTER, SETTINGS, Network, Node, member
from vfsd.raft import ConfChange, HardState, RaftCore, RaftSettings, Ready, Role
from vfsd.raft.messages import Vote, VoteResponse

NO_PRE_VOTE = RaftSettings(pre_vote=False)


def leaders_of_term(net: Network, term: int) -> list[str]:
    return sorted(n for n, node in net.nodes.items() if node.core.role is Role.LEADER and node.core.term == term)


def _forget_votes(node: Node, rd: Ready) -> bool:
    """A disk that loses the vote (PySyncObj #84): what must never happen."""
    if rd.hard_state is not None:
        node.disk.hard_state = HardState(rd.hard_state.term, None, rd.hard_state.commit)
        rd.hard_state = None
    return True


@pytest.mark.parametrize("vote_persisted", [True, False])
def test_a_vote_survives_a_crash_so_a_term_has_one_leader(vote_persisted: bool) -> None:
    """PySyncObj #84: votedFor not persisted, so after a restart a node votes twice in a
    term. n2 votes for n1 (n1 leads term 2), crashes and restarts; then n3 asks for its
    vote in the same term. With the vote on disk it is refused; the counterfactual disk
    that drops votes elects a second leader in term 2, which is what the check catches."""
    net = Network(3, settings=NO_PRE_VOTE)
    net.cut("n1", "n3")
    if not vote_persisted:
        net.nodes["n2"].persist_hook = _forget_votes
    net.fire_election_timer("n1")
    net.deliver(lambda m: isinstance(m, Vote) and m.recipient == "n2")
    net.deliver(lambda m: isinstance(m, VoteResponse))
    assert leaders_of_term(net, 2) == ["n1"]
    net.outbox.clear()
    net.crash("n2")
    restarted = net.restart("n2")
    if not vote_persisted:
        restarted.persist_hook = _forget_votes
    net.fire_election_timer("n3")  # n3 campaigns in term 2 too: it never heard from n1
    assert net.core("n3").term == 2
    net.deliver(lambda m: isinstance(m, Vote) and m.recipient == "n2")
    net.deliver(lambda m: isinstance(m, VoteResponse) and m.recipient == "n3")
    if vote_persisted:
        assert leaders_of_term(net, 2) == ["n1"]
    else:
        assert leaders_of_term(net, 2) == ["n1", "n3"]


def test_an_acknowledged_entry_survives_power_loss_everywhere() -> None:
    """PySyncObj #84: the log written to mmap and acknowledged before fsync. Here an
    entry is acknowledged (applied on the leader) only after a majority fsynced it; then
    every node loses power in the middle of its next write."""
    net = Network(3)
    net.elect("n1")
    net.propose("n1", b"acked")
    assert net.applied_data("n1") == [b"acked"]
    for name in net.nodes:
        net.crash_during_next_write(name)
    net.core("n1").propose(b"in flight", net.now_ms)
    net.stabilize()
    assert not any(node.up for node in net.nodes.values())
    for name in list(net.nodes):
        net.restart(name)
    for _ in range(6 * SETTINGS.election_ticks):
        net.tick_all()
    leader = net.leader()
    net.propose(leader, b"after")
    net.heartbeat(leader)
    for name in net.nodes:
        data = net.applied_data(name)
        assert data[0] == b"acked" and data[-1] == b"after"


def test_every_member_restarting_at_once_changes_nothing_acknowledged() -> None:
    """PySyncObj #201/#202: all members restart, the term space resets, committed entries
    are overwritten. Terms come from the disk, so nothing earlier moves."""
    net = Network(3)
    net.elect("n2")
    for i in range(5):
        net.propose("n2", b"before-%d" % i)
    net.heartbeat("n2")
    before = {name: [(e.index, e.data) for e in node.applied] for name, node in net.nodes.items()}
    terms = {name: node.core.term for name, node in net.nodes.items()}
    for name in list(net.nodes):
        net.crash(name)
    for name in list(net.nodes):
        restarted = net.restart(name)
        assert restarted.core.term == terms[name]
    for _ in range(6 * SETTINGS.election_ticks):
        net.tick_all()
    leader = net.leader()
    assert net.core(leader).term > max(terms.values())
    for i in range(3):
        net.propose(leader, b"after-%d" % i)
    net.heartbeat(leader)
    for name, node in net.nodes.items():
        replayed = [(e.index, e.data) for e in node.applied]
        assert replayed[: len(before[name])] == before[name]
        assert net.applied_data(name) == [b"before-%d" % i for i in range(5)] + [b"after-%d" % i for i in range(3)]


def test_a_removed_member_stays_removed_after_everyone_restarts() -> None:
    """PySyncObj #133: membership taken from a stale local dump instead of the committed
    configuration. n3 is removed while it is down, so its own log still lists it; after
    every node restarts nobody re-adds it and it cannot disrupt the leader."""
    net = Network(3)
    net.elect("n1")
    net.crash("n3")
    net.conf_change("n1", ConfChange.remove_voter("n3"))
    assert net.core("n1").config.voter_ids == {"n1", "n2"}
    for name in list(net.nodes):
        net.crash(name)
    for name in list(net.nodes):
        net.restart(name)
    assert net.core("n1").config.voter_ids == net.core("n2").config.voter_ids == {"n1", "n2"}
    assert net.core("n3").config.voter_ids == {"n1", "n2", "n3"}  # it never learned
    for _ in range(6 * SETTINGS.election_ticks):
        net.tick("n1")
        net.tick("n2")
        net.stabilize()
    leader = net.leader()
    term = net.core(leader).term
    for _ in range(20 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.leader() == leader and net.core(leader).term == term
    assert net.core(leader).config.voter_ids == {"n1", "n2"}
    assert "n3" not in net.core(leader).progress


def test_a_commit_index_past_the_end_of_the_log_recovers_to_the_real_end() -> None:
    """PySyncObj #197: start-up deadlocked when the commit index was past the end of the
    log. Here n2's hard state (commit 8) reaches the disk but the entries it was
    written with do not (a shell that saves the hard state first, then loses power);
    nothing of it was acknowledged. The core lowers commit to the log's real end and
    catches up from the leader."""
    net = Network(3)
    net.elect("n1")
    net.cut("n1", "n2")
    for i in range(6):
        net.propose("n1", b"e%d" % i)
    net.heal()

    def hard_state_only(node: Node, rd: Ready) -> bool:
        if not rd.entries:
            return True
        node.persist_hook = None
        if rd.hard_state is not None:
            node.disk.hard_state = rd.hard_state
        net.crash(node.id)
        return False

    net.nodes["n2"].persist_hook = hard_state_only
    net.heartbeat("n1")
    net.heartbeat("n1")
    disk = net.nodes["n2"].disk
    assert not net.nodes["n2"].up and disk.hard_state.commit > disk.last_index()
    node = net.restart("n2")
    assert node.core.commit_index == disk.last_index()
    net.heartbeat("n1")
    net.heartbeat("n1")
    assert net.applied_data("n2") == [b"e%d" % i for i in range(6)]


def test_restore_repairs_what_is_safe_to_repair_and_refuses_the_rest() -> None:
    from vfsd.raft import Entry, EntryKind, RestoreError
    from vfsd.raft.config import MembershipConfig, encode_config_entry

    cfg = Entry(1, 1, EntryKind.CONFIG, 0, "", 0, encode_config_entry(None, MembershipConfig([member("n1")])))
    e2 = Entry(2, 3, EntryKind.NORMAL, 0, "", 0, b"")

    def restore(hard_state: HardState, entries: list[Entry], applied: int = 0) -> RaftCore:
        return RaftCore.restore(SETTINGS, cluster_id=CLUSTER, member_id="n1", hard_state=hard_state, snapshot=None,
                                entries=entries, applied_index=applied, rng=random.Random(0), now_ms=0,
                                snapshots=net_source)

    class net_source:  # noqa: N801 - a stand-in object
        @staticmethod
        def snapshot_data(index: int) -> bytes | None:
            return None

    core = restore(HardState(1, "n1", 99), [cfg, e2])
    assert (core.commit_index, core.term, core.voted_for) == (2, 3, None)  # term raised to the log's, no vote
    with pytest.raises(RestoreError, match="expected"):
        restore(HardState(3), [cfg, Entry(3, 3, EntryKind.NORMAL, 0, "", 0, b"")])
    with pytest.raises(RestoreError, match="below the previous"):
        restore(HardState(3), [Entry(1, 3, EntryKind.NORMAL, 0, "", 0, b""), Entry(2, 1, EntryKind.NORMAL, 0, "", 0, b"")])
    with pytest.raises(RestoreError, match="past the log's end"):
        restore(HardState(3), [cfg], applied=5)


def test_a_majority_killed_and_restarted_elects_a_leader_within_the_bound() -> None:
    """PySyncObj #78: re-election broke after a majority was killed and restarted."""
    net = Network(5)
    net.elect("n1")
    net.propose("n1", b"a")
    for name in ("n1", "n2", "n3"):
        net.crash(name)
    for name in ("n1", "n2", "n3"):
        net.restart(name)
    bound = 4 * SETTINGS.election_ticks  # two election timeouts at their longest
    for _ in range(bound):
        net.tick_all()
        if net.leaders():
            break
    assert len(net.leaders()) == 1, f"no leader after {bound} ticks"
    net.propose(net.leader(), b"b")
    assert net.applied_data(net.leader())[-2:] == [b"a", b"b"]


@pytest.mark.parametrize("new_member_id", [True, False])
def test_a_wiped_data_dir_cannot_vote_as_the_member_it_was(new_member_id: bool) -> None:
    """Raft thesis §4, etcd's member docs: a node that lost its disk must rejoin as a new
    member. "a" is committed on n1 and n3 only; n3's data dir is wiped. If it came back
    as n3 it would vote n2 (which lacks "a") into office and "a" would be lost; under a
    new member id it refuses what is sent to n3, cannot campaign, and "a" survives until
    an operator replaces the old member with the new one."""
    net = Network(3)
    net.elect("n1")
    net.cut("n1", "n2")
    net.propose("n1", b"a")
    assert net.applied_data("n1") == [b"a"]
    net.crash("n3")
    wiped = net.restart("n3", wiped_as="n3-b" if new_member_id else "n3")
    net.isolate("n1")
    for _ in range(6 * SETTINGS.election_ticks):
        net.tick("n2")
        net.tick(wiped.id)
        net.stabilize()
    if not new_member_id:
        assert net.core("n2").role is Role.LEADER  # the danger: n2 leads without "a"
        net.heal()
        net.tick_all(3)
        assert b"a" not in net.applied_data("n2")
        return
    assert net.leaders() == ["n1"] and net.core("n2").role is not Role.LEADER
    assert wiped.core.role_name == "none" and wiped.core.stats.get("refused: wrong recipient", 0) > 0
    net.heal()
    for _ in range(6 * SETTINGS.election_ticks):
        net.tick_all()
    leader = net.leader()
    net.conf_change(leader, ConfChange.remove_voter("n3"))
    net.conf_change(leader, ConfChange.add_learner(member("n3-b")))
    net.heartbeat(leader)
    net.conf_change(leader, ConfChange.promote("n3-b"))
    net.heartbeat(leader)
    assert wiped.core.is_voter and net.applied_data("n3-b")[0] == b"a"
    assert all(net.applied_data(n)[0] == b"a" for n in net.nodes)


def test_a_stale_leader_learns_the_new_term_and_its_entries_never_commit() -> None:
    """A leader cut off (and not yet deposed by check-quorum) keeps its role; the others
    elect a new one. On its return its heartbeat is answered with the newer term, it
    steps down, and what it appended alone is replaced."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    net.core("n1").propose(b"never", net.now_ms)
    net.process()
    while not [n for n in ("n2", "n3") if net.core(n).role is Role.LEADER]:
        net.tick("n2")
        net.tick("n3")
        net.stabilize()
    new = next(n for n in ("n2", "n3") if net.core(n).role is Role.LEADER)
    assert net.core("n1").role is Role.LEADER  # it has not noticed yet
    net.heal()
    net.heartbeat("n1")
    assert net.core("n1").role is Role.FOLLOWER and net.core("n1").term == net.core(new).term
    net.propose(new, b"kept")
    net.heartbeat(new)
    for name in net.nodes:
        assert net.applied_data(name) == [b"kept"]
