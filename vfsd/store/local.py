"""The local plane: keys outside ``/``, node-local as in a plain Redis."""

from __future__ import annotations

import itertools
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
        self.ctx = Ctx(db, LOCAL, origin, itertools.count(1).__next__, sink, max_bulk_bytes=max_bulk_bytes, rng=rng)

    def remove_all(self, keys: list[bytes]) -> None:
        ctx = self.ctx
        for key in keys:
            if ctx.remove(key) is not None:
                ctx.notify("g", "del", key)
