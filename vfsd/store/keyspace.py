"""The ordered keyspace every plane stores its files in.

One dict gives O(1) point access; a SortedList of the same keys makes a
directory listing or ``SCAN MATCH /hw/*`` a range walk instead of a full scan.
The order is kept lazily: a new key goes into a plain set and is merged into
the SortedList only when something asks for order (``keys``), so a stream of
writes pays a set insert, not an ordered insert, and a burst of new keys is
merged with one sort.
Expiry times live in a side dict (as in Redis, most keys have none) plus a heap
of deadlines, so the active sweep costs nothing when nothing expires and
O(log n) per key that does. Heap items are checked against the dict when
popped, so replacing or removing a deadline never has to search the heap.

The keyspace is pure data: it reads no clock. Callers pass ``now_ms``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

#: One file: ``(value, kind, rev, origin, ctime_ms, mtime_ms)`` (DESIGN.md §2).
#:
#: ``rev`` is the plane's revision of the last change (a log index on the
#: desired plane, a hybrid-logical-clock timestamp on the active plane, a node
#: counter on the local plane); ``origin`` is the node that made it.
#:
#: A plain tuple rather than a class on purpose: a tuple holding only bytes,
#: ints and strs is untracked by Python's cycle collector after its first
#: collection, so millions of entries add nothing to full-collection pauses,
#: whereas class instances (slots or not) are scanned on every one. Entries
#: are immutable; a write makes a new one.
Entry = tuple
VALUE, KIND, REV, ORIGIN, CTIME, MTIME = range(6)


class Keyspace:
    __slots__ = ("data", "_sorted", "_unsorted", "expires", "_deadlines", "watched", "saving")

    def __init__(self) -> None:
        self.data: dict[bytes, Entry] = {}
        self._sorted: SortedList = SortedList()
        self._unsorted: set[bytes] = set()  # keys not yet merged into _sorted
        self.expires: dict[bytes, int] = {}
        self._deadlines: list[tuple[int, bytes]] = []
        #: WATCHed keys -> their watchers (objects with a ``watch_dirty`` flag). Any change to the
        #: key — value, deletion, deadline — sets the flag, as Redis's touchWatchedKey does.
        self.watched: dict[bytes, set[Any]] = {}
        #: A point-in-time walk in progress (``pointintime.PointInTimeScan``), told of every change
        #: before it is made; None nearly always. Code that changes ``data`` or ``expires`` directly
        #: (``Ctx.write``, ``Ctx.replace``) calls its ``before_change`` too.
        self.saving: Any = None

    @property
    def keys(self) -> SortedList:
        """Every key, in byte order."""
        if self._unsorted:
            self._sorted.update(self._unsorted)
            self._unsorted.clear()
        return self._sorted

    def merge_some(self, limit: int) -> int:
        """Move up to ``limit`` keys into key order; returns how many are still outside it.

        ``keys`` merges everything at once, which after a million fresh writes is a long
        sort; a caller on the event loop (a save's walk) spreads it out with this instead.
        """
        unsorted = self._unsorted
        if unsorted:
            self._sorted.update([unsorted.pop() for _ in range(min(limit, len(unsorted)))])
        return len(unsorted)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: bytes) -> Entry | None:
        return self.data.get(key)

    def is_expired(self, key: bytes, now_ms: int) -> bool:
        at = self.expires.get(key)
        return at is not None and at <= now_ms

    def touch(self, key: bytes) -> None:
        """Mark the watchers of ``key`` dirty (callers check ``self.watched`` first: it is usually empty)."""
        for watcher in self.watched.get(key, ()):
            watcher.watch_dirty = True

    def watch(self, key: bytes, watcher: Any) -> None:
        self.watched.setdefault(key, set()).add(watcher)

    def unwatch(self, key: bytes, watcher: Any) -> None:
        watchers = self.watched.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self.watched[key]

    def put(self, key: bytes, entry: Entry) -> None:
        if self.saving is not None:
            self.saving.before_change(key)
        if key not in self.data:
            self._unsorted.add(key)
        self.data[key] = entry
        if self.watched:
            self.touch(key)

    def delete(self, key: bytes) -> Entry | None:
        if self.saving is not None:
            self.saving.before_change(key)
        entry = self.data.pop(key, None)
        if entry is not None:
            if key in self._unsorted:
                self._unsorted.discard(key)
            else:
                self._sorted.remove(key)
            self.expires.pop(key, None)
            if self.watched:
                self.touch(key)
        return entry

    def set_expire(self, key: bytes, at_ms: int) -> None:
        if self.saving is not None:
            self.saving.before_change(key)
        self.expires[key] = at_ms
        heapq.heappush(self._deadlines, (at_ms, key))
        if self.watched:
            self.touch(key)

    def persist(self, key: bytes) -> bool:
        if self.saving is not None:
            self.saving.before_change(key)
        if self.expires.pop(key, None) is None:
            return False
        if self.watched:
            self.touch(key)
        return True

    def expire_at(self, key: bytes) -> int | None:
        return self.expires.get(key)

    def due(self, now_ms: int, limit: int) -> list[bytes]:
        """Keys whose deadline has passed, each once, at most ``limit``; stale heap items are dropped."""
        out: list[bytes] = []
        seen: set[bytes] = set()
        heap = self._deadlines
        expires = self.expires
        while heap and heap[0][0] <= now_ms and len(out) < limit:
            at, key = heapq.heappop(heap)
            if expires.get(key) == at and key not in seen:  # a deadline set twice is pushed twice
                seen.add(key)
                out.append(key)
        if len(heap) > 2 * len(expires) + 1024:
            # Mostly stale items: rebuild from the live deadlines, leaving out the keys just returned
            # (the caller acts on them; due_again puts one back if it must be retried).
            self._deadlines = [(at, k) for k, at in expires.items() if k not in seen]
            heapq.heapify(self._deadlines)
        return out

    def due_again(self, key: bytes) -> None:
        """Put back a deadline that ``due`` returned but the caller could not act on yet."""
        at = self.expires.get(key)
        if at is not None:
            heapq.heappush(self._deadlines, (at, key))

    def next_deadline(self) -> int | None:
        return self._deadlines[0][0] if self._deadlines else None

    def range(self, start: bytes = b"", stop: bytes | None = None, *, inclusive_start: bool = True) -> Iterator[bytes]:
        """Keys in ``[start, stop)`` in byte order."""
        return self.keys.irange(start, stop, inclusive=(inclusive_start, False))

    def prefixed(self, prefix: bytes) -> Iterator[bytes]:
        return self.keys.irange(prefix, prefix_end(prefix), inclusive=(True, False)) if prefix else iter(self.keys)

    def clear_keys(self, keys: list[bytes]) -> None:
        for key in keys:
            self.delete(key)

    def clear(self) -> None:
        if self.saving is not None:
            for key in self.data:
                self.saving.before_change(key)
        self.data.clear()
        self._sorted.clear()
        self._unsorted.clear()
        self.expires.clear()
        self._deadlines.clear()


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


