"""``vfsd cluster up``: a local cluster of N ``vfsd serve`` processes, and ``vfsd status``'s table.

The cluster runs on embedded defaults: free client and peer ports on 127.0.0.1, each
node's data under one directory (``<dir>/n1``, ``<dir>/n2``...), one ``--peers`` list
naming them all. Every process is started by this one and stopped by it (SIGTERM, then
SIGKILL after a grace period) when it is interrupted; a node that exits on its own is
reported. Restarting the command on the same directory restarts the same cluster from
its data (the ports are kept in ``<dir>/cluster.json``).
"""

from __future__ import annotations

import functools
import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


@functools.cache
def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for the local ports of outgoing connections (Linux's default if unknown)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


_port_rng = random.Random()


def free_port(avoid: set[int]) -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now and is not in ``avoid`` (added to it).

    Not one the kernel picks for port 0: that comes from the ephemeral range, where the
    outgoing connection of a node already started (dialling its peers) may take it before
    the node meant to listen there starts. The port is drawn from the wider of the ranges
    below and above the ephemeral one (when neither is wide enough, from port 0).
    """
    low, high = _ephemeral_ports()
    first, last = max((1024, low - 1), (high + 1, 65535), key=lambda r: r[1] - r[0])
    if last - first >= 1000:
        for _ in range(1000):
            port = _port_rng.randint(first, last)
            if port in avoid:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:  # in use, or lingering after a close: draw again
                    continue
            avoid.add(port)
            return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            avoid.add(port)
            return port


def plan(directory: Path, nodes: int) -> dict[str, dict[str, int]]:
    """Ports for each node: read back from ``cluster.json`` if the directory holds this cluster already."""
    layout = directory / "cluster.json"
    if layout.exists():
        known = json.loads(layout.read_text())
        if len(known) != nodes:
            raise ValueError(f"{directory} holds a cluster of {len(known)} nodes; use --nodes {len(known)} "
                             "or another --data-dir")
        return known
    taken: set[int] = set()
    ports = {f"n{i + 1}": {"port": free_port(taken), "peer_port": free_port(taken)} for i in range(nodes)}
    directory.mkdir(parents=True, exist_ok=True)
    layout.write_text(json.dumps(ports, indent=2))
    return ports


def commands(directory: Path, ports: dict[str, dict[str, int]], extra: Sequence[str] = ()) -> dict[str, list[str]]:
    peers = ",".join(f"{name}=127.0.0.1:{p['peer_port']}" for name, p in ports.items())
    return {name: [sys.executable, "-m", "vfsd", "serve", "--node-id", name, "--port", str(p["port"]),
                   "--peer-port", str(p["peer_port"]), "--peers", peers, "--data-dir", str(directory / name),
                   *extra]
            for name, p in ports.items()}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def run(directory: Path, nodes: int, echo: Callable[[str], None], extra: Sequence[str] = (),
        ready_timeout_s: float = 30.0) -> int:
    """Start the cluster, print its endpoints, wait for Ctrl-C (or SIGTERM), stop every node."""
    ports = plan(directory, nodes)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        for name, argv in commands(directory, ports, extra).items():
            log = open(directory / f"{name}.log", "ab")
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        deadline = time.monotonic() + ready_timeout_s
        waiting = dict(ports)
        while waiting and time.monotonic() < deadline and not stopping:
            for name in list(waiting):
                if procs[name].poll() is not None:
                    echo(f"{name} exited with {procs[name].returncode}; see {directory / (name + '.log')}")
                    return 1
                if _answers(ports[name]["port"]):
                    del waiting[name]
            time.sleep(0.05)
        if waiting:
            echo(f"not answering after {ready_timeout_s:.0f} s: {', '.join(waiting)} (logs in {directory})")
            return 1
        echo(f"vfsd cluster of {nodes} nodes, data and logs in {directory}")
        for name, p in ports.items():
            echo(f"  {name}: 127.0.0.1:{p['port']}  (peer port {p['peer_port']}, pid {procs[name].pid})")
        first = next(iter(ports.values()))["port"]
        last = list(ports.values())[-1]["port"]
        echo("try:")
        echo(f"  redis-cli -p {first} SET /ctx/hello world")
        echo(f"  redis-cli -p {last} GET /ctx/hello")
        endpoints = ",".join(f"127.0.0.1:{p['port']}" for p in ports.values())
        echo(f"  vfsd status --endpoints {endpoints}")
        echo("Ctrl-C stops every node.")
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None and not getattr(proc, "reported", False):
                    echo(f"{name} exited with {proc.returncode} (see {directory / (name + '.log')})")
                    proc.reported = True  # type: ignore[attr-defined]
            time.sleep(0.2)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_all(procs, echo)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], echo: Callable[[str], None], grace_s: float = 10.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, proc in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"{name} did not stop within {grace_s:.0f} s of SIGTERM; killing it")
            proc.kill()
            proc.wait()
    if procs:
        echo("stopped every node")


# -- vfsd status ----------------------------------------------------------------------------

COLUMNS = ("ENDPOINT", "NODE", "MEMBER ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAST INDEX",
           "SNAPSHOT", "ERRORS")


def status_row(endpoint: str, info: dict[str, Any] | None, error: str = "") -> list[str]:
    if info is None:
        return [endpoint, "", "", "", "", "", "", "", "", "", error]
    return [endpoint, str(info.get("node_name", "")), str(info.get("member_id", "")), str(info.get("role", "")),
            str(info.get("term", "")), str(info.get("leader_name") or info.get("leader_id") or ""),
            str(info.get("commit_index", "")), str(info.get("applied_index", "")), str(info.get("last_log_index", "")),
            str(info.get("snapshot_index", "")), error]


def table(rows: list[list[str]]) -> str:
    """An etcdctl-style box table."""
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLUMNS))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, "|" + "|".join(f" {c:<{w}} " for c, w in zip(COLUMNS, widths)) + "|", rule]
    for r in rows:
        lines.append("|" + "|".join(f" {c:<{w}} " for c, w in zip(r, widths)) + "|")
    lines.append(rule)
    return "\n".join(lines)


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"{item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ValueError("no endpoints given")
    return out
