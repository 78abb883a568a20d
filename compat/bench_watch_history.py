#!/usr/bin/env python3
"""What the watch history really costs in memory, against what it accounts for (``watch-history-max-bytes``).

    python compat/bench_watch_history.py

Theory of operation. For each scenario the same stream of desired-plane writes is applied twice to a plain
dict standing in for the keyspace (entries are the keyspace's immutable tuples): once alone, once with a
``WatchHistory`` recording every change, as the desired plane's change feed does. The difference in
traced memory (``tracemalloc``) is what the history really costs, since values still current are shared
with the keyspace and only the replaced ones are kept alive by the history. It is set beside the
history's own accounting (``bytes``), and beside what a history keeping its own copy of every value
would have needed on top. No server is started; the numbers are CPython's own allocations.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vfsd.watch.history import WatchHistory  # noqa: E402

SCENARIOS = (
    ("100,000 writes, each to a new path, 100-byte values", 100_000, 100_000, 100),
    ("100,000 writes over 1,000 paths, 100-byte values", 100_000, 1_000, 100),
    ("10,000 writes over 100 paths, 10 KiB values", 10_000, 100, 10_240),
)


def run(writes: int, paths: int, value_bytes: int, with_history: bool) -> tuple[int, int]:
    names = [b"/ctx/app/%06d" % i for i in range(paths)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keyspace: dict[bytes, tuple] = {}
    history = WatchHistory(max_revisions=10 * writes, max_bytes=1 << 40) if with_history else None
    for revision in range(1, writes + 1):
        path = names[revision % paths]
        entry = (bytes([revision % 251]) * value_bytes, 0, revision, "n1", 0, 0)  # a fresh value object each time
        keyspace[path] = entry
        if history is not None:
            history.record(revision, path, "set", "n1", entry)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, history.bytes if history is not None else 0


def main() -> int:
    print("| scenario | history costs (measured) | per change | history accounts | a copying history would add |")
    print("|---|---:|---:|---:|---:|")
    for label, writes, paths, value_bytes in SCENARIOS:
        alone, _ = run(writes, paths, value_bytes, with_history=False)
        both, accounted = run(writes, paths, value_bytes, with_history=True)
        cost = both - alone
        print(f"| {label} | {cost / 2**20:.1f} MiB | {cost / writes:.0f} B | {accounted / 2**20:.1f} MiB "
              f"| {writes * value_bytes / 2**20:.1f} MiB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
