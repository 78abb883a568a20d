"""The compat scenarios through redis-py: sync and asyncio, RESP2 and RESP3.

Two layers: the raw scenario tables of ``compat.scenarios`` (the reply a
client sees, with redis-py's reply post-processing switched off), and
redis-py's own API (``set(nx=True)``, ``pipeline``, ``pubsub``, ``json()``),
which is what applications actually call.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.exceptions import ResponseError, WatchError

from compat.scenarios import ERRORS, FAMILIES, PLANE_KEYS, SPANS_PLANES, STRINGS, WRONGTYPE, Err, steps
from compat.support import CLIENT_TIMEOUT_S, as_map, next_message, wait_for, wait_subscribed
from tests.conftest import VfsdProcess

PROTOCOLS = [pytest.param(2, id="resp2"), pytest.param(3, id="resp3")]
PLANES = [pytest.param(key, id=plane) for plane, key in PLANE_KEYS.items()]


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def r(vfsd: VfsdProcess, protocol: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=vfsd.port, protocol=protocol, decode_responses=True,
                         socket_timeout=CLIENT_TIMEOUT_S)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def raw(vfsd: VfsdProcess, protocol: int) -> Iterator[redis.Redis]:
    """A client that hands back replies as they arrive (no response callbacks)."""
    client = redis.Redis(host="127.0.0.1", port=vfsd.port, protocol=protocol, decode_responses=True,
                         socket_timeout=CLIENT_TIMEOUT_S)
    client.response_callbacks.clear()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def ar(vfsd: VfsdProcess, protocol: int) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=vfsd.port, protocol=protocol, decode_responses=True,
                                 socket_timeout=CLIENT_TIMEOUT_S)
    try:
        yield client
    finally:
        await client.aclose()


def run_steps(client: redis.Redis, table: list, key: str) -> None:
    for step in steps(table, key):
        if isinstance(step.reply, Err):
            with pytest.raises(ResponseError) as info:
                client.execute_command(*step.args)
            assert step.reply.text.endswith(str(info.value)), (step.args, str(info.value))
        else:
            assert client.execute_command(*step.args) == step.reply, step.args


# -- (a) strings ------------------------------------------------------------------------


@pytest.mark.parametrize("key", PLANES)
def test_string_steps(raw: redis.Redis, key: str) -> None:
    run_steps(raw, STRINGS, key)


@pytest.mark.parametrize("key", PLANES)
def test_string_api(r: redis.Redis, key: str) -> None:
    assert r.set(key, "v1") is True
    assert r.set(key, "v2", nx=True) is None
    assert r.set(key, "v2", xx=True) is True
    assert r.set(key + "-none", "v", xx=True) is None
    assert r.set(key, "v3", get=True) == "v2"
    assert r.set(key, "v4", ex=100) is True
    assert 90 <= r.ttl(key) <= 100  # whole seconds, rounded; slack for a loaded machine
    assert r.set(key, "v5", px=200_000) is True
    assert 190_000 < r.pttl(key) <= 200_000
    assert r.persist(key) is True
    assert r.ttl(key) == -1
    assert r.expire(key, 60) is True
    assert 50 <= r.ttl(key) <= 60
    assert r.incr(key + "-n") == 1
    assert r.incrby(key + "-n", 41) == 42
    assert r.decr(key + "-n") == 41
    assert r.mset({key + "-a": "1", key + "-b": "2"}) is True
    assert r.mget([key + "-a", key + "-b", key + "-none"]) == ["1", "2", None]
    assert r.append(key + "-a", "xyz") == 4
    assert r.strlen(key + "-a") == 4
    assert r.exists(key, key + "-a", key + "-none") == 2
    assert r.type(key) == "string"
    assert r.delete(key, key + "-a", key + "-b", key + "-n") == 4
    assert r.exists(key) == 0
    assert r.get(key) is None
    assert r.type(key) == "none"


@pytest.mark.parametrize("key", PLANES)
def test_expiry_removes_the_key(r: redis.Redis, key: str) -> None:
    assert r.set(key, "v", px=100) is True
    wait_for(lambda: r.exists(key) == 0, timeout=5, what=f"{key} to expire")
    assert r.get(key) is None
    assert r.ttl(key) == -2


# -- (b) SCAN, KEYS, TYPE filter --------------------------------------------------------

HW_PATHS = [f"/hw/node-{n:03d}/cpu/{c}" for n in range(100) for c in range(3)]


def _fill_scan_fixture(r: redis.Redis) -> None:
    assert r.mset({p: "x" for p in HW_PATHS}) is True
    # neighbours that /hw/* must not match
    assert r.mset({"/run/hw/a": "x", "/run/hwb": "x"}) is True
    assert r.mset({"hw:local": "x", "hw": "x"}) is True
    assert r.json().set("/hw/node-000/inventory", "$", {"cpus": 3}) is True


def test_scan_match_returns_every_path_once(r: redis.Redis) -> None:
    _fill_scan_fixture(r)
    expected = set(HW_PATHS) | {"/hw/node-000/inventory"}
    for count in (10, 37, 1000):
        seen = list(r.scan_iter(match="/hw/*", count=count))
        assert len(seen) == len(set(seen)), f"COUNT {count}: a path came back twice"
        assert set(seen) == expected, f"COUNT {count}"
    # the raw cursor loop a client library runs: 0 in, 0 out
    cursor, seen = 0, []
    for _ in range(len(expected) + 2):
        cursor, batch = r.scan(cursor, match="/hw/node-00*", count=7)
        seen += batch
        if cursor == 0:
            break
    assert cursor == 0 and sorted(seen) == sorted(p for p in expected if p.startswith("/hw/node-00"))


def test_keys_and_type_filter(r: redis.Redis) -> None:
    _fill_scan_fixture(r)
    assert sorted(r.keys("/hw/*")) == sorted(HW_PATHS + ["/hw/node-000/inventory"])
    assert sorted(r.keys("/hw/node-01?/cpu/0")) == [f"/hw/node-01{i}/cpu/0" for i in range(10)]
    assert r.keys("/nothing/*") == []
    strings = set(r.scan_iter(match="/hw/*", _type="string", count=100))
    assert strings == set(HW_PATHS)


def test_scan_type_filter_json(r: redis.Redis) -> None:
    _fill_scan_fixture(r)
    assert r.type("/hw/node-000/inventory") == "ReJSON-RL"
    assert list(r.scan_iter(match="/hw/*", _type="ReJSON-RL", count=1000)) == ["/hw/node-000/inventory"]


# -- (c) pub/sub ------------------------------------------------------------------------


def test_keyspace_notifications(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.psubscribe("__keyspace@0__:/ctx/*")
        wait_subscribed(p, 1)
        assert r.set("/ctx/x", "1") is True
        assert r.set("/run/x", "1") is True  # another root: no event on this pattern
        assert r.delete("/ctx/x") == 1
        first, second = next_message(p), next_message(p)
        assert first == {"type": "pmessage", "pattern": "__keyspace@0__:/ctx/*", "channel": "__keyspace@0__:/ctx/x",
                         "data": "set"}
        assert (second["channel"], second["data"]) == ("__keyspace@0__:/ctx/x", "del")
        assert r.set("/ctx/y", "1", px=50) is True
        events = [next_message(p)["data"] for _ in range(3)]
        assert events == ["set", "expire", "expired"]
    finally:
        p.close()


def test_plain_channels(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.subscribe("news", "weather")
        wait_subscribed(p, 2)
        assert r.publish("news", "hello") == 1
        assert r.publish("nobody", "x") == 0
        assert next_message(p) == {"type": "message", "pattern": None, "channel": "news", "data": "hello"}
        p.unsubscribe("news")
        assert r.publish("weather", "sunny") == 1
        assert next_message(p)["data"] == "sunny"
    finally:
        p.close()


@pytest.mark.parametrize("protocol", [
    pytest.param(2, id="resp2"),
    pytest.param(3, id="resp3"),
])
def test_pubsub_numsub(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.subscribe("news")
        wait_subscribed(p, 1)
        assert r.pubsub_numsub("news", "nobody") == [("news", 1), ("nobody", 0)]
        assert "news" in r.pubsub_channels()
    finally:
        p.close()


def test_vfs_channel_payload(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.subscribe("__vfs__:/ctx/x")
        wait_subscribed(p, 1)
        assert r.set("/ctx/x", "v1") is True
        stat = as_map(r.execute_command("VFS.STAT", "/ctx/x"))
        message = next_message(p)
        assert message["channel"] == "__vfs__:/ctx/x"
        payload = json.loads(message["data"])
        assert payload == {"op": "set", "path": "/ctx/x", "rev": stat["revision"], "origin": "n1", "value": "v1"}
        assert r.delete("/ctx/x") == 1
        deleted = json.loads(next_message(p)["data"])  # a desired-plane delete has a revision, as etcd's do
        assert deleted == {"op": "del", "path": "/ctx/x", "rev": deleted["rev"], "origin": "n1"}
        assert deleted["rev"] > stat["revision"]
        assert r.json().set("/ctx/x", "$", {"a": [1, 2]}) is True
        payload = json.loads(next_message(p)["data"])
        assert payload["op"] == "json.set" and payload["value"] == {"a": [1, 2]}
        assert payload["rev"] > stat["revision"]
    finally:
        p.close()


# -- (d) transactions -------------------------------------------------------------------


@pytest.mark.parametrize("key", PLANES)
def test_transaction_pipeline(r: redis.Redis, key: str) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.set(key, "1")
        pipe.incr(key)
        pipe.incrby(key, 10)
        pipe.get(key)
        pipe.mset({key + "-a": "x", key + "-b": "y"})
        assert pipe.execute() == [True, 2, 12, "12", True]
    assert r.mget([key, key + "-a", key + "-b"]) == ["12", "x", "y"]
    # a plain (non-transactional) pipeline: one round trip, replies in order
    with r.pipeline(transaction=False) as pipe:
        for _i in range(50):
            pipe.incr(key + "-ctr")
        pipe.get(key + "-ctr")
        assert pipe.execute() == list(range(1, 51)) + ["50"]


@pytest.mark.parametrize("key", PLANES)
def test_watch(r: redis.Redis, vfsd: VfsdProcess, key: str) -> None:
    other = vfsd.client()
    try:
        r.set(key, "0")
        with r.pipeline() as pipe:  # untouched: EXEC runs
            pipe.watch(key)
            current = pipe.get(key)  # after WATCH the pipeline runs commands at once, on its connection
            assert isinstance(current, str)
            value = int(current)
            pipe.multi()
            pipe.set(key, str(value + 1))
            assert pipe.execute() == [True]
        with r.pipeline() as pipe:  # changed by another client between WATCH and EXEC: aborted
            pipe.watch(key)
            pipe.get(key)
            assert other.set(key, "changed") is True
            pipe.multi()
            pipe.set(key, "mine")
            with pytest.raises(WatchError):
                pipe.execute()
        assert r.get(key) == "changed"
    finally:
        other.close()


def test_cross_plane_transaction_is_refused(r: redis.Redis) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.set("/ctx/t", "1")
        pipe.set("/run/t", "1")
        with pytest.raises(ResponseError, match="transaction spans planes"):
            pipe.execute()
    assert r.exists("/ctx/t", "/run/t") == 0  # nothing of the aborted transaction applied
    with r.pipeline(transaction=True) as pipe:
        pipe.set("local-t", "1")
        pipe.set("/ctx/t", "1")
        with pytest.raises(ResponseError, match="transaction spans planes"):
            pipe.execute()
    assert r.exists("local-t", "/ctx/t") == 0


# -- (e) JSON ---------------------------------------------------------------------------

DOC: dict[str, Any] = {"a": {"b": [1, 2]}, "name": "web", "n": 1.5}


@pytest.mark.parametrize("key", [pytest.param("/ctx/doc", id="desired"), pytest.param("/run/doc", id="active"),
                                 pytest.param("doc", id="local")])
def test_json(r: redis.Redis, key: str) -> None:
    j = r.json()
    assert j.set(key, "$", DOC) is True
    assert j.get(key) == DOC
    assert j.get(key, "$.a.b") == [[1, 2]]
    assert j.get(key, "$.missing") == []
    assert j.type(key) in ("object", ["object"])
    assert j.type(key, "$.a.b") in (["array"], [["array"]])
    assert r.type(key) == "ReJSON-RL"
    assert r.get(key) == json.dumps(DOC, separators=(",", ":"))
    assert j.set(key, "$.a.c", "new") is True
    assert j.get(key, "$.a") == [{"b": [1, 2], "c": "new"}]
    assert j.set(key, "$.name", "x", nx=True) is None
    assert j.set(key + "2", "$", {"a": {"b": 3}}) is True
    assert j.mget([key, key + "2", key + "-none"], "$.a.b") == [[[1, 2]], [3], None]
    assert j.delete(key, "$.a.c") == 1
    assert j.delete(key, "$.nothing") == 0
    assert j.get(key, "$.a") == [{"b": [1, 2]}]
    assert j.delete(key) == 1
    assert r.exists(key) == 0
    assert j.get(key) is None


# -- (f) errors -------------------------------------------------------------------------


@pytest.mark.parametrize("args,error", [pytest.param(a, e, id=" ".join(a)) for a, e in ERRORS])
def test_errors(raw: redis.Redis, args: tuple[str, ...], error: Err) -> None:
    with pytest.raises(ResponseError) as info:
        raw.execute_command(*args)
    # redis-py drops the "ERR " prefix (it names the exception class instead) and keeps other codes
    assert error.text in (str(info.value), "ERR " + str(info.value))
    assert raw.ping() in ("PONG", True)  # the connection stays usable


def test_type_errors(r: redis.Redis) -> None:
    assert r.json().set("/ctx/doc", "$", {"n": 1}) is True
    for call in (lambda: r.incr("/ctx/doc"), lambda: r.append("/ctx/doc", "x"), lambda: r.set("/ctx/doc", "x", get=True)):
        with pytest.raises(ResponseError) as info:
            call()
        assert str(info.value) == WRONGTYPE.text
    assert r.set("/ctx/s", "text") is True
    with pytest.raises(ResponseError, match="^WRONGTYPE"):
        r.json().get("/ctx/s")
    with pytest.raises(ResponseError, match="value is not an integer"):
        r.incr("/ctx/s")
    with pytest.raises(ResponseError, match=SPANS_PLANES):
        r.mset({"/ctx/a": "1", "/run/a": "1"})


# -- (g) VFS.LS and VFS.STAT ------------------------------------------------------------


def test_vfs_ls_and_stat(r: redis.Redis) -> None:
    assert r.mset({"/ctx/web/replicas": "3", "/ctx/web/image": "nginx", "/ctx/db/replicas": "1"}) is True
    assert r.set("/run/web/pid", "42", ex=100) is True
    roots = r.execute_command("VFS.LS", "/")
    assert {"ctx/", "hw/", "run/", "mid/", "sum/", "sys/", "ztb/", "itg/", "lk/"} <= set(roots)
    assert r.execute_command("VFS.LS", "/ctx") == ["db/", "web/"]
    assert r.execute_command("VFS.LS", "/ctx/web/") == ["image", "replicas"]
    assert r.execute_command("VFS.LS", "/ctx/none") == []

    stat = as_map(r.execute_command("VFS.STAT", "/ctx/web/replicas"))
    assert stat["plane"] == "consensus" and stat["origin"] == "n1" and stat["type"] == "string"
    assert stat["size"] == 1 and stat["ttl_ms"] == -1 and isinstance(stat["revision"], int)
    assert stat["ctime_ms"] <= stat["mtime_ms"] <= time.time() * 1000 + 60_000
    active = as_map(r.execute_command("VFS.STAT", "/run/web/pid"))
    assert active["plane"] == "eventual" and 0 < active["ttl_ms"] <= 100_000
    assert r.set("/ctx/web/replicas", "5") is True
    again = as_map(r.execute_command("VFS.STAT", "/ctx/web/replicas"))
    assert again["revision"] > stat["revision"] and again["ctime_ms"] == stat["ctime_ms"]
    assert r.execute_command("VFS.STAT", "/ctx/none") is None
    with pytest.raises(ResponseError, match="no plane for root '/nope'"):
        r.execute_command("VFS.STAT", "/nope/x")


# -- redis.asyncio ----------------------------------------------------------------------


@pytest.mark.parametrize("key", PLANES)
async def test_async_strings_and_pipeline(ar: redis.asyncio.Redis, key: str) -> None:
    assert await ar.set(key, "v", nx=True) is True
    assert await ar.set(key, "w", nx=True) is None
    assert await ar.get(key) == "v"
    async with ar.pipeline(transaction=True) as pipe:
        pipe.set(key + "-n", "1")
        pipe.incr(key + "-n")
        pipe.get(key + "-n")
        assert await pipe.execute() == [True, 2, "2"]
    async with ar.pipeline(transaction=False) as pipe:
        pipe.mset({key + "-a": "1", key + "-b": "2"})
        pipe.mget(key + "-a", key + "-b")
        pipe.delete(key + "-a")
        assert await pipe.execute() == [True, ["1", "2"], 1]


async def test_async_watch_and_cross_plane(ar: redis.asyncio.Redis, vfsd: VfsdProcess) -> None:
    other = redis.asyncio.Redis(host="127.0.0.1", port=vfsd.port, socket_timeout=CLIENT_TIMEOUT_S)
    try:
        async with ar.pipeline() as pipe:
            await pipe.watch("/ctx/w")
            await other.set("/ctx/w", "x")
            pipe.multi()
            pipe.set("/ctx/w", "y")
            with pytest.raises(WatchError):
                await pipe.execute()
        async with ar.pipeline(transaction=True) as pipe:
            pipe.set("/ctx/t", "1")
            pipe.set("/run/t", "1")
            with pytest.raises(ResponseError, match="transaction spans planes"):
                await pipe.execute()
    finally:
        await other.aclose()


async def _async_message(pubsub: redis.asyncio.client.PubSub, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, 1.0))
        if message is not None:
            return message
    raise AssertionError(f"no pub/sub message within {timeout}s")


async def _async_subscribed(pubsub: redis.asyncio.client.PubSub, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {seen} of {count} subscription confirmations within {timeout}s"
        message = await pubsub.get_message(timeout=min(left, 1.0))
        if message is not None:
            assert message["type"] in ("subscribe", "psubscribe"), message
            seen += 1


async def test_async_pubsub(ar: redis.asyncio.Redis) -> None:
    pubsub = ar.pubsub()
    try:
        await pubsub.psubscribe("__keyspace@0__:/ctx/*")
        await pubsub.subscribe("news", "__vfs__:/ctx/x")
        await _async_subscribed(pubsub, 3)
        assert await ar.set("/ctx/x", "v1") is True
        assert await ar.delete("/ctx/x") == 1
        assert await ar.publish("news", "hi") == 1
        messages = [await _async_message(pubsub) for _ in range(5)]
        keyspace = [m["data"] for m in messages if m["type"] == "pmessage"]
        vfs = [json.loads(m["data"])["op"] for m in messages if m["channel"] == "__vfs__:/ctx/x"]
        news = [m["data"] for m in messages if m["channel"] == "news"]
        assert (keyspace, vfs, news) == (["set", "del"], ["set", "del"], ["hi"])
    finally:
        await pubsub.aclose()


@pytest.mark.parametrize("key", [pytest.param("/ctx/adoc", id="desired"), pytest.param("adoc", id="local")])
async def test_async_json(ar: redis.asyncio.Redis, key: str) -> None:
    j = ar.json()
    assert await j.set(key, "$", DOC) is True
    assert await j.get(key) == DOC
    assert await j.get(key, "$.a.b") == [[1, 2]]
    assert await j.mget([key, key + "-none"], "$.name") == [["web"], None]
    assert await j.delete(key, "$.name") == 1
    assert await ar.get(key) == '{"a":{"b":[1,2]},"n":1.5}'
    with pytest.raises(ResponseError, match="^WRONGTYPE"):
        await ar.incr(key)


# -- (g) hashes, lists, sets, sorted sets, bits, keyspace ----------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("key", PLANES)
def test_family_steps(raw: redis.Redis, key: str, family: str) -> None:
    run_steps(raw, FAMILIES[family], key)


@pytest.mark.parametrize("key", PLANES)
def test_hash_api(r: redis.Redis, key: str) -> None:
    h = key + "-gpu"
    assert r.hset(h, mapping={"model": "H200", "memory_gib": "141"}) == 2
    assert r.hgetall(h) == {"model": "H200", "memory_gib": "141"}  # a map in RESP3, pairs in RESP2
    assert r.hincrbyfloat(h, "util", 0.5) == 0.5
    assert r.hincrby(h, "memory_gib", 3) == 144
    assert r.hrandfield(h, 2, withvalues=True) and len(r.hrandfield(h, -5)) == 5
    assert dict(r.hscan_iter(h, match="m*")) == {"model": "H200", "memory_gib": "144"}
    assert r.hdel(h, "model", "util", "memory_gib") == 3 and r.exists(h) == 0


@pytest.mark.parametrize("key", PLANES)
def test_list_api(r: redis.Redis, vfsd: VfsdProcess, key: str) -> None:
    q = key + "-jobs"
    assert r.rpush(q, "j1", "j2", "j3") == 3
    assert r.lrange(q, 0, -1) == ["j1", "j2", "j3"]
    assert r.lpos(q, "j3") == 2
    assert tuple(r.blpop([q], timeout=1)) == (q, "j1")  # data present: no wait
    assert r.blmove(q, q + "-done", 1, "LEFT", "RIGHT") == "j2"
    assert r.lmpop(2, q + "-none", q, direction="RIGHT", count=5) == [q, ["j3"]]
    assert r.blpop([q], timeout=0.05) is None
    other = vfsd.client(decode_responses=True, protocol=r.get_connection_kwargs()["protocol"])
    try:
        import threading

        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(other.brpop([q], timeout=8)))
        waiter.start()
        wait_for(lambda: r.info("clients")["blocked_clients"] == 1, what="the waiter to block")
        assert r.lpush(q, "wake") == 1
        waiter.join(10)
        assert [tuple(x) for x in got] == [(q, "wake")]  # type: ignore[arg-type]
    finally:
        other.close()


@pytest.mark.parametrize("key", PLANES)
def test_set_api(r: redis.Redis, key: str) -> None:
    s = key + "-nodes"
    assert r.sadd(s, "n1", "n2", "n3") == 3
    assert r.smembers(s) == {"n1", "n2", "n3"}  # a set in RESP3, an array in RESP2
    assert r.sinter(s, s + "-none") == set()
    assert r.sunion(s, s + "-none") == {"n1", "n2", "n3"}
    assert r.srandmember(s) in {"n1", "n2", "n3"}
    popped = r.spop(s, 2)
    assert len(popped) == 2 and set(popped) < {"n1", "n2", "n3"}
    assert r.scard(s) == 1
    assert set(r.sscan_iter(s)) == {"n1", "n2", "n3"} - set(popped)


@pytest.mark.parametrize("key", PLANES)
def test_sorted_set_api(r: redis.Redis, key: str) -> None:
    z = key + "-load"
    assert r.zadd(z, {"a": 1.5, "b": 0.25, "c": 3}) == 3
    assert r.zscore(z, "a") == 1.5  # a double in RESP3, a bulk string in RESP2: both parse to a float
    pairs = lambda reply: [tuple(x) for x in reply]  # noqa: E731  (tuples in RESP2, lists in RESP3)
    assert pairs(r.zrange(z, 0, -1, withscores=True)) == [("b", 0.25), ("a", 1.5), ("c", 3.0)]
    assert pairs(r.zrange(z, "+inf", "(1", byscore=True, desc=True, withscores=True)) == [("c", 3.0), ("a", 1.5)]
    assert r.zincrby(z, 0.5, "b") == 0.75
    assert r.zmscore(z, ["a", "none"]) == [1.5, None]
    assert r.zpopmin(z) in ([("b", 0.75)], ["b", 0.75])  # RESP3 without a count: one flat pair, as Redis sends
    assert tuple(r.bzpopmax([z], timeout=1)) == (z, "c", 3.0)
    assert [tuple(x) for x in r.zunion([z, z + "-none"], withscores=True)] == [("a", 1.5)]
    assert r.zrandmember(z + "-none") is None


@pytest.mark.parametrize("key", PLANES)
def test_bits_and_keyspace_api(r: redis.Redis, key: str) -> None:
    b = key + "-bits"
    assert r.setbit(b, 100, 1) == 0
    assert r.bitcount(b) == 1 and r.bitpos(b, 1) == 100
    assert r.bitfield(b).incrby("u4", "#0", 7).get("u4", 0).execute() == [7, 7]
    assert r.rename(b, b + "-renamed") is True
    assert r.copy(b + "-renamed", b + "-copy") is True
    payload = r.dump(b + "-copy")
    assert r.restore(b + "-restored", 0, payload) in (True, "OK")
    assert r.get(b + "-restored") == r.get(b + "-copy")
    assert r.object("encoding", b + "-copy") in ("embstr", "raw")
    assert r.type(b + "-copy") == "string"


@pytest.mark.parametrize("key", PLANES)
def test_mixed_family_pipelines(r: redis.Redis, key: str) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.hset(key + "-h", "f", "1").rpush(key + "-l", "a", "b").sadd(key + "-s", "x").zadd(key + "-z", {"m": 2})
        pipe.hincrby(key + "-h", "f", 1).lpop(key + "-l").scard(key + "-s").zscore(key + "-z", "m")
        assert pipe.execute() == [1, 2, 1, 1, 2, "a", 1, 2.0]
    with r.pipeline(transaction=False) as pipe:
        for i in range(20):
            pipe.rpush(key + "-q", str(i))
        pipe.lrange(key + "-q", 0, 2).zrange(key + "-z", 0, -1, withscores=True).hgetall(key + "-h")
        replies = pipe.execute()
    assert replies[:20] == list(range(1, 21))
    assert replies[20] == ["0", "1", "2"] and [tuple(x) for x in replies[21]] == [("m", 2.0)]
    assert replies[22] == {"f": "2"}


async def test_async_families(ar: redis.asyncio.Redis, vfsd: VfsdProcess) -> None:
    import asyncio

    for key in PLANE_KEYS.values():
        assert await ar.hset(key + "-ah", mapping={"a": "1"}) == 1
        assert await ar.hgetall(key + "-ah") == {"a": "1"}
        assert await ar.zadd(key + "-az", {"m": 0.5}) == 1
        assert [tuple(x) for x in await ar.zrange(key + "-az", 0, -1, withscores=True)] == [("m", 0.5)]
        assert await ar.sadd(key + "-as", "1", "2") == 2
        assert await ar.smembers(key + "-as") == {"1", "2"}
        pusher = redis.asyncio.Redis(host="127.0.0.1", port=vfsd.port, decode_responses=True,
                                     protocol=ar.get_connection_kwargs()["protocol"])
        try:
            waiting = asyncio.ensure_future(ar.blpop([key + "-aq"], timeout=8))
            deadline = asyncio.get_running_loop().time() + 10
            while (await pusher.info("clients"))["blocked_clients"] != 1:
                assert asyncio.get_running_loop().time() < deadline, "the async waiter never blocked"
                await asyncio.sleep(0.01)
            assert await pusher.rpush(key + "-aq", "job") == 1
            assert tuple(await asyncio.wait_for(waiting, 10)) == (key + "-aq", "job")
        finally:
            await pusher.aclose()
        async with ar.pipeline(transaction=True) as pipe:
            pipe.lpush(key + "-al", "x").llen(key + "-al").blpop([key + "-never"], 0)
            assert await pipe.execute() == [1, 1, None]  # a blocking pop inside MULTI answers nil at once


def test_vfs_channel_carries_collections_and_events_name_the_type(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.subscribe("__vfs__:/ctx/inv", "__keyevent@0__:hset", "__keyevent@0__:zadd", "__keyevent@0__:del")
        wait_subscribed(p, 4)
        assert r.hset("/ctx/inv", mapping={"model": "H200", "count": "8"}) == 2
        events = {}
        for _ in range(2):
            message = next_message(p)
            events[message["channel"]] = message["data"]
        assert events["__keyevent@0__:hset"] == "/ctx/inv"
        assert json.loads(events["__vfs__:/ctx/inv"])["value"] == {"model": "H200", "count": "8"}
        assert r.hdel("/ctx/inv", "model", "count") == 2  # emptied: deleted, "hdel" then "del"
        kinds = [next_message(p)["channel"] for _ in range(3)]
        assert kinds.count("__keyevent@0__:del") == 1 and kinds.count("__vfs__:/ctx/inv") == 2
        assert r.zadd("/ctx/inv", {"a": 1.5}) == 1
        got = {}
        for _ in range(2):
            message = next_message(p)
            got[message["channel"]] = message["data"]
        assert got["__keyevent@0__:zadd"] == "/ctx/inv"
        assert json.loads(got["__vfs__:/ctx/inv"])["value"] == [["a", 1.5]]
    finally:
        p.close()
