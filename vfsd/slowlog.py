"""SLOWLOG: the most recent commands that took at least ``slowlog-log-slower-than`` microseconds.

As Redis's slowlog.c: newest first, at most ``slowlog-max-len`` entries; an
entry holds an id (counting from 0 since start, never reused), the unix time,
the duration in microseconds, the arguments (at most 32: the last then says how
many more there were; each at most 128 bytes, then how many more bytes), the
client's address and name. Credentials are redacted as MONITOR redacts them.
A threshold below 0 or a length of 0 switches it off. No clock is read here.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from vfsd.monitor import redacted

MAX_ARGS = 32
MAX_ARG_BYTES = 128


class SlowLog:
    def __init__(self, slower_than_us: int = 10_000, max_len: int = 128) -> None:
        self.slower_than_us = slower_than_us
        self.max_len = max_len
        self.entries: deque[list[Any]] = deque()
        self.next_id = 0

    def wants(self, duration_us: int) -> bool:
        return 0 <= self.slower_than_us <= duration_us and self.max_len > 0

    def add(self, argv: list[bytes], duration_us: int, now_s: int, addr: str, name: bytes) -> None:
        self.entries.appendleft([self.next_id, now_s, duration_us, _logged_args(redacted(argv)), addr.encode(), name])
        self.next_id += 1
        self.trim()

    def trim(self) -> None:
        while len(self.entries) > self.max_len:
            self.entries.pop()

    def get(self, count: int) -> list[list[Any]]:
        """The ``count`` newest entries (-1: all)."""
        if count < 0 or count > len(self.entries):
            count = len(self.entries)
        return [self.entries[i] for i in range(count)]

    def reset(self) -> None:
        self.entries.clear()


def _logged_args(argv: list[bytes]) -> list[bytes]:
    out = []
    shown = min(len(argv), MAX_ARGS)
    for j in range(shown):
        if shown != len(argv) and j == shown - 1:
            out.append(b"... (%d more arguments)" % (len(argv) - shown + 1))
        elif len(argv[j]) > MAX_ARG_BYTES:
            out.append(argv[j][:MAX_ARG_BYTES] + b"... (%d more bytes)" % (len(argv[j]) - MAX_ARG_BYTES))
        else:
            out.append(argv[j])
    return out
