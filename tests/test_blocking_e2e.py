"""Blocking pops end to end: real ``vfsd serve`` processes, clients on separate connections.

A client is known to be blocked once ``INFO clients`` counts it (polled with a
bounded deadline), so every test pushes only after its waiters are parked.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.conftest import VfsdProcess, wait_for

PLANES = [pytest.param(p, id=name) for name, p in (("local", "bq:"), ("active", "/run/bq/"), ("desired", "/ctx/bq/"))]


class Raw:
    """A raw RESP2 connection: send now, read the reply later (a blocked client's reply arrives later)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def send(self, *args: Any) -> None:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))

    def read_raw(self, timeout: float = 10.0) -> bytes:
        """One complete reply's bytes."""
        self.sock.settimeout(timeout)
        while True:
            end = self._complete(0)
            if end is not None:
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data

    def _complete(self, pos: int) -> int | None:
        line_end = self.buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        kind, head = self.buf[pos : pos + 1], self.buf[pos + 1 : line_end]
        nxt = line_end + 2
        if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
            return nxt
        n = int(head)
        if kind in (b"$", b"=", b"!"):
            return nxt if n < 0 else (nxt + n + 2 if len(self.buf) >= nxt + n + 2 else None)
        if kind in (b"%", b"|"):
            n *= 2
        for _ in range(max(n, 0)):
            got = self._complete(nxt)
            if got is None:
                return None
            nxt = got
        return nxt

    def call(self, *args: Any) -> bytes:
        self.send(*args)
        return self.read_raw()

    def nothing_pending(self) -> bool:
        self.sock.settimeout(0.05)
        try:
            return not self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, TimeoutError, socket.timeout):
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conns(server: VfsdProcess, r: redis.Redis) -> Iterator[Callable[[], Raw]]:
    opened: list[Raw] = []

    def make() -> Raw:
        conn = Raw(server.port)
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        conn.close()


def blocked(r: redis.Redis, n: int) -> None:
    wait_for(lambda: r.info("clients")["blocked_clients"] == n, timeout=10, what=f"{n} blocked clients")


def bulk(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%b\r\n" % (len(i), i) for i in items)


@pytest.mark.parametrize("prefix", PLANES)
def test_blpop_is_woken_by_a_push_on_another_connection(r: redis.Redis, conns: Callable[[], Raw], prefix: str) -> None:
    q = f"{prefix}q".encode()
    waiter = conns()
    waiter.send("BLPOP", q, "0")
    blocked(r, 1)
    assert r.ping()  # the node serves others meanwhile
    assert r.rpush(q, "job1", "job2") == 2
    assert waiter.read_raw() == bulk(q, b"job1")
    assert r.lrange(q, 0, -1) == [b"job2"]
    blocked(r, 0)


@pytest.mark.parametrize("prefix", PLANES)
def test_waiters_are_served_first_come_first_served(r: redis.Redis, conns: Callable[[], Raw], prefix: str) -> None:
    q = f"{prefix}fifo".encode()
    waiters = []
    for n in range(3):
        w = conns()
        w.send("BRPOP", q, "0")
        blocked(r, n + 1)
        waiters.append(w)
    r.lpush(q, "a", "b", "c")  # list: c b a; BRPOP takes from the right
    assert [w.read_raw() for w in waiters] == [bulk(q, b"a"), bulk(q, b"b"), bulk(q, b"c")]
    assert r.exists(q) == 0


def test_a_push_inside_multi_wakes_after_exec_from_the_first_key_in_argument_order(
        r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    waiter.send("BLPOP", "bq:k1", "bq:k2", "0")
    blocked(r, 1)
    pipe = r.pipeline(transaction=True)
    pipe.rpush("bq:k2", "x").rpush("bq:k1", "y").llen("bq:k1").llen("bq:k2")
    assert pipe.execute() == [1, 1, 1, 1]  # inside EXEC nobody was woken yet
    assert waiter.read_raw() == bulk(b"bq:k1", b"y")  # Redis 7.2 re-runs the command: k1 comes first
    assert r.llen("bq:k2") == 1


def test_blocking_commands_inside_multi_answer_nil_at_once(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.blpop(["bq:none"], 0).blmove("bq:none", "bq:d", 0, "LEFT", "RIGHT").bzpopmin(["bq:none"], 0)
    assert pipe.execute() == [None, None, None]
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("BLPOP", "/ctx/bq/none", "0").execute_command("BLMPOP", "0", "1", "/ctx/bq/none", "LEFT")
    assert pipe.execute() == [None, None]


def test_timeout_answers_a_null_array(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    started = time.monotonic()
    assert waiter.call("BLPOP", "bq:never", "0.2") == b"*-1\r\n"
    assert waiter.call("BLMOVE", "bq:never", "bq:d", "LEFT", "LEFT", "0.1") == b"*-1\r\n"
    assert waiter.call("BZPOPMAX", "/ctx/bq/never", "0.1") == b"*-1\r\n"
    assert 0.35 <= time.monotonic() - started < 8
    assert waiter.call("BLPOP", "bq:never", "-1") == b"-ERR timeout is negative\r\n"
    assert waiter.call("BLPOP", "bq:never", "x") == b"-ERR timeout is not a float or out of range\r\n"
    assert waiter.call("BLPOP", "bq:never", "inf") == b"-ERR timeout is out of range\r\n"
    assert waiter.call("BLPOP", "/ctx/bq/never", "x") == b"-ERR timeout is not a float or out of range\r\n"


@pytest.mark.parametrize("prefix", PLANES)
def test_client_unblock(r: redis.Redis, conns: Callable[[], Raw], prefix: str) -> None:
    waiter = conns()
    waiter_id = int(waiter.call("CLIENT", "ID")[1:-2])
    waiter.send("BLPOP", f"{prefix}u", "0")
    blocked(r, 1)
    assert r.execute_command("CLIENT", "UNBLOCK", waiter_id) == 1
    assert waiter.read_raw() == b"*-1\r\n"
    waiter.send("BZPOPMIN", f"{prefix}u", "0")
    blocked(r, 1)
    assert r.execute_command("CLIENT", "UNBLOCK", waiter_id, "ERROR") == 1
    assert waiter.read_raw() == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    assert r.execute_command("CLIENT", "UNBLOCK", waiter_id) == 0  # not blocked now
    with pytest.raises(redis.ResponseError, match="reason should be TIMEOUT or ERROR"):
        r.execute_command("CLIENT", "UNBLOCK", waiter_id, "LATER")
    assert waiter.call("PING") == b"+PONG\r\n"


def test_blmove_feeds_the_next_waiter_in_the_same_pass(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    mover, popper = conns(), conns()
    mover.send("BLMOVE", "bq:src", "bq:dst", "LEFT", "RIGHT", "0")
    blocked(r, 1)
    popper.send("BLPOP", "bq:dst", "0")
    blocked(r, 2)
    r.rpush("bq:src", "item")
    assert mover.read_raw() == b"$4\r\nitem\r\n"
    assert popper.read_raw() == bulk(b"bq:dst", b"item")
    assert r.exists("bq:src", "bq:dst") == 0


def test_only_a_value_of_the_awaited_type_wakes(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    waiter.send("BZPOPMIN", "bq:z", "0")
    blocked(r, 1)
    r.set("bq:z", "a string")
    r.delete("bq:z")
    r.rpush("bq:z", "a list")
    assert waiter.nothing_pending()
    r.delete("bq:z")
    r.zadd("bq:z", {"m": 2.5})
    assert waiter.read_raw() == bulk(b"bq:z", b"m", b"2.5")


def test_a_disconnected_waiter_takes_nothing(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    waiter.send("BLPOP", "bq:gone", "0")
    blocked(r, 1)
    waiter.close()
    blocked(r, 0)
    r.rpush("bq:gone", "kept")
    assert r.lrange("bq:gone", 0, -1) == [b"kept"]


def test_blocked_clients_in_resp3_get_resp3_replies(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    waiter.call("HELLO", "3")
    waiter.send("BZMPOP", "0", "1", "bq:z3", "MAX", "COUNT", "2")
    blocked(r, 1)
    r.zadd("bq:z3", {"a": 1, "b": 2})
    assert waiter.read_raw() == b"*2\r\n$5\r\nbq:z3\r\n*2\r\n*2\r\n$1\r\nb\r\n,2\r\n*2\r\n$1\r\na\r\n,1\r\n"
    assert waiter.call("BLPOP", "bq:none", "0.05") == b"_\r\n"


def test_a_desired_plane_pop_is_durable(node_factory: Callable[..., VfsdProcess]) -> None:
    node = node_factory()
    r = node.client()
    waiter = Raw(node.port)
    try:
        waiter.send("BLPOP", "/ctx/bq/jobs", "0")
        blocked(r, 1)
        r.rpush("/ctx/bq/jobs", "j1", "j2")
        assert waiter.read_raw() == bulk(b"/ctx/bq/jobs", b"j1")
    finally:
        waiter.close()
    node.kill9()
    node.restart()
    r = node.client()
    assert r.lrange("/ctx/bq/jobs", 0, -1) == [b"j2"]  # the pop was a committed log entry


def test_commands_pipelined_behind_a_blocked_one_run_after_it(r: redis.Redis, conns: Callable[[], Raw]) -> None:
    waiter = conns()
    waiter.send("BLPOP", "bq:p", "0")
    waiter.send("LLEN", "bq:p")
    blocked(r, 1)
    assert waiter.nothing_pending()
    r.rpush("bq:p", "a", "b")
    assert waiter.read_raw() == bulk(b"bq:p", b"a")
    assert waiter.read_raw() == b":1\r\n"
