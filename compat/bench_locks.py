#!/usr/bin/env python3
"""Locks: vfsd's LOCK.ACQUIRE/LOCK.RELEASE on a 3-node cluster against etcd's lock, same run.

    python compat/bench_locks.py [--seconds S]

Needs what ``compat/bench_raft.py`` needs (Debian's ``etcd-server``, ``pip install aetcd``);
it reuses that script's cluster set-up. etcd's side is aetcd's ``Client.lock``: a lease, a
transaction that creates the lock key if absent, and a watch on its deletion (the
recipe of etcd's v3 concurrency API), through the same asyncio gRPC client.

Workloads, each against a node that is not the leader: acquire+release latency p50/p99
with one client (no contention), then lock cycles/s (acquire, release) with 1 and with 16
clients contending for one lock. A measurement, not a test: the exit code is 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compat.bench_raft import Etcd, Vfsd, timed  # noqa: E402


async def cycle_vfsd(c: Any, owner: str) -> None:
    token = await c.execute_command("LOCK.ACQUIRE", "/lk/bench", owner, 10000, "WAIT", 30000)
    if token is None:
        raise RuntimeError("vfsd: lock not granted within 30 s")
    await c.execute_command("LOCK.RELEASE", "/lk/bench", owner)


async def cycle_etcd(c: Any, owner: str) -> None:
    lock = c.lock(b"/bench-lock", ttl=10)
    if not await lock.acquire(timeout=30):
        raise RuntimeError("etcd: lock not granted within 30 s")
    await lock.release()


async def latency(system: Any, node: str, seconds: float) -> tuple[float, float]:
    c = system.client(node)
    cycle = cycle_vfsd if system.name == "vfsd" else cycle_etcd
    result = await timed(lambda: cycle(c, "solo"), seconds)
    await system.close(c)
    return result


async def throughput(system: Any, node: str, clients: int, seconds: float) -> float:
    conns = [system.client(node) for _ in range(clients)]
    cycle = cycle_vfsd if system.name == "vfsd" else cycle_etcd
    done = 0
    stop = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        while time.monotonic() < stop:
            await cycle(conns[i], f"c{i}")
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    elapsed = time.monotonic() - start
    for c in conns:
        await system.close(c)
    return done / elapsed


async def measure(system: Any, seconds: float) -> dict[str, float]:
    await system.start()
    try:
        leader = await system.leader()
        node = next(n for n in system.ports if n != leader)
        out: dict[str, float] = {}
        out["p50"], out["p99"] = await latency(system, node, seconds)
        out["t1"] = await throughput(system, node, 1, seconds)
        out["t16"] = await throughput(system, node, 16, seconds)
        return out
    finally:
        system.members.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("etcd not found: apt-get install etcd-server")
    root = Path(tempfile.mkdtemp(prefix="vfsd-bench-locks-"))
    try:
        results = {}
        for system in (Vfsd(root / "vfsd"), Etcd(root / "etcd")):
            (root / system.name).mkdir(parents=True, exist_ok=True)
            results[system.name] = asyncio.run(measure(system, args.seconds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    v, e = results["vfsd"], results["etcd"]
    print("| lock on a 3-node cluster, client on a follower | vfsd | etcd | vfsd/etcd |")
    print("|---|---|---|---|")
    print(f"| acquire+release p50, no contention | {v['p50']:.1f} ms | {e['p50']:.1f} ms | {v['p50'] / e['p50']:.2f} |")
    print(f"| acquire+release p99, no contention | {v['p99']:.1f} ms | {e['p99']:.1f} ms | {v['p99'] / e['p99']:.2f} |")
    print(f"| lock cycles/s, 1 client | {v['t1']:.0f} | {e['t1']:.0f} | {v['t1'] / e['t1']:.2f} |")
    print(f"| lock cycles/s, 16 contending clients | {v['t16']:.0f} | {e['t16']:.0f} | {v['t16'] / e['t16']:.2f} |")


if __name__ == "__main__":
    main()
