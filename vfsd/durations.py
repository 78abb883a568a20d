"""Where a command's duration goes: SLOWLOG and LATENCY, each past its own threshold.

The client shell times each command it runs (one monotonic clock read per
command, chained: a command's time runs from the end of the one before in its
batch, its reply's encoding included) and hands the durations here only while
one of the two is on; ``threshold_ns`` is the smaller of their thresholds, or -1
when both are off, so the shell compares one integer.
"""

from __future__ import annotations

import time
from typing import Any

from vfsd.commands.table import TABLE
from vfsd.latency import LatencyMonitor
from vfsd.slowlog import SlowLog


class CommandTimer:
    def __init__(self, slowlog: SlowLog, latency: LatencyMonitor) -> None:
        self.slowlog = slowlog
        self.latency = latency
        self.threshold_ns = -1
        self.update()

    def update(self) -> None:
        """Recompute ``threshold_ns`` after a threshold changed."""
        limits = []
        if self.slowlog.slower_than_us >= 0 and self.slowlog.max_len > 0:
            limits.append(self.slowlog.slower_than_us * 1000)
        if self.latency.threshold_ms > 0:
            limits.append(self.latency.threshold_ms * 1_000_000)
        self.threshold_ns = min(limits) if limits else -1

    def record(self, client: Any, argv: list[bytes], took_ns: int) -> None:
        """A command of ``client`` took ``took_ns`` (at least ``threshold_ns``)."""
        spec = _spec(argv)
        if spec is not None and spec.name == "exec" and spec.parent is None:
            return  # EXEC is skipped (Redis's skip_slowlog): the commands it ran are logged themselves
        now_s = int(time.time())
        us = took_ns // 1000
        if self.slowlog.wants(us):
            self.slowlog.add(argv, us, now_s, client.addr, client.name)
        ms = took_ns // 1_000_000
        if self.latency.threshold_ms and ms >= self.latency.threshold_ms:
            fast = spec is not None and "fast" in spec.flags
            self.latency.add("fast-command" if fast else "command", ms, now_s)


def _spec(argv: list[bytes]) -> Any:
    spec = TABLE.get(argv[0].decode(errors="replace").lower()) if argv else None
    if spec is not None and "container" in spec.flags and len(argv) > 1:
        return spec.subcommands.get(argv[1].decode(errors="replace").lower(), spec)
    return spec
