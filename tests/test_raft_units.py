"""Small pieces of the Raft core against naive references (hypothesis), and the
package's public surface."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import vfsd.raft
from vfsd.raft.progress import Inflights
from vfsd.raft.quorum import VoteOutcome, has_quorum, majority, quorum_value, vote_outcome

voters = st.lists(st.sampled_from("abcdefg"), min_size=0, max_size=7, unique=True)


@given(voters, st.data())
def test_quorum_value_is_the_highest_value_a_majority_reaches(ids: list[str], data: st.DataObject) -> None:
    values = {v: data.draw(st.integers(0, 20)) for v in ids}
    expected = max((x for x in range(0, 21) if sum(values[v] >= x for v in ids) >= majority(len(ids))), default=0)
    assert quorum_value(ids, values.__getitem__) == (expected if ids else 0)


@given(voters, st.data())
def test_vote_outcome_matches_counting(ids: list[str], data: st.DataObject) -> None:
    votes = {v: data.draw(st.sampled_from([True, False, None])) for v in ids}
    votes = {v: b for v, b in votes.items() if b is not None}
    votes["stranger"] = True  # never counted: not a voter
    granted = sum(1 for v in ids if votes.get(v) is True)
    undecided = sum(1 for v in ids if v not in votes)
    need = majority(len(ids))
    outcome = vote_outcome(ids, votes)
    if ids and granted >= need:
        assert outcome is VoteOutcome.WON
    elif not ids or granted + undecided < need:
        assert outcome is VoteOutcome.LOST
    else:
        assert outcome is VoteOutcome.PENDING
    assert has_quorum(ids, {v for v in ids if votes.get(v)}) == (bool(ids) and granted >= need)


@settings(max_examples=300)
@given(st.integers(1, 5), st.integers(1, 100), st.lists(st.tuples(st.booleans(), st.integers(1, 40)), max_size=40))
def test_inflights_match_a_plain_list(max_messages: int, max_bytes: int, ops: list[tuple[bool, int]]) -> None:
    inflights = Inflights(max_messages, max_bytes)
    model: list[tuple[int, int]] = []
    last = 0
    for send, n in ops:
        full = len(model) >= max_messages or (bool(model) and sum(b for _, b in model) >= max_bytes)
        assert inflights.full() == full
        if send and not full:
            last += 1
            inflights.add(last, n)
            model.append((last, n))
        elif not send:
            upto = last - n % (last + 1)
            inflights.free_through(upto)
            model = [(i, b) for i, b in model if i > upto]
        assert len(inflights) == len(model) and inflights.bytes == sum(b for _, b in model)


def test_the_public_surface_of_vfsd_raft_is_stable() -> None:
    assert vfsd.raft.__all__ == sorted(vfsd.raft.__all__)
    assert set(vfsd.raft.__all__) == {
        "ChangeOp", "ConfChange", "ConfChangeError", "DroppedProposal", "DroppedRead", "Entry", "EntryKind",
        "HardState", "IncomingSnapshot", "Member", "MembershipConfig", "Message", "MessageType", "ProposalId",
        "RaftCore", "RaftSettings", "ReadState", "Ready", "RestoreError", "Role", "SnapshotMeta",
        "SnapshotSource", "SoftState", "WireError", "message_from_wire",
    }
    for name in vfsd.raft.__all__:
        assert getattr(vfsd.raft, name) is not None


def test_settings_are_checked() -> None:
    import pytest

    with pytest.raises(ValueError, match="heartbeat_ticks"):
        vfsd.raft.RaftSettings(heartbeat_ticks=10, election_ticks=10)
    with pytest.raises(ValueError, match="max_append_bytes must be a positive integer"):
        vfsd.raft.RaftSettings(max_append_bytes=0)
