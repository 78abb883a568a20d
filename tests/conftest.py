"""Shared fixtures: real ``vfsd serve`` processes on loopback, and bounded polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from vfsd import localcluster

#: Ports ``free_port`` handed out in this run: none is handed out twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free port of 127.0.0.1, outside the ephemeral range (``vfsd.localcluster.free_port``)."""
    return localcluster.free_port(_handed_out)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # keep polling; report the last error if we time out
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def vfsd_command() -> list[str]:
    """The interpreter running the tests, on the vfsd package it imports (not whatever ``vfsd`` is on PATH)."""
    return [sys.executable, "-m", "vfsd"]


class VfsdProcess:
    """One ``vfsd serve`` process; stop() or kill() it, restart() it on the same data."""

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = list(extra)
        # Collectors write /hw, /sum and /itg on their own; tests that need them turn them on.
        self.env = {"VFSD_COLLECTORS": "off", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"vfsd-{self.port}.log"

    def start(self, timeout: float = 20.0) -> "VfsdProcess":
        args = vfsd_command() + ["serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                                 "--node-id", "n1", *self.extra]
        env = {**os.environ, **self.env}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for(self._ready, timeout=timeout, what=f"vfsd on port {self.port} (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"vfsd exited with {self.proc.returncode}: {self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client; RESP2 unless ``protocol=3`` is passed (redis-py 8 would default to RESP3)."""
        kwargs.setdefault("protocol", 2)
        kwargs.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError("vfsd did not exit within 10s of SIGTERM") from None
        finally:
            self.log.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()

    def restart(self) -> "VfsdProcess":
        return self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VfsdProcess]:
    """One node shared by a test module; tests get it flushed (see ``r``)."""
    proc = VfsdProcess(tmp_path_factory.mktemp("vfsd") / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def r(server: VfsdProcess) -> Iterator[redis.Redis]:
    client = server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., VfsdProcess]]:
    """Start nodes with custom flags; every one is stopped at the end of the test."""
    started: list[VfsdProcess] = []

    def make(*extra: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> VfsdProcess:
        proc = VfsdProcess(data_dir or tmp_path / f"data{len(started)}", *extra, env=env)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        try:
            proc.stop()
        except AssertionError:
            pass
