"""Locks on lease paths, end to end: LOCK.*, the Redis idioms and redis-py's Lock, on one node and
on a 3-node cluster (real ``vfsd serve`` processes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from tests.cluster_harness import cluster
from tests.conftest import VfsdProcess, wait_for

# Appends to /ctx/log only if the caller's fencing token is not older than the newest seen:
# the "resource that checks the token" of the README.
FENCED_APPEND = """
local newest = tonumber(redis.call('get', KEYS[2]) or '0')
local token = tonumber(ARGV[1])
if token < newest then return 0 end
redis.call('set', KEYS[2], ARGV[1])
redis.call('rpush', KEYS[1], ARGV[2])
return 1
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    proc = VfsdProcess(tmp_path_factory.mktemp("locks") / "data").start()
    yield proc
    proc.stop()


def test_lock_commands_grant_fencing_tokens_and_refuse_others(node: VfsdProcess) -> None:
    r = node.client()
    r.delete("/lk/t1")
    t1 = r.execute_command("LOCK.ACQUIRE", "/lk/t1", "alice", 5000)
    assert isinstance(t1, int) and t1 > 0
    assert r.execute_command("LOCK.ACQUIRE", "/lk/t1", "bob", 5000) is None
    assert r.execute_command("LOCK.ACQUIRE", "/lk/t1", "alice", 5000) == t1  # the holder again: same token
    assert r.get("/lk/t1") == b"alice"
    assert 0 < r.pttl("/lk/t1") <= 5000
    info = r.execute_command("LOCK.INFO", "/lk/t1")
    assert info[info.index(b"holder") + 1] == b"alice" and info[info.index(b"token") + 1] == t1
    assert r.execute_command("LOCK.EXTEND", "/lk/t1", "bob", 60000) == 0
    assert r.execute_command("LOCK.EXTEND", "/lk/t1", "alice", 60000) == 1
    assert r.pttl("/lk/t1") > 5000
    assert r.execute_command("LOCK.RELEASE", "/lk/t1", "bob") == 0
    assert r.execute_command("LOCK.RELEASE", "/lk/t1", "alice") == 1
    t2 = r.execute_command("LOCK.ACQUIRE", "/lk/t1", "bob", 5000)
    assert t2 > t1  # every grant a larger token
    assert r.execute_command("LOCK.INFO", "/lk/nothing") is None
    for bad, text in [(["/ctx/x", "o", "100"], "not a lease path"), (["/lk/x", "o", "0"], "positive integer"),
                      (["/lk/x", "o", "1", "WAIT", "-1"], "WAIT"), (["/lk/x", "o", "1", "BOGUS"], "syntax error"),
                      (["/lk/x", "", "1"], "owner")]:
        with pytest.raises(redis.ResponseError, match=text):
            r.execute_command("LOCK.ACQUIRE", *bad)
    r.close()


def test_redis_idioms_on_a_lease_path_extend_and_release_only_for_the_holder(node: VfsdProcess) -> None:
    r = node.client()
    r.delete("/lk/idiom")
    assert r.set("/lk/idiom", "tok", nx=True, px=3000) is True
    assert r.set("/lk/idiom", "other", nx=True, px=3000) is None
    assert r.set("/lk/idiom", "other", xx=True, px=60000) is None  # not the holder's token
    assert r.get("/lk/idiom") == b"tok" and r.pttl("/lk/idiom") <= 3000
    assert r.set("/lk/idiom", "tok", xx=True, px=60000) is True
    assert r.pttl("/lk/idiom") > 3000
    token = r.execute_command("LOCK.INFO", "/lk/idiom")
    assert r.pexpire("/lk/idiom", 90000) is True  # this connection was granted it: the holder
    other = node.client()
    assert other.pexpire("/lk/idiom", 1) is False  # any other connection: 0, nothing changes
    assert r.pttl("/lk/idiom") > 60000
    assert r.execute_command("LOCK.INFO", "/lk/idiom")[3] == token[3]  # extensions keep the token
    assert other.execute_command("DELIFEQ", "/lk/idiom", "other") == 0
    assert other.execute_command("DELIFEQ", "/lk/idiom", "tok") == 1
    assert r.get("/lk/idiom") is None
    other.close()
    r.close()


def test_waiters_are_served_in_arrival_order_and_time_out(node: VfsdProcess) -> None:
    holder = node.client()
    holder.delete("/lk/queue")
    first = holder.execute_command("LOCK.ACQUIRE", "/lk/queue", "h", 30000)
    results: dict[str, object] = {}

    def wait(name: str) -> None:
        c = node.client(socket_timeout=30)
        results[name] = c.execute_command("LOCK.ACQUIRE", "/lk/queue", name, 30000, "WAIT", 20000)
        results[name + "@"] = time.monotonic()
        c.close()

    threads = []
    for name in ("w1", "w2"):
        t = threading.Thread(target=wait, args=(name,))
        t.start()
        threads.append(t)
        wait_for(lambda: holder.execute_command("LOCK.INFO", "/lk/queue")[-1] == len(threads), what=f"{name} queued")
    # A waiter that gives up is answered nil after its WAIT and leaves the queue.
    assert holder.execute_command("LOCK.ACQUIRE", "/lk/queue", "late", 30000, "WAIT", 200) is None
    assert holder.execute_command("LOCK.INFO", "/lk/queue")[-1] == 2
    assert holder.execute_command("LOCK.RELEASE", "/lk/queue", "h") == 1
    wait_for(lambda: "w1" in results, what="w1 granted")
    assert "w2" not in results and results["w1"] > first
    assert holder.get("/lk/queue") == b"w1"
    assert holder.execute_command("LOCK.RELEASE", "/lk/queue", "w1") == 1
    for t in threads:
        t.join(30)
    assert results["w2"] > results["w1"] and holder.get("/lk/queue") == b"w2"
    holder.close()


def test_a_session_lease_is_released_when_its_connection_closes(node: VfsdProcess) -> None:
    c = node.client()
    c.delete("/lk/session")
    assert c.execute_command("LOCK.ACQUIRE", "/lk/session", "s", 60000, "SESSION") > 0
    other = node.client()
    assert other.execute_command("LOCK.ACQUIRE", "/lk/session", "o", 60000) is None
    c.close()
    wait_for(lambda: other.execute_command("LOCK.ACQUIRE", "/lk/session", "o", 60000), timeout=5,
             what="the session lease released when its connection closed")
    other.close()


def test_grants_releases_and_expiry_raise_keyspace_events(node: VfsdProcess) -> None:
    r = node.client()
    r.config_set("notify-keyspace-events", "KEA")
    p = r.pubsub()
    p.psubscribe("__keyspace@0__:/lk/ev")
    wait_for(lambda: p.get_message(timeout=0.1), what="subscribed")
    c = node.client()
    c.execute_command("LOCK.ACQUIRE", "/lk/ev", "a", 200)
    seen: list[bytes] = []

    def got(event: bytes) -> bool:
        m = p.get_message(timeout=0.1)
        if m is not None and m["type"] == "pmessage":
            seen.append(m["data"])
        return event in seen

    wait_for(lambda: got(b"set"), what="set")
    wait_for(lambda: got(b"expired"), timeout=10, what="expired")
    c.execute_command("LOCK.ACQUIRE", "/lk/ev", "b", 60000)
    c.execute_command("LOCK.RELEASE", "/lk/ev", "b")
    wait_for(lambda: got(b"del"), what="del")
    p.close()
    c.close()
    r.close()


def _contend(c, names: list[str], rounds: int, use_redis_py: bool, results: list[str], errors: list[str]) -> None:
    def worker(node_name: str, wid: str) -> None:
        r = c.client(node_name, socket_timeout=20)
        fenced = r.register_script(FENCED_APPEND)
        done = 0
        while done < rounds:
            try:
                if use_redis_py:
                    lock = r.lock("/lk/contended", timeout=5, blocking_timeout=15)
                    if not lock.acquire():
                        continue
                    token = int(r.execute_command("LOCK.INFO", "/lk/contended")[3])
                else:
                    token = r.execute_command("LOCK.ACQUIRE", "/lk/contended", wid, 5000, "WAIT", 15000)
                    if token is None:
                        continue
                fenced(keys=["/ctx/fenced/log", "/ctx/fenced/newest"], args=[token, f"start {wid}"])
                fenced(keys=["/ctx/fenced/log", "/ctx/fenced/newest"], args=[token, f"end {wid}"])
                if use_redis_py:
                    lock.release()
                else:
                    r.execute_command("LOCK.RELEASE", "/lk/contended", wid)
                done += 1
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                errors.append(f"{wid}: {exc!r}")
                if c.nodes[node_name].proc.poll() is not None:
                    return
                time.sleep(0.1)
        r.close()

    threads = [threading.Thread(target=worker, args=(n, f"{n}.{i}")) for n in names for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def _no_interleaving(log: list[bytes]) -> None:
    entries = [e.decode().split() for e in log]
    open_by: str | None = None
    for kind, who in entries:
        if kind == "start":
            assert open_by is None, f"{who} started while {open_by} held the lock: {entries}"
            open_by = who
        else:
            assert open_by == who or open_by is None, f"{who} ended inside {open_by}'s section"
            open_by = None


@pytest.mark.parametrize("use_redis_py", [False, True], ids=["LOCK.ACQUIRE", "redis-py Lock"])
def test_clients_on_every_node_contend_for_one_lock_without_overlap(tmp_path: Path, use_redis_py: bool) -> None:
    with cluster(tmp_path) as c:
        errors: list[str] = []
        _contend(c, c.names, 4, use_redis_py, [], errors)
        with c.client("n1") as r:
            log = r.lrange("/ctx/fenced/log", 0, -1)
        assert len(log) == 2 * 4 * 6, (len(log), errors)
        _no_interleaving(log)


def test_killing_the_leader_during_contention_grants_no_lock_twice(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.wait_leader()
        others = [n for n in c.names if n != leader]
        errors: list[str] = []
        t = threading.Thread(target=_contend, args=(c, others, 6, False, [], errors))
        t.start()
        time.sleep(1.0)
        c.nodes[leader].kill9()
        t.join(150)
        with c.client(others[0]) as r:
            log = r.lrange("/ctx/fenced/log", 0, -1)
        assert len(log) >= 2 * 6, (len(log), errors)
        _no_interleaving(log)


def test_a_lock_held_through_a_killed_node_is_free_within_its_ttl(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.wait_leader()
        holder_node = [n for n in c.names if n != leader][0]
        other = [n for n in c.names if n not in (leader, holder_node)][0]
        with c.client(holder_node) as r:
            token = r.execute_command("LOCK.ACQUIRE", "/lk/dead", "h", 2000)
        c.nodes[holder_node].kill9()
        with c.client(other, socket_timeout=20) as r:
            t0 = time.monotonic()
            new = r.execute_command("LOCK.ACQUIRE", "/lk/dead", "o", 5000, "WAIT", 10000)
            waited = time.monotonic() - t0
        assert new is not None and new > token
        assert waited < 2.0 + 4.0, waited  # the TTL, plus the sweep, one commit and a loaded machine


def test_a_leader_change_keeps_a_lease_s_remaining_time(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.wait_leader()
        a, b = [n for n in c.names if n != leader]
        with c.client(a) as r:
            sent = time.monotonic()
            assert r.execute_command("LOCK.ACQUIRE", "/lk/kept", "holder", 4000) > 0
        time.sleep(1.0)
        c.nodes[leader].kill9()
        with c.client(b, socket_timeout=20) as r:
            def granted() -> bool:
                try:
                    return r.execute_command("LOCK.ACQUIRE", "/lk/kept", "next", 4000) is not None
                except redis.ResponseError:
                    return False  # no leader yet
            wait_for(granted, timeout=20, interval=0.02, what="the lease to lapse after the leader change")
            free_after = time.monotonic() - sent
        # Never cut: the holder, counting from when it sent the acquire, still had it for 4 s.
        assert free_after >= 4.0, free_after
        # Lengthened by at most the lease tick and an election (plus a loaded machine's slack).
        assert free_after <= 4.0 + 0.5 + 1.0 + 3.0, free_after


def test_a_session_lease_is_released_when_gossip_declares_its_node_dead(tmp_path: Path) -> None:
    with cluster(tmp_path, 3, "--gossip-profile", "local") as c:
        leader = c.wait_leader()
        holder_node, other = [n for n in c.names if n != leader]
        holder = c.client(holder_node)
        assert holder.execute_command("LOCK.ACQUIRE", "/lk/gone", "h", 120000, "SESSION") > 0
        c.pause(holder_node)  # its connection stays open, but the node stops answering anyone
        try:
            with c.client(other, socket_timeout=60) as r:
                t0 = time.monotonic()
                token = r.execute_command("LOCK.ACQUIRE", "/lk/gone", "o", 5000, "WAIT", 45000)
                waited = time.monotonic() - t0
            assert token is not None, "the session lease outlived its node"
            assert waited < 45, waited  # long before the 120 s TTL: when gossip declared the node dead
            with c.client(leader) as r:
                itg = r.execute_command("JSON.GET", f"/itg/{holder_node}")
                assert b"dead" in itg
        finally:
            c.resume(holder_node)
            holder.close()
