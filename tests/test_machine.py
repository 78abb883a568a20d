"""The desired-state machine (vfsd.desired.machine): committed log entries in, state and replies out.

Raft replicates this module unchanged only if applying is deterministic: the
same entries in the same order give the same keyspace and the same replies on
every replica, with time taken from the entry (``t``) and revisions from the
log index, never from a clock. These tests build entries with ``encode_entry``
exactly as the leader does and apply them to fresh keyspaces.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vfsd.commands.families  # noqa: F401  (fills the command table)
from vfsd import codec
from vfsd.desired.machine import StateMachine, encode_entry
from vfsd.resp.types import NULL_ARRAY, OK, ErrorReply
from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE, Keyspace
from vfsd.store.values import WIRE_VERSION

LOG_ROOTS = [b"/ctx", b"/lk", b"/mid"]
KEYS = [b"/ctx/a", b"/ctx/b", b"/ctx/c/d"]


class Recorder:
    """A ChangeSink that keeps every notification."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes, Any]] = []

    def __call__(self, flag: str, event: str, key: bytes, entry: Any = None) -> None:
        self.events.append((flag, event, key, entry))


def machine(db: Keyspace | None = None) -> StateMachine:
    return StateMachine(Keyspace() if db is None else db, LOG_ROOTS, Recorder())


def events(m: StateMachine) -> list[tuple[str, str, bytes, Any]]:
    sink = m.ctx.notify
    assert isinstance(sink, Recorder)
    return sink.events


def normalise(reply: Any) -> Any:
    """Replies as comparable values (ErrorReply is an exception: it compares by identity)."""
    if isinstance(reply, ErrorReply):
        return ("error", reply.message)
    if isinstance(reply, list):
        return [normalise(r) for r in reply]
    return reply


def state(m: StateMachine) -> tuple[dict[bytes, tuple], dict[bytes, int], list[bytes]]:
    return dict(m.db.data), dict(m.db.expires), list(m.db.keys)


# --- random command sequences ---------------------------------------------------

key = st.sampled_from(KEYS)
value = st.sampled_from([b"1", b"-7", b"abc", b"", b"9223372036854775806", b"x" * 3])


# PEXPIREAT's argument is relative here and made absolute with the entry's time.
PEXPIREAT_REL = b"pexpireat-rel"

command = st.one_of(
    st.tuples(key, value).map(lambda a: [b"SET", a[0], a[1]]),
    st.tuples(key, value, st.integers(1, 3000)).map(lambda a: [b"SET", a[0], a[1], b"PX", b"%d" % a[2]]),
    st.tuples(key, value).map(lambda a: [b"SET", a[0], a[1], b"KEEPTTL"]),
    st.lists(key, min_size=1, max_size=2).map(lambda ks: [b"DEL", *ks]),
    key.map(lambda k: [b"INCR", k]),
    st.tuples(key, value).map(lambda a: [b"APPEND", a[0], a[1]]),
    st.tuples(key, st.integers(-1, 4)).map(lambda a: [b"EXPIRE", a[0], b"%d" % a[1]]),
    st.tuples(key, st.integers(-2000, 4000)).map(lambda a: [PEXPIREAT_REL, a[0], a[1]]),
    st.tuples(key, st.sampled_from([b'{"a":1}', b"[1,2]", b'"s"', b"{"])).map(lambda a: [b"JSON.SET", a[0], b"$", a[1]]),
    key.map(lambda k: [b"JSON.SET", k, b"$.a", b"2"]),
    st.tuples(key, value, key, value).map(lambda a: [b"MSET", *a]),
    key.map(lambda k: [b"GET", k]),
    key.map(lambda k: [b"PTTL", k]),
)


def absolute(op: list[Any], t_ms: int) -> list[bytes]:
    return [b"PEXPIREAT", op[1], b"%d" % (t_ms + op[2])] if op[0] == PEXPIREAT_REL else op


entry_shape = st.tuples(st.integers(0, 1500), st.booleans(), st.sampled_from(["n1", "n2"]),
                        st.lists(command, min_size=1, max_size=3))


@st.composite
def entries(draw: st.DrawFn) -> list[tuple[bytes, list[list[bytes]], int, bool]]:
    """(payload, ops, t, transaction) for a run of entries with non-decreasing times."""
    out = []
    t = 1_000_000
    for gap, transaction, origin, ops in draw(st.lists(entry_shape, min_size=1, max_size=15)):
        t += gap
        ops = [absolute(op, t) for op in (ops if transaction else ops[:1])]
        out.append((encode_entry(ops, t, origin, transaction=transaction), ops, t, transaction))
    return out


@settings(max_examples=80, deadline=None)
@given(entries())
def test_same_entries_give_the_same_state_and_replies(run: list[tuple[bytes, list[list[bytes]], int, bool]]) -> None:
    first, second = machine(), machine()
    for index, (payload, ops, _t, transaction) in enumerate(run, start=1):
        a = first.apply(index, payload)
        b = second.apply(index, payload)
        assert normalise(a) == normalise(b), ops
        assert isinstance(a, list) == transaction
        if isinstance(a, list):
            assert len(a) == len(ops)
        assert state(first) == state(second)
    assert first.applied_index == second.applied_index == len(run)
    assert first.snapshot_rows() == second.snapshot_rows()


@settings(max_examples=60, deadline=None)
@given(entries())
def test_every_change_carries_its_entry_index_as_revision(run: list[tuple[bytes, list[list[bytes]], int, bool]]) -> None:
    m = machine()
    for index, (payload, _ops, t, _transaction) in enumerate(run, start=1):
        before = dict(m.db.data)
        m.apply(index, payload)
        for k, entry in m.db.data.items():
            if before.get(k) != entry:
                assert entry[REV] == index, (k, entry)
                assert entry[MTIME] == t  # the entry's time, not a clock
            assert entry[REV] <= index
            assert entry[CTIME] <= entry[MTIME]


# --- time comes from the entry --------------------------------------------------


def test_ttl_deadlines_come_from_the_entry_time() -> None:
    m = machine()
    t = 5_000  # far in the past: a clock-reading machine would compute a different deadline
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"v", b"PX", b"1500"]], t, "n1"))
    m.apply(2, encode_entry([[b"SET", b"/ctx/b", b"v"], [b"EXPIRE", b"/ctx/b", b"10"]], t + 100, "n1",
                            transaction=True))
    m.apply(3, encode_entry([[b"SET", b"/ctx/c", b"v", b"EX", b"2"]], t + 200, "n1"))
    assert m.db.expires == {b"/ctx/a": 6_500, b"/ctx/b": 15_100, b"/ctx/c": 7_200}
    entry = m.db.data[b"/ctx/a"]
    assert (entry[VALUE], entry[REV], entry[ORIGIN], entry[CTIME], entry[MTIME]) == (b"v", 1, "n1", t, t)


def test_reads_use_the_entry_time_and_expired_keys_wait_for_their_expiry_entry() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"v", b"PX", b"100"]], 1_000, "n1"))
    assert m.apply(2, encode_entry([[b"PTTL", b"/ctx/a"]], 1_040, "n1")) == 60
    assert m.apply(3, encode_entry([[b"GET", b"/ctx/a"]], 1_099, "n1")) == b"v"
    assert m.apply(4, encode_entry([[b"GET", b"/ctx/a"]], 1_100, "n1")) is None
    # Only a committed entry may delete: the expired key is still stored, as on a Redis replica.
    assert b"/ctx/a" in m.db.data


def test_ctime_is_kept_and_mtime_follows_the_entry() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"1"]], 1_000, "n1"))
    m.apply(2, encode_entry([[b"INCR", b"/ctx/a"]], 2_000, "n2"))
    entry = m.db.data[b"/ctx/a"]
    assert (entry[VALUE], entry[REV], entry[ORIGIN], entry[CTIME], entry[MTIME]) == (b"2", 2, "n2", 1_000, 2_000)


# --- transactions and watches ---------------------------------------------------


def test_a_single_command_entry_returns_its_reply() -> None:
    m = machine()
    assert m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"5"]], 1_000, "n1")) == OK
    assert m.apply(2, encode_entry([[b"INCR", b"/ctx/a"]], 1_000, "n1")) == 6


def test_a_transaction_entry_returns_the_list_of_replies() -> None:
    m = machine()
    replies = m.apply(1, encode_entry(
        [[b"SET", b"/ctx/a", b"5"], [b"INCR", b"/ctx/a"], [b"INCR", b"/ctx/b"], [b"GET", b"/ctx/a"]],
        1_000, "n1", transaction=True))
    assert replies == [OK, 6, 1, b"6"]
    assert {k: e[REV] for k, e in m.db.data.items()} == {b"/ctx/a": 1, b"/ctx/b": 1}


def test_a_failing_command_in_a_transaction_answers_an_error_and_the_rest_still_run() -> None:
    m = machine()
    replies = m.apply(1, encode_entry(
        [[b"SET", b"/ctx/a", b"x"], [b"INCR", b"/ctx/a"], [b"SET", b"/ctx/b", b"y"]], 1_000, "n1",
        transaction=True))
    assert normalise(replies) == [OK, ("error", "ERR value is not an integer or out of range"), OK]
    assert m.db.data[b"/ctx/b"][VALUE] == b"y"


def test_a_command_that_is_not_a_key_command_is_answered_with_an_error() -> None:
    m = machine()
    reply = m.apply(1, encode_entry([[b"PING"]], 1_000, "n1"))
    assert isinstance(reply, ErrorReply)
    assert reply.message == "ERR command 'PING' cannot be applied on the desired plane"
    assert m.applied_index == 1


def test_a_watch_whose_revision_changed_aborts_and_changes_nothing() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"1"]], 1_000, "n1"))
    m.apply(2, encode_entry([[b"SET", b"/ctx/a", b"2"]], 1_001, "n1"))  # someone else wrote after the WATCH
    before = state(m)
    sink_events = len(events(m))
    reply = m.apply(3, encode_entry([[b"SET", b"/ctx/a", b"mine"], [b"SET", b"/ctx/b", b"x"]], 1_002, "n1",
                                    transaction=True, watches=[(b"/ctx/a", 1)]))
    assert reply is NULL_ARRAY
    assert state(m) == before
    assert len(events(m)) == sink_events  # nothing was notified either
    assert m.applied_index == 3  # the entry is consumed all the same


def test_a_watch_whose_revision_held_applies() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"1"]], 1_000, "n1"))
    reply = m.apply(2, encode_entry([[b"INCR", b"/ctx/a"]], 1_001, "n1", transaction=True,
                                    watches=[(b"/ctx/a", 1), (b"/ctx/missing", None)]))
    assert reply == [2]


def test_a_watched_missing_key_that_appeared_aborts() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"1"]], 1_000, "n1"))
    reply = m.apply(2, encode_entry([[b"SET", b"/ctx/b", b"x"]], 1_001, "n1", transaction=True,
                                    watches=[(b"/ctx/a", None)]))
    assert reply is NULL_ARRAY
    assert b"/ctx/b" not in m.db.data


def test_a_watched_key_that_expired_reads_as_missing() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"1", b"PX", b"10"]], 1_000, "n1"))
    assert m.revision(b"/ctx/a", 1_005) == 1
    assert m.revision(b"/ctx/a", 1_010) is None
    reply = m.apply(2, encode_entry([[b"SET", b"/ctx/b", b"x"]], 1_020, "n1", transaction=True,
                                    watches=[(b"/ctx/a", None)]))
    assert reply == [OK]


# --- the internal operations -----------------------------------------------------


def test_vfs_expire_deletes_only_when_the_revision_matches_and_the_deadline_passed() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"v", b"PX", b"100"]], 1_000, "n1"))
    # Deadline not yet passed at the entry's time.
    assert m.apply(2, encode_entry([[b"vfs.expire", b"/ctx/a", b"1"]], 1_099, "n1")) == 0
    # Deadline passed but a different revision (the key was rewritten since the sweep saw it).
    assert m.apply(3, encode_entry([[b"vfs.expire", b"/ctx/a", b"7"]], 1_200, "n1")) == 0
    assert b"/ctx/a" in m.db.data
    # Both hold: the key goes, with an "expired" notification.
    assert m.apply(4, encode_entry([[b"vfs.expire", b"/ctx/a", b"1"]], 1_200, "n1")) == 1
    assert b"/ctx/a" not in m.db.data and b"/ctx/a" not in m.db.expires
    # The expiry's revision is its entry's index, its origin the entry's proposer.
    assert ("x", "expired", b"/ctx/a", (None, codec.RAW, 4, "n1", 1_000, 1_200)) in events(m)
    # A missing key is a no-op.
    assert m.apply(5, encode_entry([[b"vfs.expire", b"/ctx/a", b"1"]], 1_300, "n1")) == 0


def test_vfs_expire_spares_a_key_rewritten_without_a_ttl() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"v", b"PX", b"100"]], 1_000, "n1"))
    m.apply(2, encode_entry([[b"SET", b"/ctx/a", b"w"]], 1_050, "n1"))
    assert m.apply(3, encode_entry([[b"vfs.expire", b"/ctx/a", b"2"]], 1_200, "n1")) == 0
    assert m.db.data[b"/ctx/a"][VALUE] == b"w"


def test_vfs_flush_removes_only_keys_under_the_given_roots() -> None:
    db = Keyspace()
    foreign = {b"/hw/n1/cpu": (b"active", 0, 9, "n1", 1, 1), b"local": (b"l", 0, 1, "n1", 1, 1)}
    for k, e in foreign.items():  # other planes share the node's keyspace
        db.put(k, e)
    m = machine(db)
    m.apply(1, encode_entry([[b"MSET", b"/ctx", b"root", b"/ctx/a", b"1", b"/ctx/b/c", b"2", b"/lk/l", b"3",
                              b"/mid/m", b"4", b"/ctxfoo", b"5"]], 1_000, "n1"))
    m.apply(2, encode_entry([[b"EXPIRE", b"/ctx/a", b"100"]], 1_000, "n1"))
    removed = m.apply(3, encode_entry([[b"vfs.flush", b"/ctx", b"/lk"]], 1_001, "n1"))
    assert removed == 4
    assert sorted(db.data) == [b"/ctxfoo", b"/hw/n1/cpu", b"/mid/m", b"local"]
    assert db.expires == {}
    for k, e in foreign.items():
        assert db.data[k] == e
    deleted = {ev[2] for ev in events(m) if ev[1] == "del"}
    assert deleted == {b"/ctx", b"/ctx/a", b"/ctx/b/c", b"/lk/l"}


# --- snapshots ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(entries(), entries())
def test_snapshot_and_restore_reproduce_the_keyspace(run: list[Any], more: list[Any]) -> None:
    source = machine()
    for index, (payload, *_rest) in enumerate(run, start=1):
        source.apply(index, payload)
    rows = codec.unpack(codec.pack(source.snapshot_rows()))  # as written to and read from a snapshot file

    db = Keyspace()
    db.put(b"/hw/n1/cpu", (b"active", 0, 1, "n1", 1, 1))  # another plane's key survives a restore
    db.put(b"/ctx/stale", (b"old", 0, 1, "n1", 1, 1))  # a desired key the snapshot does not have does not
    target = machine(db)
    target.restore(source.applied_index, rows)

    assert target.applied_index == source.applied_index
    desired = {k: v for k, v in target.db.data.items() if k != b"/hw/n1/cpu"}
    assert desired == source.db.data
    assert target.db.expires == source.db.expires
    assert list(target.db.keys) == sorted([*source.db.data, b"/hw/n1/cpu"])
    assert target.snapshot_rows() == source.snapshot_rows()

    # Both continue identically from the snapshot.
    for payload, *_rest in more:
        index = source.applied_index + 1
        assert normalise(source.apply(index, payload)) == normalise(target.apply(index, payload))
    assert source.snapshot_rows() == target.snapshot_rows()


def test_snapshot_rows_hold_every_field_and_the_deadline() -> None:
    m = machine()
    m.apply(1, encode_entry([[b"SET", b"/ctx/a", b"v", b"PX", b"50"]], 1_000, "n1"))
    m.apply(2, encode_entry([[b"JSON.SET", b"/mid/d", b"$", b'{"k":[1]}']], 1_001, "n2"))
    snapshot = m.snapshot_rows()
    assert snapshot["v"] == WIRE_VERSION
    rows = snapshot["rows"]
    assert rows == [
        [b"/ctx/a", b"v", 0, 1, "n1", 1_000, 1_000, 1_050],
        [b"/mid/d", codec.pack({"k": [1]}), 1, 2, "n2", 1_001, 1_001, None],
    ]
    assert all(row[2] == m.db.data[row[0]][KIND] for row in rows)


# --- order ----------------------------------------------------------------------


def test_apply_out_of_order_asserts() -> None:
    m = machine()
    payload = encode_entry([[b"SET", b"/ctx/a", b"1"]], 1_000, "n1")
    with pytest.raises(AssertionError, match="apply out of order: 2 after 0"):
        m.apply(2, payload)
    m.apply(1, payload)
    with pytest.raises(AssertionError, match="apply out of order: 1 after 1"):
        m.apply(1, payload)
    with pytest.raises(AssertionError):
        m.apply(3, payload)
    assert m.applied_index == 1
    assert m.db.data[b"/ctx/a"][REV] == 1


def test_the_string_limit_comes_from_the_entry_not_the_replica() -> None:
    """Two replicas apply the same entries the same way: the limit is the proposer's, carried in ``m``."""
    small = 1024 * 1024
    entries = [
        encode_entry([[b"SET", b"/ctx/s", b"x" * (small - 1)]], 1_000, "n1", max_bulk_bytes=small),
        encode_entry([[b"APPEND", b"/ctx/s", b"yy"]], 1_001, "n1", max_bulk_bytes=small),
        encode_entry([[b"APPEND", b"/ctx/s", b"yy"]], 1_002, "n1"),  # the default (512 MiB) limit
    ]
    replies = []
    for _ in range(2):
        m = machine()
        replies.append([m.apply(i + 1, data) for i, data in enumerate(entries)])
        assert len(m.db.get(b"/ctx/s")[VALUE]) == small + 1
    assert replies[0] == replies[1]
    assert isinstance(replies[0][1], ErrorReply) and "maximum allowed size" in str(replies[0][1])
    assert replies[0][2] == small + 1
    assert "m" not in codec.unpack(entries[2])  # the default costs nothing in the entry


def test_a_handler_bug_is_recorded_for_the_shell_and_answered() -> None:
    m = machine()
    reply = m.apply(1, encode_entry([[b"JSON.SET", b"/ctx/x", b"$", b"1"]], 1_000, "n1"))
    assert reply == OK and m.failures == []
    from vfsd.commands.table import TABLE

    spec = TABLE["get"]
    original = spec.handler
    spec.handler = lambda ctx, argv: 1 // 0
    try:
        reply = m.apply(2, encode_entry([[b"GET", b"/ctx/x"]], 1_000, "n1"))
    finally:
        spec.handler = original
    assert isinstance(reply, ErrorReply) and "internal error applying 'GET'" in str(reply)
    assert [(index, name) for index, name, _ in m.failures] == [(2, b"GET")]
