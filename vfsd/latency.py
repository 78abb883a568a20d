"""LATENCY: per event, the latency spikes of the last 160 seconds that reached ``latency-monitor-threshold`` ms.

As Redis's latency.c: each event keeps a ring of 160 samples, one per second
(a second spike in the same second keeps the larger), and its all-time maximum.
vfsd's events are Redis's ``command`` (a command without the fast flag) and
``fast-command``. A threshold of 0 (the default) switches monitoring off. No
clock is read here: samples come with their unix time.
"""

from __future__ import annotations

from typing import Final

SAMPLES: Final = 160

NO_SPIKES: Final = ("Dave, no latency spike was observed during the lifetime of this Redis instance, not in the "
                    "slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think "
                    "things over.\n")


DISABLED: Final = ("I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You "
                   "may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we "
                   "weren't in a deep space mission I'd suggest to take a look at "
                   "https://redis.io/topics/latency-monitor.\n")


class Series:
    __slots__ = ("samples", "max_ms")

    def __init__(self) -> None:
        self.samples: list[tuple[int, int]] = []  # (unix time, ms), oldest first
        self.max_ms = 0


class LatencyMonitor:
    def __init__(self, threshold_ms: int = 0) -> None:
        self.threshold_ms = threshold_ms
        self.events: dict[str, Series] = {}

    def add(self, event: str, latency_ms: int, now_s: int) -> None:
        """A spike (the caller checked it reached the threshold)."""
        series = self.events.get(event)
        if series is None:
            series = self.events[event] = Series()
        series.max_ms = max(series.max_ms, latency_ms)
        samples = series.samples
        if samples and samples[-1][0] == now_s:
            if latency_ms > samples[-1][1]:
                samples[-1] = (now_s, latency_ms)
            return
        samples.append((now_s, latency_ms))
        if len(samples) > SAMPLES:
            del samples[0]

    def latest(self) -> list[list[object]]:
        """LATENCY LATEST: event, time of the latest spike, its latency, the all-time maximum."""
        return [[name.encode(), s.samples[-1][0], s.samples[-1][1], s.max_ms] for name, s in self.events.items()]

    def history(self, event: str) -> list[list[int]]:
        series = self.events.get(event)
        return [] if series is None else [[t, ms] for t, ms in series.samples]

    def reset(self, events: list[str] | None = None) -> int:
        """Forget the named events (all when None); how many there were."""
        if events is None:
            count = len(self.events)
            self.events.clear()
            return count
        return sum(self.events.pop(e, None) is not None for e in dict.fromkeys(events))

    def doctor(self) -> str:
        """LATENCY DOCTOR: one line per event with its spikes (Redis's wording), or Redis's all-clear (or its
        "monitoring is disabled", when it is and nothing was recorded)."""
        if not self.events:
            return DISABLED if not self.threshold_ms else NO_SPIKES
        lines = ["Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, "
                 "do you Dave?\n"]
        for number, (name, series) in enumerate(self.events.items(), 1):
            values = [ms for _, ms in series.samples]
            mean = sum(values) / len(values)
            deviation = sum(abs(v - mean) for v in values) / len(values)
            times = [t for t, _ in series.samples]
            period = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
            lines.append(f"{number}. {name}: {len(values)} latency spikes (average {int(mean)}ms, mean deviation "
                         f"{int(deviation)}ms, period {period:.2f} sec). Worst all time event {series.max_ms}ms.\n")
        return "\n".join(lines)
