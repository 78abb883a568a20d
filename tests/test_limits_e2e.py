"""Limits and misbehaving clients: each costs that client alone, never the node."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.conftest import VfsdProcess, wait_for
from tests.test_node_e2e import raw


def test_slow_subscriber_is_disconnected_others_unaffected(server: VfsdProcess, r: redis.Redis) -> None:
    r.config_set("client-output-buffer-limit", "pubsub 65536 0 0")
    try:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b"SUBSCRIBE firehose\r\n")
        wait_for(lambda: r.pubsub_numsub("firehose")[0][1] == 1, what="subscriber")
        payload = b"x" * 16384
        # The subscriber never reads: its unsent output grows until the limit cuts it off.
        wait_for(lambda: r.publish("firehose", payload) == 0, timeout=20, interval=0.001,
                 what="slow subscriber to be disconnected")
        assert r.info("stats")["client_output_limit_disconnections"] >= 1
        assert r.set("/run/still-serving", "yes") and r.get("/run/still-serving") == b"yes"
        slow.close()
    finally:
        r.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")


def test_maxclients(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    admin = node.client(single_connection_client=True)
    admin.config_set("maxclients", "2")
    extra = socket.create_connection(("127.0.0.1", node.port))
    try:
        assert raw(node.port, b"", expect_close=True) == b"-ERR max number of clients reached\r\n"
        extra.sendall(b"PING\r\n")
        assert extra.recv(64) == b"+PONG\r\n"
    finally:
        extra.close()
    admin.config_set("maxclients", "10000")
    assert admin.ping()


def test_oversize_bulk_limit_is_live(server: VfsdProcess, r: redis.Redis) -> None:
    r.config_set("proto-max-bulk-len", str(1024 * 1024))  # the smallest Redis accepts
    try:
        reply = raw(server.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n", expect_close=True)
        assert reply == b"-ERR Protocol error: invalid bulk length\r\n"
        assert r.set("k", "x" * (1024 * 1024))
    finally:
        r.config_set("proto-max-bulk-len", str(512 * 1024 * 1024))


def test_too_many_arguments_and_inline_length(server: VfsdProcess, r: redis.Redis) -> None:
    r.config_set("max-array-len", "1024")  # the smallest that still lets a client send any ordinary command
    try:
        assert raw(server.port, b"*1025\r\n", expect_close=True) == b"-ERR Protocol error: invalid multibulk length\r\n"
        assert r.execute_command("MSET", *(["k", "v"] * 511)) is True
    finally:
        r.config_set("max-array-len", str(1024 * 1024))
    reply = raw(server.port, b"GET " + b"a" * (70 * 1024), expect_close=True)
    assert reply == b"-ERR Protocol error: too big inline request\r\n"


def test_client_that_never_reads_does_not_stall_others(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("big", "v" * 65536)
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(("127.0.0.1", server.port))
    hog.setblocking(False)
    request = b"GET big\r\n" * 200
    try:
        for _ in range(50):
            try:
                hog.send(request)
            except BlockingIOError:
                break
        start = time.monotonic()
        for _ in range(50):
            assert r.get("/run/none") is None
        assert time.monotonic() - start < 5
        ids = [c["id"] for c in r.client_list()]
        assert len(ids) >= 2  # the hog is held, not dropped: Redis does not limit normal clients' output either
    finally:
        hog.close()


def test_quit_reset_and_client_kill(server: VfsdProcess, r: redis.Redis) -> None:
    assert raw(server.port, b"PING\r\nQUIT\r\nPING\r\n", expect_close=True) == b"+PONG\r\n+OK\r\n"
    victim = server.client(single_connection_client=True)
    victim.client_setname("victim")
    victim_id = victim.client_id()
    assert r.client_kill_filter(_id=victim_id) == 1
    wait_for(lambda: all(c["name"] != "victim" for c in r.client_list()), what="victim to go")
    reply = raw(server.port, b"MULTI\r\nRESET\r\nGET x\r\n")
    assert reply == b"+OK\r\n+RESET\r\n$-1\r\n"


def test_desired_expiry_commits_and_notifies(server: VfsdProcess, r: redis.Redis) -> None:
    p = server.client().pubsub()
    p.psubscribe("__keyevent@0__:expired")
    wait_for(lambda: r.pubsub_numpat() >= 1, what="psubscribe")
    index_before = r.info("vfsd")["desired_applied_index"]
    r.set("/ctx/lease-like", "v", px=50)
    deadline = time.monotonic() + 5
    got = None
    while time.monotonic() < deadline and got is None:
        m = p.get_message(timeout=0.5)
        if m and m["type"] == "pmessage":
            got = m["data"]
    p.close()
    assert got == b"/ctx/lease-like"
    # the expiry went through the log: one entry for the SET, one for the expiry
    assert r.info("vfsd")["desired_applied_index"] >= index_before + 2
    assert r.info("stats")["expired_keys"] >= 1


def test_flushall_clears_every_plane(r: redis.Redis) -> None:
    r.mset({"a": 1})
    r.set("/run/a", 1)
    r.set("/ctx/a", 1)
    r.set("/lk/a", 1)
    assert r.flushall() is True
    assert r.dbsize() == 0
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("FLUSHALL", "NOW")


@pytest.mark.parametrize("header", [b"*2147483648\r\n", b"*4294967295\r\n", b"*1073741824\r\n",
                                    b"*2\r\n$3\r\nGET\r\n$4294967295\r\n"])
def test_a_huge_header_is_refused_before_anything_is_allocated(server: VfsdProcess, r: redis.Redis,
                                                               header: bytes) -> None:
    """A 14-byte request once stalled every client for seconds (the array was sized before its limit was checked)."""
    expected = b"-ERR Protocol error: invalid " + (b"bulk" if b"$" in header else b"multibulk") + b" length\r\n"
    started = time.monotonic()
    assert raw(server.port, header, expect_close=True) == expected
    elapsed = time.monotonic() - started
    assert r.ping()
    # Generous bound, far below the seconds the allocation took: this is a stall check, not a benchmark.
    assert elapsed < 1.0, elapsed
