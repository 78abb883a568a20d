#!/usr/bin/env python3
"""Benchmark vfsd against redis-server, measured in the same run (DESIGN.md §5: ratios, never timed tests).

    python compat/bench.py [--quick] [--requests N] [--clients C] [--files N] [--types-only]

Theory of operation. Both servers are started here, on free loopback ports,
each in its own process group (so a Ctrl-C in the terminal reaches this
script, which then stops them; nothing is left behind on error either).

1. Throughput. ``redis-benchmark`` runs every test (SET, GET, INCR, MSET of
   10 keys) on its own, with ``-r 100000`` so keys vary, at ``-P 1`` and
   ``-P 16``, on two keyspaces: local keys (redis-benchmark's own
   ``key:__rand_int__``) and active-plane paths (``/run/...``, through
   redis-benchmark's custom-command form). redis-server gets exactly the same
   commands, so the paths are plain keys there. ``--csv`` output is parsed for
   ops/s. Around each run the server's CPU time (utime + stime from
   ``/proc/<pid>/stat`` of every process in its group, in clock ticks) gives
   CPU microseconds per request: on a small machine redis-benchmark itself is
   often the bottleneck, and then ops/s says little while CPU per request
   still shows what each request costs the server.
   The data-type tests (``-t lpush,rpop,sadd,spop,hset,zadd,lrange_100``) run
   at ``-P 1`` on both keyspaces; on paths they are the same commands on
   ``/run/bench/mylist``, ``/run/bench/myset``... (LRANGE_100 reads the list its
   own LPUSH run filled, as redis-benchmark's does).
   Scripts: ``EVALSHA`` of a small read script (GET) and a small write
   script (SET), SCRIPT LOADed on both servers, on local keys, at ``-P 1``
   and ``-P 16`` (target 0.5 of redis-server at -P 1; ``--only-scripts``).
2. Memory. Fresh servers are started for each load, read through a raw socket
   writer (pipelined commands of 100 items): 1,000,000 small files
   ``/hw/node-NNNN/cpu/N`` with 100-byte values (MSET); one hash of 1,000,000
   fields ``field:NNNNNNN`` -> ``value:NNNNNNN`` (HSET); 100,000 lists
   ``/run/q/NNNNNN`` of 10 elements ``job-NNNNNNN`` (RPUSH). VmRSS from
   ``/proc/<pid>/status`` before and after gives bytes per file or element.

A markdown summary compares each ratio with its target (vfsd/redis ops/s >= 0.6
at -P 1 and >= 0.25 at -P 16 for the string tests, >= 0.5 at -P 1 for the data-type
tests; memory <= 2.5x redis-server per file, <= 3x per hash field or list element).
The exit code is 0
whatever the ratios are: this is a measurement, not a test. It is 1 when a run
breaks (a server dies, redis-benchmark fails; what was measured is still
printed), 2 when a required program is missing and 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
KEYSPACE_SIZE = 100_000  # redis-benchmark -r
VALUE = "xxx"  # redis-benchmark's default 3-byte payload (-d 3), used in the custom commands too
TESTS = ("set", "get", "incr", "mset")
PIPELINES = (1, 16)
#: redis-benchmark's data-type tests, in its order (RPOP and SPOP drain what LPUSH and SADD built).
TYPE_TESTS = ("lpush", "rpop", "sadd", "spop", "hset", "zadd", "lrange_100")
TYPE_PIPELINES = (1,)
KEYSPACES = ("local", "paths")
TARGET_RATIO = {1: 0.6, 16: 0.25}
#: EVALSHA of a small read script and a small write script, loaded with SCRIPT LOAD on both servers.
SCRIPTS = {"evalsha-read": "return redis.call('GET', KEYS[1])",
           "evalsha-write": "return redis.call('SET', KEYS[1], ARGV[1])"}
SCRIPT_PIPELINES = (1, 16)
TARGET_SCRIPT_RATIO = {1: 0.5, 16: 0.25}
TARGET_TYPE_RATIO = 0.5
TARGET_MEMORY_RATIO = {"files": 2.5, "hash": 3.0, "lists": 3.0}
HASH_FIELDS = 1_000_000
LISTS = 100_000
LIST_ELEMENTS = 10
FILE_VALUE_BYTES = 100
FILES_PER_MSET = 100
MSETS_PER_ROUND_TRIP = 100
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


# -- the servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vfsd_command() -> list[str]:
    return [sys.executable, "-m", "vfsd"]


@dataclass
class Server:
    """One server process, leader of its own process group."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers_ping():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer PING within {START_TIMEOUT_S}s; log: {self.log_path}")
            time.sleep(0.05)
        return self

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(STOP_TIMEOUT_S)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT_S)

    def cpu_ticks(self) -> int:
        """utime + stime, in clock ticks, of every live process in this server's process group."""
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
            fields = stat[stat.rindex(b")") + 2 :].split()
            if int(fields[2]) == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name} (pid {self.pid})")


@contextmanager
def servers(workdir: Path, redis_server: str) -> Iterator[dict[str, Server]]:
    """A fresh redis-server and vfsd, stopped on the way out whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    redis_port, vfsd_port = free_port(), free_port()
    started = {
        "redis": Server("redis-server", [
            redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(workdir),
        ], redis_port, workdir / "redis.log"),
        "vfsd": Server("vfsd", [
            *vfsd_command(), "serve", "--port", str(vfsd_port), "--data-dir", str(workdir / "vfsd-data"),
            "--node-id", "bench", "--log-level", "warning", "--no-collectors",  # redis-server collects nothing
        ], vfsd_port, workdir / "vfsd.log", env={"VFSD_SAVE": ""}),  # no scheduled saves, as redis's --save ""
    }
    try:
        for server in started.values():
            server.start()
        yield started
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave a server behind
        try:
            for server in reversed(list(started.values())):
                server.stop()
        finally:
            signal.signal(signal.SIGINT, previous)


# -- throughput -------------------------------------------------------------------------


def path_command(test: str) -> list[str]:
    """redis-benchmark's custom-command form of ``test`` on /run paths."""
    key = "/run/bench/__rand_int__"
    typed = {
        "lpush": ["LPUSH", "/run/bench/mylist", VALUE],
        "lpush-fill": ["LPUSH", "/run/bench/mylist", VALUE],
        "rpop": ["RPOP", "/run/bench/mylist"],
        "sadd": ["SADD", "/run/bench/myset", "element:__rand_int__"],
        "spop": ["SPOP", "/run/bench/myset"],
        "hset": ["HSET", "/run/bench/myhash", "element:__rand_int__", VALUE],
        "zadd": ["ZADD", "/run/bench/myzset", "__rand_int__", "element:__rand_int__"],
        "lrange_100": ["LRANGE", "/run/bench/mylist", "0", "99"],
    }
    if test in typed:
        return typed[test]
    if test == "set":
        return ["SET", key, VALUE]
    if test == "get":
        return ["GET", key]
    if test == "incr":
        return ["INCR", "/run/ctr/__rand_int__"]
    if test == "mset":  # 10 keys, as redis-benchmark's own MSET test
        args = ["MSET"]
        for letter in "abcdefghij":
            args += [f"/run/{letter}/__rand_int__", VALUE]
        return args
    raise ValueError(test)


@dataclass
class Run:
    server: str
    test: str
    pipeline: int
    keyspace: str
    requests: int
    ops_per_s: float
    p50_ms: float
    cpu_us_per_request: float
    client_cpu_pct: float


def run_benchmark(bench: str, server: Server, test: str, pipeline: int, keyspace: str, requests: int,
                  clients: int, custom: list[str] | None = None) -> Run:
    argv = [bench, "-h", "127.0.0.1", "-p", str(server.port), "-c", str(clients), "-n", str(requests),
            "-P", str(pipeline), "-r", str(KEYSPACE_SIZE), "--csv"]
    if custom is not None:
        argv += custom
    else:
        argv += ["-t", test] if keyspace == "local" else path_command(test)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks_before = server.cpu_ticks()
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=max(120, requests // 100))
    wall = time.monotonic() - started
    ticks = server.cpu_ticks() - ticks_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    rows = [row for row in csv.reader(io.StringIO(done.stdout)) if row and row[0] != "test"]
    if test == "lrange_100" and keyspace == "local" and len(rows) == 2:
        rows = rows[1:]  # redis-benchmark first runs "LPUSH (needed to benchmark LRANGE)"
    if len(rows) != 1:
        raise RuntimeError(f"expected one CSV row from redis-benchmark, got: {done.stdout!r}")
    client_cpu = (children_after.ru_utime - children_before.ru_utime) + (children_after.ru_stime - children_before.ru_stime)
    return Run(server=server.name, test=test, pipeline=pipeline, keyspace=keyspace, requests=requests,
               ops_per_s=float(rows[0][1]), p50_ms=float(rows[0][4]),
               cpu_us_per_request=ticks / CLK_TCK / requests * 1e6, client_cpu_pct=100 * client_cpu / wall)


def throughput(bench: str, srv: dict[str, Server], requests: int, clients: int, pairs: list[tuple[Run, Run]],
               tests: tuple[str, ...] = TESTS, pipelines: tuple[int, ...] = PIPELINES) -> None:
    """Append a (vfsd, redis) pair of runs to ``pairs`` per (keyspace, pipeline, test), as each completes."""
    for keyspace in KEYSPACES:
        for pipeline in pipelines:
            for test in tests:
                if test == "lrange_100" and keyspace == "paths":
                    for name in ("redis", "vfsd"):  # fill the list LRANGE reads, as redis-benchmark does
                        run_benchmark(bench, srv[name], "lpush-fill", pipeline, keyspace, requests, clients)
                runs = {}
                for name in ("redis", "vfsd"):  # the same commands, back to back, against each server
                    runs[name] = run_benchmark(bench, srv[name], test, pipeline, keyspace, requests, clients)
                    r = runs[name]
                    print(f"  {r.server:12} {test.upper():5} {keyspace:6} -P {pipeline:<2}  {r.ops_per_s:>11,.0f} ops/s"
                          f"  p50 {r.p50_ms:6.3f} ms  server cpu {r.cpu_us_per_request:7.2f} us/req"
                          f"  (redis-benchmark cpu {r.client_cpu_pct:3.0f}%)", flush=True)
                pairs.append((runs["vfsd"], runs["redis"]))


def script_load(server: Server, body: str) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(resp(b"SCRIPT", b"LOAD", body.encode()))
        reply = sock.recv(128)
    if not reply.startswith(b"$40\r\n"):
        raise RuntimeError(f"{server.name}: SCRIPT LOAD failed: {reply!r}")
    return reply[5:45].decode()


def scripts(bench: str, srv: dict[str, Server], requests: int, clients: int, pairs: list[tuple[Run, Run]]) -> None:
    """EVALSHA of the SCRIPTS on local keys, against both servers, as ``throughput`` does for plain commands."""
    for pipeline in SCRIPT_PIPELINES:
        for test, body in SCRIPTS.items():
            runs = {}
            for name in ("redis", "vfsd"):
                sha = script_load(srv[name], body)
                custom = ["EVALSHA", sha, "1", "key:__rand_int__", VALUE]
                runs[name] = r = run_benchmark(bench, srv[name], test, pipeline, "local", requests, clients, custom)
                print(f"  {r.server:12} {test.upper():13} -P {pipeline:<2}  {r.ops_per_s:>11,.0f} ops/s"
                      f"  p50 {r.p50_ms:6.3f} ms  server cpu {r.cpu_us_per_request:7.2f} us/req"
                      f"  (redis-benchmark cpu {r.client_cpu_pct:3.0f}%)", flush=True)
            pairs.append((runs["vfsd"], runs["redis"]))


# -- memory -----------------------------------------------------------------------------


def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def file_paths(files: int) -> Iterator[bytes]:
    """``/hw/node-NNNN/cpu/N``: 100 CPUs per node, as many nodes as it takes."""
    for i in range(files):
        yield b"/hw/node-%04d/cpu/%d" % (i // 100, i % 100)


def load_files(server: Server, files: int) -> float:
    """MSET ``files`` paths with 100-byte values, FILES_PER_MSET per command, pipelined; returns seconds taken."""
    value = b"v" * FILE_VALUE_BYTES
    commands: list[bytes] = []
    batch: list[bytes] = []
    for path in file_paths(files):
        batch += [path, value]
        if len(batch) == 2 * FILES_PER_MSET:
            commands.append(resp(b"MSET", *batch))
            batch = []
    if batch:
        commands.append(resp(b"MSET", *batch))
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
        for i in range(0, len(commands), MSETS_PER_ROUND_TRIP):
            chunk = commands[i : i + MSETS_PER_ROUND_TRIP]
            sock.sendall(b"".join(chunk))
            expected = b"+OK\r\n" * len(chunk)
            got = b""
            while len(got) < len(expected):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError(f"{server.name} closed the connection while loading")
                got += data
                if got[:1] == b"-" or b"\r\n-" in got:
                    raise RuntimeError(f"{server.name} refused an MSET: {got[:200]!r}")
            if got != expected:
                raise RuntimeError(f"{server.name}: unexpected replies while loading: {got[:200]!r}")
        sock.sendall(resp(b"DBSIZE"))
        reply = sock.recv(64)
    count = int(reply[1:].split(b"\r\n")[0])
    if count != files:
        raise RuntimeError(f"{server.name} holds {count} keys after loading {files} files")
    return time.monotonic() - started


def send_batches(server: Server, commands: list[bytes], expected_reply: bytes | None) -> float:
    """Write ``commands`` MSETS_PER_ROUND_TRIP at a time and check every reply; returns seconds taken."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
        for i in range(0, len(commands), MSETS_PER_ROUND_TRIP):
            chunk = commands[i : i + MSETS_PER_ROUND_TRIP]
            sock.sendall(b"".join(chunk))
            got = b""
            while got.count(b"\r\n") < len(chunk):
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError(f"{server.name} closed the connection while loading")
                got += data
            if got[:1] == b"-" or b"\r\n-" in got:
                raise RuntimeError(f"{server.name} refused a command: {got[:200]!r}")
            if expected_reply is not None and got != expected_reply * len(chunk):
                raise RuntimeError(f"{server.name}: unexpected replies while loading: {got[:200]!r}")
    return time.monotonic() - started


def load_hash(server: Server, fields: int) -> float:
    """One hash of ``fields`` fields, HSETs of FILES_PER_MSET fields each."""
    commands = []
    for start in range(0, fields, FILES_PER_MSET):
        args = [b"HSET", b"/run/bench/bighash"]
        for i in range(start, min(start + FILES_PER_MSET, fields)):
            args += [b"field:%07d" % i, b"value:%07d" % i]
        commands.append(resp(*args))
    return send_batches(server, commands, None)


def load_lists(server: Server, lists: int, elements: int) -> float:
    """``lists`` lists of ``elements`` short elements each, one RPUSH per list."""
    commands = [resp(b"RPUSH", b"/run/q/%06d" % n, *[b"job-%07d" % (n * elements + j) for j in range(elements)])
                for n in range(lists)]
    return send_batches(server, commands, None)


@dataclass
class Memory:
    server: str
    files: int
    rss_before: int
    rss_after: int
    load_s: float
    what: str = "files"

    @property
    def bytes_per_file(self) -> float:
        return (self.rss_after - self.rss_before) / self.files


def memory(srv: dict[str, Server], files: int, what: str = "files") -> dict[str, Memory]:
    out: dict[str, Memory] = {}
    for name in ("redis", "vfsd"):
        server = srv[name]
        before = server.rss_bytes()
        if what == "files":
            took, count = load_files(server, files), files
        elif what == "hash":
            took, count = load_hash(server, files), files
        else:
            took, count = load_lists(server, files, LIST_ELEMENTS), files * LIST_ELEMENTS
        time.sleep(0.5)  # let the allocator settle before reading RSS (a measurement, not a wait for a condition)
        out[name] = m = Memory(server.name, count, before, server.rss_bytes(), took, what)
        unit = {"files": "file", "hash": "field", "lists": "element"}[what]
        print(f"  {m.server:12} {count:,} {unit}s loaded in {took:5.1f} s  RSS {before / 2**20:7.1f} -> "
              f"{m.rss_after / 2**20:7.1f} MiB  = {m.bytes_per_file:6.1f} bytes/{unit}", flush=True)
    return out


# -- report -----------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary(pairs: list[tuple[Run, Run]], mems: list[dict[str, Memory]], requests: int, clients: int) -> str:
    lines = [
        f"### vfsd vs redis-server ({requests:,} requests, {clients} clients, -r {KEYSPACE_SIZE:,}, "
        f"{os.cpu_count()} CPUs)",
        "",
        "| test | keyspace | -P | vfsd ops/s | redis ops/s | ratio | target | met | vfsd cpu us/req | "
        "redis cpu us/req | cpu ratio |",
        "|---|---|---:|---:|---:|---:|---:|:-:|---:|---:|---:|",
    ]
    for vfsd, redis in pairs:
        ratio = vfsd.ops_per_s / redis.ops_per_s if redis.ops_per_s else float("nan")
        if vfsd.test in SCRIPTS:
            target = TARGET_SCRIPT_RATIO[vfsd.pipeline]
        elif vfsd.test in TYPE_TESTS:
            target = TARGET_TYPE_RATIO
        else:
            target = TARGET_RATIO[vfsd.pipeline]
        # below one clock tick of server CPU over a whole run there is nothing to divide by
        cpu_ratio = f"{vfsd.cpu_us_per_request / redis.cpu_us_per_request:.1f}x" if redis.cpu_us_per_request else "n/a"
        lines.append(
            f"| {vfsd.test.upper()} | {vfsd.keyspace} | {vfsd.pipeline} | {vfsd.ops_per_s:,.0f} | {redis.ops_per_s:,.0f} "
            f"| {ratio:.2f} | >= {target} | {mark(ratio >= target)} | {vfsd.cpu_us_per_request:.2f} "
            f"| {redis.cpu_us_per_request:.2f} | {cpu_ratio} |"
        )
    if mems:
        lines += [
            "",
            "| memory | items | vfsd bytes/item | redis bytes/item | ratio | target | met |",
            "|---|---:|---:|---:|---:|---:|:-:|",
        ]
        labels = {"files": "RSS per file (100-byte values)", "hash": "RSS per field of one hash",
                  "lists": "RSS per element of 10-element lists"}
        for mem in mems:
            v, r = mem["vfsd"], mem["redis"]
            ratio = v.bytes_per_file / r.bytes_per_file if r.bytes_per_file > 0 else float("inf")
            target = TARGET_MEMORY_RATIO[v.what]
            lines.append(f"| {labels[v.what]} | {v.files:,} | {v.bytes_per_file:.0f} | {r.bytes_per_file:.0f} "
                         f"| {ratio:.2f}x | <= {target}x | {mark(ratio <= target)} |")
    lines += [
        "",
        "ratio = vfsd ops/s / redis ops/s (higher is better); cpu = server CPU time per request from /proc/<pid>/stat "
        "(lower is better). Where redis-benchmark runs near 100% of a core it is the bottleneck and ops/s "
        "understates the gap; the CPU columns do not.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: -n 20000 and 100,000 files")
    parser.add_argument("--requests", "-n", type=int, help="requests per redis-benchmark run [200000; quick: 20000]")
    parser.add_argument("--clients", "-c", type=int, default=50, help="parallel connections [50]")
    parser.add_argument("--files", type=int, help="files loaded for the memory measurement [1000000; quick: 100000]")
    parser.add_argument("--skip-throughput", action="store_true", help="only measure memory")
    parser.add_argument("--skip-memory", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-scripts", action="store_true", help="leave out the EVALSHA runs")
    parser.add_argument("--only-scripts", action="store_true", help="only the EVALSHA runs")
    parser.add_argument("--types-only", action="store_true",
                        help="only the data-type tests and the hash and list memory (not SET/GET/INCR/MSET, files)")
    args = parser.parse_args(argv)
    requests = args.requests or (20_000 if args.quick else 200_000)
    files = args.files or (100_000 if args.quick else 1_000_000)
    hash_fields = HASH_FIELDS // 10 if args.quick else HASH_FIELDS
    lists = LISTS // 10 if args.quick else LISTS

    missing = [p for p in ("redis-server", "redis-benchmark") if shutil.which(p) is None]
    if missing:
        print(f"bench: {', '.join(missing)} not found (Debian: apt-get install redis-server redis-tools)",
              file=sys.stderr)
        return 2
    redis_server, bench = shutil.which("redis-server"), shutil.which("redis-benchmark")
    assert redis_server is not None and bench is not None

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    pairs: list[tuple[Run, Run]] = []
    mems: list[dict[str, Memory]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vfsd-bench-") as tmp:
            workdir = Path(tmp)
            if not args.skip_throughput:
                print(f"throughput: redis-benchmark -c {args.clients} -n {requests} -r {KEYSPACE_SIZE} --csv", flush=True)
                with servers(workdir / "throughput", redis_server) as srv:
                    if not args.types_only and not args.only_scripts:
                        throughput(bench, srv, requests, args.clients, pairs)
                    if not args.only_scripts:
                        throughput(bench, srv, requests, args.clients, pairs, TYPE_TESTS, TYPE_PIPELINES)
                    if not args.skip_scripts and not args.types_only:
                        scripts(bench, srv, requests, args.clients, pairs)
            if not args.skip_memory and not args.only_scripts:
                if not args.types_only:
                    print(f"memory: {files:,} files /hw/node-NNNN/cpu/N, {FILE_VALUE_BYTES}-byte values, fresh servers",
                          flush=True)
                    with servers(workdir / "memory", redis_server) as srv:
                        mems.append(memory(srv, files))
                print(f"memory: one hash of {hash_fields:,} fields, fresh servers", flush=True)
                with servers(workdir / "memory-hash", redis_server) as srv:
                    mems.append(memory(srv, hash_fields, "hash"))
                print(f"memory: {lists:,} lists of {LIST_ELEMENTS} elements, fresh servers", flush=True)
                with servers(workdir / "memory-lists", redis_server) as srv:
                    mems.append(memory(srv, lists, "lists"))
    except KeyboardInterrupt:
        print("\nbench: interrupted; servers stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:  # a broken run, not a missed target
        print(f"\nbench: failed: {exc}\n(servers stopped; partial results follow)", file=sys.stderr)
        print(summary(pairs, mems, requests, args.clients))
        return 1
    print()
    print(summary(pairs, mems, requests, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
