"""The active plane's write path into replication, and replicated changes back into a keyspace.

In process, no sockets: two replicas, each a real keyspace, a replicated ``ActivePlane``
(``ReplicatedCtx``), a ``KeyspaceStore`` and a ``GossipAgent``, run real command handlers
and pass the agents' messages to each other. Checked: the replication core's digest always
agrees with the keyspace (every hook was called with the version it replaced), a peer ends
up holding exactly the same entries (values, kinds, revisions, origins, deadlines) for any
sequence of writes, deletes, TTL changes and expiries, and replicated changes raise the
change events a local change of that kind raises.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd import codec
from vfsd.active.agent import GossipAgent
from vfsd.active.keyspace_store import KeyspaceStore, check_wire_value
from vfsd.active.lww import TOMBSTONE
from vfsd.active.plane import ActivePlane, ReplicatedCtx
from vfsd.active.profile import LOCAL
from vfsd.active.wire import Limits, MsgType, decode, decode_header, on_roots
from vfsd.commands import families  # noqa: F401  (fills the command table)
from vfsd.commands.table import TABLE
from vfsd.paths import DEFAULT_ROOTS
from vfsd.store.keyspace import KIND, ORIGIN, REV, VALUE, Keyspace
from vfsd.store.values import HASH, LIST, SET, ZSET, to_wire

WALL_MS = 1_700_000_000_000


class Replica:
    """One node's active plane and gossip agent, driven by hand (the shell's job, without asyncio)."""

    def __init__(self, name: str, now_ms: int) -> None:
        self.name = name
        self.now_ms = now_ms
        self.db = Keyspace()
        self.events: list[tuple[str, str, bytes, int, str]] = []
        self.scheduled = 0
        self.plane = ActivePlane(self.db, name, self._sink, 1 << 29, replicated=True)
        assert isinstance(self.plane.ctx, ReplicatedCtx)
        accepts = on_roots(DEFAULT_ROOTS)
        self.store = KeyspaceStore(self.db, self.plane, accepts, self._sink)
        limits = Limits(kinds=frozenset({0, 1, 2, 3, 4, 5}), accepts_key=accepts, check_value=check_wire_value)
        self.agent = GossipAgent(name, f"{name}:1", self.store, self.plane.hlc, random.Random(name), now_ms,
                                 profile=LOCAL, limits=limits)
        self.store.tombstone_of = self.agent.replica.tombstones.get
        self.written = self.agent.replica.dirty
        self.plane.ctx.hooks = self

    def _sink(self, flag: str, event: str, key: bytes, entry: Any = None) -> None:
        self.events.append((flag, event, key, entry[REV] if entry else 0, entry[ORIGIN] if entry else ""))

    # ReplicationHooks, as the shell implements them (the plane marks writes in `written`)
    def schedule(self) -> None:
        self.scheduled += 1  # exchange() flushes every step

    def deleted(self, key: bytes, old: Any, now_ms: int) -> int:
        return self.agent.deleted(key, (old[REV], old[ORIGIN]), now_ms)

    def expired(self, key: bytes, old: Any, deadline_ms: int) -> None:
        self.agent.expired(key, (old[REV], old[ORIGIN]), deadline_ms)

    def run(self, *argv: bytes | str) -> Any:
        args = [a.encode() if isinstance(a, str) else a for a in argv]
        ctx = self.plane.ctx
        ctx.now_ms = self.now_ms
        return TABLE[args[0].decode().lower()].handler(ctx, args)

    def sweep(self) -> None:
        ctx = self.plane.ctx
        ctx.now_ms = self.now_ms
        for key in self.db.due(self.now_ms, 1000):
            ctx.lookup(key)

    def entries(self) -> dict[bytes, tuple[Any, int, int, str, int]]:
        out = {}
        for key, e in self.db.data.items():
            deadline = self.db.expires.get(key, 0)
            if deadline and deadline <= self.now_ms:
                continue
            out[key] = (to_wire(e[KIND], e[VALUE]), e[KIND], e[REV], e[ORIGIN], deadline)
        return out


def exchange(nodes: list[Replica], steps: int = 400, step_ms: int = 20) -> None:
    """Deliver messages (in order, per pair) and tick until nothing is in flight for a while."""
    by_name = {n.name: n for n in nodes}
    by_address = {n.agent.address: n for n in nodes}
    quiet = 0
    for _ in range(steps):
        moved = False
        for node in nodes:
            node.agent.flush(node.now_ms)
            for out in node.agent.ready().messages:
                to = by_name.get(out.to) if out.to else by_address.get(out.address or "")
                if to is None:
                    continue
                to.store.now_ms = to.now_ms
                to.agent.receive(node.name, out.type, out.body, to.now_ms)
                to.store.emit()
                moved = True
        quiet = 0 if moved else quiet + 1
        if quiet > 60:
            return
        for node in nodes:
            node.now_ms += step_ms
            node.sweep()
            node.store.now_ms = node.now_ms
            node.agent.tick(node.now_ms)
            node.store.emit()


def pair() -> tuple[Replica, Replica]:
    a, b = Replica("a", WALL_MS), Replica("b", WALL_MS)
    b.agent.join([a.agent.address], WALL_MS)
    exchange([a, b])
    assert a.agent.membership.get("b") is not None and b.agent.membership.get("a") is not None
    return a, b


# -- the hooks keep the digest true to the keyspace --------------------------------------

KEYS = [b"/run/k%d" % i for i in range(4)]

op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.binary(max_size=8)),
    st.tuples(st.just("setpx"), st.sampled_from(KEYS), st.integers(1, 60)),
    st.tuples(st.just("del"), st.sampled_from(KEYS)),
    st.tuples(st.just("pexpire"), st.sampled_from(KEYS), st.integers(-5, 60)),
    st.tuples(st.just("persist"), st.sampled_from(KEYS)),
    st.tuples(st.just("hset"), st.sampled_from(KEYS), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("rpush"), st.sampled_from(KEYS), st.binary(max_size=3)),
    st.tuples(st.just("lpop"), st.sampled_from(KEYS)),
    st.tuples(st.just("json"), st.sampled_from(KEYS), st.integers(0, 9)),
    st.tuples(st.just("get"), st.sampled_from(KEYS)),
    st.tuples(st.just("wait"), st.integers(1, 40)),
    st.tuples(st.just("sweep")),
)


def apply(node: Replica, step: tuple) -> None:
    from vfsd.resp.types import ErrorReply

    name = step[0]
    try:
        if name == "set":
            node.run("SET", step[1], step[2])
        elif name == "setpx":
            node.run("SET", step[1], b"v", "PX", str(step[2]))
        elif name == "del":
            node.run("DEL", step[1])
        elif name == "pexpire":
            node.run("PEXPIRE", step[1], str(step[2]))
        elif name == "persist":
            node.run("PERSIST", step[1])
        elif name == "hset":
            node.run("HSET", step[1], step[2], b"x")
        elif name == "rpush":
            node.run("RPUSH", step[1], step[2])
        elif name == "lpop":
            node.run("LPOP", step[1])
        elif name == "json":
            node.run("JSON.SET", step[1], "$", str(step[2]))
        elif name == "get":
            node.run("EXISTS", step[1])
        elif name == "wait":
            node.now_ms += step[1]
        elif name == "sweep":
            node.sweep()
    except ErrorReply:  # WRONGTYPE and the like: a refused command changes nothing
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_every_change_reaches_the_core_with_the_version_it_replaced(steps: list[tuple]) -> None:
    node = Replica("a", WALL_MS)
    node.agent.replica.fresh = False  # as after its first pull: every change is queued for gossip
    for step in steps:
        apply(node, step)
        assert node.agent.replica.check() == [], step


@settings(max_examples=40, deadline=None)
@given(st.lists(op, max_size=25), st.lists(op, max_size=25))
def test_two_replicas_hold_the_same_entries_after_any_changes_on_both(ops_a: list[tuple], ops_b: list[tuple]) -> None:
    a, b = pair()
    for step_a, step_b in zip(ops_a + [("wait", 1)] * len(ops_b), ops_b + [("wait", 1)] * len(ops_a)):
        apply(a, step_a)
        apply(b, step_b)
        b.now_ms = a.now_ms = max(a.now_ms, b.now_ms)
    exchange([a, b])
    now = a.now_ms = b.now_ms = max(a.now_ms, b.now_ms) + 100  # both clocks past every short deadline
    assert {k: v for k, v in a.entries().items() if k.startswith(b"/run/")} == \
        {k: v for k, v in b.entries().items() if k.startswith(b"/run/")}, now
    assert a.agent.replica.check() == [] and b.agent.replica.check() == []


# -- replicated changes are applied as they were made, with the events of a local one ------

def test_a_remote_write_keeps_its_revision_origin_and_deadline_and_raises_the_local_events() -> None:
    a, b = pair()
    a.run("SET", "/run/s", "hello", "PX", "60000")
    rev = a.db.data[b"/run/s"][REV]
    b.events.clear()
    exchange([a, b])
    entry = b.db.data[b"/run/s"]
    assert (entry[VALUE], entry[REV], entry[ORIGIN]) == (b"hello", rev, "a")
    assert b.db.expires[b"/run/s"] == a.db.expires[b"/run/s"]
    assert [(f, e, k, r, o) for f, e, k, r, o in b.events if k == b"/run/s"] == \
        [("$", "set", b"/run/s", rev, "a"), ("g", "expire", b"/run/s", rev, "a")]


def test_every_kind_travels_and_raises_its_own_event() -> None:
    a, b = pair()
    a.run("HSET", "/run/h", "f", "v", "g", "w")
    a.run("RPUSH", "/run/l", "x", "y", "z")
    a.run("SADD", "/run/s", "m1", "m2")
    a.run("ZADD", "/run/z", "1.5", "m")
    a.run("JSON.SET", "/run/d", "$", '{"cpu": 4}')
    b.events.clear()
    exchange([a, b])
    assert b.run("HGET", "/run/h", "g") == b"w"
    assert b.run("LRANGE", "/run/l", "0", "-1") == [b"x", b"y", b"z"]
    assert sorted(b.run("SMEMBERS", "/run/s")) == [b"m1", b"m2"]
    assert b.db.data[b"/run/z"][KIND] == ZSET and b.run("ZSCORE", "/run/z", "m") in (b"1.5", 1.5)
    assert codec.unpack(b.db.data[b"/run/d"][VALUE]) == {"cpu": 4}
    events = {(k, e) for _, e, k, _, _ in b.events}
    assert {(b"/run/h", "hset"), (b"/run/l", "rpush"), (b"/run/s", "sadd"), (b"/run/z", "zadd"),
            (b"/run/d", "json.set")} <= events
    assert {b.db.data[k][KIND] for k in (b"/run/h", b"/run/l", b"/run/s")} == {HASH, LIST, SET}


def test_a_remote_delete_raises_del_with_the_deleting_revision_and_stays_deleted() -> None:
    a, b = pair()
    a.run("SET", "/run/x", "1")
    exchange([a, b])
    assert b.run("GET", "/run/x") == b"1"
    a.run("DEL", "/run/x")
    tomb = a.agent.replica.tombstones.get(b"/run/x")
    assert tomb is not None and tomb[1] == "a"
    b.events.clear()
    exchange([a, b])
    assert b.run("GET", "/run/x") is None
    assert [(f, e, r, o) for f, e, k, r, o in b.events if k == b"/run/x"] == [("g", "del", tomb[0], "a")]
    # An older write of the key arriving late loses to the tombstone.
    assert not b.agent.replica.apply((b"/run/x", tomb[0] - 1, "a", 0, b"old", 0), b.now_ms, relay=False)
    assert b.run("GET", "/run/x") is None


def test_an_entry_expires_on_every_replica_at_its_own_deadline_and_does_not_come_back() -> None:
    a, b = pair()
    a.run("SET", "/run/t", "v", "PX", "500")
    exchange([a, b], steps=5)
    assert b.run("GET", "/run/t") == b"v"
    b.events.clear()
    for node in (a, b):
        node.now_ms += 1000
        node.sweep()
    assert a.run("GET", "/run/t") is None and b.run("GET", "/run/t") is None
    assert [e for _, e, k, _, _ in b.events if k == b"/run/t"] == ["expired"]
    exchange([a, b])
    assert a.run("GET", "/run/t") is None and b.run("GET", "/run/t") is None


def test_the_wire_value_check_refuses_what_install_could_not_build() -> None:
    assert check_wire_value(0, b"\xff anything")
    assert check_wire_value(1, codec.pack({"a": 1}))
    assert not check_wire_value(1, b"\xc1")  # not msgpack
    assert check_wire_value(HASH, codec.pack([b"f", b"v"]))
    assert not check_wire_value(HASH, codec.pack([b"f"]))  # odd
    assert not check_wire_value(SET, codec.pack([b"m", b"m"]))  # duplicate member
    assert not check_wire_value(ZSET, codec.pack([b"m", "1"]))  # score not a float
    assert not check_wire_value(LIST, codec.pack([]))  # empty


def test_a_value_too_large_to_replicate_is_refused_at_the_write_not_kept_on_one_node() -> None:
    from vfsd.resp.types import ErrorReply

    a, b = pair()
    a.plane.ctx.max_value_bytes = 1000
    a.run("SET", "/run/big", b"x" * 1000)  # at the limit: fine
    for argv in (("SET", "/run/big", b"y" * 1001), ("SET", "/run/big", b"y" * 1001, "PX", "5000"),
                 ("JSON.SET", "/run/bigdoc", "$", '"' + "z" * 1200 + '"')):
        try:
            a.run(*argv)
        except ErrorReply as exc:
            assert "over the 1000 bytes the active plane replicates" in str(exc) and argv[1] in str(exc)
        else:
            raise AssertionError(f"{argv[0]} of an oversize value was accepted")
    exchange([a, b])
    assert a.run("GET", "/run/big") == b.run("GET", "/run/big") == b"x" * 1000
    assert a.run("EXISTS", "/run/bigdoc") == b.run("EXISTS", "/run/bigdoc") == 0
    assert a.agent.replica.check() == []


def test_changes_nobody_can_hear_are_merged_without_holding_their_events() -> None:
    """A sink that says nobody listens (``Notifier.unheard``) gets no events for what a replica
    merges meanwhile, by either lane; once someone listens, every change raises its event again."""
    _, b = pair()
    for i in range(3):
        b.run("SET", f"/run/q{i}", "old")
    listening = False
    b.store._unheard = lambda: not listening
    later = b.plane.hlc.now(b.now_ms) + (1 << 20)
    b.agent.replica.fold()
    b.events.clear()
    b.store.now_ms = b.now_ms
    quiet = [(b"/run/q0", later + 1, "a", 0, b"new", 0), (b"/run/fresh", later + 2, "a", 0, b"new", 0),
             (b"/run/q1", later + 3, "a", TOMBSTONE, b"", 0), (b"/run/q2", later + 4, "a", 0, b"t", WALL_MS + 60_000)]
    assert b.agent.replica.apply_all(quiet, b.now_ms, relay=False) == 4
    assert not b.store._held
    b.store.emit()
    assert b.events == []
    assert b.run("GET", "/run/q0") == b"new" and b.run("GET", "/run/fresh") == b"new" and b.run("GET", "/run/q1") is None
    listening = True
    heard = [(b"/run/q0", later + 5, "a", 0, b"newer", 0), (b"/run/q2", later + 6, "a", TOMBSTONE, b"", 0)]
    assert b.agent.replica.apply_all(heard, b.now_ms, relay=False) == 2
    b.store.emit()
    assert [(e, k) for _, e, k, _, _ in b.events] == [("set", b"/run/q0"), ("del", b"/run/q2")]
    assert b.agent.replica.check() == []


def test_a_mixed_batch_lands_in_its_records_order_with_the_digest_kept_true() -> None:
    """Most of a push merges in bulk (newer writes to keys held); new keys, deletes, deadlines,
    stale and equal versions go one by one between the bulk runs. Events keep the records' order."""
    _, b = pair()
    for i in range(6):
        b.run("SET", f"/run/m{i}", "old")
    b.run("HSET", "/run/h", "f", "old")
    held = {k: (e[REV], e[ORIGIN]) for k, e in b.db.data.items()}
    later = b.plane.hlc.now(b.now_ms) + (1 << 20)
    hash_value = codec.pack(to_wire(HASH, {b"f": b"new"}))
    batch = [
        (b"/run/m0", later + 1, "a", 0, b"new0", 0),  # newer, held: bulk
        (b"/run/m1", later + 2, "a", 0, b"new1", 0),  # newer, held: bulk
        (b"/run/new", later + 3, "a", 0, b"fresh", 0),  # not held: one by one
        (b"/run/h", later + 4, "a", HASH, hash_value, 0),  # newer, held, a collection: bulk
        (b"/run/m2", later + 5, "a", TOMBSTONE, b"", 0),  # a delete: one by one
        (b"/run/m3", held[b"/run/m3"][0] - 1, "a", 0, b"stale", 0),  # older: ignored
        (b"/run/m4", later + 6, "a", 0, b"ttl", WALL_MS + 3_600_000),  # a deadline: one by one
        (b"/run/m5", later + 7, "a", 0, b"new5", 0),  # newer, held: bulk
    ]
    b.agent.replica.fold()  # (as every input of the agent does first)
    b.events.clear()
    b.store.now_ms = b.now_ms
    assert b.agent.replica.apply_all(batch, b.now_ms, relay=False) == 7
    b.store.emit()
    assert [(e, k) for _, e, k, _, _ in b.events] == [
        ("set", b"/run/m0"), ("set", b"/run/m1"), ("set", b"/run/new"), ("hset", b"/run/h"), ("del", b"/run/m2"),
        ("set", b"/run/m4"), ("expire", b"/run/m4"), ("set", b"/run/m5")]
    assert [b.run("GET", f"/run/m{i}") for i in (0, 1, 3, 4, 5)] == [b"new0", b"new1", b"old", b"ttl", b"new5"]
    assert b.run("GET", "/run/m2") is None and b.run("HGET", "/run/h", "f") == b"new"
    assert b.db.data[b"/run/m5"][REV] == later + 7 and b.db.data[b"/run/m5"][ORIGIN] == "a"
    assert b.db.expires[b"/run/m4"] == WALL_MS + 3_600_000
    assert b.agent.replica.check() == []
    # A batch that names a key twice merges each over what the first left: the later write wins.
    twice = [(b"/run/m0", later + 10, "a", 0, b"first", 0), (b"/run/m0", later + 11, "a", 0, b"second", 0)]
    assert b.agent.replica.apply_all(twice, b.now_ms, relay=False) == 2
    assert b.run("GET", "/run/m0") == b"second" and b.agent.replica.check() == []


class Watcher:
    """A client in MULTI that WATCHes a key (all ``Keyspace.touch`` looks at)."""

    watch_dirty = False


record = st.tuples(
    st.sampled_from(KEYS), st.integers(-3, 3), st.sampled_from(["a", "b", "c"]),
    st.sampled_from([0, 0, 0, 1, TOMBSTONE]), st.sampled_from([b"", b"x", b"yz"]),
    st.sampled_from([0, 0, 0, 1, 60_000]))


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=12), st.lists(record, max_size=12), st.booleans())
def test_a_batch_merged_in_bulk_ends_as_its_records_one_by_one(steps: list[tuple], recs: list[tuple],
                                                               watched: bool) -> None:
    """``apply_all`` (the store's bulk lane, ``merge_newer``, between records taken one by one)
    leaves the keyspace, its deadlines, the digest and the events exactly as ``apply`` of each
    record in turn: whatever the mix of kinds, versions, ties, deadlines, tombstones and keys
    named twice, and with WATCHed keys (``Keyspace.put``'s own path)."""
    twins = [Replica("n", WALL_MS), Replica("n", WALL_MS)]
    watchers = [Watcher(), Watcher()]
    for node, watcher in zip(twins, watchers):
        for step in steps:
            apply(node, step)
        if watched:
            node.db.watch(KEYS[0], watcher)
        node.agent.replica.fold()
        node.events.clear()
        node.store.now_ms = node.now_ms
    base = max(twins[0].plane.hlc.last, twins[1].plane.hlc.last)
    batch = []
    for key, dh, origin, kind, value, at in recs:
        held = twins[0].db.data.get(key)
        hlc = (held[REV] if held is not None and dh <= 0 else base) + dh  # around what is held, or newer
        if kind == TOMBSTONE:
            value = b""
        elif kind == 1:
            value = codec.pack(value.decode())
        batch.append((key, max(hlc, 1), origin, kind, value, at and WALL_MS + at))
    bulk, alone = twins
    applied = bulk.agent.replica.apply_all(batch, bulk.now_ms, relay=False)
    assert applied == sum(alone.agent.replica.apply(r, alone.now_ms, relay=False) for r in batch)
    for node in twins:
        node.store.emit()
        assert node.agent.replica.check() == []
    assert bulk.entries() == alone.entries()
    assert bulk.events == alone.events
    assert bulk.agent.replica.digest.root() == alone.agent.replica.digest.root()
    assert watchers[0].watch_dirty == watchers[1].watch_dirty


def test_a_push_carries_what_each_key_holds_when_it_is_sent() -> None:
    """The push after a batch of writes reuses what the fold read of each key (``keep_reads``):
    every record it carries is the key's current entry, collections and deadlines included."""
    a, b = pair()
    b.agent.ready()  # (nothing of the join left to send)
    a.run("SET", "/run/s", "one")
    a.run("SET", "/run/s", "two")  # rewritten before the push: only the newest travels
    a.run("HSET", "/run/h", "f", "v")
    a.run("SET", "/run/t", "ttl", "PX", "60000")
    a.agent.flush(a.now_ms)
    pushes = [out for out in a.agent.ready().messages if out.to == "b" and out.type == MsgType.GOSSIP]
    assert len(pushes) == 1
    _, payload = decode_header(pushes[0].body)
    sent = {r[0]: r for r in decode(MsgType.GOSSIP, payload, Limits(kinds=frozenset({0, 1, 2}))).records}
    assert sent == {key: a.agent.replica.record(key) for key in (b"/run/s", b"/run/h", b"/run/t")}
    assert sent[b"/run/s"][4] == b"two" and sent[b"/run/t"][5] > a.now_ms
    assert a.agent.replica._reads is None  # nothing kept past the push
