"""Pub/sub as clients see it: the same wire replies as redis-server for the same commands (RESP2 and RESP3),
shard channels through redis-py's own API, and a resumable VFS.WATCH in a few lines of redis-py (the README's)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
import redis

from compat.support import CLIENT_TIMEOUT_S, RedisServerProcess, wait_subscribed
from tests.conftest import VfsdProcess


class Wire:
    """A raw connection: every reply and push exactly as it arrives."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S)
        self.reader = hiredis.Reader()

    def call(self, *args: str, replies: int = 1) -> list[Any]:
        self.sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a.encode()), a.encode())
                                                             for a in args))
        out = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(out) < replies:
            reply = self.reader.gets()
            if reply is False:
                assert time.monotonic() < deadline, f"no reply to {args}"
                self.reader.feed(self.sock.recv(65536))
                continue
            out.append(reply.args[0] if isinstance(reply, hiredis.ReplyError) else reply)
        return out

    def close(self) -> None:
        self.sock.close()


# (command, number of replies): run in order on one subscriber connection, while a second connection publishes.
SCRIPT: list[tuple[tuple[str, ...], int]] = [
    (("SSUBSCRIBE", "s1", "s2"), 2),
    (("SUBSCRIBE", "c1"), 1),
    (("PSUBSCRIBE", "c*"), 1),
    (("SUNSUBSCRIBE", "s2", "nope"), 2),
    (("UNSUBSCRIBE", "nope"), 1),
    (("PUNSUBSCRIBE",), 1),
    (("PUNSUBSCRIBE",), 1),
    (("SUNSUBSCRIBE",), 1),
    (("SUNSUBSCRIBE",), 1),
    (("UNSUBSCRIBE",), 1),
    (("UNSUBSCRIBE",), 1),
]
PUBLISHER: list[tuple[str, ...]] = [
    ("PUBSUB", "SHARDCHANNELS"), ("PUBSUB", "SHARDCHANNELS", "s*"), ("PUBSUB", "SHARDNUMSUB", "s1", "s2", "x"),
    ("PUBSUB", "NUMSUB", "c1"), ("PUBSUB", "NUMPAT"), ("SPUBLISH", "s1", "hello"), ("PUBLISH", "s1", "not shard"),
    ("SPUBLISH", "c1", "shard, not channel"), ("PUBLISH", "c1", "both"),
]


def transcript(port: int, proto: int) -> list[Any]:
    sub, pub = Wire(port), Wire(port)
    try:
        if proto == 3:
            sub.call("HELLO", "3")
            pub.call("HELLO", "3")
        out: list[Any] = []
        for command, replies in SCRIPT[:3]:
            out += [command, sub.call(*command, replies=replies)]
        for command in PUBLISHER:
            out += [command, pub.call(*command)]
        # What the subscriber received from those publishes: smessage, then message and pmessage for c1.
        out += ["pushes", sub.call("PING", replies=4)]
        for command, replies in SCRIPT[3:]:
            out += [command, sub.call(*command, replies=replies)]
        return out
    finally:
        sub.close()
        pub.close()


@pytest.fixture(scope="module")
def redis_port(redis_server: RedisServerProcess) -> int:
    return redis_server.port


@pytest.mark.parametrize("proto", [2, 3])
def test_pubsub_and_shard_channels_match_redis_server(vfsd: VfsdProcess, redis_port: int, proto: int) -> None:
    ours = transcript(vfsd.port, proto)
    theirs = transcript(redis_port, proto)
    # Redis lists shard channels and numsub pairs in its own dict order; compare those as sets.
    assert _normalised(ours) == _normalised(theirs)


def _normalised(transcript: list[Any]) -> list[Any]:
    out = []
    for item in transcript:
        if isinstance(item, list) and item and isinstance(item[0], list) and all(isinstance(x, bytes) for x in item[0]):
            out.append([sorted(item[0])] + item[1:])
        else:
            out.append(item)
    return out


@pytest.fixture
def r(vfsd: VfsdProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=vfsd.port, protocol=2, decode_responses=True,
                         socket_timeout=CLIENT_TIMEOUT_S)
    try:
        yield client
    finally:
        client.close()


def test_shard_channels_through_redis_py(r: redis.Redis) -> None:
    p = r.pubsub()
    try:
        p.ssubscribe("orders")
        message = p.get_sharded_message(timeout=5)
        assert message["type"] == "ssubscribe" and message["channel"] == "orders"
        assert r.pubsub_shardchannels() == ["orders"]
        assert r.pubsub_shardnumsub("orders") == [("orders", 1)]
        assert r.spublish("orders", "o-1") == 1
        message = p.get_sharded_message(timeout=5)
        assert message == {"type": "smessage", "pattern": None, "channel": "orders", "data": "o-1"}
    finally:
        p.close()


def watch(pattern: str, last_rev: int | None = None, **connect: Any) -> Iterator[tuple[int, str, str, Any]]:
    """The README's resumable watcher: (revision, path, op, value) for every change after ``last_rev``."""
    while True:
        conn = redis.Connection(decode_responses=True, **connect)  # its own connection: it stays subscribed
        try:
            conn.send_command("VFS.WATCH", pattern, *(["FROM", last_rev] if last_rev is not None else []), "VALUES")
            conn.read_response(push_request=True)  # ['vfs.watch', pattern, 1, 'history', revision]
            while True:
                kind, _, rev, origin, changes = conn.read_response(push_request=True)
                if kind != "vfs.event":  # 'vfs.unwatch' ... 'compacted': read the state again
                    raise LookupError(f"watch ended: {kind} {changes}")
                for path, op, value in changes:
                    yield rev, path, op, value
                last_rev = rev  # a revision's changes arrive in one message: resume after it
        except redis.ConnectionError:
            time.sleep(1)  # the node restarted or the network broke: resume FROM last_rev
        finally:
            conn.disconnect()


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_readme_watcher_resumes_where_it_left_off(vfsd: VfsdProcess, protocol: int) -> None:
    r = redis.Redis(host="127.0.0.1", port=vfsd.port, decode_responses=True, socket_timeout=CLIENT_TIMEOUT_S)
    connect = {"host": "127.0.0.1", "port": vfsd.port, "protocol": protocol, "socket_timeout": CLIENT_TIMEOUT_S}
    try:
        r.set("/ctx/web", "v1")
        start = int(r.info("vfsd")["desired_applied_index"])
        r.set("/ctx/web", "v2")
        r.delete("/ctx/web")
        events = watch("/ctx/*", start, **connect)
        assert next(events)[1:] == ("/ctx/web", "set", "v2")
        rev, path, op, value = next(events)
        assert (path, op, value) == ("/ctx/web", "del", None)
        events.close()
        r.set("/ctx/web", "v3")  # while nobody watches
        resumed = watch("/ctx/*", rev, **connect)
        assert next(resumed) == (rev + 1, "/ctx/web", "set", "v3")
        resumed.close()
        with pytest.raises(redis.ResponseError, match="history starts at revision"):
            r.config_set("watch-history-max-revisions", "1")
            try:
                next(watch("/ctx/*", 0, **connect))
            finally:
                r.config_set("watch-history-max-revisions", "100000")
    finally:
        r.close()


def test_psubscribe_keyspace_patterns_through_redis_py(r: redis.Redis) -> None:
    """Many patterns, one matching: redis-py sees exactly that one (the index only ever saves work)."""
    p = r.pubsub(ignore_subscribe_messages=True)
    try:
        patterns = [f"__keyspace@0__:/ctx/app{n}/*" for n in range(500)]
        p.ignore_subscribe_messages = False
        p.psubscribe(*patterns)
        wait_subscribed(p, len(patterns))
        r.set("/ctx/app7/cfg", "x")
        r.set("/ctx/other/cfg", "x")
        p.ping()  # its reply comes after every message the two SETs raised
        got = []
        deadline = time.monotonic() + 5
        while not got or got[-1]["type"] != "pong":
            assert time.monotonic() < deadline, got
            message = p.get_message(timeout=0.5)
            if message is not None:
                got.append(message)
        assert got[:-1] == [{"type": "pmessage", "pattern": "__keyspace@0__:/ctx/app7/*",
                             "channel": "__keyspace@0__:/ctx/app7/cfg", "data": "set"}]
    finally:
        p.close()
