"""Leases on lease paths (``/lk`` and any root configured ``lease``): replicated lock state.

Theory of operation
-------------------
A lease path holds an ordinary string, the holder's *owner token* (what ``GET`` returns),
with the lease's deadline as its TTL. Beside it, this table keeps what a lock needs and a
string cannot say, as part of the desired plane's replicated state (it is applied from
the log like everything else, and snapshotted with it):

* the **fencing token** of the current grant: the Raft index of the entry that granted
  it. Every grant of a path gets a larger one (indexes only grow), an extension by the
  holder keeps it, and any new holder, or the same owner after the lease lapsed, gets a
  new one. A resource guarded by the lock keeps the highest token it has seen and refuses
  requests carrying a lower one (Kleppmann's fencing);
* when it was granted, and the **session** it is bound to (``<node>:<client id>``), if any;
* the **waiters**, in arrival order (the order their entries committed, whichever node
  they came through): when a lease ends, the next waiter is granted it in the same apply.

The table never reads a clock: "now" is the entry's time, stamped by the Raft leader, so
every node decides expiry, grants and tokens alike. The state machine calls ``before``
and ``after`` around every command that touches a lease path, whatever the command (a
``SET ... NX PX``, a ``DEL``, a Lua script, an expiry): ``after`` reconciles the table with
what the key now holds, so the Redis idioms and the ``LOCK.*`` commands share one truth.

Rules the idioms get on lease paths (documented in the README):

* ``SET path token NX PX ttl`` acquires; ``SET path token XX PX ttl`` extends only if
  ``token`` is the holder's (else nil, nothing changes), as does ``SET ... IFEQ token``;
* ``DELIFEQ path token`` / ``DELEX path IFEQ token`` release for the holder; plain ``DEL``
  breaks the lease (an administrative act: its ``del`` event says so to every watcher).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vfsd.codec import RAW
from vfsd.commands.context import Ctx
from vfsd.store.keyspace import KIND, VALUE

__all__ = ["Lease", "LeaseTable", "Waiter"]


@dataclass(slots=True)
class Lease:
    owner: bytes
    token: int
    granted_ms: int
    session: str = ""


@dataclass(slots=True)
class Waiter:
    owner: bytes
    ttl_ms: int
    #: ``<node>:<client id>:<sequence>``: names the waiting request on its node.
    waiter: str
    session: str = ""


@dataclass(slots=True)
class Grant:
    """A grant made while applying one entry (to a waiter, or directly), for the shell."""

    key: bytes
    owner: bytes
    token: int
    waiter: str


@dataclass
class LeaseTable:
    leases: dict[bytes, Lease] = field(default_factory=dict)
    waiters: dict[bytes, list[Waiter]] = field(default_factory=dict)
    #: Grants to waiters made by the entry being applied (the shell answers the waiting clients).
    granted: list[Grant] = field(default_factory=list)

    # -- around every command on a lease path ------------------------------------

    def before(self, ctx: Ctx, key: bytes) -> None:
        """A lease whose deadline has passed at this entry's time is over, whatever comes next."""
        lease = self.leases.get(key)
        if lease is not None and _live(ctx, key) is None:
            del self.leases[key]

    def after(self, ctx: Ctx, key: bytes, index: int) -> None:
        """Reconcile with what the key holds now: a new owner is a new grant (token = this index);
        no value is no lease, and the next waiter gets the path."""
        entry = _live(ctx, key)
        if entry is None:
            self.leases.pop(key, None)
            self._grant_next(ctx, key, index)
            return
        owner = entry[VALUE] if entry[KIND] == RAW else b""
        lease = self.leases.get(key)
        if lease is None or lease.owner != owner:
            self.leases[key] = Lease(owner, index, ctx.now_ms)

    # -- LOCK.* -----------------------------------------------------------------

    def acquire(self, ctx: Ctx, key: bytes, owner: bytes, ttl_ms: int, index: int, *, session: str = "",
                waiter: str = "") -> int | None:
        """The fencing token if ``owner`` holds ``key`` now (granted, or already its own: extended);
        None if another holds it (with ``waiter``, queued behind the others)."""
        self.before(ctx, key)
        lease = self.leases.get(key)
        if lease is not None and lease.owner == owner:
            self._write(ctx, key, owner, ttl_ms)
            return lease.token
        if lease is not None or _live(ctx, key) is not None:
            if waiter:
                queue = self.waiters.setdefault(key, [])
                if not any(w.waiter == waiter for w in queue):
                    queue.append(Waiter(owner, ttl_ms, waiter, session))
            return None
        self._write(ctx, key, owner, ttl_ms)
        self.leases[key] = Lease(owner, index, ctx.now_ms, session)
        return index

    def extend(self, ctx: Ctx, key: bytes, owner: bytes, ttl_ms: int) -> bool:
        self.before(ctx, key)
        lease = self.leases.get(key)
        if lease is None or lease.owner != owner:
            return False
        self._write(ctx, key, owner, ttl_ms)
        return True

    def release(self, ctx: Ctx, key: bytes, owner: bytes, index: int) -> bool:
        self.before(ctx, key)
        lease = self.leases.get(key)
        if lease is None or lease.owner != owner:
            return False
        self._delete(ctx, key)
        del self.leases[key]
        self._grant_next(ctx, key, index)
        return True

    def release_sessions(self, ctx: Ctx, prefix: str, index: int) -> int:
        """Release every lease bound to a session that starts with ``prefix`` (one connection,
        ``<node>:<client>``, or every connection of a node, ``<node>:``), and drop its waiters."""
        for key, queue in list(self.waiters.items()):
            kept = [w for w in queue if not _matches(w.session or w.waiter, prefix)]
            if kept:
                self.waiters[key] = kept
            else:
                del self.waiters[key]
        released = 0
        for key in sorted(k for k, lease in self.leases.items() if lease.session and _matches(lease.session, prefix)):
            self._delete(ctx, key)
            del self.leases[key]
            released += 1
            self._grant_next(ctx, key, index)
        return released

    def unwait(self, key: bytes, waiter: str) -> bool:
        queue = self.waiters.get(key)
        if not queue:
            return False
        kept = [w for w in queue if w.waiter != waiter]
        if len(kept) == len(queue):
            return False
        if kept:
            self.waiters[key] = kept
        else:
            del self.waiters[key]
        return True

    def info(self, ctx: Ctx, key: bytes) -> dict[str, Any] | None:
        lease = self.leases.get(key)
        if lease is None or _live(ctx, key) is None:
            waiting = len(self.waiters.get(key, ()))
            return None if not waiting else {"holder": None, "waiters": waiting}
        return {"holder": lease.owner, "token": lease.token, "granted_ms": lease.granted_ms,
                "session": lease.session, "waiters": len(self.waiters.get(key, ()))}

    # -- snapshots --------------------------------------------------------------

    def snapshot(self) -> list[Any]:
        return [[[k, v.owner, v.token, v.granted_ms, v.session] for k, v in sorted(self.leases.items())],
                [[k, [[w.owner, w.ttl_ms, w.waiter, w.session] for w in q]] for k, q in sorted(self.waiters.items())]]

    def restore(self, state: Any) -> None:
        self.leases = {}
        self.waiters = {}
        if not state:
            return
        leases, waiters = state
        for key, owner, token, granted_ms, session in leases:
            self.leases[key] = Lease(owner, token, granted_ms, session)
        for key, queue in waiters:
            self.waiters[key] = [Waiter(o, t, w, s) for o, t, w, s in queue]

    # -- internals --------------------------------------------------------------

    def _grant_next(self, ctx: Ctx, key: bytes, index: int) -> None:
        queue = self.waiters.get(key)
        if not queue or _live(ctx, key) is not None:
            return
        w = queue.pop(0)
        if not queue:
            del self.waiters[key]
        self._write(ctx, key, w.owner, w.ttl_ms)
        self.leases[key] = Lease(w.owner, index, ctx.now_ms, w.session)
        self.granted.append(Grant(key, w.owner, index, w.waiter))

    @staticmethod
    def _write(ctx: Ctx, key: bytes, owner: bytes, ttl_ms: int) -> None:
        old = ctx.lookup(key)
        entry = ctx.write(key, owner, RAW, old=old)
        ctx.notify("$", "set", key, entry)
        ctx.db.set_expire(key, ctx.now_ms + ttl_ms)
        ctx.notify("g", "expire", key, entry)

    @staticmethod
    def _delete(ctx: Ctx, key: bytes) -> None:
        if ctx.lookup(key) is not None:
            ctx.notify("g", "del", key, ctx.remove(key))


def _live(ctx: Ctx, key: bytes) -> Any:
    """The key's entry if it exists and has not lapsed at this entry's time (no side effect)."""
    db = ctx.db
    entry = db.data.get(key)
    if entry is None or db.is_expired(key, ctx.now_ms):
        return None
    return entry


def _matches(session: str, prefix: str) -> bool:
    return session == prefix or (prefix.endswith(":") and session.startswith(prefix)) or \
        session.startswith(prefix + ":")
