"""``vfsd cluster up`` and ``vfsd status``: the local cluster a new user starts first."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.conftest import vfsd_command, wait_for
from vfsd import localcluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_cluster_up_replicates_prints_status_and_stops_every_node(tmp_path: Path) -> None:
    out_path = tmp_path / "up.out"
    with open(out_path, "wb") as out:
        up = subprocess.Popen(vfsd_command() + ["cluster", "up", "--nodes", "3", "--data-dir", str(tmp_path / "c")],
                              stdout=out, stderr=subprocess.STDOUT)
    pids: list[int] = []
    try:
        text = wait_for(lambda: "Ctrl-C" in out_path.read_text() and out_path.read_text(), timeout=40,
                        what="cluster up to print its endpoints")
        nodes = re.findall(r"(n\d): 127\.0\.0\.1:(\d+)  \(peer port \d+, pid (\d+)\)", text)
        assert [n for n, _, _ in nodes] == ["n1", "n2", "n3"]
        ports = [int(p) for _, p, _ in nodes]
        pids = [int(pid) for _, _, pid in nodes]
        with redis.Redis(port=ports[0], socket_timeout=10) as r:
            wait_for(lambda: r.set("/ctx/hello", "world"), timeout=20, what="a first write")
        with redis.Redis(port=ports[2], socket_timeout=10) as r:
            assert r.get("/ctx/hello") == b"world"
        status = subprocess.run(vfsd_command() + ["status", "--endpoints", ",".join(f"127.0.0.1:{p}" for p in ports)],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if line.startswith("| 127.0.0.1")]
        assert len(rows) == 3
        roles = sorted(line.split("|")[4].strip() for line in rows)
        assert roles == ["follower", "follower", "leader"]
        bad = subprocess.run(vfsd_command() + ["status", "--endpoints", "nonsense"], capture_output=True, text=True,
                             timeout=30)
        assert bad.returncode == 2 and "not host:port" in bad.stderr
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(30)
    assert "stopped every node" in out_path.read_text()
    for pid in pids:
        wait_for(lambda pid=pid: not _alive(pid), timeout=10, what=f"node process {pid} gone")


def test_free_ports_lie_outside_the_ephemeral_range_and_are_never_given_twice() -> None:
    low, high = localcluster._ephemeral_ports()
    first = localcluster.free_port(set())
    avoid = {first}
    ports = [localcluster.free_port(avoid) for _ in range(200)]
    assert first not in ports and len(set(ports)) == 200 and avoid == set(ports) | {first}
    assert not any(low <= p <= high for p in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free when given
