"""What the collectors cost: CPU time of a ``vfsd serve`` with collectors on, against one with them off.

    python -m vfsd.collectors.cost [--seconds 30] [--config conf/vfsd.toml]

Starts two idle nodes one after the other (no clients), each for ``--seconds``
after it answers PING, reads the process's user+system CPU time (every thread,
so the collectors' worker threads count) and prints both, and the difference
as a percentage of one core. Start-up (imports, the first Props collection)
is excluded from both; the default intervals apply unless ``--config`` says
otherwise. A measurement, not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import psutil  # type: ignore[import-untyped]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vfsd serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("vfsd serve did not answer PING")


def measure(seconds: float, collectors: bool, config: str | None, warmup_s: float) -> float:
    """CPU seconds one idle ``vfsd serve`` used over ``seconds`` (after ``warmup_s``)."""
    cmd = [sys.executable, "-m", "vfsd"]
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        args = cmd + ["serve", "--port", str(port), "--data-dir", data, "--node-id", "cost", "--log-level", "warning"]
        if config:
            args += ["--config", config]
        env = {**os.environ, "VFSD_COLLECTORS": "on" if collectors else "off"}
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(port, proc)
            time.sleep(warmup_s)  # let start-up and the first Props collection finish
            ps = psutil.Process(proc.pid)
            before = ps.cpu_times()
            time.sleep(seconds)
            after = ps.cpu_times()
        finally:
            proc.terminate()
            proc.wait(10)
    return float((after.user - before.user) + (after.system - before.system))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds excluded after start-up")
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    seconds: float = args.seconds
    off = measure(args.seconds, False, args.config, args.warmup)
    on = measure(args.seconds, True, args.config, args.warmup)

    def pct(cpu_s: float) -> float:
        return 100.0 * cpu_s / seconds

    print(f"idle vfsd serve, {args.seconds:g} s each:")
    print(f"  collectors off: {off:.3f} CPU s = {pct(off):.3f} % of one core")
    print(f"  collectors on:  {on:.3f} CPU s = {pct(on):.3f} % of one core")
    print(f"  collectors cost {pct(on - off):.3f} % of one core")


if __name__ == "__main__":
    main()
