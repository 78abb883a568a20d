"""Replication of the active plane: push gossip, anti-entropy pulls, tombstone collection.

Theory of operation
-------------------
The replica keeps no copy of any value. Values live once, in the node's keyspace,
reached through ``ReplicaStore`` (a Protocol the shell implements over
``vfsd.store.keyspace.Keyspace``); this module keeps only small structures of its
own: the digest tree and bucket index (``vfsd.active.digest``), the tombstones and
watermarks (``vfsd.active.lww``) and a queue of *paths* to gossip
(``vfsd.active.broadcast``).

**Local writes** cost one dict operation each: the key is marked written (``dirty``,
with the version it replaced). Once per batch of writes, the shell calls
``GossipAgent.flush``, which first *folds* what was marked (``fold``: per key, however
often it was rewritten, a CRC-32, two version hashes, an XOR noted for its digest
bucket, and a queue insert; every other input folds first as well), then pushes the newest value of every fresh path to ``push_nodes`` random peers
at once; the path stays queued and rides on the next gossip rounds until it has
been sent ``retransmit_limit(n)`` times (memberlist's TransmitLimitedQueue). A
receiver that learns something new from a push queues it in turn: the epidemic of
SWIM §4, which reaches every node in O(log n) rounds. In a cluster small enough that
a push goes to every member (at most ``push_nodes + 1``), the push is all there is:
the path leaves the queue once sent and receivers do not relay it, since every
further copy would be a duplicate (a push lost with a broken connection is repaired
by the next anti-entropy pull). Under a full write load this is most of the cost of
replication saved: in a 3-node cluster each write then travels twice, not a dozen
times. Rapid rewrites of one path
coalesce in the queue: only the newest value is ever read and sent.

**Anti-entropy** repairs what pushes missed. Every ``sync_interval_for(n)`` a replica
*pulls* from one random member (and at once from a member that comes back from
suspect or dead, and from seeds on join). Under a stream of writes (at least
``sync_busy_records`` records written here or received by push in the last
interval) the periodic pull is deferred, for at most ``sync_busy_max_ms`` since the
last one: a comparison then mostly finds the records still in flight, and lists
thousands of versions around them to learn that, at a cost above the writes' own;
what a push missed is repaired at the latest ``sync_busy_max_ms`` later, or one
interval after the stream eases. A periodic pull begun in a quiet interval (or the
repair pull of a member back from suspect, which was pushed to all along), when a
stream starts while it runs, gives way at its next reply (``YIELD_RECORDS`` written
here or received by push since it began), and counts as not made: otherwise such a
pull would chase the stream, listing thousands of buckets that the pushes make moot.
A pull started because the deferral reached its bound runs to the end. A pull goes:

1. ``SyncOpen``: our root hash and record count (plus, on a join, our own row).
2. ``SyncReply``: the responder's clock ``t``, its membership rows, and — unless the
   roots agree — the hashes and counts of its root's 16 children.
3. For each child whose hash differs and where the responder holds something: if we
   hold at most ``sync_list_max`` records there (or it is a bucket), we send our
   versions there (``SyncVersions``); otherwise we ask for its children
   (``SyncDescend`` → ``SyncTree``) and repeat one level down.
   At most ``PULL_WINDOW`` of these requests are outstanding per pull; the rest wait
   their turn, so a comparison that finds thousands of buckets changed (a node back
   from a partition, or one pulling amid a stream of writes) paces itself by its
   round trips instead of queueing thousands of messages on both nodes at once.
4. ``SyncRecords``: the responder answers a version list with every record it holds
   there that is newer or that we lack, and the keys it wants from us (we push those
   back in ``Records``). An answer larger than ``max_message_bytes`` is cut, with a
   resume point; we ask again from there. A brand-new replica holds nothing, so its
   first pull lists no versions at the root and receives the whole state in pages:
   a new or restarted node gets the full state through the same repair path.
5. When every request is answered, we *dominate* the responder's state as of ``t``,
   and, through its rows, every member it dominated: ``Watermarks.dominate``. The
   ``seen`` in each later message to a member is how far we dominate it, the
   acknowledgement that lets it collect tombstones (``vfsd.active.lww``).

Only the puller gains dominance; both sides gain data. A pull abandoned midway
(timeout, lost message) gains nothing.

**A fresh replica** (just started, or just reset) sends none of its own writes until
its first pull is answered: it first merges the responder's clock and re-stamps the
records it wrote while alone (``ReplicaStore.restamp``), so nothing it wrote before
joining is older than what the cluster may already have collected.

**Reset.** A member reaped by the cluster (dead past ``horizon_ms``) that comes back
with its old identity may hold values whose tombstones the cluster has collected;
merging it would bring them back. The agent detects the meeting (``Split``) and the
side that lost — the one that was reaped, or, when each side reaped the other, the
one with fewer live members — calls ``reset``: every record not newer than the
highest version the other side ever collected is dropped, and the replica rejoins
fresh, as a new identity. Records newer than that cannot be superseded by anything
collected, so they merge safely; everything older comes back from the cluster.

**Collection.** Every ``sync_interval_ms`` the replica drops the tombstones every member has
acknowledged (``vfsd.active.lww``), and remembers their keys and versions for
``left_grace_ms``: a peer that has not collected its own copy yet offers it back, and a
replica that took it again would restart its wait, so two replicas could hand a tombstone
back and forth for ever (under TTL churn, an ever growing pile). A remembered key refuses
that tombstone, and any older record, until the memory lapses.

Pure: time, randomness and I/O are the caller's.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Container, Iterable
from typing import Any, Protocol
from zlib import crc32

from vfsd.active.broadcast import MAX_MISFITS, TransmitQueue
from vfsd.active.digest import DEPTH, LEAF_MASK, MASK64, ORIGIN_HASHES, Digest, leaf_of, origin_hash, span, version_hash
from vfsd.active.hlc import HLC, LOGICAL_BITS
from vfsd.active.lww import (
    HLC_,
    ORIGIN,
    TOMBSTONE,
    Merged,
    Record,
    Tombstones,
    Watermarks,
    effective,
    expiry_of,
    newer,
    rank,
)
from vfsd.active.membership import Membership
from vfsd.active.profile import GossipProfile
from vfsd.active.wire import (
    Message,
    Node,
    Records,
    Row,
    SyncDescend,
    SyncOpen,
    SyncRecords,
    SyncReply,
    SyncTree,
    SyncVersions,
    Version,
    columns_of,
    records_out,
)

#: Estimated msgpack overhead of one record beside its key and value (ints, list header, index).
RECORD_OVERHEAD = 32
#: Room kept free in a message for its header and framing.
MESSAGE_SLACK = 4096
#: Records written here or received by push since a pull that may give way began, from which it
#: gives way to the stream they belong to (``Replicator.tick``): its few round trips see a few at most.
YIELD_RECORDS = 64
#: Concurrent pulls a replica runs as the puller.
MAX_PULLS = 4
#: Requests (SyncDescend, SyncVersions) one pull keeps outstanding; the rest wait in its ``todo``.
#: 100k keys all changed take 5 round trips to compare at 64, 17 at 16 (over a WAN, 50 ms each).
PULL_WINDOW = 64
#: Nodes asked for per SyncDescend: the answer (16 children each, ~22 bytes a child) stays under 400 KiB.
DESCEND_MAX = 1024


class ReplicaStore(Protocol):
    """What the replication core needs from the node's keyspace (one copy of every value).

    The shell implements it over ``Keyspace``: ``version``/``read`` look an entry up (an
    entry past its deadline but not yet swept still counts: the core knows its deadline);
    ``install``/``remove`` apply a remote change with its revision and origin kept, and
    raise the same change events and keyspace notifications a local write or delete
    does; ``restamp`` gives one of this node's own entries a new revision and nothing
    else; ``keys`` lists every key held, once, when the core starts. ``reads`` is
    ``read`` for a batch of keys, and ``merge_newer`` is the common case of a push's
    merge, done in bulk: a store can do either with one probe of its table per key.
    """

    def version(self, key: bytes) -> tuple[int, str] | None:
        """``(revision, origin)`` of the entry at ``key``, or None."""

    def reads(self, keys: list[bytes]) -> list[tuple[int, bytes, int, str, int] | None]:
        """``read`` of each key, in order."""

    def merge_newer(self, records: list[Record], start: int, merged: list[Merged], gone: Container[bytes]) -> int:
        """``install`` the records from index ``start`` on, in order, each over the live entry
        its key holds and of a lower version (a lower revision, or the same one of a lower
        origin: ``vfsd.active.lww.newer``), or at a key that holds nothing and is not in
        ``gone`` (the keys the core remembers a deletion of), appending ``(key, hlc, origin,
        replaced hlc, replaced origin)`` to ``merged`` for each (``0, None`` for a key that
        held nothing); skip those older than what is held. Stop at the first record that is
        none of these: a tombstone, one with a deadline, one at a key in ``gone`` that holds
        nothing, or one of the very version held (the core merges it, then calls again from
        the next). Returns that record's index, or ``len(records)``: all were merged or
        skipped. ``merge_by_install`` does it with ``version`` and ``install``."""

    def read(self, key: bytes) -> tuple[int, bytes, int, str, int] | None:
        """``(kind, wire value, revision, origin, deadline_ms or 0)`` of the entry, or None."""

    def install(self, key: bytes, kind: int, value: bytes, hlc: int, origin: str, deadline_ms: int) -> None:
        """Store a remote entry as it is (revision ``hlc``, origin, TTL deadline; 0: none)."""

    def remove(self, key: bytes) -> None:
        """Delete the entry at ``key``: a newer remote tombstone won, or a reset dropped it."""

    def restamp(self, key: bytes, hlc: int) -> None:
        """Give this node's own entry at ``key`` the revision ``hlc``; value, kind and TTL unchanged."""

    def keys(self) -> Iterable[bytes]:
        """Every key with an entry."""


def merge_by_install(store: ReplicaStore, records: list[Record], start: int, merged: list[Merged],
                     gone: Container[bytes]) -> int:
    """``ReplicaStore.merge_newer`` over the store's own ``version`` and ``install``, for a store
    with nothing faster to offer (the simulation's)."""
    for i in range(start, len(records)):
        key, hlc, origin, kind, value, at = records[i]
        if at or kind == TOMBSTONE:
            return i
        local = store.version(key)
        if local is None and key in gone:
            return i
        lh, lo = local if local is not None else (0, None)
        if lo is None or newer(hlc, origin, lh, lo):
            store.install(key, kind, value, hlc, origin, 0)
            merged.append((key, hlc, origin, lh, lo))
        elif hlc == lh and origin == lo:
            return i
    return len(records)


class _EveryKey:
    """The container that holds every key (``merge_newer``'s ``gone`` when new keys must stop)."""

    def __contains__(self, key: object) -> bool:
        return True


_EVERY_KEY = _EveryKey()


class _Pull:
    __slots__ = ("sid", "peer", "address", "boot", "t", "rows", "pending", "todo", "deadline_ms", "want_rows",
                 "started_ms", "active_ms", "records", "yields_since", "stream_at")

    def __init__(self, sid: int, peer: str | None, address: str | None, want_rows: bool, now_ms: int,
                 timeout_ms: int) -> None:
        self.sid = sid
        self.peer = peer
        self.address = address
        self.boot = 0
        self.t = -1
        self.rows: list[Row] = []
        #: Requests sent and not answered yet, and those waiting to be sent (``PULL_WINDOW``):
        #: ``(level, idxs)`` for a SyncDescend, ``(level, idx, from_leaf, after)`` for a SyncVersions.
        self.pending = 0
        self.todo: deque[tuple[int, list[int]] | tuple[int, int, int, bytes]] = deque()
        self.deadline_ms = now_ms + timeout_ms
        self.want_rows = want_rows
        self.started_ms = now_ms
        self.active_ms = now_ms
        self.records = 0
        #: For a pull that gives way to a stream of writes met midway (``Replicator.pull``): the
        #: ``last_sync_ms`` it leaves behind when it does, and the stream count at its start.
        self.yields_since: int | None = None
        self.stream_at = 0


class Replicator:
    def __init__(self, name: str, store: ReplicaStore, hlc: HLC, membership: Membership, profile: GossipProfile,
                 rng: random.Random, now_ms: int) -> None:
        self.name = name
        self.store = store
        self.hlc = hlc
        self.membership = membership
        self.profile = profile
        self.rng = rng
        self.digest = Digest()
        self._origin_hash = origin_hash(name)
        #: Keys written here since the last ``fold``, each with the version (hlc, origin) its
        #: first write since then replaced, or None: there was none. Always this dict object
        #: (the shell hands it to the plane's write path).
        self.dirty: dict[bytes, tuple[int, str] | None] = {}
        self.tombstones = Tombstones()
        self.marks = Watermarks()
        self.queue: TransmitQueue[bytes, None] = TransmitQueue(profile.max_queued_paths)
        #: key -> ``read`` of it, by the fold just before a push (``fold(keep_reads=True)``).
        self._reads: dict[bytes, tuple[int, bytes, int, str, int] | None] | None = None
        #: True until the first pull is answered: own writes wait, then are re-stamped and sent;
        #: records pushed by others are refused meanwhile (the first pull brings them).
        self.fresh = True
        #: Our clock when we became fresh: what we wrote since is re-stamped at first contact
        #: (0 at start: whatever the keyspace already holds of ours was written alone too).
        self.fresh_since = 0
        #: The highest version (hlc) of any tombstone this replica collected (or dropped in a reset).
        self.collected_max = 0
        #: Tombstones collected in the last ``left_grace_ms``: key -> (hlc, origin). A peer that has
        #: not collected its copy yet offers it back; re-acquiring it would restart its wait for
        #: acknowledgements, and two replicas could pass a tombstone back and forth for ever.
        self.collected: dict[bytes, tuple[int, str]] = {}
        self._collected_queue: deque[tuple[int, bytes]] = deque()
        self.pulls: dict[int, _Pull] = {}
        #: After a reset: pull from this member only, until its first answer has taught us whom
        #: it reaped (a node still on our side of the split must not feed us its stale state).
        self.only_from: str | None = None
        self.out: list[tuple[str, Message]] = []
        self.out_by_address: list[tuple[str, Message]] = []
        self.counters: dict[str, int] = {}
        self._sid = rng.getrandbits(32)
        self._rows_at = 0
        #: Records written here or received by push, in all; and their count when the last
        #: periodic pull was due (``tick``).
        self.stream_records = 0
        self._stream_at_sync = 0
        #: When the last pull started: periodic, or one that completed. The start counts as
        #: one (a node that starts amid a stream has its join's pull, or nobody to pull from).
        self.last_sync_ms = now_ms
        jitter = rng.randrange(max(1, profile.sync_interval_ms))
        self.next_sync_ms = now_ms + jitter
        self.next_gc_ms = now_ms + profile.sync_interval_ms
        for key in store.keys():
            version = store.version(key)
            if version is not None:
                kh = crc32(key)
                self.digest.add(key, kh, version_hash(kh, version[0], version[1]))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # -- the local write path (one dict operation per write; the rest once per batch) ---------

    def wrote(self, key: bytes, old: tuple[int, str] | None, hlc: int) -> None:
        """This node wrote ``key`` (now of revision ``hlc``), replacing the entry versioned ``old``.

        Only marks the key (``dirty``); ``fold`` does the rest, once per key however often it
        was rewritten meanwhile. The shell's write path marks ``dirty`` itself, inline."""
        dirty = self.dirty
        if key not in dirty:
            dirty[key] = old

    def fold(self, keep_reads: bool = False) -> None:
        """Bring the digest and the gossip queue up to date with the writes marked in ``dirty``.

        For each key, the version its first write since the last fold replaced (the one the
        digest holds) is exchanged for the version the store holds now, and the key is queued
        to gossip. Every input of the core folds first (``GossipAgent``), and so does every
        hook that changes a marked key otherwise (``deleted``, ``expired``): whatever reads the
        digest, the queue or the tombstones sees every write made before it (a marked key
        being removed is folded alone, with the version the hook gives: ``_fold_removed``).

        ``keep_reads``: keep what was read of each key for the push that follows at once
        (``GossipAgent.flush``; ``_take_fresh_final`` takes it, and nothing may change the store
        in between), so that the push does not look every key up a second time."""
        self._reads = None
        dirty = self.dirty
        if not dirty:
            return
        name = self.name
        ohash = self._origin_hash
        pending = self.digest._pending  # Digest.xor, inlined: this runs once per key written
        keys = list(dirty)
        reads = self.store.reads(keys)
        removed = False
        for key, old, r in zip(keys, dirty.values(), reads):
            if r is None:  # removed since without a hook (cannot happen on the plane's own path)
                removed = True
                continue
            hlc = r[2]
            origin = r[3]
            kh = crc32(key)
            # version_hash, inlined: the hash of the version now held, and of the one replaced
            h = hash((kh, hlc, ohash if origin == name else origin_hash(origin)))
            if old is not None:  # the common case: a file rewritten
                o = old[1]
                pending[kh & LEAF_MASK] ^= (h ^ hash((kh, old[0], ohash if o == name else origin_hash(o)))) & MASK64
            else:
                self._fold_new(key, kh, h & MASK64)
        queued = [key for key, r in zip(keys, reads) if r is not None] if removed else keys
        if not self.fresh:
            queue = self.queue
            where, tier0 = queue.where, queue.tiers[0]
            if not where and len(queued) <= queue.max_items:
                # An empty queue (a push to every member takes all of it): TransmitQueue.push of
                # every key, in bulk.
                where.update(dict.fromkeys(queued, 0))
                tier0.update(dict.fromkeys(queued))
            else:
                for key in queued:
                    if key not in where and len(where) < queue.max_items:
                        where[key] = 0  # TransmitQueue.push, inlined for a key not queued yet
                        tier0[key] = None
                    else:
                        queue.push(key, None)
            if keep_reads:
                self._reads = dict(zip(keys, reads))
        self.stream_records += len(dirty)
        dirty.clear()  # the same dict: the plane's write path holds it

    def _fold_new(self, key: bytes, kh: int, h: int) -> None:
        """``fold`` for a key the digest did not hold live: it replaces its tombstone, if any."""
        t = self.tombstones.pop(key) if self.tombstones else None
        if t is not None:
            self.digest.xor(kh, h ^ version_hash(kh, t[0], t[1]))
        else:
            self.digest.add(key, kh, h)
        if self.collected:
            self.collected.pop(key, None)

    def _fold_removed(self, key: bytes, current: tuple[int, str]) -> None:
        """``fold`` for one marked key whose entry, versioned ``current``, is being removed (the
        store no longer holds it, so its version comes from the hook)."""
        old = self.dirty.pop(key)
        kh = crc32(key)
        h = version_hash(kh, current[0], current[1])
        if old is not None:
            self.digest.xor(kh, h ^ version_hash(kh, old[0], old[1]))
        else:
            self._fold_new(key, kh, h)
        if not self.fresh:
            self.queue.push(key, None)

    def deleted(self, key: bytes, old: tuple[int, str], now_ms: int) -> int:
        """This node deleted ``key`` (whose entry was versioned ``old``); returns the deletion's revision."""
        if key in self.dirty:
            self._fold_removed(key, old)
        hlc = self.hlc.now(now_ms)
        kh = crc32(key)
        self.digest.xor(kh, version_hash(kh, hlc, self.name) ^ version_hash(kh, old[0], old[1]))
        self.tombstones.put(key, hlc, self.name, now_ms, hlc)
        self.stream_records += 1
        if not self.fresh:
            self.queue.push(key, None)
        return hlc

    def expired(self, key: bytes, version: tuple[int, str], deadline_ms: int) -> None:
        """The entry at ``key`` (versioned ``version``) reached its deadline and was removed locally."""
        if key in self.dirty:
            self._fold_removed(key, version)
        if key in self.tombstones:
            return
        # Same version, so the digest does not change (vfsd.active.lww: expiry is a tombstone at the entry's version).
        self.tombstones.put(key, version[0], version[1], deadline_ms, self.hlc.last)

    # -- records ------------------------------------------------------------------------------

    def record(self, key: bytes) -> Record | None:
        """What this replica holds at ``key``: its live entry or its tombstone."""
        r = self.store.read(key)
        if r is not None:
            return (key, r[2], r[3], r[0], r[1], r[4])
        return self.tombstones.record(key)

    def _version(self, key: bytes) -> tuple[int, str, bool] | None:
        v = self.store.version(key)
        if v is not None:
            return v[0], v[1], False
        t = self.tombstones.get(key)
        return None if t is None else (t[0], t[1], True)

    def apply(self, rec: Record, now_ms: int, relay: bool) -> bool:
        """Merge one remote record; True when it changed our state (then, if ``relay``, gossip it on)."""
        if self._apply(rec, now_ms, relay):
            self.count("records_applied")
            return True
        return False

    def apply_all(self, records: Iterable[Record], now_ms: int, relay: bool) -> int:
        """``apply`` each record, in order; how many changed our state.

        The common record — a newer write to a key that holds a live entry, with no deadline —
        is merged by the store in bulk (``ReplicaStore.merge_newer``), and its digest change
        noted here, from the version it replaced; the store stops at any other record, which
        goes through ``_apply`` before the store goes on, so changes land (and raise their
        events) in the records' order. A key named twice is merged twice, each time over
        what the store holds then."""
        records = records if type(records) is list else list(records)
        store = self.store
        one = self._apply
        merged: list[Merged] = []
        applied = 0
        end = len(records)
        # A key held nowhere may be new only while no collected tombstone is remembered (a record
        # at such a key may be the write that tombstone deleted: ``_apply`` tells).
        gone = self.tombstones.held() if not self.collected else _EVERY_KEY
        i = store.merge_newer(records, 0, merged, gone)
        while i < end:
            if one(records[i], now_ms, relay):
                applied += 1
            i = store.merge_newer(records, i + 1, merged, gone)
        if merged:
            digest = self.digest
            pending = digest._pending  # Digest.xor, inlined
            origin_hashes = ORIGIN_HASHES
            for key, hlc, origin, lh, lo in merged:
                # The digest change: the new version in, the old one out (version_hash, inlined)
                kh = crc32(key)
                oh = origin_hashes.get(origin)
                if oh is None:
                    oh = origin_hash(origin)
                if lo is None:  # a key new here
                    digest.add(key, kh, hash((kh, hlc, oh)) & MASK64)
                    continue
                pending[kh & LEAF_MASK] ^= (hash((kh, hlc, oh)) ^ hash((kh, lh, oh if lo == origin else origin_hash(lo)))) & MASK64
            if relay and not self.fresh:
                push = self.queue.push
                for m in merged:
                    push(m[0], None)
            applied += len(merged)
        if applied:
            self.count("records_applied", applied)
        return applied

    def _apply(self, rec: Record, now_ms: int, relay: bool) -> bool:
        key, hlc, origin, kind, value, at = rec
        tomb = kind == TOMBSTONE or 0 < at <= now_ms
        if tomb and kind != TOMBSTONE:  # expired on arrival: it is its tombstone (vfsd.active.lww)
            kind, value = TOMBSTONE, b""
            rec = (key, hlc, origin, kind, value, at)
        local = self.store.version(key)
        local_tomb = None
        if local is None:
            local_tomb = self.tombstones.get(key)
            if local_tomb is not None:
                local = (local_tomb[0], local_tomb[1])
            elif self.collected:
                gone = self.collected.get(key)
                if gone is not None and (hlc < gone[0] or (hlc == gone[0] and origin <= gone[1])):
                    self.count("records_already_collected")  # the tombstone we forgot, or older
                    return False
        if local is not None:
            lh, lo = local
            if hlc < lh or (hlc == lh and origin < lo):
                return False
            if hlc == lh and origin == lo:  # the same write: break the tie on the whole record
                mine = self.record(key)
                if mine is None or expiry_of(rec, mine) or rank(rec) <= rank(effective(mine, now_ms)):
                    return False  # (our entry expires at its deadline on our own clock)
        kh = crc32(key)
        h = version_hash(kh, hlc, origin)  # (the common record takes apply_all's bulk lane, inlined)
        if local is not None:
            self.digest.xor(kh, h ^ version_hash(kh, lh, lo))
        else:
            if self.collected:
                self.collected.pop(key, None)
            self.digest.add(key, kh, h)
        if tomb:
            if local_tomb is None and local is not None:
                self.store.remove(key)
            self.tombstones.put(key, hlc, origin, at, self.hlc.last)
        else:
            if local_tomb is not None:
                self.tombstones.pop(key)
            self.store.install(key, kind, value, hlc, origin, at)
        if relay and not self.fresh:
            self.queue.push(key, None)
        return True

    def take_records(self, transmits: int, budget_bytes: int, fresh_only: bool = False) -> list[Record]:
        """Queued paths' current records for one gossip message (counted ``transmits`` times)."""
        found: dict[bytes, Record] = {}

        read = self.store.read
        tomb = self.tombstones.record

        def size_of(key: bytes, _: None) -> int | None:
            r = read(key)  # self.record(key), inlined
            rec = (key, r[2], r[3], r[0], r[1], r[4]) if r is not None else tomb(key)
            if rec is None:
                return None
            found[key] = rec
            return len(key) + len(rec[4]) + RECORD_OVERHEAD

        limit = self.profile.retransmit_limit(self.membership.alive_count())
        taken = self.queue.take(limit, budget_bytes, size_of, fresh_only=fresh_only, transmits=transmits)
        return [found[key] for key, _ in taken]

    def take_wire(self, transmits: int, budget_bytes: int,
                  fresh_only: bool = False) -> tuple[list[str], list[list[Any]]]:
        """``take_records``, in the form a message carries them (``vfsd.active.wire``'s
        ``records_out``: the origins table and the records in columns)."""
        limit = self.profile.retransmit_limit(self.membership.alive_count())
        if fresh_only and transmits >= limit:
            return self._take_fresh_final(limit, budget_bytes)
        return records_out(self.take_records(transmits, budget_bytes, fresh_only))

    def _take_fresh_final(self, limit: int, budget_bytes: int) -> tuple[list[str], list[list[Any]]]:
        """``take_wire`` of a push that reaches every member (a small cluster's, under a stream
        of writes: every push): ``TransmitQueue.take(fresh_only=True)`` with every item taken
        done, in one pass, reading each record once and building its row at once."""
        queue = self.queue
        tiers = queue.tiers
        tier, where = tiers[0], queue.where
        read = self.store.read
        tomb = self.tombstones.record
        kept = self._reads or {}  # what the fold just before read (``fold(keep_reads=True)``)
        self._reads = None
        if kept and len(kept) == len(where) == len(tier):
            whole = _columns_if_all_fit(kept, tier, budget_bytes)
            if whole is not None:
                tier.clear()
                where.clear()
                return whole
        origins: dict[str, int] = {}
        rows: list[tuple[bytes, int, int, int, bytes, int]] = []
        done: list[bytes] = []
        used = misfits = 0
        for key in reversed(tier):  # never sent: newest first, as take does
            r = kept.get(key)
            if r is None:
                r = read(key)  # self.record(key), inlined
            if r is not None:
                kind, value, hlc, origin, at = r
            else:
                rec = tomb(key)
                if rec is None:  # deleted and collected meanwhile
                    done.append(key)
                    continue
                _, hlc, origin, kind, value, at = rec
            size = len(key) + len(value) + RECORD_OVERHEAD
            if used + size > budget_bytes and rows:
                misfits += 1  # (take's rule: try a few smaller ones, then stop)
                if misfits >= MAX_MISFITS:
                    break
                continue
            used += size
            o = origins.get(origin)
            if o is None:
                o = origins[origin] = len(origins)
            rows.append((key, hlc, o, kind, value, at))
            done.append(key)
            if used >= budget_bytes:
                break
        if len(done) == len(tier) == len(where):  # all there was (the common case): no per-key deletes
            tier.clear()
            where.clear()
        else:
            for key in done:
                del tier[key]
                del where[key]
            for t in range(limit, len(tiers)):  # as take: what a shrunk limit left over is done
                for key in tiers[t]:
                    del where[key]
                tiers[t].clear()
        return list(origins), columns_of(rows)

    # -- anti-entropy: the puller --------------------------------------------------------------

    def pull(self, peer: str | None, now_ms: int, *, address: str | None = None, want_rows: bool = True,
             yields_since: int | None = None) -> None:
        """Start a pull from ``peer`` (a member name) or from ``address`` (a seed not known by name).

        At most one pull per peer and ``MAX_PULLS`` in all; a pull that has heard nothing for
        a probe interval (a request or a reply was lost) makes way for a new one. With
        ``yields_since``, the pull gives way to a stream of writes that begins while it runs
        (``_pull_for``), and leaves ``last_sync_ms`` at that value when it does.
        """
        if self.only_from is not None and peer != self.only_from:
            return
        stale = now_ms - self.profile.probe_interval_ms
        for sid, p in list(self.pulls.items()):
            if p.peer == peer and p.address == address or len(self.pulls) >= MAX_PULLS:
                if p.active_ms > stale:
                    if p.peer == peer and p.address == address:
                        return
                    continue
                del self.pulls[sid]
                self.count("pulls_replaced")
        if len(self.pulls) >= MAX_PULLS:
            return
        self._sid = (self._sid + 1) & 0xFFFFFFFF
        # Unanswered, a pull is given up soon (a seed or member that is not there); once
        # answered, it may idle up to sync_timeout_ms between replies.
        timeout = min(2 * self.profile.probe_interval_ms, self.profile.sync_timeout_ms)
        pull = _Pull(self._sid, peer, address, want_rows, now_ms, timeout)
        pull.yields_since = yields_since
        pull.stream_at = self.stream_records
        self.pulls[pull.sid] = pull
        self.count("pulls_started")
        me = self.membership.me
        msg = SyncOpen(pull.sid, self.digest.root(), len(self.digest), me.row(), want_rows)
        if peer is not None:
            self.out.append((peer, msg))
        else:
            assert address is not None
            self.out_by_address.append((address, msg))

    def cancel_pulls(self, peer: str) -> None:
        """Give up the pulls from ``peer`` (it went away, or came back as someone new)."""
        for sid in [sid for sid, p in self.pulls.items() if p.peer == peer]:
            del self.pulls[sid]
            self.count("pulls_cancelled")

    def _pull_for(self, sender: str, sid: int, boot: int, now_ms: int) -> _Pull | None:
        pull = self.pulls.get(sid)
        if pull is None:
            self.count("pull_unknown_session")
            return None
        if pull.peer is None:  # a seed answered: now we know its name
            pull.peer = sender
            pull.boot = boot
        if pull.peer != sender or (pull.boot and pull.boot != boot):
            self.count("pull_wrong_peer")
            return None
        pull.boot = boot
        pull.active_ms = now_ms
        if pull.yields_since is not None and self.stream_records - pull.stream_at >= YIELD_RECORDS:
            # A stream of writes began since this pull started: what it would find now is mostly
            # in flight. It is given up, as if never made (``tick``).
            del self.pulls[sid]
            self.last_sync_ms = pull.yields_since
            self.count("pulls_yielded")
            return None
        return pull

    def on_sync_reply(self, sender: str, boot: int, msg: SyncReply, now_ms: int) -> None:
        pull = self._pull_for(sender, msg.sid, boot, now_ms)
        if pull is None or pull.t >= 0:
            return
        pull.t = msg.t
        pull.rows = list(msg.rows)
        pull.deadline_ms = now_ms + self.profile.sync_timeout_ms
        if self.fresh:
            self._first_contact(now_ms)
        if msg.nodes is not None:
            self._compare(pull, 1, {0}, msg.nodes)
        self._go_on(pull, now_ms)

    def on_sync_tree(self, sender: str, boot: int, msg: SyncTree, now_ms: int) -> None:
        pull = self._pull_for(sender, msg.sid, boot, now_ms)
        if pull is None or pull.t < 0:
            return
        pull.pending -= 1
        pull.deadline_ms = now_ms + self.profile.sync_timeout_ms
        self._compare(pull, msg.level, set(msg.parents), msg.nodes)
        self._go_on(pull, now_ms)

    def _compare(self, pull: _Pull, level: int, parents: set[int], theirs: Iterable[Node]) -> None:
        """Act on the responder's nodes at ``level`` (children of ``parents``): pull what differs."""
        mine: dict[int, tuple[int, int]] = {}
        for parent in parents:
            for idx, h, count in self.digest.children(level - 1, parent):
                mine[idx] = (h, count)
        descend: list[int] = []
        for idx, h, count in theirs:
            if idx >> 4 not in parents or count == 0:
                continue
            my_hash, my_count = mine.get(idx, (0, 0))
            if my_hash == h and my_count == count:
                continue
            if level == DEPTH or my_count <= self.profile.sync_list_max:
                pull.todo.append((level, idx, span(level, idx)[0], b""))
            else:
                descend.append(idx)
        for at in range(0, len(descend), DESCEND_MAX):  # each answer stays well inside a message
            pull.todo.append((level, descend[at:at + DESCEND_MAX]))

    def _send_more(self, pull: _Pull) -> None:
        """Send the pull's waiting requests while fewer than ``PULL_WINDOW`` are outstanding.
        A version list is made when it is sent: it reads the digest as it is then."""
        todo = pull.todo
        while todo and pull.pending < PULL_WINDOW:
            request = todo.popleft()
            pull.pending += 1
            if len(request) == 2:
                level, idxs = request
                self.out.append((pull.peer, SyncDescend(pull.sid, level, idxs)))  # type: ignore[arg-type]
            else:
                self._ask_versions(pull, *request)  # type: ignore[arg-type]

    def _ask_versions(self, pull: _Pull, level: int, idx: int, from_leaf: int, after: bytes) -> None:
        versions: list[Version] = []
        for leaf in self.digest.leaves_under(level, idx, from_leaf):
            keys = self.digest.bucket(leaf)
            if leaf == from_leaf and after:
                keys = [k for k in keys if k > after]
            for key in keys:
                v = self._version(key)
                if v is not None:
                    versions.append((key, v[0], v[1], v[2]))
        self.out.append((pull.peer, SyncVersions(pull.sid, level, idx, from_leaf, after, versions)))  # type: ignore[arg-type]

    def on_sync_records(self, sender: str, boot: int, msg: SyncRecords, now_ms: int) -> None:
        pull = self._pull_for(sender, msg.sid, boot, now_ms)
        if pull is None or pull.t < 0:
            return
        pull.deadline_ms = now_ms + self.profile.sync_timeout_ms
        pull.records += self.apply_all(msg.records, now_ms, relay=False)
        if msg.want:
            self._push_back(sender, msg.want)
        pull.pending -= 1
        if msg.resume is not None:  # the rest of this range first: it goes on where it was cut
            pull.todo.appendleft(msg.resume)
        self._go_on(pull, now_ms)

    def _push_back(self, peer: str, keys: Iterable[bytes]) -> None:
        batch: list[Record] = []
        size = 0
        budget = self.profile.max_message_bytes - MESSAGE_SLACK
        for key in keys:
            rec = self.record(key)
            if rec is None:
                continue
            rec_size = len(key) + len(rec[4]) + RECORD_OVERHEAD
            if batch and size + rec_size > budget:
                self.out.append((peer, Records(batch)))
                batch, size = [], 0
            batch.append(rec)
            size += rec_size
        if batch:
            self.out.append((peer, Records(batch)))

    def _go_on(self, pull: _Pull, now_ms: int) -> None:
        """After each answer to a pull: send what waits its turn, or end the pull when all is answered."""
        self._send_more(pull)
        if pull.pending > 0 or pull.todo or pull.t < 0:
            return
        del self.pulls[pull.sid]
        peer = pull.peer
        assert peer is not None
        self.marks.dominate(peer, pull.boot, pull.t)
        if pull.started_ms > self.last_sync_ms:  # (a join's or a repair's pull counts as well)
            self.last_sync_ms = pull.started_ms
        for name, _address, boot, _inc, _state, seen in pull.rows:
            if seen and name != self.name:
                self.marks.dominate(name, boot, seen)
        self.count("pulls_completed")
        self.count("pull_records", pull.records)

    def _first_contact(self, now_ms: int) -> None:
        """Our first pull was answered: publish what we wrote while alone, with revisions from now.

        Entries written while fresh get new revisions (the clock has just merged the
        responder's, so they are newer than anything the cluster has collected); deletions
        and expiries of such entries happened only here, so their tombstones are dropped.
        """
        self.fresh = False
        since = self.fresh_since
        restamped = dropped = 0
        for keys in list(self.digest.buckets.values()):
            for key in list(keys):
                v = self.store.version(key)
                if v is not None:
                    if v[1] == self.name and v[0] >= since:
                        new = self.hlc.now(now_ms)
                        self.store.restamp(key, new)
                        kh = crc32(key)
                        self.digest.xor(kh, version_hash(kh, new, self.name) ^ version_hash(kh, v[0], v[1]))
                        self.queue.push(key, None)
                        restamped += 1
                    continue
                tomb = self.tombstones.get(key)
                if tomb is not None and tomb[1] == self.name and tomb[3] >= since:
                    self.tombstones.pop(key)
                    kh = crc32(key)
                    self.digest.remove(key, kh, version_hash(kh, tomb[0], tomb[1]))
                    dropped += 1
        self.count("restamped", restamped)
        self.count("fresh_tombstones_dropped", dropped)

    # -- anti-entropy: the responder ---------------------------------------------------------

    def on_sync_open(self, sender: str, msg: SyncOpen, now_ms: int) -> None:
        t = self.hlc.now(now_ms)  # taken before anything is read: the pull dominates us as of t
        rows: list[Row] = []
        if msg.want_rows:
            window, self._rows_at = self.membership.rows(self.profile.max_rows, self._rows_at)
            seen = self.marks.seen
            rows = [(n, a, b, i, s, seen(n, b)) for n, a, b, i, s, _ in window]
        if msg.root == self.digest.root() and msg.count == len(self.digest):
            nodes = None
        else:
            nodes = self.digest.children(0, 0)
        self.count("pulls_served")
        self.out.append((sender, SyncReply(msg.sid, t, rows, nodes)))

    def on_sync_descend(self, sender: str, msg: SyncDescend, now_ms: int) -> None:
        nodes: list[Node] = []
        for idx in msg.idxs:
            nodes.extend(self.digest.children(msg.level, idx))
        self.out.append((sender, SyncTree(msg.sid, msg.level + 1, list(msg.idxs), nodes)))

    def on_sync_versions(self, sender: str, msg: SyncVersions, now_ms: int) -> None:
        first, end = span(msg.level, msg.idx)
        if not first <= msg.from_leaf < end:
            self.count("refused_bad_range")
            return
        theirs: dict[bytes, Version] = {}
        for v in msg.versions:
            leaf = leaf_of(v[0])
            if first <= leaf < end:
                theirs[v[0]] = v
        records: list[Record] = []
        want: list[bytes] = []
        budget = self.profile.max_message_bytes - MESSAGE_SLACK
        size = 0
        resume: tuple[int, int, int, bytes] | None = None
        for leaf in self.digest.leaves_under(msg.level, msg.idx, msg.from_leaf):
            keys = sorted(self.digest.bucket(leaf))
            if leaf == msg.from_leaf and msg.after:
                keys = [k for k in keys if k > msg.after]
            done_in_leaf = b""
            for key in keys:
                mine = self.record(key)
                if mine is None:
                    continue
                other = theirs.get(key)
                if other is None or _beats(mine, other, now_ms):
                    rec_size = len(key) + len(mine[4]) + RECORD_OVERHEAD
                    if records and size + rec_size > budget:
                        resume = (msg.level, msg.idx, leaf, done_in_leaf)
                        break
                    records.append(mine)
                    size += rec_size
                elif _beaten(mine, other, now_ms):
                    want.append(key)
                theirs.pop(key, None)
                done_in_leaf = key
            if resume is not None:
                break
        # What they hold and we lack entirely, in the part of the range this answer covers.
        for key in theirs:
            if resume is None or (leaf_of(key), key) <= (resume[2], resume[3]):
                want.append(key)
        self.count("records_served", len(records))
        self.out.append((sender, SyncRecords(msg.sid, records, want, resume)))

    # -- time -------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        for sid in [s for s, p in self.pulls.items() if now_ms >= p.deadline_ms]:
            del self.pulls[sid]
            self.count("pull_timeouts")
        if now_ms >= self.next_sync_ms:
            interval = self.profile.sync_interval_for(self.membership.alive_count())
            self.next_sync_ms = now_ms + interval
            pushed, self._stream_at_sync = self.stream_records - self._stream_at_sync, self.stream_records
            if (self.only_from is None and pushed >= self.profile.sync_busy_records
                    and now_ms - self.last_sync_ms < self.profile.sync_busy_max_ms):
                # A stream of pushes: a comparison now would mostly find records still in flight
                # (and list thousands of versions to learn it). Repair waits, up to sync_busy_max_ms.
                self.count("pulls_deferred")
            else:
                since, self.last_sync_ms = self.last_sync_ms, now_ms
                # After a reset, only the member that told us to: until it answers, we wait for it.
                peers = [self.only_from] if self.only_from is not None else self.membership.sample(1)
                # Started in a quiet interval, a pull gives way to a stream that begins while it
                # runs, and the next ticks defer as above. One started because the deferral
                # reached its bound does not: it runs to the end.
                quiet = self.only_from is None and pushed < self.profile.sync_busy_records
                if peers:
                    self.pull(peers[0], now_ms, want_rows=True, yields_since=since if quiet else None)
        if now_ms >= self.next_gc_ms and (self.tombstones or self._collected_queue):
            self.next_gc_ms = now_ms + self.profile.sync_interval_ms
            self.collect(now_ms)

    def next_deadline_ms(self) -> int:
        t = self.next_sync_ms
        if (self.tombstones or self._collected_queue) and self.next_gc_ms < t:
            t = self.next_gc_ms
        for p in self.pulls.values():
            if p.deadline_ms < t:
                t = p.deadline_ms
        return t

    def collect(self, now_ms: int) -> int:
        """Forget the tombstones every member has acknowledged (or older than the horizon)."""
        queue = self._collected_queue
        while queue and queue[0][0] <= now_ms:
            _, key = queue.popleft()
            if key in self.collected and key not in self.tombstones and self.store.version(key) is None:
                del self.collected[key]
        if not self.tombstones:
            return 0
        floor = self.marks.floor(self.membership.identities())
        if floor is None:
            floor = 1 << 63  # alone: nobody can hold a stale copy
        horizon = max(0, now_ms - self.profile.horizon_ms) << LOGICAL_BITS
        collected = 0
        remember, until = self.collected, now_ms + self.profile.left_grace_ms
        for key, t, by_horizon in self.tombstones.collectable(floor, horizon):
            kh = crc32(key)
            self.digest.remove(key, kh, version_hash(kh, t[0], t[1]))
            if t[0] > self.collected_max:
                self.collected_max = t[0]
            remember[key] = (t[0], t[1])
            self._collected_queue.append((until, key))
            collected += 1
            if by_horizon:
                self.count("tombstones_collected_by_horizon")
        self.count("tombstones_collected", collected)
        return collected

    def check(self) -> list[str]:
        """Recompute the digest from the store and the tombstones; what disagrees (empty when the
        hooks were called right). For tests and for a shell that suspects its own bookkeeping."""
        self.fold()
        fresh = Digest()
        for key in self.store.keys():
            v = self.store.version(key)
            if v is not None:
                kh = crc32(key)
                fresh.add(key, kh, version_hash(kh, v[0], v[1]))
        for key in self.tombstones.keys():
            t = self.tombstones.get(key)
            assert t is not None
            if self.store.version(key) is not None:
                return [f"{key!r}: both an entry and a tombstone"]
            kh = crc32(key)
            fresh.add(key, kh, version_hash(kh, t[0], t[1]))
        problems = []
        if fresh.hashes != self.digest.hashes or fresh.counts != self.digest.counts:
            problems.append(f"digest root {self.digest.root():#x} != recomputed {fresh.root():#x}")
        held = {k for b in self.digest.buckets.values() for k in b}
        expected = {k for b in fresh.buckets.values() for k in b}
        if held != expected:
            problems.append(f"bucket index: {len(held - expected)} extra, {len(expected - held)} missing keys")
        return problems

    def reset(self, floor: int) -> int:
        """Drop every record not newer than ``floor`` and start over fresh (see the module docstring)."""
        self.fold()
        dropped = 0
        for keys in list(self.digest.buckets.values()):
            for key in list(keys):
                v = self._version(key)
                if v is None or v[0] > floor:
                    continue
                kh = crc32(key)
                if v[2]:
                    self.tombstones.pop(key)
                else:
                    self.store.remove(key)
                self.digest.remove(key, kh, version_hash(kh, v[0], v[1]))
                dropped += 1
        self.marks.clear()
        self.pulls.clear()
        self.queue.clear()
        self.collected.clear()
        self._collected_queue.clear()
        self.fresh = True
        self.fresh_since = self.hlc.last
        self.collected_max = max(self.collected_max, floor)
        self.count("resets")
        self.count("reset_dropped", dropped)
        return dropped


def _columns_if_all_fit(kept: dict[bytes, tuple[int, bytes, int, str, int] | None], tier: dict[bytes, None],
                       budget_bytes: int) -> tuple[list[str], list[list[Any]]] | None:
    """``_take_fresh_final``'s answer when every queued key was read by the fold (``kept``)
    and all of them fit the budget: all, newest first, built column by column rather than
    record by record. None when not (a key not read, or removed since, or too much)."""
    keys = list(reversed(tier))
    reads = list(map(kept.get, keys))
    if None in reads:
        return None
    kinds, values, hlcs, origin_of, deadlines = zip(*reads)
    if sum(map(len, keys)) + sum(map(len, values)) + RECORD_OVERHEAD * len(keys) > budget_bytes:
        return None
    origins = list(dict.fromkeys(origin_of))  # in order of first use, as the record loop numbers them
    if len(origins) == 1:
        indexes = [0] * len(keys)
    else:
        index = {origin: i for i, origin in enumerate(origins)}
        indexes = list(map(index.__getitem__, origin_of))
    return origins, [keys, list(hlcs), indexes, list(kinds), list(values), list(deadlines)]


def _beats(mine: Record, other: Version, now_ms: int) -> bool:
    """Whether our record is a later write than their listed version (one version is one
    write: an entry and its expiry tombstone are the same, and each side expires it itself)."""
    hlc, origin = mine[HLC_], mine[ORIGIN]
    return hlc > other[1] or (hlc == other[1] and origin > other[2])


def _beaten(mine: Record, other: Version, now_ms: int) -> bool:
    hlc, origin = mine[HLC_], mine[ORIGIN]
    return other[1] > hlc or (other[1] == hlc and other[2] > origin)

