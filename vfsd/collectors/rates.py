"""Rates from counters: pure functions of (value, timestamp) samples.

Operating-system counters (bytes received, sectors written, CPU ticks) only
grow, except when they do not: a 32-bit counter wraps, a NIC driver is
reloaded, a device is removed and re-created, a container restarts. Every such
event shows up as a sample smaller than the one before.

Reset handling follows Prometheus's ``rate()``: a counter that went down is
taken to have restarted from zero during the interval, so the increase over the
interval is the new value itself. That is never negative, and never the
absurd spike that assuming a 32- or 64-bit wrap produces when the drop was in
fact a reset; at worst it undercounts one interval (if the counter reset and
then climbed past its old value, nothing can tell, and nobody can do better
from two samples).

A first sample, or a sample whose timestamp did not advance, has no rate
(``None``): a caller omits the field rather than publishing a made-up zero.
Timestamps are monotonic seconds passed in by the caller; nothing here reads
a clock.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping


def counter_increase(previous: float, current: float) -> float:
    """How much a counter grew between two samples, treating a decrease as a reset to zero."""
    delta = current - previous
    return current if delta < 0 else delta


def counter_rate(previous: float, previous_s: float, current: float, current_s: float) -> float | None:
    """Per-second rate between two samples; None when time did not advance."""
    elapsed = current_s - previous_s
    if elapsed <= 0:
        return None
    return counter_increase(previous, current) / elapsed


class CounterRates:
    """Remembers the last sample of many counters (keyed by anything hashable) and turns new samples into rates."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, float]] = {}

    def rate(self, key: Hashable, value: float, now_s: float) -> float | None:
        """The rate since this key's last sample, or None (first sample, or time did not advance)."""
        last = self._last.get(key)
        if last is not None and now_s <= last[1]:
            return None  # keep the older sample so the next call measures a real interval
        self._last[key] = (value, now_s)
        if last is None:
            return None
        return counter_rate(last[0], last[1], value, now_s)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (an interface or disk that went away)."""
        keep = set(keys)
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]

    def __len__(self) -> int:
        return len(self._last)


#: CPU time fields that count as idle (psutil counts iowait as idle, as does top).
IDLE_FIELDS = ("idle", "iowait")
#: Linux already counts guest time inside user and nice; adding it again would count it twice.
GUEST_FIELDS = ("guest", "guest_nice")


def cpu_percentages(previous: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float] | None:
    """Busy and per-mode percentages between two CPU-times samples (``psutil.cpu_times()._asdict()``).

    Returns ``{"cpu_percent": busy, "<mode>_percent": ...}`` or None when no
    time passed. A single mode that goes backwards counts as zero: Linux's
    ``iowait`` is documented to decrease at times, and dropping the whole
    sample for it would leave the node without a CPU figure.
    """
    deltas = {name: max(0.0, current[name] - previous.get(name, 0.0)) for name in current if name not in GUEST_FIELDS}
    total = sum(deltas.values())
    if total <= 0:
        return None
    idle = sum(deltas.get(name, 0.0) for name in IDLE_FIELDS)
    out = {"cpu_percent": _clamp_percent(100.0 * (total - idle) / total)}
    for name, delta in deltas.items():
        out[name + "_percent"] = _clamp_percent(100.0 * delta / total)
    return out


def _clamp_percent(value: float) -> float:
    return min(100.0, max(0.0, value))
