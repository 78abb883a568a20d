"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).

A timestamp is one integer: wall-clock milliseconds in the high bits and a
16-bit logical counter in the low bits, so timestamps compare as plain ints
and stay close to real time while still ordering causally related events when
clocks disagree. The wall clock is a parameter: this module reads no clock.

Three guards make the clock safe to replicate last-writer-wins state with:

* **Bounded drift** (the paper's ε, §3). ``update`` refuses a remote timestamp
  whose physical part is more than ``max_drift_ms`` ahead of our wall clock:
  the caller drops the message that carried it and counts it. Without the
  bound, one peer with a clock in the year 2099 would drag every clock in the
  cluster forward for good (every later write would carry its timestamp).
  ``max_drift_ms`` is also the widest spread of wall clocks the cluster
  tolerates: a peer further ahead than that is cut off from replicating into
  us until its clock is fixed.
* **Monotonic across restarts.** A node restarted with its clock behind its
  own earlier writes must still win against them, or its new writes would
  lose to its old ones on every replica. The shell persists a *high-water
  mark* (ms) and resumes with ``HLC.resume(mark)``, which starts above every
  timestamp the node handed out before. To avoid a disk write per timestamp,
  the mark is reserved ahead in windows of ``reserve_ms``:
  ``high_water_due()`` returns a new mark only when the clock comes within
  half a window of the reserved one, so the shell persists about once every
  ``reserve_ms / 2`` of clock time. The obligation (as in etcd's ``Ready``):
  persist a returned mark *before* sending anything stamped since; a
  timestamp that never left the process cannot be beaten by an old write.
* **No hot-path cost.** ``now`` is as cheap as before (ActivePlane inlines it):
  reservations are checked where messages leave, not where writes happen.
"""

from __future__ import annotations

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1

#: Default for ``max_drift_ms``: five minutes. Wide enough for the clock skew of
#: virtual machines without NTP that the active plane must tolerate (minutes),
#: narrow enough that a wildly wrong clock cannot move the cluster's clocks far.
DEFAULT_MAX_DRIFT_MS = 300_000
#: Default for ``reserve_ms``: reserve ten seconds of clock time per persisted
#: mark, so a restarted node starts at most ten seconds ahead of its wall clock.
DEFAULT_RESERVE_MS = 10_000


def pack(physical_ms: int, logical: int) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def physical_ms(ts: int) -> int:
    return ts >> LOGICAL_BITS


class HLC:
    __slots__ = ("last", "max_drift_ms", "reserve_ms", "reserved_ms")

    def __init__(
        self,
        last: int = 0,
        *,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        reserve_ms: int = DEFAULT_RESERVE_MS,
        reserved_ms: int = -1,
    ) -> None:
        if max_drift_ms <= 0 or reserve_ms <= 1:
            raise ValueError("max_drift_ms must be positive and reserve_ms greater than 1")
        self.last = last
        self.max_drift_ms = max_drift_ms
        self.reserve_ms = reserve_ms
        #: The persisted high-water mark (ms): every timestamp that left this process
        #: has a physical part at most this. -1 until the first reservation.
        self.reserved_ms = reserved_ms

    @classmethod
    def resume(cls, high_water_ms: int, **options: int) -> HLC:
        """The clock of a restarted node whose persisted high-water mark is ``high_water_ms``:
        every timestamp it hands out is above every timestamp handed out before the restart."""
        return cls(pack(high_water_ms + 1, 0), reserved_ms=high_water_ms, **options)

    def now(self, wall_ms: int) -> int:
        """Timestamp for a local event (a write, or a message sent)."""
        candidate = wall_ms << LOGICAL_BITS
        last = self.last
        self.last = candidate if candidate > last else last + 1
        return self.last

    def drift_ms(self, remote: int, wall_ms: int) -> int:
        """How far ``remote``'s physical part runs ahead of our wall clock (negative: behind)."""
        return (remote >> LOGICAL_BITS) - wall_ms

    def admits(self, remote: int, wall_ms: int) -> bool:
        """Whether ``remote`` is within the tolerated drift (``update`` would accept it)."""
        return (remote >> LOGICAL_BITS) - wall_ms <= self.max_drift_ms

    def update(self, remote: int, wall_ms: int) -> int | None:
        """Merge a timestamp received from a peer; returns the timestamp of the receive event.

        None when ``remote`` runs more than ``max_drift_ms`` ahead of ``wall_ms``: the clock
        is left as it was, and the caller must drop (and count) what carried it.
        """
        if (remote >> LOGICAL_BITS) - wall_ms > self.max_drift_ms:
            return None
        candidate = wall_ms << LOGICAL_BITS
        self.last = max(candidate, self.last + 1, remote + 1)
        return self.last

    def high_water_due(self) -> int | None:
        """A new high-water mark (ms) the shell must persist before sending anything, or None.

        Returned when the clock is within half a reservation window of the mark already
        reserved (or past it, after a jump); the clock then counts the new mark as
        reserved, trusting the shell to keep the obligation.
        """
        physical = self.last >> LOGICAL_BITS
        if physical + self.reserve_ms // 2 <= self.reserved_ms:
            return None
        self.reserved_ms = physical + self.reserve_ms
        return self.reserved_ms
