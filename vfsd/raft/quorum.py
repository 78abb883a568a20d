"""Majority quorums over a set of voters (Raft §5.2, §5.3, §6.4).

Every quorum question the core asks has one shape: given one value per voter (the
index it has matched, the ReadIndex round it has confirmed, whether it granted its
vote), what does a majority agree on? Learners never appear here: the caller passes
voter ids only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import Enum

__all__ = ["VoteOutcome", "majority", "quorum_value", "vote_outcome", "has_quorum"]


def majority(voter_count: int) -> int:
    """Smallest number of voters that forms a majority."""
    return voter_count // 2 + 1


def quorum_value(voter_ids: Collection[str], value_of: Callable[[str], int]) -> int:
    """The largest ``v`` such that a majority of voters have a value >= ``v``.

    With match indexes this is the highest index stored on a majority (the commit
    candidate of §5.3); with confirmed ReadIndex rounds, the newest round a majority
    has answered. No voters: 0 (nothing can be agreed).
    """
    if not voter_ids:
        return 0
    values = sorted((value_of(v) for v in voter_ids), reverse=True)
    return values[majority(len(values)) - 1]


class VoteOutcome(Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def vote_outcome(voter_ids: Collection[str], votes: Mapping[str, bool]) -> VoteOutcome:
    """WON once a majority granted, LOST once a majority can no longer grant.

    Votes from ids that are not voters (a learner, a removed member, a wiped node
    under a new id) are not counted.
    """
    need = majority(len(voter_ids))
    granted = rejected = 0
    for voter in voter_ids:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    if voter_ids and granted >= need:
        return VoteOutcome.WON
    if not voter_ids or rejected > len(voter_ids) - need:
        return VoteOutcome.LOST
    return VoteOutcome.PENDING


def has_quorum(voter_ids: Collection[str], members: Collection[str]) -> bool:
    """Whether ``members`` include a majority of the voters."""
    return bool(voter_ids) and sum(1 for v in voter_ids if v in members) >= majority(len(voter_ids))
