#!/usr/bin/env python3
"""What one client's large values cost everyone else: PING latency of a bystander during 128 MiB SETs and GETs.

    python compat/bench_large_values.py [--mib 128] [--rounds 3] [--keys local,/run,/ctx]

Theory of operation. A fresh vfsd and redis-server are started (compat/bench.py's ``Server``). For each
server and key kind, a *bystander* process sends PING after PING on its own connection and records every
round trip, while the *mover* (this process) SETs then GETs a value of ``--mib`` MiB, ``--rounds`` times,
over one raw socket. Reported: the bystander's p50, p99 and max round trip during the moves, and the mover's
own time per SET and per GET. The bystander's worst case is the longest stretch the server's event loop
spent on the mover without serving anyone else; the mover's times are what the transfer itself needs.

Exit code 0 whatever the figures (a measurement), 1 when a run breaks, 2 when redis-server is missing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.bench import Server, free_port, vfsd_command  # noqa: E402


def bystander(port: int, stop: multiprocessing.Event, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    while not stop.is_set():
        started = time.perf_counter()
        s.sendall(b"PING\r\n")
        got = b""
        while not got.endswith(b"\r\n"):
            got += s.recv(64)
        rtts.append(time.perf_counter() - started)
    s.close()
    out.put(rtts)


def recv_exactly(s: socket.socket, n: int) -> None:
    view = memoryview(bytearray(min(n, 8 << 20)))
    while n:
        got = s.recv_into(view, min(n, len(view)))
        if not got:
            raise RuntimeError("server closed the connection")
        n -= got


def move(port: int, key: bytes, mib: int, rounds: int) -> tuple[list[float], list[float]]:
    value = b"x" * (mib << 20)
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(120)
    sets, gets = [], []
    header = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, len(value))
    get = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)
    reply_bytes = len(b"$%d\r\n" % len(value)) + len(value) + 2
    for _ in range(rounds):
        started = time.perf_counter()
        s.sendall(header)
        s.sendall(value)
        s.sendall(b"\r\n")
        got = s.recv(64)
        if got != b"+OK\r\n":
            raise RuntimeError(f"SET answered {got!r}")
        sets.append(time.perf_counter() - started)
        started = time.perf_counter()
        s.sendall(get)
        recv_exactly(s, reply_bytes)
        gets.append(time.perf_counter() - started)
    s.close()
    return sets, gets


def measure(server: Server, key: bytes, mib: int, rounds: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=bystander, args=(server.port, stop, out))
    proc.start()
    time.sleep(0.5)  # let the bystander's loop settle (a measurement warm-up, not a wait for a condition)
    sets, gets = move(server.port, key, mib, rounds)
    stop.set()
    rtts = sorted(out.get(timeout=60))
    proc.join(10)
    return {
        "p50_ms": statistics.median(rtts) * 1e3, "p99_ms": rtts[int(len(rtts) * 0.99)] * 1e3,
        "max_ms": rtts[-1] * 1e3, "set_ms": statistics.median(sets) * 1e3, "get_ms": statistics.median(gets) * 1e3,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", default="local,/run,/ctx", help="key kinds: local, /run, /ctx")
    args = parser.parse_args(argv)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("bench_large_values: redis-server not found", file=sys.stderr)
        return 2
    def terminate(signum: int, frame: object) -> None:  # SIGTERM stops the servers too, as Ctrl-C does
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    keys = {"local": b"big", "/run": b"/run/big", "/ctx": b"/ctx/big"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vfsd-bench-large-") as tmp:
        work = Path(tmp)
        servers = {
            "redis-server": Server("redis-server", [redis_server, "--port", str(port := free_port()), "--save", "",
                                                    "--appendonly", "no", "--dir", tmp], port, work / "redis.log"),
            "vfsd": Server("vfsd", [*vfsd_command(), "serve", "--port", str(vport := free_port()), "--data-dir",
                                    str(work / "data"), "--node-id", "bench", "--no-collectors", "--log-level",
                                    "warning"], vport, work / "vfsd.log"),
        }
        try:
            for server in servers.values():
                server.start()
            for kind in args.keys.split(","):
                for name, server in servers.items():
                    if name == "redis-server" and kind != "local":
                        continue  # a path is just a key to redis-server: the local row says it all
                    figures = measure(server, keys[kind], args.mib, args.rounds)
                    rows.append((name, kind, figures))
                    print(f"  {name:12} {kind:6} " + "  ".join(f"{k} {v:8.1f}" for k, v in figures.items()),
                          flush=True)
        except (RuntimeError, OSError) as exc:
            print(f"bench_large_values: failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench_large_values: interrupted; servers stopped", file=sys.stderr)
            return 130
        finally:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            for server in servers.values():
                server.stop()
            signal.signal(signal.SIGINT, previous)
    print()
    print(f"| server | key | SET {args.mib} MiB | GET {args.mib} MiB | bystander PING p50 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, kind, f in rows:
        print(f"| {name} | {kind} | {f['set_ms']:.0f} ms | {f['get_ms']:.0f} ms | {f['p50_ms']:.2f} ms "
              f"| {f['p99_ms']:.1f} ms | {f['max_ms']:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
