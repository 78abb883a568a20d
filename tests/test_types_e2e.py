"""Every type on a desired path survives ``kill -9`` and restart, and a desired-plane snapshot.

Acknowledged desired writes are fsynced log entries; after a restart the log
(or a snapshot plus the log after it) rebuilds each value exactly: contents,
order, scores, encoding and TTL. Large values take the unpacked paths (a deque
list, a hashtable hash, a skiplist sorted set) so both wire forms are exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import VfsdProcess, wait_for

FAR_FUTURE_MS = 4_102_444_800_000


def fill(r: redis.Redis, prefix: str, size: int) -> None:
    p = prefix
    r.hset(f"{p}/hash", mapping={f"f{i}": f"v{i}" for i in range(size)})
    r.rpush(f"{p}/list", *[f"e{i}" for i in range(size)])
    r.lpush(f"{p}/list", "head")
    r.sadd(f"{p}/set", *[f"m{i}" for i in range(size)])
    r.sadd(f"{p}/intset", *range(size))
    r.zadd(f"{p}/zset", {f"z{i}": i / 4 for i in range(size)})
    r.zadd(f"{p}/zset", {"minus-zero": -0.0, "inf": float("inf")})
    r.setbit(f"{p}/bits", 77, 1)
    r.set(f"{p}/string", "plain")
    r.pexpireat(f"{p}/hash", FAR_FUTURE_MS)


def state(r: redis.Redis, prefix: str) -> dict[str, Any]:
    p = prefix
    keys = ["hash", "list", "set", "intset", "zset", "bits", "string"]
    return {
        "hash": r.hgetall(f"{p}/hash"),
        "list": r.lrange(f"{p}/list", 0, -1),
        "set": r.smembers(f"{p}/set"),
        "intset": r.smembers(f"{p}/intset"),
        "zset": r.zrange(f"{p}/zset", 0, -1, withscores=True),
        "bits": r.get(f"{p}/bits"),
        "string": r.get(f"{p}/string"),
        "types": [r.type(f"{p}/{k}") for k in keys],
        "encodings": [r.object("encoding", f"{p}/{k}") for k in keys],
        "ttl": r.pexpiretime(f"{p}/hash"),
    }


def test_each_type_survives_kill_9_and_restart(node_factory: Callable[..., VfsdProcess]) -> None:
    node = node_factory()
    r = node.client()
    fill(r, "/ctx/small", 5)
    fill(r, "/mid/large", 700)
    before = {p: state(r, p) for p in ("/ctx/small", "/mid/large")}
    assert before["/ctx/small"]["encodings"] == [b"listpack", b"listpack", b"listpack", b"intset", b"listpack",
                                                 b"embstr", b"embstr"]  # by content (DIFFERENCES.md)
    assert before["/mid/large"]["encodings"][:5] == [b"hashtable", b"listpack", b"hashtable", b"hashtable",
                                                     b"skiplist"]
    node.kill9()
    node.restart()
    r = node.client()
    assert {p: state(r, p) for p in ("/ctx/small", "/mid/large")} == before


def test_each_type_round_trips_through_a_snapshot(node_factory: Callable[..., VfsdProcess], tmp_path: Path) -> None:
    data = tmp_path / "snap-data"
    node = node_factory(data_dir=data)
    r = node.client()
    r.config_set("snapshot-every-entries", "20")
    fill(r, "/ctx/s", 300)
    for _i in range(30):  # enough entries after the collections for a snapshot to cover them
        r.hincrby("/ctx/s/hash", "counter", 1)
    wait_for(lambda: r.info("vfsd")["desired_snapshot_index"] >= 20, what="a desired-plane snapshot")
    assert list((data / "desired").glob("snap-*.snap"))
    r.rpush("/ctx/s/list", "after the snapshot")
    before = state(r, "/ctx/s")
    node.kill9()
    node.restart()
    r = node.client()
    assert state(r, "/ctx/s") == before
    assert r.hget("/ctx/s/hash", "counter") == b"30"


def test_argument_errors_known_in_advance_never_become_log_entries(server: VfsdProcess, r: redis.Redis) -> None:
    applied = r.info("vfsd")["desired_applied_index"]
    bad = [
        ("ZADD", "/ctx/e/z", "NX", "XX", "1", "a"),
        ("ZADD", "/ctx/e/z", "one", "a"),
        ("HINCRBYFLOAT", "/ctx/e/h", "f", "nan"),
        ("LPOP", "/ctx/e/l", "-1"),
        ("BLPOP", "/ctx/e/l", "-1"),
        ("LMPOP", "0", "/ctx/e/l", "LEFT"),
        ("SETBIT", "/ctx/e/b", "99999999999", "1"),
        ("BITFIELD", "/ctx/e/b", "SET", "u64", "0", "1"),
        ("RESTORE", "/ctx/e/r", "0", "garbage", "REPLACE"),
        ("SORT", "/ctx/e/l", "LIMIT", "x", "1"),
        ("MOVE", "/ctx/e/l", "0"),
        ("ZRANGESTORE", "/ctx/e/d", "/ctx/e/z", "0", "1", "WITHSCORES"),
    ]
    for args in bad:
        with pytest.raises(redis.ResponseError):
            r.execute_command(*args)
    r.config_set("proto-max-bulk-len", str(1024 * 1024))
    try:
        with pytest.raises(redis.ResponseError, match="bit offset is not an integer or out of range"):
            r.setbit("/ctx/e/b", 8 * 1024 * 1024, 1)  # past the proposing node's limit
    finally:
        r.config_set("proto-max-bulk-len", str(512 * 1024 * 1024))
    assert r.info("vfsd")["desired_applied_index"] == applied
    assert r.zadd("/ctx/e/z", {"a": 1}) == 1  # a good one is an entry
    assert r.info("vfsd")["desired_applied_index"] == applied + 1
