"""A local cluster of real ``vfsd serve`` processes on loopback, for the multi-process tests."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.conftest import VfsdProcess, free_port, wait_for
from tests.faultproxy import FaultProxy


class Cluster:
    """``n`` voters started with one ``--peers`` list; every process is stopped by ``close``."""

    def __init__(self, root: Path, n: int = 3, *extra: str, proxied: bool = False) -> None:
        self.root = root
        self.names = [f"n{i + 1}" for i in range(n)]
        self.peer_ports = {name: free_port() for name in self.names}
        #: With ``proxied``, every peer connection passes through a FaultProxy proxy (``partition``):
        #: ``--peers`` names the proxies, each node listens on its own ``--peer-port`` behind its proxy.
        self.proxies = FaultProxy() if proxied else None
        listed = dict(self.peer_ports)
        if self.proxies is not None:
            listed = {name: self.proxies.add(name, port) for name, port in self.peer_ports.items()}
        self.listed_ports = listed
        self.peers = ",".join(f"{name}=127.0.0.1:{port}" for name, port in listed.items())
        self.extra = list(extra)
        self.nodes: dict[str, VfsdProcess] = {}
        for name in self.names:
            self.nodes[name] = VfsdProcess(root / name, "--node-id", name, "--peers", self.peers,
                                           "--peer-port", str(self.peer_ports[name]), *self.extra)

    def start(self) -> "Cluster":
        for node in self.nodes.values():
            node.start()
        self.wait_leader()
        return self

    def add(self, name: str, *extra: str) -> VfsdProcess:
        """Start another node (not in --peers): give it ``--join`` in ``extra``."""
        node = VfsdProcess(self.root / name, "--node-id", name, "--peer-port", str(free_port()), *extra)
        self.nodes[name] = node
        return node.start()

    def client(self, name: str, **kwargs: Any) -> redis.Redis:
        return self.nodes[name].client(**kwargs)

    def raft(self, name: str) -> dict[str, Any]:
        with self.client(name) as c:
            return c.info("raft")

    def running(self) -> list[str]:
        return [n for n, p in self.nodes.items() if p.proc is not None and p.proc.poll() is None
                and not getattr(p, "stopped", False)]

    def leader(self, among: list[str] | None = None) -> str | None:
        """The node every running node (or those in ``among``) agrees leads, if they agree."""
        names = among or self.running()
        seen = set()
        for name in names:
            info = self.raft(name)
            seen.add(info.get("leader_name") or None)
        if len(seen) == 1:
            leader = seen.pop()
            if leader is not None and leader in names and self.raft(leader)["role"] == "leader":
                return leader
        return None

    def wait_leader(self, among: list[str] | None = None, timeout: float = 20.0) -> str:
        return wait_for(lambda: self.leader(among), timeout=timeout, what="one agreed desired-plane leader")

    def followers(self) -> list[str]:
        leader = self.wait_leader()
        return [n for n in self.running() if n != leader]

    def pause(self, name: str) -> None:
        proc = self.nodes[name].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)
        self.nodes[name].stopped = True  # type: ignore[attr-defined]

    def resume(self, name: str) -> None:
        proc = self.nodes[name].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGCONT)
        self.nodes[name].stopped = False  # type: ignore[attr-defined]

    def partition(self, *groups: set[str]) -> None:
        assert self.proxies is not None, "start the cluster with proxied=True"
        self.proxies.partition(*groups)

    def heal(self) -> None:
        assert self.proxies is not None
        self.proxies.heal()

    def close(self) -> None:
        if self.proxies is not None:
            self.proxies.close()
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                try:
                    os.kill(node.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
                try:
                    node.stop()
                except AssertionError:
                    pass


@contextmanager
def cluster(root: Path, n: int = 3, *extra: str, proxied: bool = False) -> Iterator[Cluster]:
    c = Cluster(root, n, *extra, proxied=proxied)
    try:
        yield c.start()
    finally:
        c.close()
