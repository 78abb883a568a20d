"""``ReplicaStore`` over the node's keyspace: where replicated active-plane changes land.

The replication core (``vfsd.active.gossip``) keeps no copy of any value: it reads and
writes the one copy in ``Keyspace`` through this adapter. A remote change is applied as
it was made — its revision, origin and TTL deadline kept — on a path beside
``Ctx.write``, which would stamp a fresh revision and this node as origin.

Every applied change raises the change event a local change of that kind raises, through
the same sink (``Notifier``): keyspace notifications, ``__vfs__`` events, VFS.WATCH,
WATCH (MULTI) dirty flags and blocked pops all see a replicated write as they see a
local one. The event names follow the value's kind, as the command that made it would
(a string ``set``, a document ``json.set``, a hash ``hset``, a list ``rpush``, a set
``sadd``, a sorted set ``zadd``; a deadline adds ``expire``); a removal is ``del`` with
the revision and origin of the tombstone that won. (An entry's expiry is never a remote
removal: every replica expires the entry at its deadline by itself, through the plane's
own sweep, which raises ``expired``.) Events are held until ``emit`` (the shell calls it
after each call into the agent), because a removal's revision is only known once the
core has recorded its tombstone; held events keep their order. While the sink has nobody
to tell (``Notifier.unheard``: no subscriber, watch or listener), changes are not held at
all: ``emit`` runs in the same turn of the event loop, so nobody can subscribe in between.

Values travel as bytes: strings and documents as stored, collections as the msgpack
of their wire form (``vfsd.store.values.to_wire``). ``check_wire_value`` is what the
message decoder runs on every incoming value, so ``install`` never meets one it cannot
build.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from typing import Any

from vfsd import codec
from vfsd.active.lww import TOMBSTONE, Merged, Record
from vfsd.codec import DOC, RAW
from vfsd.commands.context import ChangeSink
from vfsd.store.keyspace import CTIME, KIND, ORIGIN, REV, VALUE, Keyspace
from vfsd.store.values import HASH, KINDS, LIST, SET, ZSET, WireError, from_wire, to_wire

#: The change event a replicated entry of each kind raises: (notify-keyspace-events class, event).
INSTALL_EVENTS: dict[int, tuple[str, str]] = {
    RAW: ("$", "set"), DOC: ("d", "json.set"), HASH: ("h", "hset"), LIST: ("l", "rpush"), SET: ("s", "sadd"),
    ZSET: ("z", "zadd"),
}
#: The kinds the active plane replicates (every kind the keyspace stores).
REPLICATED_KINDS = frozenset(KINDS)


def check_wire_value(kind: int, value: bytes) -> bool:
    """Whether ``value`` is a well-formed wire value of ``kind`` (``Limits.check_value``)."""
    if kind == RAW:
        return True
    try:
        obj = codec.unpack(value)
    except Exception:  # msgpack's errors, and UTF-8 ones from raw=False
        return False
    if kind == DOC:
        return True
    try:
        from_wire(kind, obj)
    except (WireError, ValueError, TypeError):
        return False
    return True


def _heard() -> bool:
    return False


def _stored(kind: int, value: bytes) -> Any:
    """A wire value as the keyspace stores it: strings and documents as they are, collections built."""
    return value if kind == RAW or kind == DOC else from_wire(kind, codec.unpack(value))


class KeyspaceStore:
    """``vfsd.active.gossip.ReplicaStore`` over ``Keyspace`` (see the module docstring).

    ``accepts`` tells the active plane's paths from the rest of the keyspace (``keys``
    lists only those); ``plane`` is the ``ActivePlane``, whose change count (what a dump
    is due on) replicated changes add to; ``tombstone_of(key)`` is the core's tombstone
    at ``key`` as ``(hlc, origin, ...)`` or None. ``now_ms`` is set by the shell before
    each call into the agent (creation and modification times of installed entries).
    """

    def __init__(self, db: Keyspace, plane: Any, accepts: Callable[[bytes], bool], notify: ChangeSink) -> None:
        self.db = db
        self.plane = plane
        self.accepts = accepts
        self.notify = notify
        #: Whether an event raised now would reach nobody (the sink's ``unheard``, where it has one):
        #: changes made meanwhile are not held for ``emit`` (nobody could have heard them).
        self._unheard: Callable[[], bool] = getattr(notify, "unheard", _heard)
        self.now_ms = 0
        self.tombstone_of: Callable[[bytes], tuple[int, str, int, int] | None] = lambda key: None
        #: Changes applied and not yet announced: (flag, event, key, entry) or, for a removal,
        #: (None, None, key, the entry removed).
        self._held: list[tuple[str | None, str | None, bytes, Any]] = []
        self.installed = 0
        self.removed = 0

    # -- ReplicaStore ---------------------------------------------------------------------

    def version(self, key: bytes) -> tuple[int, str] | None:
        entry = self.db.data.get(key)
        return None if entry is None else (entry[REV], entry[ORIGIN])

    def reads(self, keys: list[bytes]) -> list[tuple[int, bytes, int, str, int] | None]:
        db = self.db
        get = db.data.get
        expires = db.expires
        out: list[tuple[int, bytes, int, str, int] | None] = []
        append = out.append
        for key in keys:
            entry = get(key)
            if entry is None:
                append(None)
                continue
            kind = entry[KIND]
            value = entry[VALUE] if kind == RAW or kind == DOC else codec.pack(to_wire(kind, entry[VALUE]))
            append((kind, value, entry[REV], entry[ORIGIN], (expires.get(key) or 0) if expires else 0))
        return out

    def read(self, key: bytes) -> tuple[int, bytes, int, str, int] | None:
        return self.reads([key])[0]

    def install(self, key: bytes, kind: int, value: bytes, hlc: int, origin: str, deadline_ms: int) -> None:
        db = self.db
        stored = _stored(kind, value)
        data = db.data
        old = data.get(key)
        now = self.now_ms
        entry = (stored, kind, hlc, origin, now if old is None else old[CTIME], now)
        if old is not None and db.saving is None and not db.watched:
            data[key] = entry  # Keyspace.put of a key held already, inlined (a replica's every rewrite)
        else:
            db.put(key, entry)
        if deadline_ms:
            db.set_expire(key, deadline_ms)
        elif db.expires and key in db.expires:
            db.persist(key)
        self.plane.changes += 1
        self.installed += 1
        if self._unheard():
            return
        flag, event = INSTALL_EVENTS[kind]
        self._held.append((flag, event, key, entry))
        if deadline_ms:
            self._held.append(("g", "expire", key, entry))

    def merge_newer(self, records: list[Record], start: int, merged: list[Merged], gone: Container[bytes]) -> int:
        """``ReplicaStore.merge_newer``: one probe of the keyspace per record, and the entry
        built from the one it replaces (its creation time kept), as ``install`` builds it."""
        db = self.db
        data = db.data
        get = data.get
        put = db.put if db.saving is not None or db.watched else None  # a dump under way, or WATCHed keys
        expires = db.expires
        held = None if self._unheard() else self._held
        now = self.now_ms
        count = len(merged)
        end = len(records)
        i = start
        while i < end:
            key, hlc, origin, kind, value, at = records[i]
            if at or kind == TOMBSTONE:
                break
            e = get(key)
            if e is None:
                if key in gone:
                    break
                entry = (value if kind == RAW or kind == DOC else _stored(kind, value), kind, hlc, origin, now, now)
                db.put(key, entry)  # a key new to the keyspace (put keeps its index of keys)
                if held is not None:
                    flag, event = INSTALL_EVENTS[kind]
                    held.append((flag, event, key, entry))
                merged.append((key, hlc, origin, 0, None))
                i += 1
                continue
            lh = e[REV]
            lo = e[ORIGIN]
            if hlc > lh or (hlc == lh and origin > lo):
                entry = (value if kind == RAW or kind == DOC else _stored(kind, value), kind, hlc, origin, e[CTIME],
                         now)
                if put is None:
                    data[key] = entry  # Keyspace.put of a key held already, inlined
                else:
                    put(key, entry)
                if expires and key in expires:  # replaced by an entry without a deadline
                    db.persist(key)
                if held is not None:
                    flag, event = INSTALL_EVENTS[kind]
                    held.append((flag, event, key, entry))
                merged.append((key, hlc, origin, lh, lo))
            elif hlc == lh and origin == lo:
                break  # the same version: the whole record breaks the tie (the core's long way)
            i += 1
        count = len(merged) - count
        self.plane.changes += count
        self.installed += count
        return i

    def remove(self, key: bytes) -> None:
        old = self.db.delete(key)
        if old is None:
            return
        self.plane.changes += 1
        self.removed += 1
        if not self._unheard():
            self._held.append((None, None, key, old))

    def restamp(self, key: bytes, hlc: int) -> None:
        db = self.db
        entry = db.data[key]
        if db.saving is not None:
            db.saving.before_change(key)
        # Not ``put``: nothing a client can see changed, so no WATCH is dirtied and no event raised.
        db.data[key] = (entry[VALUE], entry[KIND], hlc, entry[ORIGIN], entry[CTIME], entry[5])

    def keys(self) -> Iterable[bytes]:
        accepts = self.accepts
        return [key for key in self.db.data if key[:1] == b"/" and accepts(key)]

    # -- events -----------------------------------------------------------------------------

    def emit(self) -> None:
        """Raise the change events of what was applied since the last call, in order."""
        if not self._held:
            return
        held, self._held = self._held, []
        notify = self.notify
        now = self.now_ms
        for flag, event, key, entry in held:
            if flag is not None:
                notify(flag, event, key, entry)  # type: ignore[arg-type]
                continue
            tomb = self.tombstone_of(key)
            if tomb is None:  # dropped by a reset, not deleted by anyone: no revision to give
                notify("g", "del", key, (None, entry[KIND], 0, "", entry[CTIME], now))
            else:
                notify("g", "del", key, (None, entry[KIND], tomb[0], tomb[1], entry[CTIME], now))
