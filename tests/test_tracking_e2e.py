"""Client-side caching end to end: CLIENT TRACKING through raw RESP3, redis-py (sync and asyncio, RESP2 and
RESP3) and redis-py 8's own client-side cache, on every plane and for every source of change."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.cache import CacheConfig

from compat.rawresp import RawConnection
from tests.conftest import VfsdProcess, wait_for

Raw = RawConnection  # reads what arrives unasked too (pushes, MONITOR lines): read(), quiet()


def push(*keys: bytes) -> bytes:
    body = b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)
    return b">2\r\n$10\r\ninvalidate\r\n*%d\r\n%b" % (len(keys), body)


def message(*keys: bytes) -> bytes:
    body = b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)
    return b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*%d\r\n%b" % (len(keys), body)


@pytest.fixture
def raw3(server: VfsdProcess, r: redis.Redis) -> Iterator[Raw]:
    conn = Raw(server.port)
    conn.call(["HELLO", "3"])
    yield conn
    conn.close()


def tracking_conn(port: int, *options: str) -> Raw:
    conn = Raw(port)
    conn.call(["HELLO", "3"])
    assert conn.call(["CLIENT", "TRACKING", "on", *options]) == b"+OK\r\n"
    return conn


# -- the default mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"local:k", b"/run/k", b"/ctx/k"], ids=["local", "active", "desired"])
def test_a_read_key_changed_by_another_client_is_invalidated_once(server: VfsdProcess, r: redis.Redis,
                                                                  key: bytes) -> None:
    r.set(key, "v1")
    conn = tracking_conn(server.port)
    assert conn.call(["GET", key]) == b"$2\r\nv1\r\n"
    r.set(key, "v2")
    assert conn.read() == push(key)
    r.set(key, "v3")  # not read again since: nothing more
    assert conn.call(["PING"]) == b"+PONG\r\n" and conn.quiet()
    assert conn.call(["GET", key]) == b"$2\r\nv3\r\n"
    r.delete(key)
    assert conn.read() == push(key)
    conn.close()


def test_own_writes_are_invalidated_after_the_reply_and_not_at_all_with_noloop(server: VfsdProcess,
                                                                               r: redis.Redis) -> None:
    conn = tracking_conn(server.port)
    conn.call(["GET", "k"])
    conn.send("SET", "k", "1")
    assert conn.read() == b"+OK\r\n"
    assert conn.read() == push(b"k")
    conn.call(["MGET", "a", "b"])
    conn.send("MSET", "a", "1", "b", "2")  # one push per key, after the reply
    assert [conn.read(), conn.read(), conn.read()] == [b"+OK\r\n", push(b"a"), push(b"b")]
    assert conn.call(["CLIENT", "TRACKING", "on", "NOLOOP"]) == b"+OK\r\n"
    conn.call(["GET", "k"])
    assert conn.call(["SET", "k", "2"]) == b"+OK\r\n" and conn.quiet()
    conn.call(["GET", "k"])  # (the own change used up the entry, as in Redis: read again)
    r.set("k", "3")  # another client's change still arrives
    assert conn.read() == push(b"k")
    conn.close()


def test_transactions_and_scripts_track_what_they_read(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port)
    for cmd in (["MULTI"], ["GET", "t1"], ["HGET", "t2", "f"]):
        conn.call(cmd)
    assert conn.call(["EXEC"]) == b"*2\r\n_\r\n_\r\n"
    assert conn.call(["EVAL", "return redis.call('GET', 'undeclared')", "0"]) == b"_\r\n"
    r.set("t1", "x")
    r.hset("t2", "f", "y")
    r.set("undeclared", "z")  # Redis 7 tracks what a script read, whatever it declared
    assert sorted(conn.read() for _ in range(3)) == sorted([push(b"t1"), push(b"t2"), push(b"undeclared")])
    # A transaction's own writes: the invalidations follow EXEC's reply.
    conn.call(["GET", "t1"])
    conn.call(["MULTI"])
    conn.call(["SET", "t1", "w"])
    conn.send("EXEC")
    assert conn.read() == b"*1\r\n+OK\r\n"
    assert conn.read() == push(b"t1")
    conn.close()


def test_desired_plane_transactions_track_their_reads(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port)
    conn.call(["MULTI"])
    conn.call(["GET", "/ctx/tx"])
    assert conn.call(["EXEC"]) == b"*1\r\n_\r\n"
    r.set("/ctx/tx", "1")
    assert conn.read() == push(b"/ctx/tx")
    conn.close()


def test_expiry_invalidates_on_every_plane(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port)
    for key in ("exp:local", "/run/exp", "/ctx/exp"):
        r.set(key, "v", px=150)
        conn.call(["GET", key])
    got = sorted(conn.read() for _ in range(3))  # the sweeper's expiries, the desired one through the log
    assert got == sorted([push(b"exp:local"), push(b"/run/exp"), push(b"/ctx/exp")])
    conn.close()


def test_flushall_sends_one_null_invalidation(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port)
    bcast = tracking_conn(server.port, "BCAST")
    conn.call(["GET", "f1"])
    r.flushall()
    assert conn.read() == b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    assert bcast.read() == b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    assert conn.call(["PING"]) == b"+PONG\r\n" and conn.quiet() and bcast.quiet()
    conn.send("FLUSHALL")  # its own flush: after the reply
    assert conn.read() == b"+OK\r\n"
    assert conn.read() == b">2\r\n$10\r\ninvalidate\r\n_\r\n"
    conn.close()
    bcast.close()


# -- OPTIN, OPTOUT, BCAST --------------------------------------------------------------------------


def test_optin_tracks_only_after_caching_yes(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port, "OPTIN")
    conn.call(["GET", "in1"])
    assert conn.call(["CLIENT", "CACHING", "yes"]) == b"+OK\r\n"
    info = conn.call(["CLIENT", "TRACKINGINFO"])
    assert b"caching-yes" in info
    conn.call(["GET", "in2"])
    conn.call(["GET", "in3"])  # CACHING covers one command
    r.mset({"in1": 1, "in2": 2, "in3": 3})
    assert conn.read() == push(b"in2")
    assert conn.call(["PING"]) == b"+PONG\r\n" and conn.quiet()
    conn.close()


def test_optout_skips_the_command_after_caching_no(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port, "OPTOUT")
    assert conn.call(["CLIENT", "CACHING", "no"]) == b"+OK\r\n"
    conn.call(["GET", "out1"])
    conn.call(["GET", "out2"])
    r.mset({"out1": 1, "out2": 2})
    assert conn.read() == push(b"out2")
    assert conn.call(["PING"]) == b"+PONG\r\n" and conn.quiet()
    conn.close()


def test_bcast_prefixes_send_every_change_once_per_iteration(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port, "BCAST", "PREFIX", "/run/b/", "PREFIX", "user:")
    r.mset({"/run/b/2": 1, "/run/b/1": 2, "/run/other": 3})
    assert conn.read() == push(b"/run/b/1", b"/run/b/2")  # sorted, one message for the prefix
    r.set("user:1", "x")
    assert conn.read() == push(b"user:1")
    assert conn.call(["CLIENT", "TRACKINGINFO"]) == (
        b"%3\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n"
        b"$8\r\nprefixes\r\n*2\r\n$7\r\n/run/b/\r\n$5\r\nuser:\r\n")
    conn.close()


def test_noloop_on_the_desired_plane_still_reports_own_writes(server: VfsdProcess, r: redis.Redis) -> None:
    """A desired-plane write applies when its log entry commits, after the command that proposed it has
    returned, so nothing ties the change to its writer: a NOLOOP client is told of it (README, client-side
    caching: an extra invalidation is safe, a missed one is not)."""
    conn = tracking_conn(server.port, "BCAST", "NOLOOP", "PREFIX", "/ctx/nl/")
    frames = [conn.call(["SET", "/ctx/nl/own", "1"])]
    frames.append(conn.read())
    assert frames == [b"+OK\r\n", push(b"/ctx/nl/own")] or frames == [push(b"/ctx/nl/own"), b"+OK\r\n"]
    conn.close()


def test_bcast_noloop_leaves_out_own_changes_on_immediate_planes(server: VfsdProcess, r: redis.Redis) -> None:
    conn = tracking_conn(server.port, "BCAST", "NOLOOP", "PREFIX", "nl:")
    assert conn.call(["SET", "nl:own", "1"]) == b"+OK\r\n"
    r.set("nl:theirs", "2")
    assert conn.read() == push(b"nl:theirs")
    assert conn.call(["PING"]) == b"+PONG\r\n" and conn.quiet()
    conn.close()


# -- redirection and RESP2 -------------------------------------------------------------------------


def test_resp2_redirect_to_a_subscriber_gets_pubsub_messages(server: VfsdProcess, r: redis.Redis) -> None:
    listener = server.client()
    pubsub = listener.pubsub()
    pubsub.subscribe("__redis__:invalidate")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    listener_id = int(wait_for(lambda: [c["id"] for c in r.client_list() if c["cmd"] == "subscribe"][0],
                               what="the subscriber in CLIENT LIST"))
    tracker = server.client(single_connection_client=True)
    assert tracker.client_tracking_on(clientid=listener_id)
    assert tracker.client_getredir() == listener_id
    tracker.get("/run/r2")
    r.set("/run/r2", "x")
    msg = pubsub.get_message(timeout=5)
    assert msg == {"type": "message", "pattern": None, "channel": b"__redis__:invalidate", "data": [b"/run/r2"]}
    # Raw bytes of the same, for another key.
    raw = Raw(server.port)
    raw.call(["SUBSCRIBE", "__redis__:invalidate"])
    raw_id = int([c["id"] for c in r.client_list() if c["cmd"] == "subscribe" and int(c["id"]) != listener_id][0])
    tracker.client_tracking_on(clientid=raw_id)
    tracker.get("r2raw")
    r.set("r2raw", "y")
    assert raw.read() == message(b"r2raw")
    pubsub.close()
    tracker.close()
    raw.close()


def test_a_broken_redirect_is_reported(server: VfsdProcess, r: redis.Redis) -> None:
    target = Raw(server.port)
    target_id = int(target.call(["CLIENT", "ID"])[1:-2])
    conn = tracking_conn(server.port, "REDIRECT", str(target_id))
    conn.call(["GET", "br"])
    target.close()
    wait_for(lambda: all(int(c["id"]) != target_id for c in r.client_list()), what="the target to go")
    r.set("br", "1")
    assert conn.read() == b">2\r\n$21\r\ntracking-redir-broken\r\n:%d\r\n" % target_id
    info = conn.call(["CLIENT", "TRACKINGINFO"])
    assert b"broken_redirect" in info
    assert "flags=tR" in conn.call(["CLIENT", "INFO"]).decode()
    conn.close()


def test_resp2_without_redirect_gets_nothing_but_keeps_working(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    assert conn.call(["CLIENT", "TRACKING", "on"]) == b"+OK\r\n"
    conn.call(["GET", "r2"])
    r.set("r2", "1")
    assert conn.call(["GET", "r2"]) == b"$1\r\n1\r\n" and conn.quiet()
    conn.close()


# -- errors and introspection ----------------------------------------------------------------------

ERRORS = [
    (["CLIENT", "TRACKING", "maybe"], b"-ERR syntax error\r\n"),
    (["CLIENT", "TRACKING", "on", "BOGUS"], b"-ERR syntax error\r\n"),
    (["CLIENT", "TRACKING", "on", "REDIRECT"], b"-ERR syntax error\r\n"),
    (["CLIENT", "TRACKING", "on", "REDIRECT", "x"], b"-ERR value is not an integer or out of range\r\n"),
    (["CLIENT", "TRACKING", "on", "REDIRECT", "999999"],
     b"-ERR The client ID you want redirect to does not exist\r\n"),
    (["CLIENT", "TRACKING", "on", "PREFIX", "a"], b"-ERR PREFIX option requires BCAST mode to be enabled\r\n"),
    (["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"], b"-ERR OPTIN and OPTOUT are not compatible with BCAST\r\n"),
    (["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"], b"-ERR You can't specify both OPTIN mode and OPTOUT mode\r\n"),
    (["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab", "PREFIX", "a"],
     b"-ERR Prefix 'ab' overlaps with another provided prefix 'a'. Prefixes for a single client must not "
     b"overlap.\r\n"),
    (["CLIENT", "CACHING", "yes"], b"-ERR CLIENT CACHING can be called only when the client is in tracking mode "
     b"with OPTIN or OPTOUT mode enabled\r\n"),
    (["CLIENT", "TRACKING"], b"-ERR wrong number of arguments for 'client|tracking' command\r\n"),
    (["CLIENT", "GETREDIR"], b":-1\r\n"),
    (["CLIENT", "TRACKINGINFO"], b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n"
     b"$8\r\nprefixes\r\n*0\r\n"),
]


@pytest.mark.parametrize("argv,reply", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_options_get_redis_errors(server: VfsdProcess, argv: list[str], reply: bytes) -> None:
    conn = Raw(server.port)
    assert conn.call(argv) == reply
    conn.close()


def test_mode_switches_are_refused(server: VfsdProcess) -> None:
    conn = tracking_conn(server.port, "OPTIN")
    assert conn.call(["CLIENT", "TRACKING", "on", "BCAST"]) == (
        b"-ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling "
        b"it with a different mode.\r\n")
    assert conn.call(["CLIENT", "TRACKING", "on", "OPTOUT"]) == (
        b"-ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling "
        b"it with a different mode.\r\n")
    assert conn.call(["CLIENT", "CACHING", "no"]) == (
        b"-ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.\r\n")
    assert conn.call(["CLIENT", "CACHING", "maybe"]) == b"-ERR syntax error\r\n"
    bcast = tracking_conn(server.port, "BCAST", "PREFIX", "p:")
    assert bcast.call(["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p:x"]) == (
        b"-ERR Prefix 'p:x' overlaps with an existing prefix 'p:'. Prefixes for a single client must not "
        b"overlap.\r\n")
    conn.close()
    bcast.close()


def test_info_client_list_and_reset(server: VfsdProcess, r: redis.Redis) -> None:
    before = r.info("clients")["tracking_clients"]
    conn = tracking_conn(server.port, "BCAST")
    conn2 = tracking_conn(server.port)
    conn2.call(["GET", "infokey"])
    assert r.info("clients")["tracking_clients"] == before + 2
    stats = r.info("stats")
    assert stats["tracking_total_keys"] >= 1 and stats["tracking_total_items"] >= 1
    assert stats["tracking_total_prefixes"] >= 1
    line = conn.call(["CLIENT", "INFO"]).decode()
    assert " flags=tB " in line and " redir=0 " in line and " cmd=client|info " in line
    assert conn.call(["RESET"]) == b"+RESET\r\n"
    assert conn.call(["CLIENT", "GETREDIR"]) == b":-1\r\n"
    conn2.close()
    wait_for(lambda: r.info("clients")["tracking_clients"] == before, what="tracking_clients to drop")
    conn.close()


def test_the_table_is_bounded(server: VfsdProcess, r: redis.Redis) -> None:
    r.config_set("tracking-table-max-keys", 2)
    try:
        conn = tracking_conn(server.port)
        conn.call(["GET", "b1"])
        conn.call(["GET", "b2"])
        conn.send("GET", "b3")  # the oldest entry goes, its reader told, after this reply
        assert conn.read() == b"_\r\n"
        assert conn.read() == push(b"b1")
        r.set("b1", "x")
        r.set("b3", "y")
        assert conn.read() == push(b"b3")
        conn.close()
    finally:
        r.config_set("tracking-table-max-keys", 1_000_000)


# -- redis-py -----------------------------------------------------------------------------------------


def test_redis_py_client_side_cache_works_unmodified(server: VfsdProcess, r: redis.Redis) -> None:
    cached = redis.Redis(host="127.0.0.1", port=server.port, protocol=3, cache_config=CacheConfig(),
                         socket_timeout=10)
    try:
        for key in ("csc:local", "/run/csc", "/ctx/csc"):
            r.set(key, "one")
            assert cached.get(key) == b"one"
            processed = r.info("stats")["total_commands_processed"]
            assert cached.get(key) == b"one"  # served from the cache: the server sees nothing
            assert r.info("stats")["total_commands_processed"] == processed + 1  # (that INFO itself)
            r.set(key, "two")
            wait_for(lambda key=key: cached.get(key) == b"two", timeout=5, what=f"{key} to be invalidated")
        assert cached.get_cache().size >= 1
        r.flushall()
        wait_for(lambda: cached.get("csc:local") is None, timeout=5, what="FLUSHALL to empty the cache")
    finally:
        cached.close()


def test_redis_py_asyncio_resp3_and_resp2(server: VfsdProcess, r: redis.Redis) -> None:
    async def main() -> None:
        pushes: list[list[bytes]] = []

        async def on_invalidate(data: list[bytes]) -> None:
            pushes.append(data)

        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port, protocol=3, single_connection_client=True)
        await client.execute_command("CLIENT", "TRACKING", "on")
        await client.get("aio:k")
        conn = client.connection
        assert conn is not None
        conn._parser.set_invalidation_push_handler(on_invalidate)
        r.set("aio:k", "1")
        deadline = time.monotonic() + 5
        while not pushes and time.monotonic() < deadline:
            assert await client.ping()  # the push, queued before PONG, goes to the handler
        assert pushes == [[b"invalidate", [b"aio:k"]]]
        # RESP2: invalidations as messages on __redis__:invalidate, through a redirect.
        listener = redis.asyncio.Redis(host="127.0.0.1", port=server.port, protocol=2)
        pubsub = listener.pubsub()
        await pubsub.subscribe("__redis__:invalidate")
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
        ids = [int(c["id"]) for c in await listener.client_list() if c["cmd"] == "subscribe"]
        tracker = redis.asyncio.Redis(host="127.0.0.1", port=server.port, protocol=2, single_connection_client=True)
        await tracker.client_tracking_on(clientid=max(ids))
        await tracker.get("/run/aio")
        r.set("/run/aio", "2")
        msg = None
        deadline = time.monotonic() + 5
        while msg is None and time.monotonic() < deadline:
            msg = await pubsub.get_message(timeout=0.2)
        assert msg is not None and msg["data"] == [b"/run/aio"]
        await pubsub.aclose()
        for c in (client, listener, tracker):
            await c.aclose()

    asyncio.run(main())


def test_many_tracking_clients_and_a_disconnect_mid_stream(server: VfsdProcess, r: redis.Redis) -> None:
    conns = [tracking_conn(server.port) for _ in range(20)]
    for conn in conns:
        conn.call(["GET", "shared"])
    conns[3].sock.shutdown(socket.SHUT_RDWR)
    conns[3].close()
    r.set("shared", "1")
    for i, conn in enumerate(conns):
        if i != 3:
            assert conn.read() == push(b"shared")
            conn.close()
    assert r.ping()


# -- a cluster: changes applied from another node's log ------------------------------------------------


def test_a_desired_write_on_another_node_invalidates(tmp_path: object) -> None:
    """The desired plane on Raft: a key tracked on one node is invalidated by an entry another node proposed,
    as the entry applies there (and by the leader's expiry entry, applied on every node)."""
    from tests.cluster_harness import Cluster

    cluster = Cluster(tmp_path, 3).start()  # type: ignore[arg-type]
    try:
        leader = cluster.wait_leader()
        follower = [n for n in cluster.names if n != leader][0]
        other = [n for n in cluster.names if n not in (leader, follower)][0]
        writer = cluster.client(other)
        for name in (follower, leader):
            writer.set("/ctx/remote", "v1")
            conn = tracking_conn(cluster.nodes[name].port)
            assert conn.call(["GET", "/ctx/remote"]) == b"$2\r\nv1\r\n"  # a linearizable read, remembered
            writer.set("/ctx/remote", f"v-{name}")
            assert conn.read() == push(b"/ctx/remote")
            writer.set("/ctx/exp", "x", px=3000)
            # A linearizable read right after the write sees it (no polling: a GET sent once the key has
            # lapsed would be tracked before its read round, and the expiry's push could precede its reply).
            assert conn.call(["GET", "/ctx/exp"]) == b"$1\r\nx\r\n"
            assert conn.read() == push(b"/ctx/exp")  # the leader's expiry entry, applied on this node
            conn.close()
        bcast = tracking_conn(cluster.nodes[follower].port, "BCAST", "PREFIX", "/ctx/b/")
        cluster.client(leader).mset({"/ctx/b/1": 1, "/ctx/b/2": 2})
        assert bcast.read() == push(b"/ctx/b/1", b"/ctx/b/2")
        bcast.close()
        writer.close()
    finally:
        cluster.close()
