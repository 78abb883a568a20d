"""End-to-end: a real ``vfsd serve`` process driven over real sockets by redis-py and raw RESP."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.conftest import VfsdProcess, wait_for
from vfsd import REDIS_VERSION


def raw(port: int, payload: bytes, *, expect_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh connection and read until the reply stops (or the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        deadline = time.monotonic() + timeout
        s.settimeout(0.3 if not expect_close else timeout)
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except socket.timeout:
                if chunks and not expect_close:
                    break
                continue
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


# -- strings and keys ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["plain", "/run/web/a", "/ctx/web/a", "/lk/web"])
def test_set_get_on_every_plane(r: redis.Redis, key: str) -> None:
    assert r.set(key, b"\x00bin\r\nary") is True
    assert r.get(key) == b"\x00bin\r\nary"
    assert r.set(key, "v2", xx=True) is True
    assert r.set(key, "v3", nx=True) is None
    assert r.set(key, "v4", get=True) == b"v2"
    assert r.exists(key) == 1
    assert r.type(key) == b"string"
    assert r.delete(key) == 1
    assert r.get(key) is None


def test_counters_and_ranges(r: redis.Redis) -> None:
    assert r.incr("/run/c") == 1
    assert r.incrby("/run/c", 41) == 42
    assert r.decr("/ctx/c") == -1
    assert r.incrbyfloat("n", 1.5) == 1.5
    r.set("s", "hello")
    assert r.append("s", " world") == 11
    assert r.strlen("s") == 11
    assert r.getrange("s", 0, 4) == b"hello"
    assert r.setrange("s", 6, "WORLD") == 11
    assert r.get("s") == b"hello WORLD"
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.incr("s")
    r.set("/ctx/big", str(2**63 - 1))
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.incr("/ctx/big")


def test_mset_mget_and_planes(r: redis.Redis) -> None:
    assert r.mset({"/ctx/a": 1, "/ctx/b": 2}) is True
    assert r.mget("/ctx/a", "/ctx/b", "/ctx/none") == [b"1", b"2", None]
    assert r.msetnx({"/run/x": 1, "/run/y": 2}) is True
    assert r.msetnx({"/run/x": 1, "/run/z": 2}) is False
    with pytest.raises(redis.ResponseError, match="spans planes"):
        r.mset({"/ctx/a": 1, "/run/a": 2})


def test_expiry_lazy_and_active(r: redis.Redis) -> None:
    r.set("/run/t", "v", px=100)
    r.set("/ctx/t", "v", px=100)
    r.set("local-t", "v", px=100)
    assert 0 < r.pttl("/ctx/t") <= 100
    for key in ("/run/t", "/ctx/t", "local-t"):
        wait_for(lambda k=key: r.get(k) is None, timeout=5, what=f"{key} to expire")
    # the active sweep removes them from the keyspace, not just from reads
    wait_for(lambda: r.dbsize() == 0, timeout=5, what="sweep to delete expired keys")
    r.set("/ctx/p", "v", ex=100)
    assert r.persist("/ctx/p") is True
    assert r.ttl("/ctx/p") == -1
    assert r.ttl("/ctx/none") == -2
    assert r.expire("/ctx/p", 50) is True
    assert 49 <= r.ttl("/ctx/p") <= 50
    assert r.expiretime("/ctx/p") > time.time()
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.set("/ctx/p", "v", ex=0)


def test_conditional_set_and_delete_lock_idioms(r: redis.Redis) -> None:
    assert r.set("/lk/job", "token-1", nx=True, px=10000) is True
    assert r.set("/lk/job", "token-2", nx=True, px=10000) is None
    assert r.execute_command("SET", "/lk/job", "token-1", "IFEQ", "token-1", "PX", "20000") is True
    assert r.execute_command("SET", "/lk/job", "x", "IFEQ", "token-2") is None
    assert r.execute_command("DELIFEQ", "/lk/job", "token-2") == 0
    assert r.execute_command("DELEX", "/lk/job", "IFEQ", "token-1") == 1
    assert r.exists("/lk/job") == 0


def test_scan_keys_and_ls(r: redis.Redis) -> None:
    paths = [f"/hw/node-{i:03d}/cpu" for i in range(120)] + ["/hw/node-000/mem", "/sum/node-000"]
    r.mset({p: "x" for p in paths})
    r.set("local", "x")
    seen = list(r.scan_iter(match="/hw/*", count=7))
    assert sorted(seen) == sorted(p.encode() for p in paths if p.startswith("/hw/"))
    assert len(seen) == len(set(seen))
    assert sorted(r.keys("/hw/node-00?/*")) == sorted(
        p.encode() for p in paths if p.startswith("/hw/node-00") and p.count("/") == 3
    )
    assert r.scan(0, _type="ReJSON-RL")[1] == []
    assert list(r.scan_iter(count=1000)) == sorted(list(r.scan_iter(count=1000)))  # path order
    assert r.execute_command("VFS.LS", "/hw/node-000") == [b"cpu", b"mem"]
    assert r.execute_command("VFS.LS", "/hw")[:2] == [b"node-000/", b"node-001/"]
    r.set("/sum/node-000/cpu", "1")
    assert r.execute_command("VFS.LS", "/sum") == [b"node-000", b"node-000/"]
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.scan(cursor="abc")


def test_stat(r: redis.Redis) -> None:
    r.set("/ctx/s", "12345", ex=100)
    stat = r.execute_command("VFS.STAT", "/ctx/s")
    fields = dict(zip(stat[::2], stat[1::2]))
    assert fields[b"plane"] == b"consensus"
    assert fields[b"size"] == 5
    assert fields[b"origin"] == b"n1"
    assert 0 < fields[b"ttl_ms"] <= 100_000
    r.set("/ctx/s", "x")
    assert dict(zip(*[iter(r.execute_command("VFS.STAT", "/ctx/s"))] * 2))[b"revision"] > fields[b"revision"]
    assert r.execute_command("VFS.STAT", "/ctx/none") is None


def test_json_documents_read_as_compact_text(r: redis.Redis) -> None:
    r.json().set("/ctx/doc", "$", {"a": {"b": [1, 2]}, "s": "x"})
    assert r.get("/ctx/doc") == b'{"a":{"b":[1,2]},"s":"x"}'
    assert r.json().get("/ctx/doc", "$.a.b") == [[1, 2]]
    assert r.type("/ctx/doc") == b"ReJSON-RL"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.incr("/ctx/doc")


# -- errors ----------------------------------------------------------------------------


def test_errors_name_the_problem(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="unknown command 'NOPE', with args beginning with: 'a'"):
        r.execute_command("NOPE", "a")
    with pytest.raises(redis.ResponseError, match="empty segment"):
        r.set("/ctx//x", "v")
    with pytest.raises(redis.ResponseError, match="no plane for root '/nope'"):
        r.set("/nope/x", "v")
    with pytest.raises(redis.ResponseError, match="trailing slash"):
        r.set("/ctx/x/", "v")
    with pytest.raises(redis.ResponseError, match=r"'\.' and '\.\.'"):
        r.get("/ctx/../x")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="unknown subcommand 'NOPE'. Try CLIENT HELP"):
        r.execute_command("CLIENT", "NOPE")
    assert r.ping()


def test_protocol_error_closes_only_that_client(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("survivor", "1")
    reply = raw(server.port, b"*1\r\n$4\r\nPING\r\n*2\r\n!garbage\r\n", expect_close=True)
    assert reply == b"+PONG\r\n-ERR Protocol error: expected '$', got '!'\r\n"
    reply = raw(server.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\n", expect_close=True)
    assert reply == b"-ERR Protocol error: invalid bulk length\r\n"
    reply = raw(server.port, b"*99999999999\r\n", expect_close=True)
    assert reply == b"-ERR Protocol error: invalid multibulk length\r\n"
    reply = raw(server.port, b'SET "unbalanced\r\n', expect_close=True)
    assert reply == b"-ERR Protocol error: unbalanced quotes in request\r\n"
    assert r.get("survivor") == b"1"


def test_inline_and_pipelined_commands(server: VfsdProcess, r: redis.Redis) -> None:
    assert raw(server.port, b'SET /run/inline "hello world"\r\nGET /run/inline\nPING\r\n') == (
        b"+OK\r\n$11\r\nhello world\r\n+PONG\r\n"
    )
    batch = b"".join(b"*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$1\r\nv\r\n" for _ in range(0))
    batch += b"".join(b"*2\r\n$4\r\nINCR\r\n$6\r\n/ctx/p\r\n" for _ in range(50))
    reply = raw(server.port, batch)
    assert reply == b"".join(f":{i}\r\n".encode() for i in range(1, 51))


def test_garbage_flood_does_not_stall_others(server: VfsdProcess, r: redis.Redis) -> None:
    flooders = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.setblocking(False)
        flooders.append(s)
    junk = b"A" * 65536
    start = time.monotonic()
    try:
        for _ in range(20):
            for s in flooders:
                try:
                    s.send(junk)
                except (BlockingIOError, OSError):
                    pass
            assert r.ping()
    finally:
        for s in flooders:
            s.close()
    assert time.monotonic() - start < 10
    assert r.set("after-flood", "ok") and r.get("after-flood") == b"ok"


# -- connection ------------------------------------------------------------------------


def test_hello_client_and_resp3(server: VfsdProcess) -> None:
    r3 = server.client(protocol=3)
    try:
        assert r3.ping()
        info = r3.execute_command("HELLO", "3")
        assert info[b"proto"] == 3 and info[b"server"] == b"redis"
        r3.client_setname("tester")
        assert r3.client_getname() == b"tester"
        assert any(c["name"] == "tester" for c in r3.client_list())
        stat = r3.execute_command("VFS.STAT", "/ctx/none")
        assert stat is None
        r3.set("/ctx/m", "v")
        assert r3.execute_command("VFS.STAT", "/ctx/m")[b"plane"] == b"consensus"
    finally:
        r3.close()
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        server.client().execute_command("HELLO", "4")


def test_auth_and_requirepass(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory("--requirepass", "s3cret")
    anon = node.client()
    with pytest.raises(redis.AuthenticationError):
        anon.get("x")
    with pytest.raises(redis.AuthenticationError):
        node.client(password="wrong").ping()
    good = node.client(password="s3cret")
    assert good.set("/ctx/a", "1") and good.get("/ctx/a") == b"1"
    r3 = node.client(password="s3cret", protocol=3)
    assert r3.ping()
    assert raw(node.port, b"PING\r\n") == b"-NOAUTH Authentication required.\r\n"


def test_info_command_config_time(server: VfsdProcess, r: redis.Redis) -> None:
    info = r.info()
    assert info["redis_version"] == REDIS_VERSION
    assert info["redis_mode"] == "standalone"
    assert info["tcp_port"] > 0 and info["process_id"] > 0 and "uptime_in_seconds" in info
    assert r.info("cluster")["cluster_enabled"] == 0
    assert "node_id" in r.info("vfsd")
    r.set("/ctx/i", "1")
    assert r.info("keyspace")["db0"]["keys"] >= 1
    assert r.command_count() > 60
    get_info = r.execute_command("COMMAND", "INFO", "get")["get"]
    assert get_info["arity"] == 2 and get_info["first_key_pos"] == 1
    assert r.command()["set"]["arity"] == -3
    docs = raw(server.port, b"COMMAND DOCS set\r\n")  # redis-py refuses to parse COMMAND DOCS
    assert docs.startswith(b"*2\r\n$3\r\nset\r\n") and b"$7\r\nsummary\r\n" in docs and b"$6\r\nstring\r\n" in docs
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_set("notify-keyspace-events", "KEA")
    assert r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    r.config_set("notify-keyspace-events", "")
    with pytest.raises(redis.ResponseError, match="Unknown option"):
        r.config_set("nope", "1")
    with pytest.raises(redis.ResponseError, match="Invalid event class"):
        r.config_set("notify-keyspace-events", "Q")
    sec, usec = r.time()
    assert abs(sec - time.time()) < 5
    assert r.dbsize() == 1
    assert r.select(0) if hasattr(r, "select") else True


# -- pub/sub ---------------------------------------------------------------------------


def test_keyspace_notifications_and_vfs_channel(server: VfsdProcess, r: redis.Redis) -> None:
    p = server.client().pubsub()
    p.psubscribe("__keyspace@0__:/ctx/*", "__vfs__:/ctx/*")
    p.subscribe("plain")
    wait_for(lambda: r.pubsub_numpat() == 2, what="pattern subscriptions")
    r.set("/ctx/w", "v1")
    r.delete("/ctx/w")
    r.set("local-not-notified", "x")
    assert r.publish("plain", "hi") == 1
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        m = p.get_message(timeout=0.5)
        if m and m["type"] in ("pmessage", "message"):
            got.append((m["channel"], m["data"]))
    p.close()
    assert (b"__keyspace@0__:/ctx/w", b"set") in got
    assert (b"__keyspace@0__:/ctx/w", b"del") in got
    assert (b"plain", b"hi") in got
    vfs = [d for c, d in got if c == b"__vfs__:/ctx/w"]
    import json

    first, deleted = (json.loads(v) for v in vfs[:2])
    assert first["op"] == "set" and first["value"] == "v1" and first["origin"] == "n1" and first["rev"] > 0
    # A delete is a change with a revision of its own (as etcd's), after the write it deletes.
    assert deleted["op"] == "del" and deleted["origin"] == "n1" and deleted["rev"] == first["rev"] + 1
    assert "value" not in deleted


@pytest.mark.parametrize("key", ["/ctx/gone", "/run/gone"])
def test_expiry_events_carry_revision_and_origin(server: VfsdProcess, r: redis.Redis, key: str) -> None:
    import json

    p = server.client().pubsub()
    p.psubscribe("__vfs__:" + key)
    wait_for(lambda: r.pubsub_numpat() >= 1, what="pattern subscription")
    r.set(key, "v", px=50)
    events = []
    deadline = time.monotonic() + 5
    while len(events) < 3 and time.monotonic() < deadline:
        m = p.get_message(timeout=0.2)
        if m and m["type"] == "pmessage":
            events.append(json.loads(m["data"]))
    p.close()
    ops = [e["op"] for e in events]
    assert ops == ["set", "expire", "expired"], ops
    expired = events[-1]
    assert expired["origin"] == "n1" and expired["rev"] > events[0]["rev"]


def test_subscribed_resp2_context(server: VfsdProcess) -> None:
    reply = raw(server.port, b"SUBSCRIBE ch\r\nGET x\r\nPING\r\n")
    assert reply.startswith(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
    assert b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE" in reply
    assert reply.endswith(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")


# -- transactions ----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/run/", "/ctx/"])
def test_multi_exec_on_each_plane(r: redis.Redis, prefix: str) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set(prefix + "t1", "a").incr(prefix + "t2").get(prefix + "t1")
    assert pipe.execute() == [True, 1, b"a"]


def test_watch_aborts_on_concurrent_write(server: VfsdProcess, r: redis.Redis) -> None:
    for key in ("/ctx/w", "/run/w", "w"):
        r.set(key, "1")
        with r.pipeline() as pipe:
            pipe.watch(key)
            server.client().set(key, "2")
            pipe.multi()
            pipe.set(key, "3")
            with pytest.raises(redis.WatchError):
                pipe.execute()
        assert r.get(key) == b"2"


def test_cross_plane_transaction_refused(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set("/ctx/a", "1").set("/run/a", "1")
    with pytest.raises(redis.ResponseError, match="spans planes"):
        pipe.execute()
    assert r.exists("/ctx/a", "/run/a") == 0


# -- durability ------------------------------------------------------------------------


def test_desired_writes_survive_kill_9(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    acked = []
    for i in range(200):
        c.set(f"/ctx/k{i}", f"v{i}")
        acked.append(i)
    c.json().set("/sys/doc", "$", {"x": 1})
    c.set("/ctx/ttl", "v", ex=1000)
    c.set("/run/volatile", "gone after restart")
    node.kill9()
    node.restart()
    c = node.client()
    assert c.mget([f"/ctx/k{i}" for i in acked]) == [f"v{i}".encode() for i in acked]
    assert c.json().get("/sys/doc") == {"x": 1}
    assert 0 < c.ttl("/ctx/ttl") <= 1000
    assert c.get("/run/volatile") is None


def test_snapshot_and_log_compaction_survive_restart(node_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.config_set("snapshot-every-entries", "50")
    for i in range(180):
        c.set(f"/mid/k{i % 60}", str(i))
    c.delete("/mid/k0")
    info = c.info("vfsd")
    assert info["desired_snapshot_index"] >= 150
    node.stop()
    node.restart()
    c = node.client()
    assert c.get("/mid/k0") is None
    assert c.get("/mid/k59") == b"179"
    assert c.info("vfsd")["desired_applied_index"] == 181


def test_sigterm_exits_cleanly(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    assert node.stop() == 0
    assert "listening on 127.0.0.1" in node.output()


@pytest.mark.parametrize("key", ["w-ttl", "/ctx/w-ttl", "/run/w-ttl"])
@pytest.mark.parametrize("change", [("EXPIRE", "500"), ("PERSIST",), ("GETEX", "EX", "300")])
def test_watch_sees_ttl_changes(server: VfsdProcess, r: redis.Redis, key: str, change: tuple[str, ...]) -> None:
    r.set(key, "v", ex=100)
    with r.pipeline() as pipe:
        pipe.watch(key)
        server.client().execute_command(change[0], key, *change[1:])
        pipe.multi()
        pipe.set(key, "x")
        with pytest.raises(redis.WatchError):
            pipe.execute()


@pytest.mark.parametrize("key", ["w-gone", "/ctx/w-gone", "/run/w-gone"])
def test_watch_sees_a_key_created_and_deleted_meanwhile(server: VfsdProcess, r: redis.Redis, key: str) -> None:
    with r.pipeline() as pipe:
        pipe.watch(key)
        other = server.client()
        other.set(key, "1")
        other.delete(key)
        pipe.multi()
        pipe.set(key, "x")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get(key) is None


def test_multi_errors_that_do_not_abort(server: VfsdProcess) -> None:
    assert raw(server.port, b"MULTI\r\nSET a 1\r\nMULTI\r\nWATCH a\r\nEXEC\r\n") == (
        b"+OK\r\n+QUEUED\r\n-ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n*1\r\n+OK\r\n"
    )


def test_desired_transaction_reads_see_its_own_writes(server: VfsdProcess, r: redis.Redis) -> None:
    reply = raw(server.port, b"MULTI\r\nSET /ctx/n 1\r\nKEYS /ctx/n*\r\nDBSIZE\r\nEXEC\r\n")
    assert reply.endswith(b"*3\r\n+OK\r\n*1\r\n$6\r\n/ctx/n\r\n:1\r\n")


def test_incrbyfloat_prints_as_redis_does(server: VfsdProcess, r: redis.Redis) -> None:
    reply = raw(server.port, b"INCRBYFLOAT f 0.1\r\nINCRBYFLOAT f 0.2\r\nINCRBYFLOAT g 1e17\r\nINCRBYFLOAT h 0.00001\r\n")
    assert reply == b"$3\r\n0.1\r\n$3\r\n0.3\r\n$18\r\n100000000000000000\r\n$7\r\n0.00001\r\n"
    for bad in ("1_0", "inf", "1e5000", " 1"):
        with pytest.raises(redis.ResponseError, match="not a valid float"):
            r.execute_command("INCRBYFLOAT", "f", bad)


def test_set_get_twice_and_getex_on_a_missing_key(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("s", "old")
    assert raw(server.port, b"SET s new GET GET\r\nGETEX nokey EX abc\r\n") == b"$3\r\nold\r\n$-1\r\n"


def test_info_has_what_monitoring_tools_read(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.set("/run/hit", "v")
    c.set("local-ttl", "v", ex=1000)
    c.get("/run/hit")
    c.get("/run/hit")
    c.get("/run/miss")
    c.set("/run/write-only", "v")  # a write's lookups count neither way, as in Redis
    with pytest.raises(redis.ResponseError):
        c.incr("/run/hit")
    with pytest.raises(redis.ResponseError):
        c.execute_command("NOSUCHCOMMAND")
    stats = c.info("stats")
    assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (2, 1)
    assert stats["rejected_connections"] == 0
    assert c.info("errorstats") == {"errorstat_ERR": {"count": 2}}
    assert c.info("server")["hz"] == 10
    memory = c.info("memory")
    assert memory["used_memory_peak"] >= memory["used_memory_rss"] > 0
    assert 990_000 <= c.info("keyspace")["db0"]["avg_ttl"] <= 1_000_000
    def busy() -> bool:
        pipe = c.pipeline(transaction=False)
        for _ in range(500):
            pipe.ping()
        pipe.execute()
        return c.info("stats")["instantaneous_ops_per_sec"] > 0

    wait_for(busy, timeout=10, what="instantaneous_ops_per_sec to show the load")
    fds = [int(f.split("=")[1]) for line in c.execute_command("CLIENT", "LIST").decode().splitlines()
           for f in line.split() if f.startswith("fd=")]
    assert fds and all(fd > 2 for fd in fds)


def test_maxclients_refusals_are_counted(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    admin = node.client()
    admin.ping()
    admin.config_set("maxclients", "1")
    assert raw(node.port, b"", expect_close=True) == b"-ERR max number of clients reached\r\n"
    assert admin.info("stats")["rejected_connections"] == 1
