"""The active plane (``/hw /sum /run /itg``): local, immediate, last-writer-wins.

Every write is stamped with a hybrid-logical-clock timestamp as its revision
and this node as its origin; the gossip layer compares (revision, origin) to
pick the last writer when replicas meet.
"""

from __future__ import annotations

import random

from vfsd.active.hlc import HLC, LOGICAL_BITS
from vfsd.commands.context import ChangeSink, Ctx
from vfsd.paths import EVENTUAL
from vfsd.store.keyspace import Keyspace


class ActivePlane:
    name = EVENTUAL
    deferred = False

    def __init__(self, db: Keyspace, origin: str, sink: ChangeSink, max_bulk_bytes: int, *,
                 rng: random.Random | None = None) -> None:
        self.hlc = HLC()
        #: Changes ever made here (each write, delete, expiry or TTL change): what a dump is due on.
        self.changes = 0
        self.ctx = Ctx(db, EVENTUAL, origin, self._next_rev, sink, max_bulk_bytes=max_bulk_bytes, rng=rng)

    def _next_rev(self) -> int:
        # HLC.now(), inlined: this runs on every active-plane write.
        self.changes += 1
        hlc = self.hlc
        candidate = self.ctx.now_ms << LOGICAL_BITS
        hlc.last = candidate if candidate > hlc.last else hlc.last + 1
        return hlc.last

    def remove_all(self, keys: list[bytes]) -> None:
        ctx = self.ctx
        for key in keys:
            tombstone = ctx.remove(key)
            if tombstone is not None:
                ctx.notify("g", "del", key, tombstone)
