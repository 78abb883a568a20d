"""Helpers shared by the compat client modules (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.conftest import free_port, wait_for

__all__ = ["CLIENT_TIMEOUT_S", "RedisServerProcess", "as_map", "free_port", "next_message", "wait_for",
           "wait_subscribed"]

#: Every blocking call a compat test makes is bounded by this many seconds.
CLIENT_TIMEOUT_S = 10.0


def as_map(reply: Any) -> dict[Any, Any]:
    """A map reply as a dict whatever the protocol: RESP3 sends a map, RESP2 a flat array."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


def next_message(pubsub: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next (p)message on a sync redis-py PubSub, skipping (un)subscribe confirmations; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
        if message is not None:
            return message
    raise AssertionError(f"no pub/sub message within {timeout}s")


def wait_subscribed(pubsub: Any, count: int, timeout: float = 5.0) -> None:
    """Read ``count`` (p)subscribe confirmations: only then is a subscription in force on the server.

    Pub/sub commands and PUBLISH travel on different connections, so a test
    that publishes before the confirmation arrives races the subscription.
    """
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {seen} of {count} subscription confirmations within {timeout}s")
        message = pubsub.get_message(timeout=min(left, 1.0))
        if message is not None:
            assert message["type"] in ("subscribe", "psubscribe"), message
            seen += 1


class RedisServerProcess:
    """A throwaway ``redis-server`` (no persistence) for differential checks; ``None`` if not installed."""

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    def start(self) -> "RedisServerProcess":
        exe = self.binary()
        assert exe is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for(self._ready, timeout=CLIENT_TIMEOUT_S, what=f"redis-server on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=CLIENT_TIMEOUT_S, **kwargs)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(CLIENT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(CLIENT_TIMEOUT_S)
