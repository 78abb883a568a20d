#!/usr/bin/env python3
"""What a background save costs other clients: vfsd's BGSAVE against redis-server's, in the same run.

    python compat/bench_save.py [--files N]

Both servers get the same N files (``/hw/node-NNNN/cpu/N``, 100-byte values, see
bench.py). Then, for each server in turn, a client sends PING back to back and
records every round trip while BGSAVE runs, until INFO persistence says the save is
done: the slowest round trips are what a save costs a client. redis-server forks and
writes from the child; vfsd copies its keyspace's dicts on the event loop (the only
part clients wait for, reported as ``rdb_last_save_longest_step_ms``) and packs and writes
on a thread. A measurement, not a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compat.bench import load_files, resp, servers  # noqa: E402


def command(sock: socket.socket, *args: bytes) -> bytes:
    sock.sendall(resp(*args))
    data = sock.recv(1 << 20)
    while not data.endswith(b"\r\n"):
        data += sock.recv(1 << 20)
    return data


def info_field(sock: socket.socket, field: str) -> str:
    sock.sendall(resp(b"INFO", b"persistence"))
    data = b""
    while b"\r\n" not in data or len(data) < int(data[1 : data.index(b"\r\n")]) + data.index(b"\r\n") + 2:
        data += sock.recv(1 << 16)
    for line in data.decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    raise RuntimeError(f"no {field} in INFO persistence")


def measure(port: int, *, vfsd: bool) -> dict[str, float]:
    with socket.create_connection(("127.0.0.1", port)) as admin, socket.create_connection(("127.0.0.1", port)) as ping:
        started = time.perf_counter()
        assert command(admin, b"BGSAVE").startswith(b"+Background saving started")
        rtts: list[float] = []
        while True:
            t = time.perf_counter()
            if command(ping, b"PING") != b"+PONG\r\n":
                raise RuntimeError("unexpected PING reply")
            rtts.append((time.perf_counter() - t) * 1000)
            if len(rtts) % 50 == 0 and info_field(admin, "rdb_bgsave_in_progress") == "0":
                break
        took = time.perf_counter() - started
        view_ms = float(info_field(admin, "rdb_last_save_longest_step_ms")) if vfsd else -1.0
    rtts.sort()
    return {"save_s": took, "p50_ms": statistics.median(rtts), "p99_ms": rtts[int(len(rtts) * 0.99)],
            "max_ms": rtts[-1], "view_ms": view_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print("redis-server is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vfsd-bench-save-") as tmp, servers(Path(tmp), redis_server) as srv:
        results = {}
        for name in ("redis", "vfsd"):
            load_files(srv[name], args.files)
            results[name] = measure(srv[name].port, vfsd=name == "vfsd")
    print(f"\nBGSAVE of {args.files:,} files, PING round trips while it runs:\n")
    print("| server | save took | PING p50 | PING p99 | PING max | longest loop step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        view = f"{r['view_ms']:.0f} ms" if name == "vfsd" else "(fork)"
        print(f"| {name} | {r['save_s']:.2f} s | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.1f} ms "
              f"| {view} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
