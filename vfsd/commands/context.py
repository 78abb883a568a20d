"""``Ctx``: what a key command sees — one plane's keyspace at one instant.

Handlers read and write only through a Ctx, so the same handler runs
unchanged on every plane: at once on the local and active planes, and when its
log entry commits on the desired plane. Everything nondeterministic comes in
through the Ctx: ``now_ms`` (the node's clock, or the time the leader stamped
into the log entry), ``next_rev`` (a counter, a hybrid logical clock, or the
entry's log index) and ``random`` (SPOP, SRANDMEMBER...: the node's generator,
or on the desired plane one seeded from the entry's index, so every replica
pops the same members).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from vfsd.codec import RAW
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import CTIME, KIND, VALUE, Entry, Keyspace
from vfsd.store.values import copy_value

#: Redis's default proto-max-bulk-len: the string limit an entry applies with unless it names another.
DEFAULT_MAX_BULK_BYTES = 512 * 1024 * 1024


class ChangeSink(Protocol):
    def __call__(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None: ...


def _no_sink(flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
    return None


class Ctx:
    """One plane's view of the keyspace; see the module docstring.

    ``lazy_delete``: whether a read that finds an expired key deletes it here.
    True on the local and active planes. False on the desired plane, where only
    a committed log entry may change state (a follower must not diverge from
    the leader), so an expired key merely reads as missing until the expiry
    entry commits (as Redis replicas do).
    """

    #: Replication's hooks on a replicated plane (ReplicatedCtx, which has them as a slot); none here.
    hooks: Any = None

    __slots__ = ("db", "plane", "now_ms", "origin", "next_rev", "notify", "lazy_delete", "max_bulk_bytes", "random",
                 "deterministic", "reading", "hits", "misses")

    def __init__(
        self,
        db: Keyspace,
        plane: str,
        origin: str,
        next_rev: Callable[[], int],
        sink: ChangeSink = _no_sink,
        *,
        lazy_delete: bool = True,
        now_ms: int = 0,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
        rng: random.Random | None = None,
        deterministic: bool = False,
    ) -> None:
        self.db = db
        self.plane = plane
        self.origin = origin
        self.next_rev = next_rev
        #: ``notify(flag, event, key, entry=None)``: raise the change event for a change just made
        #: (``flag`` is the notify-keyspace-events class, ``event`` the Redis event name). The sink
        #: itself, not a wrapper: this is called on every write.
        self.notify: ChangeSink = sink
        self.lazy_delete = lazy_delete
        self.now_ms = now_ms
        self.max_bulk_bytes = max_bulk_bytes
        #: Set by dispatch for a read command: its lookups count as keyspace hits and misses (INFO
        #: stats), as Redis counts lookups for reading and not those a write makes.
        self.reading = False
        self.hits = 0
        self.misses = 0
        #: The injected generator random choices use (a fixed seed unless the plane injects one).
        self.random = rng if rng is not None else random.Random(0)
        #: True where every replica must compute the same result (the desired plane's apply):
        #: random choices then draw from members in sorted order, not from a set's
        #: per-process iteration order.
        self.deterministic = deterministic

    def lookup(self, key: bytes) -> Entry | None:
        """The live entry at ``key``: None if absent or past its deadline."""
        entry = self.db.data.get(key)
        if entry is None:
            if self.reading:
                self.misses += 1
            return None
        at = self.db.expires.get(key)
        if at is not None and at <= self.now_ms:
            if self.lazy_delete:
                self.notify("x", "expired", key, self.remove(key))
            if self.reading:
                self.misses += 1
            return None
        if self.reading:
            self.hits += 1
        return entry

    def write(self, key: bytes, value: bytes, kind: int = RAW, *, old: Entry | None = None, keep_ttl: bool = False) -> Entry:
        """Store ``value`` at ``key`` with a fresh revision; clears the TTL unless ``keep_ttl``."""
        now = self.now_ms
        entry = (value, kind, self.next_rev(), self.origin, now if old is None else old[CTIME], now)
        db = self.db
        if db.saving is not None:
            db.saving.before_change(key)
        if key in db.data:
            db.data[key] = entry
            # A TTL is kept only for a live file: a lapsed, unswept one (desired plane) was not ``old``.
            if (not keep_ttl or old is None) and db.expires:
                db.expires.pop(key, None)
            if db.watched:
                db.touch(key)
        else:
            db.put(key, entry)
            if db.expires:  # a stale deadline of an expired-but-unswept key must not apply
                db.expires.pop(key, None)
        return entry

    def replace(self, key: bytes, value: bytes) -> Entry:
        """A plain SET of raw bytes: ``write(key, value, old=lookup(key))`` with one dict probe
        on the common path (no TTL on the key), which is the benchmarked write."""
        db = self.db
        if db.saving is not None:
            db.saving.before_change(key)
        data = db.data
        old = data.get(key)
        expires = db.expires
        if old is not None and expires and key in expires:  # it may have lapsed: expire it properly first
            old = self.lookup(key)
        now = self.now_ms
        entry = (value, RAW, self.next_rev(), self.origin, now if old is None else old[CTIME], now)
        if old is not None:
            data[key] = entry
            if db.watched:
                db.touch(key)
        else:
            db.put(key, entry)
        if expires:
            expires.pop(key, None)
        hooks = self.hooks
        if hooks is not None:  # a replicated plane's write is marked (vfsd.active.plane.ReplicatedCtx)
            self._mark(hooks, key, old)  # type: ignore[attr-defined]
        return entry

    def mutable(self, key: bytes, entry: Entry) -> Any:
        """The value of ``entry`` (live at ``key``) for a command to change in place.

        Collections are changed in place (vfsd.store.values). A point-in-time walk of the
        keyspace (a dump being written while writes go on) keeps the entries it still has to
        emit by reference, as entries are immutable tuples; a collection changed in place
        would change under it. So when such a walk is running (``db.saving``) it is told
        first (``before_change``), and if it now holds this very entry the command gets a
        copy to change, leaving the walk the old value (copy-on-write, once per key and walk).
        """
        value = entry[VALUE]
        saving = getattr(self.db, "saving", None)
        if saving is None or type(value) is bytes:
            return value
        saving.before_change(key)
        held = getattr(saving, "remembered", {}).get(key)
        if held is not None and held[0] is entry:
            return copy_value(entry[KIND], value)
        return value

    def remove(self, key: bytes) -> Entry | None:
        """Delete ``key``; returns its tombstone, or None if it was absent.

        A delete is a change like any other, with a revision of its own (as etcd's are) and
        this node as origin: the tombstone is an entry whose value is None, with the old
        kind and creation time, passed to ``notify`` so that every delete and expiry event
        carries its revision and origin (and, later, so replicas can order deletes).
        """
        old = self.db.delete(key)
        if old is None:
            return None
        return (None, old[KIND], self.next_rev(), self.origin, old[CTIME], self.now_ms)

    def ttl_ms(self, key: bytes) -> int | None:
        at = self.db.expires.get(key)
        return None if at is None else at - self.now_ms


# -- checking a write before it is proposed ---------------------------------------


class NeedsState(Exception):
    """A probed handler reached for the keyspace: every check that needs no state has passed."""


_NEEDS_STATE = NeedsState()


class _NoKeyspace:
    """The keyspace of a probe: touching it in any way ends the probe."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise _NEEDS_STATE


def _needs_state() -> int:
    raise _NEEDS_STATE


_probe_ctx = Ctx(_NoKeyspace(), "probe", "", _needs_state, lazy_delete=False)  # type: ignore[arg-type]


def probe(handler: Callable[[Ctx, list[bytes]], Any], argv: list[bytes], now_ms: int, max_bulk_bytes: int) -> Any:
    """Run ``handler`` up to its first touch of state: the error it raises before that, else None.

    Handlers check their arguments (syntax, numbers, JSON text, limits) before they look at
    the keyspace, so an error raised before that point is known in advance: it would be
    the same at any time on any replica. A desired-plane write that fails this way is
    answered at once and never proposed, so the log holds no entry that fails for a reason
    known when it was written (a poison entry, replayed at every restart). Errors that
    depend on state (WRONGTYPE, a value that is not an integer) are left to the apply,
    where they are deterministic, and answered from there.
    """
    ctx = _probe_ctx
    ctx.now_ms = now_ms
    ctx.max_bulk_bytes = max_bulk_bytes
    try:
        result = handler(ctx, argv)
    except NeedsState:
        return None
    except ErrorReply as err:
        return err
    except Exception as exc:  # a handler bug met before any state: refuse rather than log it
        return ErrorReply(f"ERR internal error in '{argv[0][:64].decode(errors='replace')}': {exc!r}")
    return result if isinstance(result, ErrorReply) else None
