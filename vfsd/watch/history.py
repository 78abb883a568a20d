"""The watch history: a bounded window of desired-plane changes in revision order.

Theory of operation
-------------------
Every change the desired plane applies (on every node: the leader's own
applies and, with Raft, a follower's applies alike) is recorded here as
``(revision, path, op, origin, entry)``, in the order it was applied, which is
revision (log index) order. One log entry may change several paths (MSET, an
EXEC, FLUSHALL): those changes share a revision. The window answers "every
change after revision r", which is what lets ``VFS.WATCH ... FROM r`` resume a
watcher exactly where it stopped, like etcd's watch from a revision.

The window is *complete above its floor*: it holds every change with a
revision greater than ``floor``, and nothing at or below it. ``FROM r`` is
served when ``r >= floor``; an older ``r`` gets an error naming
``floor + 1``, the oldest revision still available (etcd's "required revision
has been compacted"), so the watcher knows to read the state again and watch
from the revision it read.

No value is copied. ``entry`` is the keyspace's own immutable entry tuple for
the file after the change (None for a delete), so a change whose file has not
been written since shares its value with the keyspace and costs the window
only its index record. A value the keyspace has since replaced stays alive
only while its change is in the window: those *superseded* values (and their
entry tuples) are what the window really costs, and they are counted in
``bytes`` (with a fixed ``EVENT_OVERHEAD_BYTES`` per change plus the path,
and ``SUPERSEDED_OVERHEAD_BYTES`` per superseded value), which the
``max_bytes`` bound holds down. The alternative, re-deriving values from the log entry's
ops, cannot produce the value of an INCR, APPEND or partial JSON.SET without
replaying from an earlier state, and would tie the window to the log's own
compaction, which with Raft is driven by follower catch-up instead.

Bounds (``watch-history-max-revisions``, ``watch-history-max-bytes``): after
each record the oldest revisions are dropped, whole revisions at a time, while
the window spans more than ``max_revisions`` revisions or holds more than
``max_bytes``; the floor moves up to the last revision dropped. A revision is
never split: the floor always falls on a revision boundary.

After a restart the window is rebuilt by the log replay (see
``DesiredPlane.open``): it starts at the snapshot the node restarted from.
``reset(index)`` is for a state installed without its changes (a snapshot):
everything up to ``index`` is forgotten and the floor moves there.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final

from vfsd.store.keyspace import VALUE, Entry

#: What one recorded change costs besides its path and any superseded value: the record tuple, its list
#: slot, the revision's list slot and an int, and the latest-change map entry, measured with
#: tracemalloc on CPython 3.11 (see tests/test_watch_history.py).
EVENT_OVERHEAD_BYTES: Final = 200
#: What a superseded change keeps alive besides its value's bytes: the entry tuple and the bytes object's
#: header (measured the same way; compat/bench_watch_history.py shows both against real allocations).
SUPERSEDED_OVERHEAD_BYTES: Final = 96

#: One change: (revision, path, op, origin, entry or None for a delete).
Change = tuple[int, bytes, str, str, "Entry | None"]


_DROPPED: Final = (0, b"", "", "", None)  # stands in for a dropped change until the front is reclaimed


class Compacted(Exception):
    """``FROM`` asked for revisions the window no longer holds."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"revision {requested} is compacted; the oldest revision available is {oldest}")
        self.requested = requested
        self.oldest = oldest


class WatchHistory:
    __slots__ = ("max_revisions", "max_bytes", "floor", "head", "bytes", "_changes", "_revs", "_start",
                 "_base", "_latest", "_superseded", "dropped_revisions")

    def __init__(self, max_revisions: int = 100_000, max_bytes: int = 64 << 20, floor: int = 0) -> None:
        if max_revisions < 1 or max_bytes < 0:
            raise ValueError(f"bad watch history bounds: {max_revisions} revisions, {max_bytes} bytes")
        self.max_revisions = max_revisions
        self.max_bytes = max_bytes
        #: Every change with a revision above this is held; none at or below it.
        self.floor = floor
        #: The newest revision recorded (the floor when nothing is).
        self.head = floor
        #: What the window costs: EVENT_OVERHEAD_BYTES + path per change, plus its superseded values.
        self.bytes = 0
        #: Revisions dropped to honour the bounds, since start (INFO).
        self.dropped_revisions = 0
        # Changes live in a list with a moving start (dropping from the front is O(1) amortised); change k
        # of the window, counted from the first ever recorded, is _changes[k - _base].
        self._changes: list[Change] = []
        self._revs: list[int] = []  # the revision of each change, for bisect
        self._start = 0
        self._base = 0
        self._latest: dict[bytes, int] = {}  # path -> number of its newest change in the window
        # One byte per change, parallel to _changes: 1 once the keyspace has replaced its value (a flag array,
        # not a set of change numbers: a set would cost ~70 bytes per superseded change).
        self._superseded = bytearray()

    def set_bounds(self, max_revisions: int, max_bytes: int) -> None:
        """New bounds (CONFIG SET), applied at once."""
        if max_revisions < 1 or max_bytes < 0:
            raise ValueError(f"bad watch history bounds: {max_revisions} revisions, {max_bytes} bytes")
        self.max_revisions = max_revisions
        self.max_bytes = max_bytes
        self._enforce_bounds()

    # -- recording -----------------------------------------------------------

    def record(self, revision: int, path: bytes, op: str, origin: str, entry: Entry | None) -> None:
        """One applied change; revisions never go down."""
        assert revision >= self.head, f"history out of order: revision {revision} after {self.head}"
        if revision <= self.floor:  # the rest of a revision the bytes bound already dropped whole
            return
        changes = self._changes
        number = self._base + len(changes)
        previous = self._latest.get(path)
        if previous is not None:
            at = previous - self._base
            old = changes[at]
            if old[4] is not None and not self._superseded[at]:
                self._superseded[at] = 1
                self.bytes += len(old[4][VALUE]) + SUPERSEDED_OVERHEAD_BYTES
        self._latest[path] = number
        changes.append((revision, path, op, origin, entry))
        self._revs.append(revision)
        self._superseded.append(0)
        self.bytes += EVENT_OVERHEAD_BYTES + len(path)
        self.head = revision
        self._enforce_bounds()

    def reset(self, index: int) -> None:
        """Forget everything up to ``index`` (a snapshot installed state without its changes)."""
        if index >= self.head:
            self._drop_through(self.head)
            self.floor = self.head = index
        else:
            self._drop_through(index)
            self.floor = max(self.floor, index)

    def _enforce_bounds(self) -> None:
        floor = self.head - self.max_revisions
        if floor > self.floor:
            self._drop_through(floor)
            self.dropped_revisions += floor - self.floor
            self.floor = floor
        while self.bytes > self.max_bytes and self._start < len(self._changes):
            revision = self._changes[self._start][0]
            self._drop_through(revision)
            self.dropped_revisions += revision - self.floor
            self.floor = revision

    def _drop_through(self, revision: int) -> None:
        """Drop every change with a revision <= ``revision`` (the floor is the caller's to move)."""
        changes, revs = self._changes, self._revs
        stop = bisect.bisect_right(revs, revision, self._start)
        latest, superseded = self._latest, self._superseded
        for i in range(self._start, stop):
            _, path, _, _, entry = changes[i]
            self.bytes -= EVENT_OVERHEAD_BYTES + len(path)
            if superseded[i]:
                self.bytes -= len(entry[VALUE]) + SUPERSEDED_OVERHEAD_BYTES  # type: ignore[index]
            if latest.get(path) == self._base + i:
                del latest[path]
            changes[i] = _DROPPED  # release the entry now, not when the front is reclaimed
        self._start = stop
        if stop > 1024 and stop * 2 > len(changes):  # reclaim the dropped front now and then
            del changes[:stop]
            del revs[:stop]
            del superseded[:stop]
            self._base += stop
            self._start = 0

    # -- reading -------------------------------------------------------------

    @property
    def oldest(self) -> int:
        """The oldest revision whose changes are all held: ``FROM oldest - 1`` is the earliest resume."""
        return self.floor + 1

    def __len__(self) -> int:
        return len(self._changes) - self._start

    def check(self, after: int) -> None:
        """Raise Compacted unless every change after revision ``after`` is held."""
        if after < self.floor:
            raise Compacted(after + 1, self.floor + 1)

    def read_after(self, revision: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes with a revision above ``revision``, oldest first.

        A revision is never split: the batch runs past ``limit`` to finish the last
        revision it started. Raises Compacted if the window no longer holds them all.
        """
        self.check(revision)
        changes = self._changes
        start = bisect.bisect_right(self._revs, revision, self._start)
        stop = min(start + limit, len(changes))
        if start < stop < len(changes):
            last = changes[stop - 1][0]
            while stop < len(changes) and changes[stop][0] == last:
                stop += 1
        return changes[start:stop]

    def changes_after(self, revision: int) -> Iterator[Change]:
        """Every held change after ``revision``, in order (raises Compacted at once if the window cannot)."""
        self.check(revision)
        start = bisect.bisect_right(self._revs, revision, self._start)
        return iter(self._changes[start:])
