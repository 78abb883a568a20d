#!/usr/bin/env python3
"""The desired plane against etcd: a 3-node vfsd cluster and a 3-member etcd cluster, same run.

    python compat/bench_raft.py [--seconds S] [--trials N]

Needs Debian's ``etcd-server`` (``apt-get install etcd-server``) and the asyncio etcd
client ``aetcd`` (``pip install aetcd``); vfsd is driven by ``redis.asyncio``, so both
sides use an asyncio client of similar weight from one Python process.

Theory of operation. Both clusters run on loopback with their default timeouts and
fsync on every voter (etcd always fsyncs its WAL; vfsd fsyncs each Ready's batch).
Each workload runs against one node that is *not* the leader, so a write always
crosses the network to the leader and back, and reads take their linearizable path
(etcd's default serializable=false Range; vfsd's ReadIndex):

* committed writes/s with 1 write in flight, then with 64 in flight (100-byte values
  on distinct keys);
* linearizable read latency p50/p99 (one read in flight);
* leader failover over ``--trials`` trials: kill -9 the leader, then time until the
  first write through a surviving node succeeds; the killed node is restarted and the
  cluster left to settle before the next trial.

Both clusters run for the whole measurement and the workloads alternate between them
(``--rounds`` interleaved rounds, the best figure of each kept; failover trials
alternate too), so a shared machine's changing load falls on both alike.

Figures are printed side by side with vfsd/etcd ratios. This is a measurement, not a
test: the exit code is 0 whatever the figures are.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis.asyncio as aioredis  # noqa: E402

VALUE = b"v" * 100


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = await predicate()
            if result:
                return result
        except Exception:
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


class Members:
    """N processes started from argv lists; restart() and kill9() one; stop() all."""

    def __init__(self, root: Path, argvs: dict[str, list[str]]) -> None:
        self.root = root
        self.argvs = argvs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(self.argvs[name], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_all(self) -> None:
        for name in self.argvs:
            self.start(name)

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# -- vfsd --------------------------------------------------------------------------------------


class _Cluster:
    """What both clusters share: their processes (``members``), client ports (``ports``), start-up."""

    name = ""
    ports: dict[str, int]
    members: Members

    async def start(self) -> None:
        self.members.start_all()
        await until(self._all_up, 30, f"{self.name} members")
        await self.leader()  # type: ignore[attr-defined]  (each cluster finds its leader its own way)

    async def _all_up(self) -> bool:
        return all(answers(p) for n, p in self.ports.items() if self.members.procs[n].poll() is None)


class Vfsd(_Cluster):
    name = "vfsd"

    def __init__(self, root: Path) -> None:
        ports = free_ports(6)
        self.ports = {f"n{i + 1}": ports[i] for i in range(3)}
        peer_ports = {f"n{i + 1}": ports[3 + i] for i in range(3)}
        peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in peer_ports.items())
        argvs = {n: [sys.executable, "-m", "vfsd", "serve", "--node-id", n, "--port", str(self.ports[n]),
                     "--peer-port", str(peer_ports[n]), "--peers", peers, "--data-dir", str(root / n),
                     "--no-collectors", "--log-level", "warning"] for n in self.ports}
        self.members = Members(root, argvs)

    async def leader(self, among: list[str] | None = None) -> str:
        async def find() -> str | None:
            names = among or [n for n, p in self.members.procs.items() if p.poll() is None]
            for n in names:
                async with aioredis.Redis(port=self.ports[n], socket_timeout=2) as r:
                    info = await r.info("raft")
                    if info.get("role") == "leader":
                        return n
            return None
        return await until(find, 30, "a vfsd leader")

    def client(self, node: str) -> Any:
        return aioredis.Redis(port=self.ports[node], socket_timeout=5)

    async def put(self, c: Any, key: str) -> None:
        await c.set("/ctx/bench/" + key, VALUE)

    async def get(self, c: Any, key: str) -> None:
        await c.get("/ctx/bench/" + key)

    async def close(self, c: Any) -> None:
        await c.aclose()


# -- etcd --------------------------------------------------------------------------------------


class Etcd(_Cluster):
    name = "etcd"

    def __init__(self, root: Path) -> None:
        ports = free_ports(6)
        self.ports = {f"e{i + 1}": ports[i] for i in range(3)}
        peer_ports = {f"e{i + 1}": ports[3 + i] for i in range(3)}
        initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in peer_ports.items())
        argvs = {}
        for n in self.ports:
            client_url = f"http://127.0.0.1:{self.ports[n]}"
            peer_url = f"http://127.0.0.1:{peer_ports[n]}"
            argvs[n] = ["etcd", "--name", n, "--data-dir", str(root / n), "--listen-client-urls", client_url,
                        "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
                        "--initial-advertise-peer-urls", peer_url, "--initial-cluster", initial,
                        "--initial-cluster-state", "new", "--initial-cluster-token", "bench",
                        "--log-level", "warn"]
        self.members = Members(root, argvs)

    async def leader(self, among: list[str] | None = None) -> str:
        import aetcd

        async def find() -> str | None:
            names = among or [n for n, p in self.members.procs.items() if p.poll() is None]
            for n in names:
                async with aetcd.Client(port=self.ports[n], timeout=2) as c:
                    status = await c.status()
                    if status.leader is not None and status.leader.name in names:
                        return status.leader.name
            return None
        return await until(find, 30, "an etcd leader")

    def client(self, node: str) -> Any:
        import aetcd

        return aetcd.Client(port=self.ports[node], timeout=5)

    async def put(self, c: Any, key: str) -> None:
        await c.put(b"/bench/" + key.encode(), VALUE)

    async def get(self, c: Any, key: str) -> None:
        await c.get(b"/bench/" + key.encode())

    async def close(self, c: Any) -> None:
        await c.close()


# -- workloads ---------------------------------------------------------------------------------


async def writes_per_second(system: Any, node: str, in_flight: int, seconds: float) -> float:
    clients = [system.client(node) for _ in range(min(in_flight, 8))]
    done = 0
    stop = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        c = clients[i % len(clients)]
        n = 0
        while time.monotonic() < stop:
            await system.put(c, f"w{i}-{n % 1000}")
            n += 1
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(in_flight)))
    elapsed = time.monotonic() - start
    for c in clients:
        await system.close(c)
    return done / elapsed


async def timed(op: Any, seconds: float) -> tuple[float, float]:
    """p50 and p99 in ms of ``await op()``, one at a time, for ``seconds``."""
    samples = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        t0 = time.perf_counter()
        await op()
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


async def read_latency(system: Any, node: str, seconds: float) -> tuple[float, float]:
    c = system.client(node)
    await system.put(c, "r")
    result = await timed(lambda: system.get(c, "r"), seconds)
    await system.close(c)
    return result


async def failover(system: Any, trials: int) -> list[float]:
    out = []
    for _ in range(trials):
        leader = await system.leader()
        survivor = next(n for n in system.ports if n != leader)
        c = system.client(survivor)
        await system.put(c, "f")
        system.members.kill9(leader)
        t0 = time.monotonic()
        while True:
            try:
                await asyncio.wait_for(system.put(c, "f"), 0.25)
                break
            except Exception:
                await system.close(c)
                c = system.client(survivor)
                if time.monotonic() - t0 > 30:
                    raise RuntimeError(f"{system.name}: no write 30 s after the leader died") from None
        out.append(time.monotonic() - t0)
        await system.close(c)
        system.members.start(leader)
        await until(system._all_up, 30, "the killed node back")
        await asyncio.sleep(1.0)
    return out


async def measure_both(systems: list[Any], seconds: float, trials: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Both clusters up at once; each workload runs on one, then the other, ``rounds`` times
    (ABAB...), and the best figure of each is kept: a shared machine's load changes over a run, and
    interleaving gives both systems the same conditions (noise only ever makes a figure worse)."""
    for system in systems:
        await system.start()
    try:
        nodes = {}
        for system in systems:
            leader = await system.leader()
            nodes[system.name] = next(n for n in system.ports if n != leader)
        out: dict[str, dict[str, Any]] = {s.name: {"failover": []} for s in systems}
        for _ in range(rounds):
            for system in systems:
                r = out[system.name]
                node = nodes[system.name]
                r["writes_1"] = max(r.get("writes_1", 0.0), await writes_per_second(system, node, 1, seconds))
                r["writes_64"] = max(r.get("writes_64", 0.0), await writes_per_second(system, node, 64, seconds))
                p50, p99 = await read_latency(system, node, seconds)
                r["read_p50"] = min(r.get("read_p50", p50), p50)
                r["read_p99"] = min(r.get("read_p99", p99), p99)
        for _ in range(trials):
            for system in systems:
                out[system.name]["failover"] += await failover(system, 1)
        return out
    finally:
        for system in systems:
            system.members.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each throughput and latency run")
    ap.add_argument("--trials", type=int, default=10, help="leader failover trials")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of each workload (best kept)")
    args = ap.parse_args()
    if shutil.which("etcd") is None:
        sys.exit("etcd not found: apt-get install etcd-server")
    try:
        import aetcd  # noqa: F401
    except ImportError:
        sys.exit("aetcd not found: pip install aetcd")
    root = Path(tempfile.mkdtemp(prefix="vfsd-bench-raft-"))
    try:
        systems = [Vfsd(root / "vfsd"), Etcd(root / "etcd")]
        for system in systems:
            (root / system.name).mkdir(parents=True, exist_ok=True)
        results = asyncio.run(measure_both(systems, args.seconds, args.trials, args.rounds))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    v, e = results["vfsd"], results["etcd"]

    def row(label: str, a: float, b: float, unit: str, higher_better: bool = True) -> str:
        ratio = a / b if b else float("nan")
        return f"| {label} | {a:,.1f} {unit} | {b:,.1f} {unit} | {ratio:.2f} |"

    print("| 3 voters on loopback, fsync on every voter, client on a follower | vfsd | etcd | vfsd/etcd |")
    print("|---|---|---|---|")
    print(row("committed writes/s, 1 in flight", v["writes_1"], e["writes_1"], "/s"))
    print(row("committed writes/s, 64 in flight", v["writes_64"], e["writes_64"], "/s"))
    print(row("linearizable read p50", v["read_p50"], e["read_p50"], "ms", False))
    print(row("linearizable read p99", v["read_p99"], e["read_p99"], "ms", False))
    vf, ef = sorted(v["failover"]), sorted(e["failover"])
    print(row("failover median (kill -9 leader → first write)", statistics.median(vf), statistics.median(ef), "s",
              False))
    print(row("failover max", vf[-1], ef[-1], "s", False))
    print(f"\n({args.trials} failover trials each; vfsd {', '.join(f'{x:.2f}' for x in vf)} s; "
          f"etcd {', '.join(f'{x:.2f}' for x in ef)} s)")


if __name__ == "__main__":
    main()
