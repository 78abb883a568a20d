"""The desired plane on Raft, end to end: real ``vfsd serve`` processes on loopback, redis-py clients.

Each test starts its own 3-node cluster (``--peers``) and stops every process it started.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import msgpack
import pytest
import redis

from tests.cluster_harness import cluster
from tests.conftest import wait_for


def _refused(exc: Exception) -> bool:
    """A desired write the cluster could not take says so: -TRYAGAIN (redis-py's TryAgainError),
    or, when its outcome is unknown, an error saying it was not committed in time."""
    return isinstance(exc, redis.exceptions.TryAgainError) or "not committed" in str(exc)


def test_a_write_on_a_follower_is_read_on_every_node(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        follower = c.followers()[0]
        with c.client(follower) as r:
            assert r.set("/ctx/app", "v1") is True
            assert r.incr("/ctx/counter") == 1
            assert r.hset("/mid/h", mapping={"a": "1", "b": "2"}) == 2
        # Default reads are linearizable: every node answers with the committed value at once.
        for name in c.names:
            with c.client(name) as r:
                assert r.get("/ctx/app") == b"v1"
                assert r.get("/ctx/counter") == b"1"
                assert r.hgetall("/mid/h") == {b"a": b"1", b"b": b"2"}
        info = c.raft(c.wait_leader())
        assert info["role"] == "leader" and info["voters"] == 3
        assert info["commit_index"] == info["applied_index"] >= 4


def test_every_node_raises_the_same_change_events_in_index_order(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        subs = []
        for name in c.names:
            r = c.client(name)
            r.config_set("notify-vfs-events", "KA")
            p = r.pubsub()
            p.psubscribe("__vfs__:*")
            wait_for(lambda p=p: p.get_message(timeout=0.1), what="psubscribe confirmation")
            subs.append((r, p))
        writer = c.client(c.followers()[-1])
        for i in range(20):
            writer.set(f"/ctx/ev/{i % 3}", str(i))
        writer.close()
        seen = []
        for r, p in subs:
            events: list[bytes] = []

            def twenty(p=p, events=events) -> bool:
                m = p.get_message(timeout=0.1)
                if m is not None and m["type"] == "pmessage":
                    events.append(m["channel"])
                return len(events) >= 20

            wait_for(twenty, timeout=15, what="20 change events")
            seen.append(events)
            p.close()
            r.close()
        assert seen[0] == seen[1] == seen[2]


def test_the_leader_killed_during_writes_and_writes_resume(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.wait_leader()
        follower = [n for n in c.names if n != leader][0]
        acked: list[int] = []
        errors: list[redis.ResponseError] = []
        stop = threading.Event()

        def writer() -> None:
            r = c.client(follower)
            i = 0
            while not stop.is_set():
                try:
                    r.set(f"/ctx/w/{i}", str(i))
                    acked.append(i)
                except redis.ResponseError as exc:
                    errors.append(exc)
                i += 1
            r.close()

        t = threading.Thread(target=writer)
        t.start()
        wait_for(lambda: len(acked) > 20, what="writes before the crash")
        c.nodes[leader].kill9()
        before = len(acked)
        wait_for(lambda: len(acked) > before + 20, timeout=15, what="writes after the leader crashed")
        stop.set()
        t.join(20)
        new_leader = c.wait_leader()
        assert new_leader != leader
        with c.client(new_leader) as r:
            for i in acked:
                assert r.get(f"/ctx/w/{i}") == str(i).encode()
        # A write that could not be confirmed says so; none is reported lost in silence.
        for exc in errors:
            assert _refused(exc), exc


def test_every_acknowledged_write_survives_killing_every_node_at_once(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        with c.client(c.followers()[0]) as r:
            pipe = r.pipeline(transaction=False)
            for i in range(200):
                pipe.set(f"/ctx/k/{i}", str(i))
            assert all(pipe.execute())
        for node in c.nodes.values():
            node.kill9()
        for node in c.nodes.values():
            node.start()
        c.wait_leader()
        for name in c.names:
            with c.client(name) as r:
                assert [r.get(f"/ctx/k/{i}") for i in range(200)] == [str(i).encode() for i in range(200)]


def test_a_minority_cannot_commit_and_readonly_reads_are_local(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        with c.client("n1") as r:
            r.set("/ctx/p", "before")
        for name in c.names:  # every node has applied it
            with c.client(name) as r:
                assert r.get("/ctx/p") == b"before"
        # n3 alone is the minority side: the other two stop answering it (and everyone).
        c.pause("n1")
        c.pause("n2")
        try:
            with c.client("n3", socket_timeout=20) as r:
                with pytest.raises(redis.ResponseError) as write_err:
                    r.set("/ctx/p", "minority")
                assert _refused(write_err.value), write_err.value
                with pytest.raises(redis.ResponseError) as read_err:
                    r.get("/ctx/p")
                assert isinstance(read_err.value, redis.exceptions.TryAgainError), read_err.value
                assert r.execute_command("READONLY") in (True, b"OK")
                assert r.get("/ctx/p") == b"before"  # possibly stale, and says so by being asked for
                assert r.execute_command("READWRITE") in (True, b"OK")
        finally:
            c.resume("n1")
            c.resume("n2")
        c.wait_leader()
        with c.client("n3") as r:
            wait_for(lambda: r.set("/ctx/p", "after"), timeout=15, what="a write once the majority is back")
        for name in c.names:
            with c.client(name) as r:
                assert r.get("/ctx/p") == b"after"


def test_a_node_joins_as_a_learner_and_is_promoted(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        with c.client("n1") as r:
            r.set("/ctx/before-join", "x")
        n4 = c.add("n4", "--join", f"127.0.0.1:{c.listed_ports['n2']}")
        wait_for(lambda: c.raft("n4")["role"] == "learner", timeout=15, what="n4 a learner")
        with n4.client() as r:
            assert r.get("/ctx/before-join") == b"x"
            assert r.set("/ctx/from-learner", "y") is True  # a learner forwards writes too
        with c.client("n1") as r:
            assert r.get("/ctx/from-learner") == b"y"
            members = r.execute_command("VFS.CLUSTER", "MEMBERS")
            assert len(members) == 4
            assert r.execute_command("VFS.CLUSTER", "PROMOTE", "n4") == b"OK"
        wait_for(lambda: c.raft("n1")["voters"] == 4, what="four voters")
        with c.client("n4") as r:
            assert r.execute_command("VFS.CLUSTER", "REMOVE", "n4") == b"OK"
        wait_for(lambda: c.raft("n1")["voters"] == 3, what="n4 removed")


def test_a_wiped_node_does_not_vote_as_the_member_it_was(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        leader = c.wait_leader()
        victim = [n for n in c.names if n != leader][0]
        old_id = c.raft(victim)["member_id"]
        with c.client(leader) as r:
            r.set("/ctx/kept", "1")
        c.nodes[victim].kill9()
        import shutil

        shutil.rmtree(c.nodes[victim].data_dir)
        c.nodes[victim].start()
        info = c.raft(victim)
        assert info["member_id"] != old_id
        # The cluster still knows only the old member: the new incarnation gets no vote, no data.
        time.sleep(1.5)
        with c.client(leader) as r:
            assert r.set("/ctx/kept", "2") is True
            assert old_id in str(r.info("raft"))
            assert info["member_id"] not in str(r.info("raft"))
        assert "cluster exists without it" in c.nodes[victim].output()
        # The operator's fix: remove the old member, add the new one.
        with c.client(leader) as r:
            assert r.execute_command("VFS.CLUSTER", "REMOVE", old_id) == b"OK"
            assert r.execute_command("VFS.CLUSTER", "ADD", victim, f"127.0.0.1:{c.listed_ports[victim]}") == b"OK"
        with c.client(victim) as r:
            wait_for(lambda: r.get("/ctx/kept") == b"2", timeout=15, what="the re-added node caught up")


def test_bad_frames_on_the_peer_port_close_only_that_connection(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        port = c.peer_ports["n1"]
        garbage = [b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", struct.pack(">I", 1 << 31) + b"xx",
                   struct.pack(">IBBB", 5, 9, 1, 5) + msgpack.packb([1, 2, 3])]
        for payload in garbage:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(payload)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, TimeoutError):
                    pass
        with c.client("n2") as r:
            assert r.set("/ctx/after-garbage", "ok") is True
        with c.client("n1") as r:
            assert r.get("/ctx/after-garbage") == b"ok"
            assert r.ping()


def test_a_follower_never_expires_a_desired_key_on_its_own(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        with c.client("n1") as r:
            assert r.set("/ctx/ttl", "v", px=300) is True
        for name in c.names:
            with c.client(name) as r:
                wait_for(lambda r=r: r.get("/ctx/ttl") is None, timeout=10, what="the key read as expired")
        # The deletion itself is one committed entry, proposed by the leader alone.
        leader = c.wait_leader()
        with c.client(leader) as r:
            wait_for(lambda: r.dbsize() == 0 or not r.exists("/ctx/ttl"), what="expired everywhere")


def test_a_follower_behind_the_compacted_log_catches_up_by_snapshot_with_change_events(tmp_path: Path) -> None:
    with cluster(tmp_path, 3) as c:
        for name in c.names:  # snapshot every 50 entries: the leader soon holds only a short log tail
            with c.client(name) as r:
                r.config_set("snapshot-every-entries", "50")
        leader = c.wait_leader()
        lagging = [n for n in c.names if n != leader][0]
        with c.client(leader) as r:
            r.set("/ctx/snap/gone", "x")
        watcher = c.client(lagging)
        watcher.config_set("notify-vfs-events", "KA")
        p = watcher.pubsub()
        p.psubscribe("__vfs__:/ctx/snap/*")
        wait_for(lambda: p.get_message(timeout=0.1), what="psubscribe confirmation")
        wait_for(lambda: watcher.execute_command("READONLY") and watcher.get("/ctx/snap/gone") == b"x",
                 what="the follower applied the first write")
        while p.get_message(timeout=0.1) is not None:
            pass
        c.pause(lagging)
        with c.client(leader) as r:
            r.delete("/ctx/snap/gone")
            for i in range(300):
                r.set(f"/ctx/snap/{i % 30}", str(i))
            wait_for(lambda: int(r.info("raft")["snapshot_index"]) > 100, what="the leader compacted its log")
        c.resume(lagging)
        wait_for(lambda: c.raft(lagging)["raft_snapshots_installed"] >= 1, timeout=20,
                 what="the lagging follower installed a snapshot")
        assert watcher.get("/ctx/snap/gone") is None
        assert [watcher.get(f"/ctx/snap/{i}") for i in range(30)] == [str(270 + i).encode() for i in range(30)]
        # Every key the snapshot changed raised its event on the follower: watchers miss nothing.
        changed: set[bytes] = set()

        def all_seen() -> bool:
            m = p.get_message(timeout=0.1)
            if m is not None and m["type"] == "pmessage":
                changed.add(m["channel"].split(b":", 1)[1])
            return len(changed) >= 31

        wait_for(all_seen, timeout=15, what="a change event for every key the snapshot changed")
        assert b"/ctx/snap/gone" in changed
        p.close()
        watcher.close()


CAS = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2]) return 1 end return 0"


def test_concurrent_clients_on_every_node_see_a_linearizable_history_across_a_leader_crash(tmp_path: Path) -> None:
    import random

    from vfsd.sim.linearizability import History, check_history

    with cluster(tmp_path) as c:
        history = History()
        lock = threading.Lock()
        stop = threading.Event()
        keys = ["/ctx/lin/a", "/ctx/lin/b"]

        def client(name: str, cid: str, seed: int) -> None:
            rng = random.Random(seed)
            r = c.client(name, socket_timeout=15)
            n = 0
            while not stop.is_set():
                key = rng.choice(keys)
                kind = rng.choice(["get", "get", "set", "cas"])
                n += 1
                value = f"{cid}-{n}"
                args: tuple[str, ...] = () if kind == "get" else (value,) if kind == "set" else (
                    f"{cid}-{n - 1}" if rng.random() < 0.5 else value, value + "c")
                with lock:
                    h = history.invoke(cid, key, kind, *args, time=time.monotonic_ns())
                try:
                    if kind == "get":
                        got = r.get(key)
                        result = None if got is None else got.decode()
                    elif kind == "set":
                        r.set(key, value)
                        result = None
                    else:
                        result = r.eval(CAS, 1, key, *args) == 1
                    with lock:
                        history.ok(h, result, time=time.monotonic_ns())
                except redis.exceptions.TryAgainError:
                    with lock:  # refused before it was appended: it never takes effect
                        history.fail(h)
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    with lock:
                        if kind == "get":
                            history.fail(h)
                        else:
                            history.unknown(h)
                    if c.nodes[name].proc is None or c.nodes[name].proc.poll() is not None:
                        break
                    time.sleep(0.05)
            r.close()

        threads = [threading.Thread(target=client, args=(name, f"{name}.{i}", 7 * j + i))
                   for j, name in enumerate(c.names) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        c.nodes[c.wait_leader()].kill9()
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(30)
        ops = history.operations()
        assert sum(1 for op in ops if op.op != "get") > 50
        result = check_history(ops, max_steps_per_key=2_000_000)
        assert result.ok is True, result


def test_a_partitioned_leader_cannot_commit_the_majority_goes_on_and_healing_converges(tmp_path: Path) -> None:
    with cluster(tmp_path, 3, proxied=True) as c:
        old = c.wait_leader()
        rest = [n for n in c.names if n != old]
        with c.client(old) as r:
            r.set("/ctx/part", "before")
        c.partition({old}, set(rest))
        # The majority elects a leader of its own and commits.
        new = c.wait_leader(among=rest, timeout=20)
        assert new != old
        with c.client(rest[0]) as r:
            wait_for(lambda: r.set("/ctx/part", "majority"), timeout=15, what="a write on the majority side")
            r.set("/ctx/only-majority", "1")
        # The old leader's side cannot commit, and its default reads refuse; READONLY reads are local.
        with c.client(old, socket_timeout=20) as r:
            with pytest.raises(redis.ResponseError) as err:
                r.set("/ctx/part", "minority")
            assert _refused(err.value), err.value
            with pytest.raises(redis.exceptions.TryAgainError):
                r.get("/ctx/part")
            r.execute_command("READONLY")
            assert r.get("/ctx/part") in (b"before", b"minority")
            assert r.get("/ctx/only-majority") is None
        assert c.proxies is not None and c.proxies.held > 0
        c.heal()
        for name in c.names:
            with c.client(name) as r:
                wait_for(lambda r=r: r.get("/ctx/only-majority") == b"1", timeout=20,
                         what=f"{name} caught up after healing")
                assert r.get("/ctx/part") in (b"majority", b"minority")
        values = set()
        for name in c.names:
            with c.client(name) as r:
                values.add(r.get("/ctx/part"))
        assert len(values) == 1
