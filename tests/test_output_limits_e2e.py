"""Bounded output per client (client-output-buffer-limit), measured on a real node.

A client that pipelines GETs of a 1 MiB value without reading used to grow the server by gigabytes. Now its
commands stop running at the soft limit (RSS stays bounded, nothing is lost once it reads), and with no soft
limit it is disconnected at the hard limit, counted in INFO.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import redis

from tests.conftest import VfsdProcess, wait_for

MiB = 1 << 20
VALUE = b"v" * MiB
GET = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n"


def rss_bytes(node: VfsdProcess) -> int:
    assert node.proc is not None
    with open(f"/proc/{node.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pipeline_without_reading(port: int, requests: int, first: bytes = b"") -> socket.socket:
    """Send ``requests`` GETs of the 1 MiB value and read nothing (a small receive buffer, as a stuck client)."""
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(("127.0.0.1", port))
    hog.sendall(first + GET * requests)
    return hog


def client_line(r: redis.Redis, name: str) -> dict[str, Any]:
    """One CLIENT LIST line, numbers as ints (redis-py leaves them strings)."""
    for client in r.client_list():
        if client["name"] == name:
            return {k: int(v) if v.lstrip("-").isdigit() else v for k, v in client.items()}
    raise AssertionError(f"no client {name}")


def omems(r: redis.Redis) -> list[int]:
    return [int(c["omem"]) for c in r.client_list()]


def test_a_client_that_does_not_read_is_paused_at_the_soft_limit_and_loses_nothing(node_factory: Any) -> None:
    node: VfsdProcess = node_factory()
    r = node.client()
    r.config_set("client-output-buffer-limit", "normal 0 16mb 0")
    r.set("big", VALUE)
    baseline = rss_bytes(node)
    requests = 100  # 100 MiB of replies if nothing held the batch back: six times the soft limit
    hog = pipeline_without_reading(node.port, requests, first=b"CLIENT SETNAME hog\r\n")
    wait_for(lambda: r.info("stats")["client_output_pauses"] >= 1, what="the pause")
    line = client_line(r, "hog")
    # At most the soft limit plus the reply that crossed it (part of it may already sit in the kernel's buffer).
    assert 4 * MiB < line["omem"] <= 17 * MiB + 64
    assert line["tot-mem"] >= line["omem"] + line["argv-mem"]  # argv-mem: commands parsed but held back
    assert "r" not in line["events"]  # not read from while paused
    grown = rss_bytes(node) - baseline
    assert grown < 48 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
    assert r.ping() and r.get("/run/none") is None  # everyone else is served meanwhile
    # Once the client reads, every reply arrives, whole and in order.
    hog.settimeout(30)
    want = len(b"+OK\r\n") + requests * (len(b"$1048576\r\n") + MiB + 2)
    received = 0
    tail = b""
    while received < want:
        chunk = hog.recv(4 << 20)
        assert chunk, f"connection closed after {received} of {want} bytes"
        received += len(chunk)
        tail = (tail + chunk)[-64:]
    assert received == want and tail.endswith(b"v" * 50 + b"\r\n")
    assert r.info("stats")["client_output_limit_disconnections"] == 0
    hog.close()


def test_with_no_soft_limit_a_client_is_disconnected_at_the_hard_limit(node_factory: Any) -> None:
    node: VfsdProcess = node_factory()
    r = node.client()
    r.config_set("client-output-buffer-limit", "normal 32mb 0 0")
    r.set("big", VALUE)
    baseline = rss_bytes(node)
    hog = pipeline_without_reading(node.port, 200)
    wait_for(lambda: r.info("stats")["client_output_limit_disconnections"] == 1, what="the disconnection")
    assert r.info("stats")["client_output_buffer_limit_disconnections"] == 1
    grown = rss_bytes(node) - baseline
    assert grown < 64 * MiB, f"RSS grew {grown / MiB:.0f} MiB"
    hog.settimeout(10)
    received = 0
    try:
        while chunk := hog.recv(1 << 20):  # what was sent before the cut arrives, then the connection ends
            received += len(chunk)
    except ConnectionResetError:
        pass
    assert received < 64 * MiB  # far from the 200 MiB asked for
    assert len(r.client_list()) == 1
    hog.close()


def test_default_limits_hold_a_hog_without_cutting_it_off(server: VfsdProcess, r: redis.Redis) -> None:
    """With the defaults (normal 1gb 64mb 60) a pipelining client is paused, not disconnected."""
    assert r.config_get("client-output-buffer-limit")["client-output-buffer-limit"] == (
        "normal 1073741824 67108864 60 slave 268435456 67108864 60 pubsub 33554432 8388608 60")
    r.set("big", VALUE)
    pauses = r.info("stats")["client_output_pauses"]
    hog = pipeline_without_reading(server.port, 120)
    wait_for(lambda: r.info("stats")["client_output_pauses"] > pauses, what="the pause at the soft limit")
    assert 48 * MiB < max(omems(r)) < 66 * MiB
    assert r.info("clients")["client_recent_max_output_buffer"] > 48 * MiB
    assert r.info("stats")["client_output_limit_disconnections"] == 0
    hog.close()


def test_config_set_uses_redis_syntax_and_errors(server: VfsdProcess, r: redis.Redis) -> None:
    try:
        assert r.config_set("client-output-buffer-limit", "pubsub 1k 2kb 3")
        value = r.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        assert value == "normal 1073741824 67108864 60 slave 268435456 67108864 60 pubsub 1000 2048 3"
        with pytest.raises(redis.ResponseError, match=r"^CONFIG SET failed \(possibly related to argument "
                           r"'client-output-buffer-limit'\) - Invalid client class specified in buffer limit"):
            r.config_set("client-output-buffer-limit", "master 1 2 3")
        with pytest.raises(redis.ResponseError, match="Wrong number of arguments in buffer limit configuration"):
            r.config_set("client-output-buffer-limit", "normal 1 2")
        assert r.config_get("client-output-buffer-limit")["client-output-buffer-limit"] == value  # unchanged
    finally:
        r.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")


def test_a_bad_limit_in_the_config_is_refused_at_start(tmp_path: Any) -> None:
    import subprocess

    from tests.conftest import vfsd_command

    done = subprocess.run([*vfsd_command(), "serve", "--port", "0", "--data-dir", str(tmp_path)],
                          env={"VFSD_CLIENT_OUTPUT_BUFFER_LIMIT": "normal 1mb", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "Wrong number of arguments in buffer limit configuration." in done.stderr
    assert "Traceback" not in done.stderr
