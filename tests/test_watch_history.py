"""The watch history against a naive reference: same window, same floor, same byte count, whatever the bounds."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.watch.history import EVENT_OVERHEAD_BYTES, SUPERSEDED_OVERHEAD_BYTES, Compacted, WatchHistory

Change = tuple[int, bytes, str, str, "tuple | None"]


class NaiveHistory:
    """Every change kept forever; the window, floor and cost recomputed from scratch each time."""

    def __init__(self, max_revisions: int, max_bytes: int) -> None:
        self.max_revisions, self.max_bytes = max_revisions, max_bytes
        self.all: list[Change] = []
        self.floor = 0
        self.head = 0

    def held(self) -> list[Change]:
        return [c for c in self.all if c[0] > self.floor]

    def cost(self) -> int:
        held = self.held()
        total = 0
        for i, (_, path, _, _, entry) in enumerate(held):
            total += EVENT_OVERHEAD_BYTES + len(path)
            if entry is not None and any(later[1] == path for later in held[i + 1:]):
                total += len(entry[0]) + SUPERSEDED_OVERHEAD_BYTES  # superseded: the window alone keeps it alive
        return total

    def record(self, change: Change) -> None:
        self.all.append(change)
        self.head = change[0]
        self.floor = max(self.floor, self.head - self.max_revisions)
        while self.cost() > self.max_bytes and self.held():
            self.floor = self.held()[0][0]


def _entry(value: bytes) -> tuple:
    return (value, 0, 0, "n1", 0, 0)


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, int, list[Change]]:
    max_revisions = draw(st.integers(1, 12))
    max_bytes = draw(st.integers(0, 8 * (EVENT_OVERHEAD_BYTES + SUPERSEDED_OVERHEAD_BYTES)))
    changes: list[Change] = []
    revision = 0
    for _ in range(draw(st.integers(0, 40))):
        revision += draw(st.sampled_from([0, 1, 1, 1, 2, 5]))  # several changes may share a revision
        revision = max(revision, 1)
        path = draw(st.sampled_from([b"/ctx/a", b"/ctx/b", b"/ctx/cc", b"/lk/l"]))
        deleted = draw(st.booleans()) and draw(st.booleans())
        value = draw(st.binary(max_size=300))
        changes.append((revision, path, "del" if deleted else "set", "n1", None if deleted else _entry(value)))
    return max_revisions, max_bytes, changes


@settings(max_examples=300, deadline=None)
@given(histories())
def test_window_matches_the_reference(case: tuple[int, int, list[Change]]) -> None:
    max_revisions, max_bytes, changes = case
    history = WatchHistory(max_revisions, max_bytes)
    naive = NaiveHistory(max_revisions, max_bytes)
    for change in changes:
        history.record(*change)
        naive.record(change)
        assert history.floor == naive.floor
        assert history.bytes == naive.cost()
        assert list(history.changes_after(history.floor)) == naive.held()
        assert len(history) == len(naive.held())
        # The floor falls on a revision boundary: a revision is held whole or not at all.
        assert all(c[0] > history.floor for c in history.changes_after(history.floor))
    for after in range(0, (changes[-1][0] if changes else 0) + 2):
        if after < naive.floor:
            with pytest.raises(Compacted) as caught:
                history.read_after(after, 3)
            assert caught.value.oldest == naive.floor + 1
        else:
            expected = [c for c in naive.held() if c[0] > after]
            got = history.read_after(after, 3)
            assert got == expected[:len(got)]
            if expected:  # at least the limit, and whole revisions only
                assert len(got) >= min(3, len(expected))
                assert len(got) == len(expected) or got[-1][0] != expected[len(got)][0]


def test_compacted_names_the_oldest_revision_available() -> None:
    history = WatchHistory(max_revisions=3)
    for revision in range(1, 11):
        history.record(revision, b"/ctx/x", "set", "n1", _entry(b"v"))
    assert history.oldest == 8 and history.floor == 7
    history.check(7)  # FROM 7: revisions 8.. are all there
    with pytest.raises(Compacted, match="oldest revision available is 8"):
        history.check(6)
    assert [c[0] for c in history.read_after(7, 100)] == [8, 9, 10]
    assert history.dropped_revisions == 7


def test_reset_forgets_what_a_snapshot_replaced() -> None:
    history = WatchHistory()
    for revision in (1, 2, 3):
        history.record(revision, b"/ctx/x", "set", "n1", _entry(b"v%d" % revision))
    history.reset(2)
    assert history.floor == 2 and [c[0] for c in history.changes_after(2)] == [3]
    history.reset(50)  # a snapshot far ahead: nothing held, the stream continues from 50
    assert history.floor == history.head == 50 and len(history) == 0 and history.bytes == 0
    history.record(51, b"/ctx/x", "set", "n1", None)
    assert [c[0] for c in history.changes_after(50)] == [51]


def test_values_still_current_cost_nothing_superseded_ones_count() -> None:
    history = WatchHistory()
    big = _entry(b"x" * 10_000)
    history.record(1, b"/ctx/a", "set", "n1", big)
    assert history.bytes == EVENT_OVERHEAD_BYTES + 6  # shared with the keyspace: not counted
    history.record(2, b"/ctx/a", "set", "n1", _entry(b"y"))
    # replaced: the window alone keeps it (and its entry) alive
    assert history.bytes == 2 * (EVENT_OVERHEAD_BYTES + 6) + 10_000 + SUPERSEDED_OVERHEAD_BYTES
    assert history.changes_after(0).__next__()[4] is big  # the same object, never a copy


def test_set_bounds_applies_at_once() -> None:
    history = WatchHistory()
    for revision in range(1, 101):
        history.record(revision, b"/ctx/%d" % revision, "set", "n1", None)
    history.set_bounds(10, 1 << 30)
    assert history.oldest == 91 and len(history) == 10
    with pytest.raises(ValueError):
        history.set_bounds(0, 1)


def test_front_is_reclaimed_on_a_long_run() -> None:
    history = WatchHistory(max_revisions=100)
    for revision in range(1, 50_001):
        history.record(revision, b"/ctx/x", "set", "n1", None)
    assert len(history._changes) < 3000  # not 50,000: dropped changes are released
    assert [c[0] for c in history.read_after(49_998, 10)] == [49_999, 50_000]


def test_event_overhead_constant_is_honest() -> None:
    """EVENT_OVERHEAD_BYTES must not understate what a recorded change really costs (measured)."""
    n = 20_000
    paths = [b"/ctx/p%06d" % i for i in range(n)]  # allocated before measuring: paths are counted separately
    entries = [_entry(b"v") for _ in range(n)]
    history = WatchHistory(max_revisions=10 * n, max_bytes=1 << 40)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        history.record(i + 1, paths[i], "set", "n1", entries[i])
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_change = used / n
    assert per_change <= EVENT_OVERHEAD_BYTES, f"{per_change:.0f} bytes per change measured"
    assert per_change >= EVENT_OVERHEAD_BYTES / 2, f"{per_change:.0f} bytes per change: the constant is stale"


def test_superseded_overhead_constant_is_honest() -> None:
    """What a replaced value keeps alive beyond its bytes, measured against SUPERSEDED_OVERHEAD_BYTES."""
    n = 20_000
    history = WatchHistory(max_revisions=10 * n, max_bytes=1 << 40)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):  # one path, rewritten: every value but the last is superseded, the keyspace holds none
        history.record(i + 1, b"/ctx/p", "set", "n1", (b"%05d" % i + b"v" * 95, 0, i, "n1", 0, 0))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    beyond = used / n - EVENT_OVERHEAD_BYTES - 100  # minus the record and the value's own bytes
    assert beyond <= SUPERSEDED_OVERHEAD_BYTES, f"{beyond:.0f} bytes per superseded value measured"
