"""The Raft core against the paper (Ongaro & Ousterhout 2014, "§n") and Ongaro's
thesis ("thesis §n.n"), in the manner of etcd's raft_paper_test: each test is a
short script on a lockstep network (tests/raft_harness.py) or on one core fed
messages by hand, and checks what a peer or the shell can observe: messages sent,
entries persisted and applied, the leader, reads released, proposals dropped.
"""

from __future__ import annotations

import random

from tests.raft_harness import CLUSTER, SETTINGS, Network, member
from vfsd.raft import (
    ConfChange,
    Entry,
    EntryKind,
    HardState,
    Message,
    RaftCore,
    RaftSettings,
    Ready,
    Role,
)
from vfsd.raft.config import MembershipConfig, encode_config_entry
from vfsd.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    PreVote,
    PreVoteResponse,
    Propose,
    ReadIndex,
    SnapshotChunk,
    TimeoutNow,
    Vote,
    VoteResponse,
)


def of(rd: Ready, cls: type[Message]) -> list[Message]:
    return [m for m in rd.messages + rd.messages_after_persist if isinstance(m, cls)]


def cycle(core: RaftCore) -> Ready:
    """Take the core's Ready and report it carried out."""
    rd = core.ready()
    core.advance(rd)
    return rd


class _NoSnapshots:
    def snapshot_data(self, index: int) -> bytes | None:
        return None


def config_entry(index: int, term: int, *names: str) -> Entry:
    cfg = MembershipConfig([member(n) for n in names])
    return Entry(index, term, EntryKind.CONFIG, 0, "", 0, encode_config_entry(None, cfg))


def entry(index: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(index, term, EntryKind.NORMAL, 0, "n9", index, data)


def restored(name: str, entries: list[Entry], term: int, voted_for: str | None = None, commit: int = 1,
             settings: RaftSettings = SETTINGS) -> RaftCore:
    """A core restarted from a log (entry 1 must be the configuration)."""
    core = RaftCore.restore(settings, cluster_id=CLUSTER, member_id=name, hard_state=HardState(term, voted_for, commit),
                            snapshot=None, entries=entries, applied_index=0, rng=random.Random(1), now_ms=0,
                            snapshots=_NoSnapshots())
    cycle(core)
    return core


def msg(cls: type[Message], sender: str, recipient: str, term: int, **fields: object) -> Message:
    return cls(CLUSTER, sender, recipient, term, **fields)  # type: ignore[call-arg]


# -- §5.2 leader election ---------------------------------------------------------------


def test_election_timeout_is_randomised_between_e_and_2e() -> None:
    """§5.2: randomised timeouts make split votes rare; thesis §9.3 suggests [T, 2T)."""
    seen = set()
    for seed in range(200):
        core = RaftCore.bootstrap(SETTINGS, cluster_id=CLUSTER, member_id="n1", members=[member("n1"), member("n2")],
                                  rng=random.Random(seed), now_ms=0, snapshots=_NoSnapshots())
        seen.add(core.randomized_election_ticks)
    assert min(seen) >= SETTINGS.election_ticks and max(seen) < 2 * SETTINGS.election_ticks
    assert len(seen) == SETTINGS.election_ticks  # every value in the range occurs


def test_follower_times_out_into_a_pre_vote_that_leaves_its_term_alone() -> None:
    """Thesis §9.6: a pre-vote asks for term + 1 without raising the node's own term."""
    net = Network(3)
    core = net.core("n1")
    net.fire_election_timer("n1")
    pre_votes = [m for m in net.outbox if isinstance(m, PreVote)]
    assert sorted(m.recipient for m in pre_votes) == ["n2", "n3"]
    assert {m.term for m in pre_votes} == {2} and core.term == 1 and core.role is Role.PRE_CANDIDATE


def test_candidate_persists_its_vote_before_asking_for_votes() -> None:
    """§5.2 with Figure 2's rule "persist before responding": the term and the vote for
    itself are in the same Ready as the vote requests, which may leave only after."""
    net = Network(3)
    net.fire_election_timer("n1")
    net.deliver(lambda m: isinstance(m, PreVote))
    net.deliver(lambda m: isinstance(m, PreVoteResponse))
    rd = next(r for r in net.nodes["n1"].readies if of(r, Vote))
    assert rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.voted_for) == (2, "n1")
    assert rd.must_sync and not [m for m in rd.messages if isinstance(m, Vote)]
    assert len([m for m in rd.messages_after_persist if isinstance(m, Vote)]) == 2


def test_candidate_with_a_majority_becomes_leader_and_appends_a_no_op() -> None:
    """§5.2 and §8: the winner of a majority leads; its first entry is a no-op of its term."""
    net = Network(5)
    net.elect("n3")
    leader = net.core("n3")
    assert leader.term == 2 and net.leaders() == ["n3"]
    noop = leader.log.entry(leader.last_index)
    assert (noop.kind, noop.term) == (EntryKind.NOOP, 2)
    assert all(net.core(n).leader_id == "n3" for n in net.nodes)


def test_candidate_without_a_majority_does_not_lead() -> None:
    """§5.2: two votes of five are not enough."""
    net = Network(5)
    for other in ("n3", "n4", "n5"):
        net.cut("n1", other)
    net.fire_election_timer("n1")
    net.stabilize()
    assert net.core("n1").role is Role.PRE_CANDIDATE and net.leaders() == []


def test_a_voter_grants_one_vote_per_term() -> None:
    """§5.2: "each server will vote for at most one candidate in a given term"."""
    core = restored("n1", [config_entry(1, 1, "n1", "n2", "n3")], term=1)
    core.step(msg(Vote, "n2", "n1", 2, last_index=1, last_term=1), 0)
    core.step(msg(Vote, "n3", "n1", 2, last_index=1, last_term=1), 0)
    answers = of(cycle(core), VoteResponse)
    assert [(m.recipient, m.granted) for m in answers] == [("n2", True), ("n3", False)]
    assert core.voted_for == "n2"


def test_a_candidate_steps_down_for_a_leader_of_its_term() -> None:
    """§5.2: a candidate that hears AppendEntries from a leader of its term returns to follower."""
    core = restored("n1", [config_entry(1, 1, "n1", "n2", "n3")], term=1, settings=RaftSettings(pre_vote=False))
    core.tick(0)
    for _ in range(core.randomized_election_ticks):
        core.tick(0)
    assert core.role is Role.CANDIDATE and core.term == 2
    core.step(msg(Append, "n2", "n1", 2, prev_index=1, prev_term=1, commit=1, entries=[]), 0)
    assert core.role is Role.FOLLOWER and core.leader_id == "n2"


def test_split_votes_are_retried_until_someone_wins() -> None:
    """§5.2: after a split vote, new randomised timeouts elect a leader."""
    net = Network(4, settings=RaftSettings(pre_vote=False, check_quorum=False))
    for n in net.nodes:
        net.fire_election_timer(n)  # everyone a candidate of term 2: nobody can win it
    net.stabilize()
    assert net.leaders() == []
    for _ in range(60):
        net.tick_all()
        if net.leaders():
            break
    assert len(net.leaders()) == 1


# -- §5.3 log replication -----------------------------------------------------------------


def test_an_entry_commits_once_a_majority_stores_it_and_is_applied_everywhere() -> None:
    """§5.3: committed once replicated on a majority; followers apply once they learn it."""
    net = Network(5)
    net.elect("n1")
    net.cut("n1", "n4")
    net.cut("n1", "n5")
    net.propose("n1", b"a")
    assert net.applied_data("n1") == [b"a"]
    net.heal()
    for _ in range(2):  # the append they missed is retried after an interval without answers
        net.heartbeat("n1")
    assert all(net.applied_data(n) == [b"a"] for n in net.nodes)


def test_a_commit_notice_reaches_each_follower_at_once_and_wants_no_answer() -> None:
    """A follower learns of a commit as soon as its own acknowledgement completes it (the node
    a client wrote through applies and answers without waiting for a heartbeat); such a notice
    gets no response, while a periodic heartbeat still does (liveness, check-quorum)."""
    net = Network(3)
    net.elect("n1")
    net.core("n1").propose(b"a", net.now_ms)
    sent = []
    while net.outbox or any(node.core.has_ready() for node in net.nodes.values()):
        sent += net.deliver()
    notices = [m for m in sent if isinstance(m, Heartbeat) and m.commit_term]
    assert sorted(m.recipient for m in notices) == ["n2", "n3"]
    assert all(net.applied_data(n) == [b"a"] for n in net.nodes)
    assert not [m for m in sent if isinstance(m, HeartbeatResponse)]
    net.tick("n1", net.settings.heartbeat_ticks)
    sent = net.deliver()
    assert sent and all(isinstance(m, Heartbeat) and not m.commit_term for m in sent)
    assert sorted(m.sender for m in net.deliver() if isinstance(m, HeartbeatResponse)) == ["n2", "n3"]


def test_a_follower_is_told_of_a_commit_another_followers_ack_made() -> None:
    """n3's acknowledgement completes the majority first: n2, sent the entry but not yet heard
    from, is told at once and commits through the entry the notice names; a notice naming an
    entry n2 does not hold (another term) commits nothing."""
    net = Network(3)
    net.elect("n1")
    net.core("n1").propose(b"a", net.now_ms)
    net.deliver(lambda m: isinstance(m, Append))
    net.deliver(lambda m: isinstance(m, AppendResponse) and m.sender == "n3")
    index = net.core("n1").commit_index
    notices = net.deliver(lambda m: isinstance(m, Heartbeat) and m.recipient == "n2")
    assert [m.commit_term for m in notices] == [net.core("n1").term]
    assert net.core("n2").commit_index == index and net.applied_data("n2") == [b"a"]
    n2 = net.core("n2")
    wrong = Heartbeat(CLUSTER, "n1", "n2", n2.term, index + 1, 0, n2.term)  # an entry n2 lacks
    assert n2.step(wrong, net.now_ms) is None and n2.commit_index == index
    net.stabilize()
    assert all(net.applied_data(n) == [b"a"] for n in net.nodes)


def test_no_commit_without_a_majority() -> None:
    net = Network(5)
    net.elect("n1")
    for other in ("n3", "n4", "n5"):
        net.cut("n1", other)
    before = net.core("n1").commit_index
    net.propose("n1", b"a")
    assert net.core("n1").commit_index == before and net.applied_data("n1") == []


def test_the_leader_counts_itself_only_for_entries_it_has_persisted() -> None:
    """A leader may send entries before its own fsync (thesis §10.2.1) but must not count
    itself for them: its match index moves when the shell reports the write done."""
    net = Network(1)
    net.elect("n1")
    core = net.core("n1")
    core.propose(b"a", 0)
    rd = core.ready()
    assert [e.data for e in rd.entries] == [b"a"] and not [e for e in rd.committed_entries if e.data == b"a"]
    core.advance(rd)
    assert [e.data for e in core.ready().committed_entries] == [b"a"]


def test_follower_rejects_a_mismatching_append_with_a_conflict_hint() -> None:
    """§5.3: the consistency check, with the fast backtracking hint (conflicting term and
    the first index the follower holds of it)."""
    log = [config_entry(1, 1, "n1", "n2", "n3"), entry(2, 2), entry(3, 2), entry(4, 2), entry(5, 3)]
    core = restored("n2", log, term=3)
    core.step(msg(Append, "n1", "n2", 5, prev_index=4, prev_term=4, commit=1, entries=[entry(5, 5)]), 0)
    (reject,) = of(cycle(core), AppendResponse)
    assert (reject.reject, reject.index, reject.hint_term, reject.hint_index) == (True, 4, 2, 2)
    core.step(msg(Append, "n1", "n2", 5, prev_index=9, prev_term=4, commit=1, entries=[]), 0)
    (short,) = of(cycle(core), AppendResponse)
    assert (short.reject, short.hint_term, short.hint_index) == (True, 0, 6)


def test_follower_replaces_a_conflicting_suffix_and_keeps_a_matching_prefix() -> None:
    """§5.3: delete the conflicting entry and all that follow; append the new ones."""
    log = [config_entry(1, 1, "n1", "n2", "n3"), entry(2, 2, b"keep"), entry(3, 2, b"old"), entry(4, 2, b"old")]
    core = restored("n2", log, term=2)
    core.step(msg(Append, "n1", "n2", 3, prev_index=2, prev_term=2, commit=1,
                  entries=[entry(3, 3, b"new")]), 0)
    rd = cycle(core)
    assert rd.truncate_from == 3 and [(e.index, e.term) for e in rd.entries] == [(3, 3)]
    assert [e.data for e in core.log.entries] == [core.log.entries[0].data, b"keep", b"new"]
    assert of(rd, AppendResponse)[0].index == 3


def test_a_duplicated_append_changes_nothing() -> None:
    """§5.5: RPCs are idempotent; a repeated AppendEntries is acknowledged again, unchanged."""
    core = restored("n2", [config_entry(1, 1, "n1", "n2")], term=2)
    append = msg(Append, "n1", "n2", 2, prev_index=1, prev_term=1, commit=1, entries=[entry(2, 2)])
    core.step(append, 0)
    first = cycle(core)
    core.step(append, 0)
    second = cycle(core)
    assert [e.index for e in first.entries] == [2] and second.entries == [] and second.truncate_from is None
    assert of(second, AppendResponse)[0].index == 2


def test_leader_brings_a_divergent_follower_in_line_in_few_round_trips() -> None:
    """§5.3 (the optimisation at the end): a follower with a long run of entries from an
    old term is repaired with one rejection per conflicting term, not per entry."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    for i in range(40):
        net.core("n1").propose(b"lost-%d" % i, net.now_ms)  # term 2, never committed
    net.process()
    net.outbox.clear()
    while not [n for n in ("n2", "n3") if net.core(n).role is Role.LEADER]:
        net.tick_all()
    new = next(n for n in ("n2", "n3") if net.core(n).role is Role.LEADER)
    kept = [b"kept-%d" % i for i in range(45)]  # the new leader's log outgrows n1's
    for data in kept:
        net.core(new).propose(data, net.now_ms)
    net.stabilize()
    assert net.core("n1").role is Role.FOLLOWER  # check-quorum deposed it meanwhile
    # A leader elected now starts probing n1 at its own (long) log's end, as in Figure 7.
    other = "n2" if new == "n3" else "n3"
    net.core(new).transfer_leadership(other, net.now_ms)
    net.stabilize()
    new = net.leader()
    assert new == other
    rejections: list[Message] = []
    net.drop = lambda m: bool(rejections.append(m)) if isinstance(m, AppendResponse) and m.reject else False
    net.heal()
    for _ in range(10):
        net.heartbeat(new)
    assert net.applied_data("n1") == kept
    # One rejection for "my log is shorter", one to skip the whole stale term 2 run
    # (40 entries), instead of one per entry.
    assert 1 <= len([m for m in rejections if m.sender == "n1"]) <= 3, rejections


def test_leader_batches_and_pipelines_within_its_flow_control_bounds() -> None:
    """Proposals made between two Readies go out in one append per follower (up to
    max_append_bytes), and no more than max_inflight_appends appends await answers."""
    settings = RaftSettings(max_append_bytes=3 * 40, max_inflight_appends=3)
    net = Network(2, settings=settings)
    net.elect("n1")
    leader = net.core("n1")
    for i in range(5):
        leader.propose(b"%02d" % i, net.now_ms)
    net.process()
    appends = [m for m in net.outbox if isinstance(m, Append)]
    assert [len(m.entries) for m in appends] == [3, 2]
    net.stabilize()  # answered: the follower is known to accept appends, pipelining starts
    net.drop = lambda m: isinstance(m, AppendResponse)  # answers lost from here on
    for i in range(30):
        leader.propose(b"%02d" % i, net.now_ms)
        net.process()
    in_flight = [m for m in net.outbox if isinstance(m, Append)]
    assert len(in_flight) == settings.max_inflight_appends


def test_a_lost_append_is_recovered_at_the_next_heartbeat() -> None:
    net = Network(3)
    net.elect("n1")
    net.drop = lambda m: isinstance(m, Append) and m.recipient == "n3"
    net.propose("n1", b"a")
    net.drop = None
    assert net.applied_data("n3") == []
    net.heartbeat("n1")
    net.heartbeat("n1")
    assert net.applied_data("n3") == [b"a"]


def test_follower_commits_no_further_than_the_entries_it_was_sent() -> None:
    """§5.3: commitIndex = min(leaderCommit, index of last new entry)."""
    core = restored("n2", [config_entry(1, 1, "n1", "n2"), entry(2, 1), entry(3, 1)], term=2)
    core.step(msg(Append, "n1", "n2", 2, prev_index=1, prev_term=1, commit=9, entries=[entry(2, 1)]), 0)
    cycle(core)
    assert core.commit_index == 2


# -- §5.4 safety --------------------------------------------------------------------------


def test_voter_denies_a_candidate_whose_log_is_less_up_to_date() -> None:
    """§5.4.1: compare last terms, then lengths."""
    log = [config_entry(1, 1, "n1", "n2", "n3"), entry(2, 2), entry(3, 2)]
    core = restored("n1", log, term=2)
    core.step(msg(Vote, "n2", "n1", 3, last_index=9, last_term=1), 0)  # longer, older term
    core.step(msg(Vote, "n3", "n1", 4, last_index=2, last_term=2), 0)  # same term, shorter
    assert [m.granted for m in of(cycle(core), VoteResponse)] == [False, False]
    core.step(msg(Vote, "n3", "n1", 5, last_index=3, last_term=2), 0)
    assert [m.granted for m in of(cycle(core), VoteResponse)] == [True]


def test_leader_commits_an_older_term_entry_only_through_one_of_its_own() -> None:
    """§5.4.2 (Figure 8): a majority storing an entry of an earlier term does not commit it;
    it commits once an entry of the leader's term is stored on a majority."""
    core = restored("n1", [config_entry(1, 1, "n1", "n2", "n3"), entry(2, 2)], term=2,
                    settings=RaftSettings(pre_vote=False))
    for _ in range(core.randomized_election_ticks):
        core.tick(0)
    cycle(core)
    core.step(msg(VoteResponse, "n2", "n1", 3, granted=True), 0)
    assert core.role is Role.LEADER and core.log.entry(3).kind == EntryKind.NOOP
    cycle(core)
    core.step(msg(AppendResponse, "n2", "n1", 3, index=2), 0)  # n2 stores entry 2 (term 2)
    cycle(core)
    assert core.commit_index == 1
    core.step(msg(AppendResponse, "n2", "n1", 3, index=3), 0)  # ... and the no-op of term 3
    assert [e.index for e in cycle(core).committed_entries] == [2, 3]


# -- thesis §9.6 pre-vote and check-quorum ---------------------------------------------


def test_a_partitioned_follower_returns_without_deposing_the_leader() -> None:
    """Thesis §9.6: isolated for many election timeouts, a follower's pre-votes fail, so
    its term stays; after healing the leader and its term are unchanged."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n3")
    for _ in range(20 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.core("n3").term == 2 and net.core("n3").role is Role.PRE_CANDIDATE
    net.heal()
    for _ in range(3 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.leader() == "n1" and {net.core(n).term for n in net.nodes} == {2}


def test_without_pre_vote_the_returning_node_would_depose_the_leader() -> None:
    """The counterpart, showing what pre-vote buys: with it off, the isolated node's
    term races ahead and its return forces a new election."""
    net = Network(3, settings=RaftSettings(pre_vote=False))
    net.elect("n1")
    net.isolate("n3")
    for _ in range(5 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.core("n3").term > 2
    net.heal()
    for _ in range(3 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.core(net.leader()).term > 2


def test_an_isolated_leader_steps_down_after_an_election_timeout() -> None:
    """Check-quorum (thesis §6.2): a leader that hears from no majority for an election
    timeout stops being leader, so clients stop waiting on it."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    # The followers were heard from in the current period, so the first check passes;
    # the next one (at most two election timeouts after the cut) does not.
    net.tick("n1", SETTINGS.election_ticks)
    assert net.core("n1").role is Role.LEADER
    net.tick("n1", SETTINGS.election_ticks)
    assert net.core("n1").role is Role.FOLLOWER and net.core("n1").leader_id is None


def test_vote_requests_are_ignored_while_a_leader_is_heard_from() -> None:
    """Thesis §4.2.3: a server that heard from a leader within the minimum election timeout
    neither grants a vote nor raises its term (this is what stops a removed or returning
    server from disrupting)."""
    net = Network(3)
    net.elect("n1")
    follower = net.core("n2")
    follower.step(msg(Vote, "n3", "n2", 9, last_index=100, last_term=9), net.now_ms)
    net.process()
    assert follower.term == 2 and follower.voted_for == "n1"
    assert not [m for m in net.outbox if isinstance(m, VoteResponse)]


# -- thesis §6.4 ReadIndex -------------------------------------------------------------


def test_read_index_waits_for_the_leaders_first_commit_of_its_term() -> None:
    """Thesis §6.4 step 1: until its no-op commits, a new leader's commit index may lag
    what earlier leaders committed, so it does not serve reads yet."""
    net = Network(3)
    net.drop = lambda m: isinstance(m, Append)
    net.elect("n1")
    net.core("n1").read_index(b"r1", net.now_ms)
    net.stabilize()
    assert net.nodes["n1"].read_states == []
    net.drop = None
    net.heartbeat("n1")
    net.heartbeat("n1")
    (state,) = net.nodes["n1"].read_states
    assert state.context == b"r1" and state.index >= 2  # the no-op's index


def test_reads_are_batched_into_one_heartbeat_round() -> None:
    """Thesis §6.4: reads arriving before the round goes out share it."""
    net = Network(3)
    net.elect("n1")
    leader = net.core("n1")
    for i in range(50):
        leader.read_index(b"r%d" % i, net.now_ms)
    net.process()
    rounds = [m for m in net.outbox if isinstance(m, Heartbeat) and m.read_round > 0]
    assert len(rounds) == 2 and {m.read_round for m in rounds} == {1}
    net.stabilize()
    assert len(net.nodes["n1"].read_states) == 50
    assert {s.index for s in net.nodes["n1"].read_states} == {leader.commit_index}


def test_a_follower_forwards_reads_and_serves_them_at_the_leaders_index() -> None:
    net = Network(3)
    net.elect("n1")
    net.propose("n1", b"a")
    net.core("n3").read_index(b"r", net.now_ms)
    net.process()
    assert [type(m) for m in net.outbox] == [ReadIndex]
    net.stabilize()
    (state,) = net.nodes["n3"].read_states
    assert state.index == net.core("n1").commit_index


def test_an_isolated_leader_never_serves_a_read_and_fails_it_when_it_steps_down() -> None:
    """Jepsen's finding on etcd and Consul: a leader cut off from the majority must not
    answer reads. Its round is never confirmed; check-quorum then fails the read."""
    net = Network(3)
    net.elect("n1")
    net.isolate("n1")
    net.core("n1").read_index(b"stale?", net.now_ms)
    net.tick("n1", SETTINGS.election_ticks)
    assert net.nodes["n1"].read_states == [] and net.nodes["n1"].dropped_reads == []
    net.tick("n1", SETTINGS.election_ticks)
    (dropped,) = net.nodes["n1"].dropped_reads
    assert dropped.context == b"stale?" and "majority" in dropped.reason
    assert net.nodes["n1"].read_states == []


def test_a_forwarded_read_whose_answer_is_lost_fails_after_its_timeout() -> None:
    net = Network(3)
    net.elect("n1")
    net.drop = lambda m: isinstance(m, ReadIndex)
    net.core("n2").read_index(b"lost", net.now_ms)
    net.stabilize()
    net.drop = None
    net.tick_all(SETTINGS.forwarded_read_timeout_ticks - 1)  # the leader keeps n2 following
    assert net.nodes["n2"].dropped_reads == []
    net.tick_all()
    assert [(d.context, d.reason) for d in net.nodes["n2"].dropped_reads] == [
        (b"lost", "no answer from the leader in time")]


def test_reads_and_proposals_without_a_leader_fail_at_once() -> None:
    net = Network(3)
    core = net.core("n2")
    core.read_index(b"r", net.now_ms)
    pid = core.propose(b"w", net.now_ms)
    net.process()
    node = net.nodes["n2"]
    assert [(d.context, d.reason) for d in node.dropped_reads] == [(b"r", "no leader")]
    assert [(d.proposal, d.reason) for d in node.dropped_proposals] == [(pid, "no leader")]


# -- proposals ---------------------------------------------------------------------------


def test_a_follower_forwards_proposals_and_the_entry_names_the_proposer() -> None:
    net = Network(3)
    net.elect("n1")
    pid = net.core("n3").propose(b"w", net.now_ms)
    net.stabilize()
    net.heartbeat("n1")
    applied = [e for e in net.nodes["n3"].applied if e.data == b"w"]
    assert [(e.origin, e.seq) for e in applied] == [(pid.origin, pid.seq)] == [("n3", pid.seq)]


def test_a_duplicated_forward_is_appended_once() -> None:
    net = Network(3)
    net.elect("n1")
    net.core("n2").propose(b"once", net.now_ms)
    net.process()
    net.outbox = net.outbox * 2
    net.stabilize()
    net.heartbeat("n1")
    assert net.applied_data("n1").count(b"once") == 1
    assert net.core("n1").stats["duplicate proposals dropped"] == 1


def test_a_proposal_forwarded_to_a_node_that_no_longer_leads_is_rejected_back() -> None:
    net = Network(3)
    net.elect("n1")
    pid = net.core("n2").propose(b"w", net.now_ms)
    net.process()
    held = [m for m in net.outbox if isinstance(m, Propose)]
    net.outbox = [m for m in net.outbox if not isinstance(m, Propose)]
    net.core("n1").transfer_leadership("n3", net.now_ms)  # n1 stops leading meanwhile
    net.stabilize()
    assert net.leader() == "n3"
    net.outbox.extend(held)  # the forward reaches n1 only now
    net.stabilize()
    (dropped,) = net.nodes["n2"].dropped_proposals
    assert dropped.proposal == pid and dropped.reason == "not the leader"
    assert b"w" not in net.applied_data("n3")


def test_entry_times_never_run_backwards_across_leaders() -> None:
    """Entries are stamped max(leader clock, previous entry's time): a new leader whose
    clock is behind does not move entry times (and so TTL deadlines) backwards."""
    net = Network(3)
    net.now_ms = 50_000
    net.elect("n1")
    net.propose("n1", b"a")
    net.isolate("n1")
    net.now_ms = 10_000  # the next leader's clock is far behind
    for _ in range(3 * SETTINGS.election_ticks):
        net.tick("n2")
        net.tick("n3")
        net.stabilize()
        if net.core("n2").role is Role.LEADER or net.core("n3").role is Role.LEADER:
            break
    new = next(n for n in ("n2", "n3") if net.core(n).role is Role.LEADER)
    net.propose(new, b"b")
    times = [e.time_ms for e in net.core(new).log.entries]
    assert times == sorted(times) and times[-1] >= 50_000


# -- thesis §3.10 leadership transfer ---------------------------------------------------


def test_transfer_to_an_up_to_date_voter_elects_it_at_once() -> None:
    net = Network(3)
    net.elect("n1")
    assert net.core("n1").transfer_leadership("n3", net.now_ms) is None
    net.process()
    assert [m.recipient for m in net.outbox if isinstance(m, TimeoutNow)] == ["n3"]
    net.stabilize()
    assert net.leader() == "n3" and net.core("n3").term == 3


def test_transfer_catches_the_target_up_first_and_refuses_proposals_meanwhile() -> None:
    net = Network(3)
    net.elect("n1")
    net.cut("n1", "n3")
    net.propose("n1", b"a")
    net.heal()
    leader = net.core("n1")
    leader.transfer_leadership("n3", net.now_ms)
    pid = leader.propose(b"during", net.now_ms)
    net.process()
    assert [(d.proposal, d.reason) for d in net.nodes["n1"].dropped_proposals] == [
        (pid, "leadership transfer in progress")]
    assert not [m for m in net.outbox if isinstance(m, TimeoutNow)]  # n3 lacks an entry
    net.stabilize()
    assert net.leader() == "n3" and net.applied_data("n3") == [b"a"]


def test_transfer_to_a_non_voter_is_refused_and_an_unreachable_target_is_given_up() -> None:
    net = Network(3, learners=1)
    net.elect("n1")
    leader = net.core("n1")
    assert leader.transfer_leadership("n4", net.now_ms) == "n4 is not a voter"
    net.isolate("n3")
    assert leader.transfer_leadership("n3", net.now_ms) is None
    for _ in range(SETTINGS.election_ticks):
        net.tick_all()
    assert leader.role is Role.LEADER and leader.transfer_target is None
    net.propose("n1", b"after")
    assert b"after" in net.applied_data("n1")


# -- thesis §4 membership ------------------------------------------------------------------


def test_learners_receive_the_log_but_never_vote_or_count() -> None:
    net = Network(3, learners=1)
    net.elect("n1")
    net.isolate("n3")
    net.cut("n1", "n2")  # only the learner is reachable: no majority of voters
    net.propose("n1", b"a")
    assert net.applied_data("n1") == []
    net.heal()
    for _ in range(2):
        net.heartbeat("n1")
    assert net.applied_data("n4") == [b"a"]
    net.isolate("n1")
    for _ in range(5 * SETTINGS.election_ticks):
        net.tick("n4")
    assert net.core("n4").role is Role.FOLLOWER and net.core("n4").role_name == "learner"


def test_add_and_promote_a_learner_then_it_counts_for_commits() -> None:
    net = Network(3)
    net.elect("n1")
    net.add_node("n4")
    assert net.core("n4").role_name == "none"
    net.conf_change("n2", ConfChange.add_learner(member("n4")))  # proposed on a follower
    net.heartbeat("n1")
    assert net.core("n4").role_name == "learner" and net.core("n4").config.members["n4"].address
    net.conf_change("n1", ConfChange.promote("n4"))
    net.heartbeat("n1")
    assert net.core("n4").is_voter
    for name in ("n2", "n3"):
        net.isolate(name)
    net.propose("n1", b"needs n4")  # n1 + n4 are 2 of 4: no majority
    assert b"needs n4" not in net.applied_data("n1")
    net.heal()
    net.cut("n1", "n3")
    net.heartbeat("n1")  # n1, n2, n4: 3 of 4
    assert b"needs n4" in net.applied_data("n1")


def test_one_membership_change_at_a_time_and_only_after_a_commit_of_the_term() -> None:
    """Thesis §4.1: a change is refused while the previous one is uncommitted, and (the
    2015 fix) before the leader has committed an entry of its own term."""
    net = Network(3)
    net.drop = lambda m: isinstance(m, Append)
    net.elect("n1")
    leader = net.core("n1")
    early = leader.propose_conf_change(ConfChange.add_learner(member("n4")), net.now_ms)
    net.process()
    net.drop = None
    net.heartbeat("n1")
    net.heartbeat("n1")
    first = leader.propose_conf_change(ConfChange.add_learner(member("n4")), net.now_ms)
    second = leader.propose_conf_change(ConfChange.add_learner(member("n5")), net.now_ms)
    net.stabilize()
    reasons = {d.proposal: d.reason for d in net.nodes["n1"].dropped_proposals}
    assert "committed an entry of its term" in reasons[early]
    assert first not in reasons and "already in progress" in reasons[second]


def test_membership_changes_that_do_not_fit_are_refused_with_the_reason() -> None:
    net = Network(1)
    net.elect("n1")
    leader = net.core("n1")
    bad = {
        leader.propose_conf_change(ConfChange.add_voter(member("n1")), net.now_ms): "already a voter",
        leader.propose_conf_change(ConfChange.remove_voter("n1"), net.now_ms): "last voter",
        leader.propose_conf_change(ConfChange.promote("n7"), net.now_ms): "not a learner",
    }
    net.stabilize()
    reasons = {d.proposal: d.reason for d in net.nodes["n1"].dropped_proposals}
    for pid, expected in bad.items():
        assert expected in reasons[pid]


def test_a_configuration_is_in_force_when_appended_and_reverts_if_truncated() -> None:
    """Thesis §4.1: a server uses the newest configuration in its log, committed or not."""
    core = restored("n2", [config_entry(1, 1, "n1", "n2", "n3")], term=2)
    four = config_entry(2, 2, "n1", "n2", "n3", "n4")
    core.step(msg(Append, "n1", "n2", 2, prev_index=1, prev_term=1, commit=1, entries=[four]), 0)
    rd = cycle(core)
    assert core.commit_index == 1 and core.config.voter_ids == {"n1", "n2", "n3", "n4"} and rd.config is not None
    core.step(msg(Append, "n3", "n2", 3, prev_index=1, prev_term=1, commit=1, entries=[entry(2, 3)]), 0)
    cycle(core)
    assert core.config.voter_ids == {"n1", "n2", "n3"}


def test_a_removed_leader_leads_until_the_removal_commits_then_hands_over() -> None:
    """Thesis §4.2.2: the leader removing itself keeps managing the cluster (without
    counting itself) until the new configuration commits, then steps down; TimeoutNow
    lets the next leader take over without waiting for an election timeout."""
    net = Network(3)
    net.elect("n1")
    net.propose("n1", b"a")
    net.conf_change("n1", ConfChange.remove_voter("n1"))
    assert net.core("n1").role is Role.FOLLOWER and net.core("n1").role_name == "none"
    new = net.leader()
    assert new in ("n2", "n3") and net.core(new).config.voter_ids == {"n2", "n3"}
    net.propose(new, b"b")
    assert net.applied_data(new) == [b"a", b"b"]
    for _ in range(5 * SETTINGS.election_ticks):
        net.tick_all()
    assert net.leader() == new  # the removed node never campaigns


# -- §7 snapshots -------------------------------------------------------------------------


def test_a_follower_behind_the_compaction_point_gets_the_snapshot_in_chunks() -> None:
    settings = RaftSettings(snapshot_chunk_bytes=16, snapshot_chunks_in_flight=2)
    net = Network(3, settings=settings)
    net.elect("n1")
    net.isolate("n3")
    for i in range(10):
        net.propose("n1", b"value-%d" % i)
    net.nodes["n1"].take_snapshot()
    leader = net.core("n1")
    assert leader.log.first_index > 3
    net.heal()
    chunks: list[SnapshotChunk] = []
    net.drop = lambda m: bool(chunks.append(m)) if isinstance(m, SnapshotChunk) else False
    for _ in range(10):
        net.heartbeat("n1")
    size = len(net.nodes["n1"].disk.snapshot_data)
    assert len({c.offset for c in chunks}) == -(-size // 16) and max(len(c.data) for c in chunks) <= 16
    assert net.applied_data("n3") == [b"value-%d" % i for i in range(10)]
    net.propose("n1", b"after")
    assert net.applied_data("n3")[-1] == b"after"


def test_a_lost_snapshot_chunk_is_sent_again() -> None:
    settings = RaftSettings(snapshot_chunk_bytes=8)
    net = Network(3, settings=settings)
    net.elect("n1")
    net.isolate("n3")
    for i in range(4):
        net.propose("n1", b"v%d" % i)
    net.nodes["n1"].take_snapshot()
    net.heal()
    lost = []

    def lose_first_chunk_once(m: Message) -> bool:
        if isinstance(m, SnapshotChunk) and m.offset == 8 and not lost:
            lost.append(m)
            return True
        return False

    net.drop = lose_first_chunk_once
    for _ in range(30):
        net.heartbeat("n1")
    assert lost and net.applied_data("n3") == [b"v0", b"v1", b"v2", b"v3"]


# -- identity -----------------------------------------------------------------------------


def test_messages_for_another_cluster_or_member_are_refused_and_counted() -> None:
    core = restored("n1", [config_entry(1, 1, "n1", "n2")], term=1)
    other_cluster = Heartbeat("other", "n2", "n1", 5, 0, 0)
    other_member = Heartbeat(CLUSTER, "n2", "n1-old", 5, 0, 0)
    assert "cluster" in (core.step(other_cluster, 0) or "")
    assert "member n1-old" in (core.step(other_member, 0) or "")
    assert core.term == 1 and core.stats["refused: wrong cluster"] == 1 and core.stats["refused: wrong recipient"] == 1


def test_a_restarted_node_knows_its_peers_from_its_log_alone() -> None:
    """PySyncObj #133: membership comes from the committed configuration, not from flags."""
    net = Network(3)
    net.elect("n1")
    net.add_node("n4")
    net.conf_change("n1", ConfChange.add_learner(member("n4")))
    net.heartbeat("n1")
    net.crash("n2")
    restarted = net.restart("n2")
    assert restarted.core.config.members["n4"].address == "n4.test:17000"


def _chunk(meta_index: int, meta_term: int, total: int, offset: int, data: bytes, term: int = 3) -> SnapshotChunk:
    from vfsd.raft.messages import SnapshotMeta

    meta = SnapshotMeta(meta_index, meta_term, 0, MembershipConfig([member("n1"), member("n2")]))
    return SnapshotChunk(CLUSTER, "n1", "n2", term, meta, total, offset, data)


def test_a_follower_holding_the_snapshots_last_entry_keeps_its_log() -> None:
    """§7: "If the follower has an entry at the snapshot's index and term, it retains the
    entries following it": no transfer, no install, just a commit to that point."""
    log = [config_entry(1, 1, "n1", "n2")] + [entry(i, 2) for i in range(2, 11)]
    core = restored("n2", log, term=3)
    core.step(_chunk(8, 2, 1000, 0, b"x" * 100), 0)
    rd = cycle(core)
    assert rd.snapshot is None and core.commit_index == 8 and core.last_index == 10
    assert [(m.reject, m.index) for m in of(rd, AppendResponse)] == [(False, 8)]


def test_snapshot_chunks_must_arrive_in_order_and_fit_the_limit() -> None:
    core = restored("n2", [config_entry(1, 1, "n1", "n2")], term=3,
                    settings=RaftSettings(max_snapshot_bytes=100))
    core.step(_chunk(9, 2, 6, 3, b"def"), 0)  # a chunk past what has arrived: "send from 0"
    core.step(_chunk(9, 2, 6, 0, b"abc"), 0)
    core.step(_chunk(9, 2, 6, 0, b"abc"), 0)  # duplicate: still 3 bytes
    from vfsd.raft.messages import SnapshotChunkResponse

    assert [m.offset for m in of(cycle(core), SnapshotChunkResponse)] == [0, 3, 3]
    core.step(_chunk(9, 2, 6, 3, b"def"), 0)
    rd = cycle(core)
    assert rd.snapshot is not None and rd.snapshot.data == b"abcdef" and core.commit_index == 9
    assert "max_snapshot_bytes" in (core.step(_chunk(20, 3, 101, 0, b"a"), 0) or "")
