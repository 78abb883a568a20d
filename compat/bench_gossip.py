#!/usr/bin/env python3
"""The active plane across real nodes: replication latency, repair after a partition, failure
detection, and what replication costs a node's write throughput.

    python compat/bench_gossip.py [--writes 1000] [--requests 200000] [--trials 3] [--rounds 3] [--quick]
                                  [--only latency,partition,detection,throughput]

Theory of operation. Every figure comes from ``vfsd serve`` processes on loopback, started
here with the default (LAN) gossip profile, collectors off and no scheduled saves, each
in its own process group (stopped on the way out whatever happens).

1. **Write to visible on all 5.** Five nodes; a raw-socket subscriber on each node holds
   ``PSUBSCRIBE __keyspace@0__:/run/lat/*``. Writes go one at a time, round robin over
   the nodes; a write's latency runs from sending its SET to the moment the last of the
   five subscribers has its keyspace notification (so it includes the RESP round trip on
   the writing node and one notification hop on each). p50/p99/max over ``--writes``.
2. **Convergence after a healed partition.** Five nodes, each peer port behind the
   fault-injecting proxy of the tests (tests/faultproxy.py; nodes advertise the proxy).
   200 keys are written and replicated; then {n1,n2} | {n3,n4,n5} are cut apart. On each
   side: 200 new keys, 50 deletes of the shared keys, and on the larger side 50 rewrites.
   Once each side has declared the other dead, the network heals, and the clock runs
   until every node holds exactly the expected state (one MGET of every key per node per
   poll, every 10 ms) and until every node lists all five members alive again.
3. **Time to detect a stopped node.** Five nodes; SIGSTOP one, poll ``/itg/<node>`` on
   the other four every 10 ms: the first ``suspect``, and ``dead`` on all four; then
   SIGCONT and ``alive`` on all four. Compared with hashicorp/memberlist's LAN profile
   on five nodes, computed from its formulas (the profile vfsd's LAN profile copies).
4. **Active write throughput.** ``redis-benchmark`` SET on ``/run/bench/...`` paths
   (``-c 50 -r 100000``, ``-P 1`` and ``-P 16``) against a lone node and against one
   node of a 3-node cluster, in ``--rounds`` rounds of a lone run followed by the cluster
   runs. A cluster run's ratio is its ops/s over the lone run of its own round (this
   machine's speed drifts between minutes, so runs are compared with their neighbours),
   and the median round is reported with the range; each run's server CPU per write
   comes from ``/proc``. The cluster runs twice a round: with the other two nodes at the
   same priority (all four processes and redis-benchmark share the machine's cores, so
   the replicas' work of applying every write competes with the writer's), and with the
   other two at nice 19 (standing in for replicas on machines of their own; each node is
   a session of its own, so where the kernel schedules sessions as groups,
   ``sched_autogroup_enabled``, the group's nice is set too: a process's own nice value
   only weighs it within its group).
   Before and after each cluster run the three nodes must agree (equal ``digest_root`` in
   INFO gossip) and be idle; how long that took after a run is how long the replicas
   needed to catch up, and a replica's CPU per write counts until then.

``--only`` runs the named parts alone (comma-separated; the five-node cluster of parts 1
and 3 is started once for either). This is a measurement, not a test: the exit code is 0 whatever the figures are (1 when a
run breaks, 2 when redis-benchmark is missing).
"""

from __future__ import annotations

import argparse
import math
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hiredis
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.bench import CLK_TCK, Server, free_port, vfsd_command  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from vfsd.active.profile import LAN  # noqa: E402

VALUE = "xxx"
#: The parts, in the order they run (``--only``).
PARTS = ("latency", "partition", "detection", "throughput")


# -- clusters ----------------------------------------------------------------------------------


class Node:
    def __init__(self, name: str, server: Server, peer_port: int) -> None:
        self.name = name
        self.server = server
        self.peer_port = peer_port
        self.client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10, protocol=2)

    @property
    def port(self) -> int:
        return self.server.port

    def itg_state(self, name: str) -> str | None:
        raw = self.client.execute_command("JSON.GET", f"/itg/{name}", ".state")
        return None if raw is None else raw.decode().strip('"')


@contextmanager
def cluster(workdir: Path, n: int, *, proxy: FaultProxy | None = None, seeds: bool = True,
            tag: str = "c") -> Iterator[list[Node]]:
    """``n`` nodes joined by gossip (``seeds=False`` and ``n == 1``: a lone node)."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = [f"{tag}{i}" for i in range(1, n + 1)]
    peer_ports = {name: free_port() for name in names}
    advertised = {name: proxy.add(name, peer_ports[name]) if proxy else peer_ports[name] for name in names}
    seed_list = ",".join(f"127.0.0.1:{advertised[s]}" for s in names[:2])
    nodes: list[Node] = []
    try:
        for name in names:
            port = free_port()
            argv = [*vfsd_command(), "serve", "--port", str(port), "--data-dir", str(workdir / name), "--node-id", name,
                    "--log-level", "warning", "--no-collectors", "--peer-port", str(peer_ports[name])]
            if seeds:
                argv += ["--seeds", seed_list]
            env = {"VFSD_SAVE": "", "VFSD_GOSSIP_PROFILE": "lan"}
            if proxy:
                env["VFSD_PEER_ADVERTISE"] = f"127.0.0.1:{advertised[name]}"
            server = Server(name, argv, port, workdir / f"{name}.log", env=env)
            server.start()
            nodes.append(Node(name, server, peer_ports[name]))
        if seeds:
            wait(lambda: all(members_alive(x) == n for x in nodes), 30, "the cluster to form")
        yield nodes
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for node in nodes:
                node.client.close()
                try:
                    os.kill(node.server.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                node.server.stop()
        finally:
            signal.signal(signal.SIGINT, previous)


def members_alive(node: Node) -> int:
    return int(node.client.info("gossip").get("members_alive", 0))


def wait(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.01) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took (RuntimeError past the timeout)."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


# -- 1. write to visible on all ------------------------------------------------------------------


class Subscriber:
    """A raw RESP connection in PSUBSCRIBE: the keys whose "set" notification has arrived."""

    def __init__(self, port: int, pattern: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.reader = hiredis.Reader()
        self.sock.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(pattern), pattern))
        self.keys: set[bytes] = set()
        self.confirmed = False

    def on_readable(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise RuntimeError("a subscriber's connection closed")
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if reply[0] == b"psubscribe":
                self.confirmed = True
            elif reply[0] == b"pmessage" and reply[3] == b"set":
                self.keys.add(reply[2].split(b":", 1)[1])


def replication_latency(nodes: list[Node], writes: int) -> list[float]:
    """Seconds from sending each SET to its notification on every node (see the docstring)."""
    subscribers = [Subscriber(n.port, b"__keyspace@0__:/run/lat/*") for n in nodes]
    writers = [socket.create_connection(("127.0.0.1", n.port)) for n in nodes]
    for w in writers:
        w.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    selector = selectors.DefaultSelector()
    for sub in subscribers:
        selector.register(sub.sock, selectors.EVENT_READ, sub)
    try:
        wait_events(selector, lambda: all(s.confirmed for s in subscribers), 10)
        latencies = []
        for i in range(writes):
            key = b"/run/lat/%d" % i
            writer = writers[i % len(writers)]
            start = time.perf_counter()
            writer.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n" % (len(key), key))
            wait_events(selector, lambda k=key: all(k in s.keys for s in subscribers), 10)
            latencies.append(time.perf_counter() - start)
            if writer.recv(64) != b"+OK\r\n":  # long since arrived: the reply precedes the last hop
                raise RuntimeError("a SET was not answered +OK")
            for s in subscribers:
                s.keys.discard(key)
        return latencies
    finally:
        selector.close()
        for s in subscribers:
            s.sock.close()
        for w in writers:
            w.close()


def wait_events(selector: selectors.BaseSelector, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("timed out waiting for keyspace notifications")
        for key, _ in selector.select(left):
            key.data.on_readable()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


# -- 2. a healed partition -------------------------------------------------------------------------


def partition_convergence(nodes: list[Node], proxy: FaultProxy) -> dict[str, float]:
    a, b = nodes[:2], nodes[2:]
    first, other = a[0].client, b[0].client
    expected: dict[str, bytes | None] = {}
    pipe = first.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"/run/part/k{i}", f"v{i}")
        expected[f"/run/part/k{i}"] = f"v{i}".encode()
    pipe.execute()
    keys = sorted(expected)
    wait(lambda: all(n.client.mget(keys) == [expected[k] for k in keys] for n in nodes), 30, "the shared keys")
    proxy.partition({n.name for n in a}, {n.name for n in b})
    started = time.monotonic()
    pa, pb = first.pipeline(transaction=False), other.pipeline(transaction=False)
    for i in range(200):
        pa.set(f"/run/part/a{i}", "a")
        expected[f"/run/part/a{i}"] = b"a"
        pb.set(f"/run/part/b{i}", "b")
        expected[f"/run/part/b{i}"] = b"b"
    for i in range(50):
        pa.delete(f"/run/part/k{i}")
        expected[f"/run/part/k{i}"] = None
        pb.delete(f"/run/part/k{50 + i}")
        expected[f"/run/part/k{50 + i}"] = None
    pa.execute()
    for i in range(50):
        pb.set(f"/run/part/k{100 + i}", "rewritten")
        expected[f"/run/part/k{100 + i}"] = b"rewritten"
    pb.execute()
    wait(lambda: all(x.itg_state(y.name) == "dead" for x in a for y in b)
         and all(x.itg_state(y.name) == "dead" for x in b for y in a), 120, "each side to declare the other dead")
    detected = time.monotonic() - started
    keys = sorted(expected)
    want = [expected[k] for k in keys]
    proxy.heal()
    healed = time.monotonic()
    wait(lambda: all(n.client.mget(keys) == want for n in nodes), 60, "every node to hold the merged state")
    data_s = time.monotonic() - healed
    wait(lambda: all(members_alive(n) == len(nodes) for n in nodes), 60, "every member alive again")
    members_s = time.monotonic() - healed
    return {"partitioned_s": detected, "converged_s": data_s, "members_s": members_s, "keys": len(keys)}


# -- 3. failure detection --------------------------------------------------------------------------


def detection(nodes: list[Node], trials: int) -> list[dict[str, float]]:
    target = nodes[-1]
    observers = nodes[:-1]
    out = []
    for _ in range(trials):
        wait(lambda: all(o.itg_state(target.name) == "alive" for o in observers), 60, "the target alive")
        os.kill(target.server.pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            suspect_s = wait(lambda: any(o.itg_state(target.name) in ("suspect", "dead") for o in observers), 120,
                             "a suspicion")
            dead_s = wait(lambda: all(o.itg_state(target.name) == "dead" for o in observers), 120,
                          "dead on every observer") + suspect_s
        finally:
            os.kill(target.server.pid, signal.SIGCONT)
        back = time.monotonic()
        alive_s = wait(lambda: all(o.itg_state(target.name) == "alive" for o in observers), 120, "alive again")
        out.append({"suspect_s": suspect_s, "dead_s": dead_s, "alive_s": alive_s, "total_s": back - started})
    return out


def memberlist_lan(n: int) -> dict[str, float]:
    """memberlist's DefaultLANConfig on ``n`` nodes (the same formulas as vfsd.active.profile)."""
    p = LAN
    return {"probe_interval_s": p.probe_interval_ms / 1000, "suspicion_min_s": p.suspicion_min_ms(n) / 1000,
            "suspicion_max_s": p.suspicion_max_ms(n) / 1000, "confirmations": p.confirmations_wanted(n)}


# -- 4. write throughput -----------------------------------------------------------------------------


def benchmark(bench: str, node: Node, requests: int, pipeline: int) -> tuple[float, float]:
    """(ops/s, the node's CPU µs per request) of one redis-benchmark SET run on /run paths."""
    argv = [bench, "-h", "127.0.0.1", "-p", str(node.port), "-c", "50", "-n", str(requests), "-P", str(pipeline),
            "-r", "100000", "--csv", "SET", "/run/bench/__rand_int__", VALUE]
    before = node.server.cpu_ticks()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True).stdout
    cpu_us = (node.server.cpu_ticks() - before) / CLK_TCK * 1e6 / requests
    for line in out.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) > 1 and fields[0] != "test":
            return float(fields[1]), cpu_us
    raise RuntimeError(f"no result from redis-benchmark: {out!r}")


def quiet(nodes: list[Node], timeout_s: float = 120) -> float:
    """Wait until the nodes hold the same records (equal digest roots) and use no CPU to speak of."""
    def settled() -> bool:
        roots = {n.client.info("gossip")["digest_root"] for n in nodes}
        if len(roots) != 1:
            return False
        before = [n.server.cpu_ticks() for n in nodes]
        time.sleep(0.3)
        busy = max((n.server.cpu_ticks() - b) / CLK_TCK / 0.3 for n, b in zip(nodes, before))
        return busy < 0.1
    return wait(settled, timeout_s, "the cluster to settle", interval_s=0.05)


def renice(nodes: list[Node], value: int) -> None:
    """Set the nodes' nice value. Each node runs in a session of its own, and where the kernel
    groups sessions for scheduling (``sched_autogroup_enabled``) a process's nice value only
    weighs it against its own group: the group's nice (``/proc/<pid>/autogroup``) is what
    weighs it against the other nodes and redis-benchmark, so that is set too."""
    for n in nodes:
        os.setpriority(os.PRIO_PROCESS, n.server.pid, value)
        try:
            Path(f"/proc/{n.server.pid}/autogroup").write_text(f"{value}\n")
        except OSError:  # no autogroups on this kernel: the process nice value is the whole story
            pass


def throughput(bench: str, lone: Node, three: list[Node], requests: int, rounds: int) -> list[dict[str, object]]:
    """Rounds of a lone-node run followed by one on a node of three with the other two at the same
    priority (all on these cores) and one with them at nice 19 (standing in for nodes on machines
    of their own). A cluster run's ratio is to the lone run of its own round; a replica's CPU per
    write counts from the run's start until the replicas caught up."""
    rows: list[dict[str, object]] = []
    first, others = three[0], three[1:]
    for pipeline in (1, 16):
        runs: dict[str, list[tuple[float, float, float]]] = {"lone": [], "equal": [], "niced": []}
        caught_up = 0.0
        for _ in range(rounds):
            for mode in ("lone", "equal", "niced"):
                node = lone if mode == "lone" else first
                if mode != "lone":
                    quiet(three)
                    before = [n.server.cpu_ticks() for n in others]
                renice(others, 19 if mode == "niced" else 0)
                try:
                    ops, cpu = benchmark(bench, node, requests, pipeline)
                finally:
                    renice(others, 0)
                replica_cpu = 0.0
                if mode != "lone":
                    caught_up = max(caught_up, quiet(three))
                    replica_cpu = max((n.server.cpu_ticks() - b) / CLK_TCK * 1e6 / requests
                                      for n, b in zip(others, before))
                runs[mode].append((ops, cpu, replica_cpu))
        rows.append({"pipeline": pipeline, "caught_up_s": caught_up, **runs})
    info = first.client.info("gossip")
    rows.append({"bytes_sent": int(info["bytes_sent"]), "writes": 2 * 2 * rounds * requests})
    return rows


# -- report ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the throughput part (lone, then cluster)")
    parser.add_argument("--quick", action="store_true", help="fewer writes, requests and trials")
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"the parts to run, comma-separated, of: {', '.join(PARTS)} (default: all)")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts or parts - set(PARTS):
        parser.error(f"--only takes parts of: {', '.join(PARTS)} (got {args.only!r})")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1 (got {args.rounds})")
    if args.quick:
        args.writes, args.requests, args.trials, args.rounds = 200, 50_000, 1, 1
    bench = shutil.which("redis-benchmark")
    if bench is None:
        print("redis-benchmark is required (apt install redis-tools)", file=sys.stderr)
        return 2
    lines = ["| measure | vfsd | target / reference |", "|---|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="vfsd-bench-gossip-") as tmp:
        root = Path(tmp)
        try:
            if parts & {"latency", "detection"}:
                five(root, parts, args, lines)
            if "partition" in parts:
                partitioned(root, lines)
            if "throughput" in parts:
                throughputs(root, bench, args, lines)
        except (RuntimeError, subprocess.CalledProcessError, OSError, redis.RedisError) as exc:
            print(f"the benchmark broke: {exc}", file=sys.stderr)
            print("\n".join(lines))
            return 1
    print()
    print("\n".join(lines))
    return 0


def five(root: Path, parts: set[str], args: argparse.Namespace, lines: list[str]) -> None:
    """Parts 1 and 3, on one five-node cluster."""
    with cluster(root / "five", 5, tag="n") as nodes:
        if "latency" in parts:
            lat = replication_latency(nodes, args.writes)
            print(f"write -> visible on all 5, {len(lat)} writes: p50 {pct(lat, 50) * 1000:.2f} ms, "
                  f"p99 {pct(lat, 99) * 1000:.2f} ms, max {max(lat) * 1000:.2f} ms", flush=True)
            lines.append(f"| write → visible on all 5 nodes, p50 / p99 ({len(lat)} writes) | "
                         f"{pct(lat, 50) * 1000:.1f} ms / {pct(lat, 99) * 1000:.1f} ms | p99 < 100 ms |")
        if "detection" in parts:
            trials = detection(nodes, args.trials)
            ref = memberlist_lan(5)
            for t in trials:
                print(f"SIGSTOP: first suspicion {t['suspect_s']:.2f} s, dead on all 4 {t['dead_s']:.2f} s; "
                      f"after SIGCONT alive on all 4 in {t['alive_s']:.2f} s", flush=True)
            mean = {k: statistics.mean(t[k] for t in trials) for k in trials[0]}
            lines.append(f"| stopped node: first suspicion (mean of {len(trials)}) | {mean['suspect_s']:.1f} s | "
                         f"memberlist LAN: a failed probe, ≤ {ref['probe_interval_s']:.0f} s probe interval + "
                         f"timeout |")
            lines.append(f"| stopped node: dead on all 4 others | {mean['dead_s']:.1f} s | memberlist LAN, 5 "
                         f"nodes: suspicion {ref['suspicion_min_s']:.0f} s with {ref['confirmations']} "
                         f"confirmations ({ref['suspicion_max_s']:.0f} s with none) after the suspicion |")
            lines.append(f"| SIGCONT: alive again on all 4 | {mean['alive_s']:.1f} s | |")


def partitioned(root: Path, lines: list[str]) -> None:
    """Part 2."""
    proxy = FaultProxy()
    try:
        with cluster(root / "partition", 5, proxy=proxy, tag="p") as nodes:
            part = partition_convergence(nodes, proxy)
        print(f"partition {{p1,p2}} | {{p3,p4,p5}}: each side saw the other dead after "
              f"{part['partitioned_s']:.1f} s; after healing, {int(part['keys'])} keys identical on all 5 "
              f"in {part['converged_s']:.2f} s, every member alive in {part['members_s']:.2f} s", flush=True)
        lines.append(f"| healed partition (2 | 3 nodes, 400 writes, 100 deletes, 50 rewrites): every node "
                     f"identical | {part['converged_s']:.2f} s | < 2 s |")
        lines.append(f"| healed partition: all 5 members alive again | {part['members_s']:.2f} s | |")
    finally:
        proxy.close()


def throughputs(root: Path, bench: str, args: argparse.Namespace, lines: list[str]) -> None:
    """Part 4."""
    with cluster(root / "lone", 1, seeds=False, tag="l") as lone, cluster(root / "three", 3, tag="t") as three:
        rows = throughput(bench, lone[0], three, args.requests, args.rounds)
    for row in rows[:-1]:
        p = row["pipeline"]
        lone_runs = row["lone"]
        for mode, label in (("equal", "all 3 nodes on these 2 cores"), ("niced", "the other 2 at nice 19")):
            runs = row[mode]
            ratios = [run[0] / alone[0] for run, alone in zip(runs, lone_runs)]
            for (ops, cpu, rcpu), (lops, lcpu, _), ratio in zip(runs, lone_runs, ratios):
                print(f"SET /run paths -P {p}: lone {lops:.0f} ops/s ({lcpu:.1f} µs CPU each), one node of 3 "
                      f"({label}) {ops:.0f} ops/s ({cpu:.1f} µs; each replica up to {rcpu:.1f} µs), "
                      f"ratio {ratio:.2f}", flush=True)
            mid = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]  # the median round
            (ops, cpu, rcpu), (lops, lcpu, _) = runs[mid], lone_runs[mid]
            rounds = f"{len(ratios)} round{'s' if len(ratios) != 1 else ''}"
            lines.append(f"| active SET, one node of 3 / lone node, -P {p}, {label}: median of {rounds} (range) | "
                         f"{ratios[mid]:.2f} ({min(ratios):.2f}–{max(ratios):.2f}; median round: "
                         f"{ops / 1000:.1f}k / {lops / 1000:.1f}k ops/s, {cpu:.1f} / {lcpu:.1f} µs CPU per "
                         f"write, {rcpu:.1f} µs on each replica) | ≥ 0.5 |")
        print(f"  the other two held every write at most {row['caught_up_s']:.2f} s after a -P {p} run", flush=True)
    tail = rows[-1]
    print(f"{tail['bytes_sent'] / tail['writes']:.0f} gossip bytes sent per write (to 2 peers)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
