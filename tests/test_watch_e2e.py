"""VFS.WATCH and indexed pattern subscriptions against real ``vfsd serve`` processes.

Resuming FROM a revision across restarts (kubernetes_asyncio #135/#327), a FROM older than the window
(etcd's "compacted"), active paths live only, 10,000 pattern subscribers getting exactly their events
(Consul #9449), and a watcher that never reads cut off alone (etcd #17529).
"""

from __future__ import annotations

import fnmatch
import random
import socket
import time
from typing import Any

import hiredis
import pytest
import redis

from tests.conftest import VfsdProcess, wait_for

DEADLINE_S = 15.0


def resp(*args: bytes | str | int) -> bytes:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class RawConn:
    """A raw connection reading RESP2/RESP3 with hiredis: what a watcher or subscriber sees on the wire."""

    def __init__(self, port: int, proto: int = 2, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(DEADLINE_S)
        self.reader = hiredis.Reader()
        if proto == 3:
            self.send(b"HELLO", 3)
            assert isinstance(self.read(), dict)

    def send(self, *args: bytes | str | int) -> None:
        self.sock.sendall(resp(*args))

    def read(self) -> Any:
        deadline = time.monotonic() + DEADLINE_S
        while (reply := self.reader.gets()) is False:
            if time.monotonic() > deadline:
                raise AssertionError("no reply within the deadline")
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.reader.feed(data)
        return reply

    def close(self) -> None:
        self.sock.close()


def applied(r: redis.Redis) -> int:
    return int(r.info("vfsd")["desired_applied_index"])


class Writer:
    """Makes desired-plane changes and remembers, per revision, what a ``/ctx/app/*`` watcher must see."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.expected: list[list[Any]] = []  # [revision, [[path, op, value], ...]] for matching changes
        self.rng = random.Random(7)

    def step(self, n: int) -> None:
        for _ in range(n):
            r, rng = self.r, self.rng
            k = rng.randrange(6)
            path = f"/ctx/app/k{rng.randrange(5)}".encode()
            if k == 0:
                value = f"v{rng.randrange(10**6)}".encode()
                r.set(path, value)
                changes = [[path, b"set", value]]
            elif k == 1:
                a, b = b"/ctx/app/m1", b"/ctx/other/m2"  # one entry, two changes, one of them matching
                r.mset({a: b"1", b: b"2"})
                changes = [[a, b"set", b"1"]]
            elif k == 2:
                existed = r.delete(path)
                changes = [[path, b"del", None]] if existed else []
            elif k == 3:
                r.incrby(path + b"n", 5)
                changes = [[path + b"n", b"incrby", r.get(path + b"n")]]
            elif k == 4:
                pipe = r.pipeline(transaction=True)
                pipe.set(b"/ctx/app/t1", b"a").set(b"/ctx/app/t2", b"b")
                pipe.execute()  # an EXEC is one log entry: both changes share one revision
                changes = [[b"/ctx/app/t1", b"set", b"a"], [b"/ctx/app/t2", b"set", b"b"]]
            else:
                r.set(b"/ctx/elsewhere", b"x")  # a revision with no matching change
                changes = []
            if changes:
                self.expected.append([applied(r), changes])

    def after(self, revision: int) -> list[list[Any]]:
        return [e for e in self.expected if e[0] > revision]


def read_events(conn: RawConn, count: int) -> list[list[Any]]:
    """``count`` vfs.event messages as [revision, changes]."""
    out = []
    while len(out) < count:
        message = conn.read()
        assert message[0] == b"vfs.event", message
        assert message[1] == b"/ctx/app/*" and message[3] == b"n1"
        out.append([message[2], message[4]])
    return out


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_resume_from_last_revision_across_a_restart(node_factory: Any, stop: str) -> None:
    node: VfsdProcess = node_factory()
    r = node.client()
    writer = Writer(r)
    writer.step(10)
    watcher = RawConn(node.port, proto=3)
    watcher.send(b"VFS.WATCH", b"/ctx/app/*", b"VALUES")
    kind, pattern, count, mode, start = watcher.read()
    assert (kind, pattern, count, mode) == (b"vfs.watch", b"/ctx/app/*", 1, b"history")
    assert start == applied(r)
    mark = len(writer.expected)
    writer.step(30)
    live = writer.expected[mark:]
    got = read_events(watcher, len(live) // 2)
    assert got == live[: len(got)]
    last_seen = got[-1][0]
    watcher.close()  # the watcher goes away; the node keeps changing, then restarts
    writer.step(20)
    if stop == "kill9":
        node.kill9()
    else:
        assert node.stop() == 0
    node.restart()
    r = writer.r = node.client()
    writer.step(10)
    missed = writer.after(last_seen)
    resumed = RawConn(node.port, proto=2)
    resumed.send(b"VFS.WATCH", b"/ctx/app/*", b"FROM", last_seen, b"VALUES")
    assert resumed.read() == [b"vfs.watch", b"/ctx/app/*", 1, b"history", last_seen]
    assert read_events(resumed, len(missed)) == missed  # exactly the missed changes, in order, each once
    mark = len(writer.expected)
    while len(writer.expected) == mark:
        writer.step(1)
    assert read_events(resumed, 1) == writer.expected[mark:mark + 1]  # and then live, with no gap
    resumed.send(b"PING")
    assert resumed.read() == [b"pong", b""]  # nothing else was sent
    resumed.close()
    r.close()


def test_from_older_than_the_window_names_the_oldest_revision(node_factory: Any) -> None:
    node: VfsdProcess = node_factory(env={"VFSD_SNAPSHOT_EVERY_ENTRIES": "10"})
    r = node.client()
    for i in range(25):
        r.set("/ctx/w", i)
    r.config_set("watch-history-max-revisions", "5")
    head = applied(r)
    with pytest.raises(redis.ResponseError, match=rf"history starts at revision {head - 4}.*FROM {head - 5} or later"):
        r.execute_command("VFS.WATCH", "/ctx/*", "FROM", 3)
    # After a restart the window starts at the snapshot the node restarted from.
    assert node.stop() == 0
    node.restart()
    r = node.client()
    snapshot = int(r.info("vfsd")["desired_snapshot_index"])
    assert 0 < snapshot <= head
    assert int(r.info("vfsd")["watch_history_oldest_revision"]) == snapshot + 1
    with pytest.raises(redis.ResponseError, match=rf"starts at revision {snapshot + 1}"):
        r.execute_command("VFS.WATCH", "/ctx/*", "FROM", snapshot - 1)
    conn = RawConn(node.port)
    conn.send(b"VFS.WATCH", b"/ctx/*", b"FROM", snapshot)
    assert conn.read() == [b"vfs.watch", b"/ctx/*", 1, b"history", snapshot]
    for revision in range(snapshot + 1, head + 1):
        assert conn.read()[2] == revision
    conn.close()
    r.close()


def test_active_paths_are_live_only_and_say_so(server: VfsdProcess, r: redis.Redis) -> None:
    conn = RawConn(server.port, proto=3)
    conn.send(b"VFS.WATCH", b"/run/*", b"VALUES")
    kind, _, _, mode, _ = conn.read()
    assert (kind, mode) == (b"vfs.watch", b"live")
    r.set("/run/job", "up")
    message = conn.read()
    assert message[:2] == [b"vfs.event", b"/run/*"] and message[3] == b"n1"
    assert message[4] == [[b"/run/job", b"set", b"up"]]
    with pytest.raises(redis.ResponseError, match="FROM needs a pattern on desired-state paths only.*/run"):
        r.execute_command("VFS.WATCH", "/run/*", "FROM", 1)
    with pytest.raises(redis.ResponseError, match="matches no path under any root"):
        r.execute_command("VFS.WATCH", "/nowhere/*")
    with pytest.raises(redis.ResponseError, match="FROM revision must be a non-negative integer"):
        r.execute_command("VFS.WATCH", "/ctx/*", "FROM", "-1")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("VFS.WATCH", "/ctx/*", "VALUES", "VALUES")
    conn.send(b"VFS.UNWATCH")
    assert conn.read() == [b"vfs.unwatch", b"/run/*", 0]
    r.set("/run/job", "down")
    conn.send(b"PING")
    assert conn.read() == b"PONG"  # RESP3: out of subscribed mode, and no event after the unwatch
    conn.close()


def test_ten_thousand_patterns_on_a_hundred_connections_get_exactly_their_events(server: VfsdProcess,
                                                                                   r: redis.Redis) -> None:
    rng = random.Random(11)
    apps = 400
    shapes = ["__keyspace@0__:/run/app{n}/*", "__keyspace@0__:/run/app{n}/c?g", "__keyspace@0__:/run/app{n}/[a-c]*",
              "__keyspace@0__:/run/app{n}/cfg", "__keyspace@0__:*/app{n}/cfg", "__keyevent@0__:se?"]
    connections: list[tuple[RawConn, list[str]]] = []
    for _ in range(100):
        patterns = [rng.choice(shapes).format(n=rng.randrange(apps)) for _ in range(100)]
        conn = RawConn(server.port)
        conn.send(b"PSUBSCRIBE", *[p.encode() for p in patterns])
        for _ in patterns:
            assert conn.read()[0] == b"psubscribe"
        connections.append((conn, patterns))
    wait_for(lambda: r.pubsub_numpat() >= 1000, what="patterns")
    paths = [f"/run/app{rng.randrange(apps)}/{rng.choice(['cfg', 'cog', 'a1', 'zz'])}" for _ in range(150)]
    for path in paths:
        r.set(path, "x")
    for conn, patterns in connections:
        conn.send(b"PING")
        got: list[tuple[str, str]] = []
        while (message := conn.read()) != [b"pong", b""]:
            assert message[0] == b"pmessage"
            got.append((message[1].decode(), message[2].decode()))
        expected = []  # fnmatch is an independent reference: these patterns use only *, ? and [a-c]
        for path in paths:
            for channel in (f"__keyspace@0__:{path}", "__keyevent@0__:set"):
                for pattern in dict.fromkeys(patterns):
                    if fnmatch.fnmatchcase(channel, pattern):
                        expected.append((pattern, channel))
        assert sorted(got) == sorted(expected)
        conn.close()


def test_a_watcher_that_never_reads_is_cut_off_alone(server: VfsdProcess, r: redis.Redis) -> None:
    r.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    try:
        slow = RawConn(server.port, rcvbuf=4096)
        slow.send(b"VFS.WATCH", b"/run/big/*", b"VALUES")
        assert slow.read()[0] == b"vfs.watch"
        healthy = RawConn(server.port)
        healthy.send(b"VFS.WATCH", b"/run/big/*")
        assert healthy.read()[0] == b"vfs.watch"
        before = r.info("stats")["client_output_limit_disconnections"]
        value = b"v" * 16384
        for i in range(200):  # ~3 MiB of values for the slow watcher, which reads nothing
            r.set(f"/run/big/{i}", value)
        wait_for(lambda: r.info("stats")["client_output_limit_disconnections"] > before, what="the cut-off")
        assert int(r.info("vfsd")["vfs_watches"]) == 1
        for i in range(200):  # the healthy watcher got every event, in order
            message = healthy.read()
            assert message[4] == [[f"/run/big/{i}".encode(), b"set"]]
        assert r.set("/run/still", "serving")
        healthy.close()
        slow.close()
    finally:
        r.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")


def test_a_long_replay_is_paced_by_the_watcher_not_cut_off(server: VfsdProcess, r: redis.Redis) -> None:
    """Catching up from history writes only as fast as the watcher reads: never past its buffer limit."""
    value = "x" * 8192
    start = applied(r)
    for i in range(300):  # ~2.4 MiB of history with values, far past the 512 KiB limit below
        r.set(f"/ctx/replay/{i % 50}", value)
    r.config_set("client-output-buffer-limit", "pubsub 512kb 0 0")
    try:
        conn = RawConn(server.port, rcvbuf=8192)
        conn.send(b"VFS.WATCH", b"/ctx/replay/*", b"FROM", start, b"VALUES")
        assert conn.read()[3] == b"history"
        for i in range(300):
            message = conn.read()
            assert message[2] == start + 1 + i and message[4] == [[f"/ctx/replay/{i % 50}".encode(), b"set",
                                                                     value.encode()]]
        conn.close()
    finally:
        r.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")


def test_subscribed_context_allows_watch_commands_in_resp2(server: VfsdProcess) -> None:
    conn = RawConn(server.port)
    conn.send(b"SUBSCRIBE", b"ch")
    assert conn.read() == [b"subscribe", b"ch", 1]
    conn.send(b"VFS.WATCH", b"/ctx/*")
    assert conn.read()[:3] == [b"vfs.watch", b"/ctx/*", 2]
    conn.send(b"GET", b"x")
    assert b"only (P|S)SUBSCRIBE" in conn.read().args[0].encode()
    conn.send(b"UNSUBSCRIBE")
    assert conn.read() == [b"unsubscribe", b"ch", 1]  # still subscribed: the watch remains
    conn.send(b"VFS.UNWATCH", b"/ctx/*")
    assert conn.read() == [b"vfs.unwatch", b"/ctx/*", 0]
    conn.send(b"GET", b"x")
    assert conn.read() is None
    conn.close()
