"""The local plane: keys outside ``/``, node-local as in a plain Redis."""

from __future__ import annotations

import random

from vfsd.commands.context import ChangeSink, Ctx
from vfsd.paths import LOCAL
from vfsd.store.keyspace import Keyspace


class LocalPlane:
    """Writes apply at once; the revision is a node-wide counter."""

    name = LOCAL
    deferred = False

    def __init__(self, db: Keyspace, origin: str, sink: ChangeSink, max_bulk_bytes: int, *,
                 rng: random.Random | None = None) -> None:
        #: The last revision handed out: also the count of changes ever made (the dump keeps it).
        self.rev = 0
        self.ctx = Ctx(db, LOCAL, origin, self._next_rev, sink, max_bulk_bytes=max_bulk_bytes, rng=rng)

    def _next_rev(self) -> int:
        self.rev += 1
        return self.rev

    def remove_all(self, keys: list[bytes]) -> None:
        ctx = self.ctx
        for key in keys:
            tombstone = ctx.remove(key)
            if tombstone is not None:
                ctx.notify("g", "del", key, tombstone)
