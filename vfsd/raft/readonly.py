"""ReadIndex (Raft thesis §6.4): linearizable reads without writing to the log.

Theory of operation
-------------------
A leader serves a read at index ``i`` only once it knows two things: ``i`` is at
least every index committed before the read was requested, and it was still the
leader when the read arrived. So, per the thesis:

1. The leader must have committed an entry of its own term (its no-op), or its
   commit index may lag what earlier leaders committed. Reads that arrive before
   that wait in ``waiting`` (bounded).
2. The read records the leader's commit index as its read index and joins the next
   *round*: a round is one broadcast of heartbeats carrying the round number. All
   reads that arrive before the broadcast share it (batching: many reads, one round
   trip).
3. Once a majority of voters (the leader included) have answered a heartbeat of that
   round or a later one, no other leader can have been elected meanwhile: the round
   is confirmed and every read in it is released with its index. The node that asked
   then serves the read when its applied index reaches that index.

A leader that cannot reach a majority never confirms a round, so it never serves a
stale read; when check-quorum deposes it, its pending reads are dropped with a
reason so the shell can answer at once. Rounds are numbered per core lifetime and
only answers carrying the current term count, so an answer to an old term's round
never confirms a new read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["PendingRead", "ReadQueue"]


@dataclass(slots=True)
class PendingRead:
    context: bytes  # the requester's handle for the read
    origin: str  # member id that asked (the leader itself for local reads)
    index: int  # commit index when the read was accepted (0 while waiting)
    round: int  # ReadIndex round that must be confirmed


class ReadQueue:
    """The leader's pending reads, oldest first."""

    __slots__ = ("waiting", "pending", "sent_round", "round_wanted", "max_pending")

    def __init__(self, max_pending: int) -> None:
        self.waiting: list[PendingRead] = []  # before an entry of this term committed
        self.pending: deque[PendingRead] = deque()  # in a round, by round number
        self.sent_round = 0  # newest round broadcast
        self.round_wanted = False  # a read joined a round that was not broadcast yet
        self.max_pending = max_pending

    def __len__(self) -> int:
        return len(self.waiting) + len(self.pending)

    def full(self) -> bool:
        return len(self) >= self.max_pending

    def wait_for_commit(self, context: bytes, origin: str) -> None:
        self.waiting.append(PendingRead(context, origin, 0, 0))

    def add(self, context: bytes, origin: str, commit_index: int) -> PendingRead:
        read = PendingRead(context, origin, commit_index, self.sent_round + 1)
        self.pending.append(read)
        self.round_wanted = True
        return read

    def start_waiting(self, commit_index: int) -> None:
        """An entry of this term committed: the waiting reads join the next round."""
        waiting, self.waiting = self.waiting, []
        for read in waiting:
            self.add(read.context, read.origin, commit_index)

    def next_round(self) -> int:
        """Number the broadcast about to go out."""
        self.sent_round += 1
        self.round_wanted = False
        return self.sent_round

    def confirm(self, round_number: int) -> list[PendingRead]:
        """Release every read whose round is at or below the confirmed one."""
        released = []
        pending = self.pending
        while pending and pending[0].round <= round_number:
            released.append(pending.popleft())
        return released

    def drain(self) -> list[PendingRead]:
        """Every pending read, for dropping (the leader stepped down)."""
        reads = self.waiting + list(self.pending)
        self.waiting = []
        self.pending.clear()
        self.round_wanted = False
        return reads
