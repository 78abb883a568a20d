"""The active plane (``/hw /sum /run /itg``): local, immediate, last-writer-wins.

Every write is stamped with a hybrid-logical-clock timestamp as its revision
and this node as its origin; the gossip layer compares (revision, origin) to
pick the last writer when replicas meet.

On a clustered node the plane's Ctx is a ``ReplicatedCtx``: the same handlers, the
same keyspace, plus a mark per write and a hook call per delete and expiry
(``ReplicationHooks``, which the gossip shell implements), so the replication core
learns of every change, with the version it replaced. A lone node keeps the plain ``Ctx``
and pays one attribute look per SET (``Ctx.replace`` marks through the hooks when there are any).
"""

from __future__ import annotations

import random
from typing import Protocol

from vfsd.active.hlc import HLC, LOGICAL_BITS
from vfsd.codec import RAW
from vfsd.commands.context import ChangeSink, Ctx
from vfsd.paths import EVENTUAL
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import CTIME, KIND, ORIGIN, REV, Entry, Keyspace


class ReplicationHooks(Protocol):
    """What a replicated active plane tells replication, right after the keyspace changed.

    A write is only marked, in ``written`` (one dict operation on the client's path):
    replication reads the entry itself when it next looks (``vfsd.active.gossip``'s fold).
    """

    #: Keys written since replication last looked: key -> ``(revision, origin)`` of the entry
    #: the first of those writes replaced, or None (there was none). The plane adds a key only
    #: when it is not there yet; replication empties it (the same dict object, always).
    written: dict[bytes, tuple[int, str] | None]

    def schedule(self) -> None:
        """``written`` has just gone from empty to not: have replication look at it soon."""

    def deleted(self, key: bytes, old: Entry, now_ms: int) -> int:
        """``key`` (holding ``old``) was deleted; returns the deletion's revision."""

    def expired(self, key: bytes, old: Entry, deadline_ms: int) -> None:
        """``key`` (holding ``old``) reached its TTL deadline and was removed."""


class ReplicatedCtx(Ctx):
    """``Ctx`` with the replication hooks told of every change (see the module docstring).

    The mark needs the version each write replaces, as the keyspace held it just before:
    what ``write`` and ``replace`` overwrite, unless the entry had lapsed and was expired
    first (``lookup`` does that, and ``remove`` reports it as an expiry). A removal of an
    entry past its deadline is its expiry: a tombstone at the entry's own version, the
    same on every replica; any other removal is a delete with a revision of its own.
    """

    __slots__ = ("hooks", "max_value_bytes")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        #: The gossip shell, once it is attached; None until then (writes still reach the
        #: keyspace, and the replication core reads them when it starts).
        self.hooks: ReplicationHooks | None = None
        #: The largest string or document replication can carry (one gossip message holds a
        #: record whole): a larger one is refused with an error rather than kept on this node alone.
        self.max_value_bytes = 1 << 62

    def write(self, key: bytes, value: bytes, kind: int = RAW, *, old: Entry | None = None,
              keep_ttl: bool = False) -> Entry:
        hooks = self.hooks
        if hooks is None:
            return Ctx.write(self, key, value, kind, old=old, keep_ttl=keep_ttl)
        if type(value) is bytes and len(value) > self.max_value_bytes:
            raise _too_large(key, len(value), self.max_value_bytes)
        before = self.db.data.get(key)
        entry = Ctx.write(self, key, value, kind, old=old, keep_ttl=keep_ttl)
        self._mark(hooks, key, before)
        return entry

    def replace(self, key: bytes, value: bytes) -> Entry:
        if self.hooks is not None and len(value) > self.max_value_bytes:
            raise _too_large(key, len(value), self.max_value_bytes)
        return Ctx.replace(self, key, value)  # (which marks the write: the benchmarked path, one dict probe)

    @staticmethod
    def _mark(hooks: ReplicationHooks, key: bytes, before: Entry | None) -> None:
        """Mark ``key`` written, with the version ``before`` held (the first write since replication last looked)."""
        written = hooks.written
        if key not in written:
            if not written:
                hooks.schedule()
            written[key] = None if before is None else (before[REV], before[ORIGIN])

    def remove(self, key: bytes) -> Entry | None:
        hooks = self.hooks
        if hooks is None:
            return Ctx.remove(self, key)
        db = self.db
        at = db.expires.get(key) if db.expires else None
        old = db.delete(key)
        if old is None:
            return None
        now = self.now_ms
        if at is not None and at <= now:
            hooks.expired(key, old, at)
            return (None, old[KIND], old[REV], old[ORIGIN], old[CTIME], now)
        return (None, old[KIND], hooks.deleted(key, old, now), self.origin, old[CTIME], now)


def _too_large(key: bytes, size: int, limit: int) -> ErrorReply:
    path = key[:200].decode("utf-8", "replace")
    return ErrorReply(f"ERR value of {size} bytes for '{path}' is over the {limit} bytes the active plane "
                      "replicates")


class ActivePlane:
    name = EVENTUAL
    deferred = False

    def __init__(self, db: Keyspace, origin: str, sink: ChangeSink, max_bulk_bytes: int, *,
                 rng: random.Random | None = None, replicated: bool = False) -> None:
        self.hlc = HLC()
        #: Changes ever made here (each write, delete, expiry or TTL change): what a dump is due on.
        self.changes = 0
        ctx_class = ReplicatedCtx if replicated else Ctx
        self.ctx = ctx_class(db, EVENTUAL, origin, self._next_rev, sink, max_bulk_bytes=max_bulk_bytes, rng=rng)

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
