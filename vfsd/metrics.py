"""Counters and rates for INFO: plain data, fed by the client shell and a 10 Hz cron.

Rates (``instantaneous_ops_per_sec`` and the kbps figures) are computed as Redis's
serverCron does: every tick samples a counter's growth per second since the previous
sample into a ring of ``SAMPLES`` slots, and the rate is the ring's mean, so a burst
shows for about 1.6 s and then fades. Time comes in as ``now_ms``: nothing here reads a
clock.
"""

from __future__ import annotations

#: Slots in each rate's ring (Redis's STATS_METRIC_SAMPLES).
SAMPLES = 16


class Rate:
    """Mean per-second growth of a counter over the last ``SAMPLES`` samples."""

    __slots__ = ("_ring", "_at", "_last_ms", "_last_value")

    def __init__(self) -> None:
        self._ring = [0.0] * SAMPLES
        self._at = 0
        self._last_ms: int | None = None
        self._last_value = 0

    def sample(self, now_ms: int, value: int) -> None:
        if self._last_ms is not None and now_ms > self._last_ms:
            self._ring[self._at] = (value - self._last_value) * 1000 / (now_ms - self._last_ms)
            self._at = (self._at + 1) % SAMPLES
        self._last_ms, self._last_value = now_ms, value

    def per_second(self) -> float:
        return sum(self._ring) / SAMPLES


class Stats:
    """Counters for INFO stats: plain attributes, since the client shell bumps them on every batch."""

    __slots__ = ("total_connections_received", "total_commands_processed", "net_input_bytes", "net_output_bytes",
                 "error_replies", "protocol_errors", "client_output_limit_disconnections", "client_output_pauses", "rejected_connections",
                 "error_codes", "used_memory_peak", "ops_rate", "input_rate", "output_rate")

    def __init__(self) -> None:
        self.total_connections_received = 0
        self.total_commands_processed = 0
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.error_replies = 0
        self.protocol_errors = 0
        self.client_output_limit_disconnections = 0
        self.client_output_pauses = 0
        self.rejected_connections = 0
        #: Error replies by their first word (``ERR``, ``WRONGTYPE``...), for INFO errorstats.
        self.error_codes: dict[str, int] = {}
        self.used_memory_peak = 0
        self.ops_rate = Rate()
        self.input_rate = Rate()
        self.output_rate = Rate()

    def count_error(self, message: str) -> None:
        self.error_replies += 1
        code = message.split(" ", 1)[0][:32] or "ERR"
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def sample(self, now_ms: int, rss_bytes: int) -> None:
        """One cron tick: feed the rates, and the memory peak."""
        self.ops_rate.sample(now_ms, self.total_commands_processed)
        self.input_rate.sample(now_ms, self.net_input_bytes)
        self.output_rate.sample(now_ms, self.net_output_bytes)
        if rss_bytes > self.used_memory_peak:
            self.used_memory_peak = rss_bytes

