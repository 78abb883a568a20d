"""A walk of the keyspace that sees it as it was when the walk began, while writes go on.

A dump must be a point-in-time image, but copying a million-key dict in one go stalls
the event loop for a quarter of a second or more. Instead the walk visits keys in key
order a chunk at a time (the caller yields to the loop between chunks), and the
keyspace tells the walk about every change *before* making it (``before_change``), so
the walk can keep the file's state as of the start — copy-on-write, one key at a time:

* a key after the walk's cursor that is about to change for the first time has its
  entry and deadline remembered (or ABSENT, if it did not exist when the walk began);
* a visited key (at or before the cursor) needs nothing: it was already emitted;
* visiting a key emits the remembered state if there is one, else the current one
  (unchanged since the start, or it would have been remembered);
* at the end, remembered keys the walk never reached (deleted since) are emitted.

So every key present at the start is emitted exactly once, with its entry and deadline
of that instant, and no key created after it is. Entries are immutable tuples, so
remembering one is keeping a reference. Memory is bounded by the keys changed during
the walk. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

from vfsd.store.keyspace import Entry, Keyspace

ABSENT: Any = object()  # "did not exist when the walk began"

Row = tuple[bytes, Entry, int | None]  # key, entry, deadline (ms) or None


class PointInTimeScan:
    """``PointInTimeScan(db)`` starts the walk (and hooks ``db``); ``next_chunk`` until ``done``; ``close``."""

    __slots__ = ("db", "cursor", "remembered", "walked", "done", "_wanted")

    def __init__(self, db: Keyspace, wanted: Callable[[bytes], bool] = lambda key: True) -> None:
        if db.saving is not None:
            raise RuntimeError("another point-in-time walk of this keyspace is running")
        self.db = db
        self.cursor: bytes | None = None  # the last key visited
        self.remembered: dict[bytes, tuple[Any, int | None]] = {}
        self.walked = False  # every key in order has been visited; only remembered deletions remain
        self.done = False
        self._wanted = wanted
        db.saving = self

    def before_change(self, key: bytes) -> None:
        """Called by the keyspace before ``key``'s entry or deadline changes (or ``key`` is created or deleted)."""
        if self.walked or key in self.remembered or (self.cursor is not None and key <= self.cursor):
            return
        entry = self.db.data.get(key)
        self.remembered[key] = (ABSENT if entry is None else entry, self.db.expires.get(key))

    def next_chunk(self, limit: int) -> list[Row]:
        """Visit up to ``limit`` more keys; the wanted ones, as they were at the start."""
        out: list[Row] = []
        if self.done:
            return out
        if not self.walked:
            db = self.db
            keys = db.keys
            order = iter(keys) if self.cursor is None else keys.irange(self.cursor, None, inclusive=(False, True))
            visited = 0
            data, expires, remembered, wanted = db.data, db.expires, self.remembered, self._wanted
            for key in islice(order, limit):
                visited += 1
                self.cursor = key
                state = remembered.pop(key, None)
                if state is None:
                    entry, at = data[key], expires.get(key)
                else:
                    entry, at = state
                    if entry is ABSENT:
                        continue
                if wanted(key):
                    out.append((key, entry, at))
            if visited == limit:
                return out
            self.walked = True
        # What is left was deleted after the walk began, before the walk reached it.
        for key, (entry, at) in self.remembered.items():
            if entry is not ABSENT and self._wanted(key):
                out.append((key, entry, at))
        self.remembered.clear()
        self.close()
        return out

    def close(self) -> None:
        """Unhook from the keyspace (the walk may also be abandoned midway)."""
        self.done = True
        if self.db.saving is self:
            self.db.saving = None
