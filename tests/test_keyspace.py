"""The ordered keyspace (vfsd.store.keyspace) against a naive reference, and SCAN cursors.

The reference is what the keyspace promises, written the slow way: a dict of
entries, ``sorted()`` for order, and a dict of current deadlines plus the set
of keys whose current deadline ``due`` has already handed out. A
RuleBasedStateMachine drives both with the same operations and checks every
answer and the invariants after each step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vfsd.store.cursors import TICKET_BITS, TICKET_MASK, ScanCursors
from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE, Keyspace, prefix_end

KEYS = [b"", b"/", b"/hw", b"/hw/a", b"/hw/a/b", b"/hw/b", b"/hwx", b"/ctx/a", b"a", b"a\xff", b"a\xff\xff", b"b"]
PREFIXES = [b"", b"/", b"/hw", b"/hw/", b"/hw/a", b"a", b"a\xff", b"\xff", b"/ctx/", b"z"]


def make_entry(value: bytes, rev: int) -> tuple:
    entry: list[Any] = [None] * 6
    entry[VALUE] = value
    entry[KIND] = 0
    entry[REV] = rev
    entry[ORIGIN] = "n1"
    entry[CTIME] = rev * 10
    entry[MTIME] = rev * 10 + 1
    return tuple(entry)


def naive_prefixed(keys: list[bytes], prefix: bytes) -> list[bytes]:
    return [k for k in sorted(keys) if k.startswith(prefix)]


class KeyspaceAgainstReference(RuleBasedStateMachine):
    """Deadlines are made unique per ``set_expire`` call (``at = tick * 1000 + seq``); setting one
    (key, deadline) pair twice is covered by ``test_due_returns_a_key_once_when_its_deadline_is_set_twice``."""

    def __init__(self) -> None:
        super().__init__()
        self.ks = Keyspace()
        self.data: dict[bytes, tuple] = {}
        self.deadlines: dict[bytes, int] = {}
        self.handed_out: set[bytes] = set()  # keys whose current deadline due() already returned
        self.rev = 0
        self.seq = 0

    @initialize()
    def start_empty(self) -> None:
        assert len(self.ks) == 0

    @rule(key=st.sampled_from(KEYS), value=st.binary(max_size=3))
    def put(self, key: bytes, value: bytes) -> None:
        self.rev += 1
        entry = make_entry(value, self.rev)
        self.ks.put(key, entry)
        self.data[key] = entry  # a put keeps the key's deadline, as in the keyspace

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: bytes) -> None:
        assert self.ks.delete(key) == self.data.pop(key, None)
        self.deadlines.pop(key, None)
        self.handed_out.discard(key)

    @precondition(lambda self: self.data)
    @rule(data=st.data(), tick=st.integers(0, 30))
    def set_expire(self, data: st.DataObject, tick: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.data)))
        self.seq += 1
        at = tick * 1000 + self.seq
        self.ks.set_expire(key, at)
        self.deadlines[key] = at
        self.handed_out.discard(key)

    @rule(key=st.sampled_from(KEYS))
    def persist(self, key: bytes) -> None:
        assert self.ks.persist(key) == (key in self.deadlines)
        self.deadlines.pop(key, None)
        self.handed_out.discard(key)

    @rule(tick=st.integers(0, 32), limit=st.integers(1, 5))
    def due(self, tick: int, limit: int) -> None:
        now = tick * 1000 + 999
        pending = {k for k, at in self.deadlines.items() if at <= now and k not in self.handed_out}
        got = self.ks.due(now, limit)
        assert len(got) == len(set(got)), f"due returned a key twice: {got}"
        assert set(got) <= pending, (got, pending)
        assert len(got) == min(limit, len(pending)), (got, pending, limit)
        # The earliest deadlines go first.
        if pending - set(got):
            assert max(self.deadlines[k] for k in got) <= min(self.deadlines[k] for k in pending - set(got))
        self.handed_out |= set(got)

    @precondition(lambda self: self.handed_out)
    @rule(data=st.data())
    def due_again(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.handed_out)))
        self.ks.due_again(key)
        self.handed_out.discard(key)

    @rule(key=st.sampled_from(KEYS), tick=st.integers(0, 32))
    def is_expired_and_expire_at(self, key: bytes, tick: int) -> None:
        now = tick * 1000 + 999
        at = self.deadlines.get(key)
        assert self.ks.expire_at(key) == at
        assert self.ks.is_expired(key, now) == (at is not None and at <= now)

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: bytes) -> None:
        assert self.ks.get(key) == self.data.get(key)

    @rule(start=st.sampled_from(KEYS + PREFIXES), stop=st.one_of(st.none(), st.sampled_from(KEYS + PREFIXES)),
          inclusive_start=st.booleans())
    def range(self, start: bytes, stop: bytes | None, inclusive_start: bool) -> None:
        expected = [k for k in sorted(self.data)
                    if (k >= start if inclusive_start else k > start) and (stop is None or k < stop)]
        assert list(self.ks.range(start, stop, inclusive_start=inclusive_start)) == expected

    @rule(prefix=st.sampled_from(PREFIXES + KEYS))
    def prefixed(self, prefix: bytes) -> None:
        assert list(self.ks.prefixed(prefix)) == naive_prefixed(list(self.data), prefix)

    @rule(keys=st.lists(st.sampled_from(KEYS), max_size=4))
    def clear_keys(self, keys: list[bytes]) -> None:
        self.ks.clear_keys(keys)
        for key in keys:
            self.data.pop(key, None)
            self.deadlines.pop(key, None)
            self.handed_out.discard(key)

    @rule()
    def clear(self) -> None:
        self.ks.clear()
        self.data.clear()
        self.deadlines.clear()
        self.handed_out.clear()

    @invariant()
    def keys_are_the_sorted_data(self) -> None:
        assert list(self.ks.keys) == sorted(self.data)
        assert self.ks.data == self.data
        assert len(self.ks) == len(self.data)

    @invariant()
    def deadlines_match(self) -> None:
        assert self.ks.expires == self.deadlines

    @invariant()
    def next_deadline_is_no_later_than_any_pending_one(self) -> None:
        pending = [at for k, at in self.deadlines.items() if k not in self.handed_out]
        nxt = self.ks.next_deadline()
        if pending:
            assert nxt is not None and nxt <= min(pending)


KeyspaceAgainstReference.TestCase.settings = settings(max_examples=70, stateful_step_count=25, deadline=None)
test_keyspace_against_reference = KeyspaceAgainstReference.TestCase


# --- focused keyspace cases ---------------------------------------------------


def test_entry_fields_are_positions_in_a_plain_tuple() -> None:
    assert (VALUE, KIND, REV, ORIGIN, CTIME, MTIME) == (0, 1, 2, 3, 4, 5)
    ks = Keyspace()
    entry = (b"v", 0, 7, "n1", 100, 200)
    ks.put(b"/hw/a", entry)
    stored = ks.get(b"/hw/a")
    assert stored is not None and stored[REV] == 7 and stored[ORIGIN] == "n1"


def test_due_skips_replaced_and_removed_deadlines() -> None:
    ks = Keyspace()
    for key in (b"a", b"b", b"c"):
        ks.put(key, make_entry(b"v", 1))
    ks.set_expire(b"a", 10)
    ks.set_expire(b"a", 50)  # replaced: the old heap item is stale
    ks.set_expire(b"b", 10)
    ks.persist(b"b")  # removed
    ks.set_expire(b"c", 10)
    ks.delete(b"c")  # deleted with its key
    assert ks.due(20, 100) == []
    assert ks.due(50, 100) == [b"a"]
    assert ks.due(50, 100) == []


def test_due_again_puts_a_key_back() -> None:
    ks = Keyspace()
    ks.put(b"a", make_entry(b"v", 1))
    ks.set_expire(b"a", 10)
    assert ks.due(10, 1) == [b"a"]
    assert ks.due(10, 1) == []
    ks.due_again(b"a")
    assert ks.due(10, 1) == [b"a"]


def test_due_respects_the_limit_and_resumes() -> None:
    ks = Keyspace()
    for i in range(10):
        key = b"k%d" % i
        ks.put(key, make_entry(b"v", 1))
        ks.set_expire(key, i)
    first = ks.due(100, 4)
    second = ks.due(100, 4)
    third = ks.due(100, 4)
    assert first == [b"k0", b"k1", b"k2", b"k3"]
    assert second == [b"k4", b"k5", b"k6", b"k7"]
    assert third == [b"k8", b"k9"]
    assert ks.next_deadline() is None


def test_due_returns_a_key_once_when_its_deadline_is_set_twice() -> None:
    ks = Keyspace()
    ks.put(b"k", make_entry(b"v", 1))
    ks.set_expire(b"k", 5)
    ks.set_expire(b"k", 5)
    assert ks.due(10, 100) == [b"k"]
    assert ks.due(10, 100) == []


def test_due_does_not_return_a_key_twice_after_heap_compaction() -> None:
    ks = Keyspace()
    ks.put(b"a", make_entry(b"v", 1))
    ks.put(b"b", make_entry(b"v", 1))
    for i in range(2000):  # stale heap items far in the future
        ks.set_expire(b"b", 10**9 + i)
    ks.set_expire(b"b", 10**9 + 10**6)
    ks.set_expire(b"a", 5)
    assert ks.due(10, 100) == [b"a"]
    assert ks.due(10, 100) == []


# --- prefix_end ---------------------------------------------------------------


def test_prefix_end_examples() -> None:
    assert prefix_end(b"/hw/") == b"/hw0"
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"a\xfe\xff") == b"a\xff"
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4), st.binary(max_size=6))
def test_prefix_end_bounds_exactly_the_strings_with_the_prefix(prefix: bytes, subject: bytes) -> None:
    for s in (subject, prefix + subject, prefix[:-1] + subject, subject + prefix):
        end = prefix_end(prefix)
        in_range = s >= prefix and (end is None or s < end)
        assert in_range == s.startswith(prefix), (prefix, s, end)


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=4))
def test_prefix_end_is_the_least_upper_bound(prefix: bytes) -> None:
    end = prefix_end(prefix)
    if end is None:
        assert set(prefix) <= {0xFF}
        return
    assert end > prefix and not end.startswith(prefix)
    # Nothing without the prefix lies between the prefix's strings and ``end``.
    assert len(end) <= len(prefix)
    assert end[:-1] == prefix[: len(end) - 1]
    assert end[-1] == prefix[len(end) - 1] + 1


# --- ScanCursors --------------------------------------------------------------


def test_cursor_round_trip() -> None:
    cursors = ScanCursors()
    cursor = cursors.issue(b"/hw/n1/cpu", 42)
    assert cursor != 0
    assert cursors.resume(cursor) == (b"/hw/n1/cpu", 42)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=64), st.integers(0, (1 << (64 - TICKET_BITS)) - 1)),
                min_size=1, max_size=20))
def test_cursors_round_trip_and_fit_in_u64(scans: list[tuple[bytes, int]]) -> None:
    cursors = ScanCursors(capacity=64)
    issued = [(cursors.issue(key, rank), key, rank) for key, rank in scans]
    assert len({c for c, _, _ in issued}) == len(issued)
    for cursor, key, rank in issued:
        assert 0 < cursor < 1 << 64
        assert cursor & TICKET_MASK != 0
        assert cursors.resume(cursor) == (key, rank)
        assert int(str(cursor)) == cursor  # what redis-cli's strtoull reads back


def test_evicted_cursor_falls_back_to_its_rank() -> None:
    cursors = ScanCursors(capacity=3)
    issued = [cursors.issue(b"k%d" % i, i * 10) for i in range(5)]
    assert cursors.resume(issued[0]) == (None, 0)
    assert cursors.resume(issued[1]) == (None, 10)
    for i in (2, 3, 4):
        assert cursors.resume(issued[i]) == (b"k%d" % i, i * 10)


def test_unknown_cursor_resumes_at_its_rank() -> None:
    cursors = ScanCursors()
    assert cursors.resume((77 << TICKET_BITS) | 5) == (None, 77)
    assert cursors.resume(0) == (None, 0)


def test_tickets_wrap_and_are_never_zero() -> None:
    cursors = ScanCursors(capacity=2)
    first = cursors.issue(b"first", 0)
    tickets = {first & TICKET_MASK}
    last = first
    for _ in range(TICKET_MASK - 1):
        last = cursors.issue(b"k", 0)
        tickets.add(last & TICKET_MASK)
    assert last & TICKET_MASK == TICKET_MASK
    assert 0 not in tickets and len(tickets) == TICKET_MASK  # every non-zero ticket, once
    wrapped = cursors.issue(b"again", 3)
    assert wrapped & TICKET_MASK == first & TICKET_MASK == 1
    assert wrapped != 0
    assert cursors.resume(wrapped) == (b"again", 3)
