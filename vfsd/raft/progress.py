"""What a leader knows about each follower, and how fast it may send to it.

Theory of operation
-------------------
For every member but itself the leader keeps a :class:`Progress`: ``match``, the
highest index known to be stored on the follower and to agree with the leader's
log, and ``next``, the index of the next entry to send (Raft §5.3). A follower is in
one of three states (the flow control of etcd's raft, in our own terms):

* PROBE: the leader does not know where the follower's log ends. It sends one
  append at a time and waits for the answer (``paused``); a rejection moves
  ``next`` back using the follower's hint (fast backtracking), a success moves to
  REPLICATE. A heartbeat interval without an answer unpauses, so a lost message
  only costs one interval.
* REPLICATE: the follower is known to accept appends; the leader pipelines
  appends without waiting, advancing ``next`` optimistically, bounded by
  :class:`Inflights` (messages and bytes in flight), which the follower's
  acknowledgements free. A rejection drops back to PROBE.
* SNAPSHOT: the entries the follower needs were compacted away; the leader
  streams the snapshot in chunks (``snapshot_*`` fields) and sends no appends
  until the follower acknowledges the installed snapshot.

The progress of the leader itself is kept the same way, with ``match`` moved only
when the leader's own entries are durable, so the leader never counts itself for
an entry it could still lose in a crash.
"""

from __future__ import annotations

from collections import deque
from enum import Enum

__all__ = ["FlowState", "Inflights", "Progress"]


class FlowState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """Appends sent and not yet acknowledged: at most ``max_messages`` of them and
    ``max_bytes`` of entry bytes (one message may exceed the byte bound alone)."""

    __slots__ = ("max_messages", "max_bytes", "_sent", "bytes")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._sent: deque[tuple[int, int]] = deque()  # (last index of the message, bytes)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._sent)

    def full(self) -> bool:
        return len(self._sent) >= self.max_messages or (self.bytes >= self.max_bytes and bool(self._sent))

    def add(self, last_index: int, size_bytes: int) -> None:
        self._sent.append((last_index, size_bytes))
        self.bytes += size_bytes

    def free_through(self, index: int) -> None:
        """Forget every message whose entries all lie at or below ``index``."""
        sent = self._sent
        while sent and sent[0][0] <= index:
            self.bytes -= sent.popleft()[1]

    def reset(self) -> None:
        self._sent.clear()
        self.bytes = 0


class Progress:
    __slots__ = (
        "member_id",
        "state",
        "match",
        "next",
        "paused",
        "inflights",
        "recent_active",
        "read_round",
        "acked_recently",
        "snapshot_index",
        "snapshot_sent",
        "snapshot_acked",
        "snapshot_stalled",
    )

    def __init__(self, member_id: str, next_index: int, max_messages: int, max_bytes: int) -> None:
        self.member_id = member_id
        self.state = FlowState.PROBE
        self.match = 0
        self.next = next_index
        self.paused = False  # PROBE: an append is out, wait for its answer
        self.inflights = Inflights(max_messages, max_bytes)
        self.recent_active = False  # heard from since the last check-quorum round
        self.read_round = 0  # newest ReadIndex round this follower confirmed
        self.acked_recently = False  # an acknowledgement arrived since the last heartbeat
        self.snapshot_index = 0  # SNAPSHOT: the snapshot being sent
        self.snapshot_sent = 0  # bytes of it sent
        self.snapshot_acked = 0  # bytes of it the follower confirmed
        self.snapshot_stalled = False  # no acknowledgement since the last heartbeat

    def __repr__(self) -> str:
        return f"Progress({self.member_id} {self.state.value} match={self.match} next={self.next})"

    def become_probe(self) -> None:
        # After a snapshot, resume right after it; otherwise right after what matched.
        if self.state is FlowState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = FlowState.PROBE
        self.paused = False
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = FlowState.REPLICATE
        self.next = self.match + 1
        self.paused = False
        self.inflights.reset()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = FlowState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.snapshot_sent = self.snapshot_acked = 0
        self.snapshot_stalled = False
        self.paused = False
        self.inflights.reset()

    def acknowledge(self, index: int) -> bool:
        """The follower matches up to ``index``; True if that is news (only news
        unpauses a probe: answering old news with a new probe could ping-pong)."""
        if index <= self.match:
            return False
        self.paused = False
        self.acked_recently = True
        self.match = index
        if self.next <= index:
            self.next = index + 1
        self.inflights.free_through(index)
        return True

    def reject(self, rejected_index: int, next_index: int) -> bool:
        """The append after ``rejected_index`` was refused; retry from ``next_index``
        (already computed from the hint). False if the rejection is stale: an answer
        to an append sent before the leader learned better."""
        if self.state is FlowState.REPLICATE:
            if rejected_index <= self.match:
                return False
            self.next = max(self.match + 1, min(next_index, self.next))
            self.become_probe_at(self.next)
            return True
        if self.state is FlowState.SNAPSHOT:
            return False
        if self.next - 1 != rejected_index:
            return False
        self.next = max(self.match + 1, min(next_index, rejected_index))
        self.paused = False
        return True

    def become_probe_at(self, next_index: int) -> None:
        self.state = FlowState.PROBE
        self.next = next_index
        self.paused = False
        self.inflights.reset()

    def sent(self, last_index: int, size_bytes: int) -> None:
        """An append carrying entries up to ``last_index`` went out."""
        if self.state is FlowState.REPLICATE:
            if last_index >= self.next:
                self.inflights.add(last_index, size_bytes)
                self.next = last_index + 1
        else:
            self.paused = True

    def can_send(self) -> bool:
        if self.state is FlowState.PROBE:
            return not self.paused
        if self.state is FlowState.REPLICATE:
            return not self.inflights.full()
        return False
