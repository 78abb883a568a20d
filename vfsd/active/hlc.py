"""Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).

A timestamp is one integer: wall-clock milliseconds in the high bits and a
16-bit logical counter in the low bits, so timestamps compare as plain ints
and stay close to real time while still ordering causally related events when
clocks disagree. The wall clock is a parameter: this module reads no clock.
"""

from __future__ import annotations

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def pack(physical_ms: int, logical: int) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def physical_ms(ts: int) -> int:
    return ts >> LOGICAL_BITS


class HLC:
    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def now(self, wall_ms: int) -> int:
        """Timestamp for a local event (a write, or a message sent)."""
        candidate = wall_ms << LOGICAL_BITS
        last = self.last
        self.last = candidate if candidate > last else last + 1
        return self.last

    def update(self, remote: int, wall_ms: int) -> int:
        """Merge a timestamp received from a peer; returns the timestamp of the receive event."""
        candidate = wall_ms << LOGICAL_BITS
        self.last = max(candidate, self.last + 1, remote + 1)
        return self.last
