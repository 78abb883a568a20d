"""Last-writer-wins records, tombstones, and when a tombstone may be forgotten.

Theory of operation
-------------------
A **record** is what a replica holds for one path: a live entry
``(key, hlc, origin, kind, value, deadline_ms)`` or a tombstone
``(key, hlc, origin, TOMBSTONE, b"", deleted_at_ms)``. Its **version** is
``(hlc, origin)``: the hybrid-logical-clock revision of the write that made it
and the node that made it. A node never hands out one HLC value twice (the clock
is strictly increasing and resumes above its persisted high-water mark after a
restart), so a version names exactly one write.

**Order.** Records are totally ordered by ``rank``: version first, then, for the
same version, a tombstone above a live entry (a deletion wins every tie, so a tie
can never resurrect), then kind, value and deadline or deletion time (a tie between
two records of one version only arises from a bug or a hostile peer, and still must
not leave replicas disagreeing). ``merge(a, b) = max(a, b)`` under a total order is
commutative, associative and idempotent: any replicas that have seen the same
records hold the same state, whatever the order, grouping or duplication of
delivery (tests/test_lww.py checks this against a naive reference with hypothesis).

**Expiry.** A TTL deadline (absolute ms, as ``PEXPIREAT``) travels with the entry,
so every replica expires it at the same deadline of its own clock. An entry past
its deadline *is* a tombstone with the same version (``deleted_at`` = the
deadline): it ranks above the live form of that version and below every later
write, so a key re-created after expiring wins, and an older value can never
come back. Because the digest hashes versions only, expiring an entry leaves the
digest unchanged: replicas whose clocks disagree about whether the deadline has
passed do not look different to anti-entropy.

**Collection** (see ``Watermarks``). A tombstone must outlive every stale copy
of what it deleted, or repair brings the value back (Cassandra's
``gc_grace_seconds``; scylladb #8970). Replica ``n`` records, with each tombstone,
``acquired``: its own clock when the tombstone entered its state. Peer ``m``
*dominates* ``n``'s state as of HLC time ``t`` once ``m`` holds, for every key,
``n``'s record at ``t`` or a newer one — established by a completed
anti-entropy pull from ``n`` (``t`` = ``n``'s clock when it answered) or
transitively through a pull from a third replica that dominated ``n``. Every
message ``m`` sends ``n`` carries ``seen`` = how far ``m`` dominates ``n`` (a
per-member "seen up to" watermark). ``n`` collects a tombstone once every member
it knows of — alive, suspect, dead but not yet reaped, or left within the grace
period — has acknowledged a ``seen`` above the tombstone's ``acquired``. Three
details make this safe rather than merely likely:

* an acknowledgement counts only if the sender's membership view (a hash of the
  identities it knows) equals ours: a member we have not heard of yet cannot hold
  a stale copy behind our back, because everyone who could have sent it one would
  have told us about it;
* acknowledgements travel directly, on the sender's own connection, which is FIFO
  (the core also drops any data message overtaken by a later message from the same
  sender): every stale record ``m`` sent us before it saw the tombstone has been
  applied, and lost to the tombstone, before ``m``'s acknowledgement arrives;
* a restarted member is a new identity (its *boot*, the HLC at its start): the old
  identity holds nothing any more and stops counting after the grace period.

A member that stays dead blocks collection until it is reaped, ``horizon_ms`` after
it died; as a backstop, a tombstone older than the horizon is collected regardless
(counted). A reaped member that comes back holding its old state is not merged: it
is told to reset (``vfsd.active.gossip``), dropping every record not newer than the
highest version the cluster has collected, and then rejoins as a new, empty identity
through the ordinary repair path — so neither its stale values nor its stale deletes
win.

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Iterator

#: ``kind`` of a tombstone. Live kinds are the codec's (0 raw bytes, 1 document, ...).
TOMBSTONE = -1

#: A record: ``(key, hlc, origin, kind, value, at_ms)``; ``at_ms`` is the TTL deadline of
#: a live entry (0: none) or the deletion time of a tombstone.
Record = tuple[bytes, int, str, int, bytes, int]
KEY, HLC_, ORIGIN, KIND, VALUE, AT = range(6)
#: A record merged over the live entry it beat: ``(key, hlc, origin, replaced hlc, replaced origin)``;
#: the replaced origin is None (and its hlc 0) where the key held nothing.
Merged = tuple[bytes, int, str, int, str | None]


def is_tombstone(record: Record) -> bool:
    return record[KIND] == TOMBSTONE


def expired(record: Record, now_ms: int) -> bool:
    """A live record whose deadline has passed."""
    return record[KIND] != TOMBSTONE and 0 < record[AT] <= now_ms


def effective(record: Record, now_ms: int) -> Record:
    """The record as it stands at ``now_ms``: an expired entry is its tombstone (same version)."""
    if record[KIND] != TOMBSTONE and 0 < record[AT] <= now_ms:
        return (record[KEY], record[HLC_], record[ORIGIN], TOMBSTONE, b"", record[AT])
    return record


def rank(record: Record) -> tuple[int, str, bool, int, bytes, int]:
    """The total order of records for one key (see the module docstring)."""
    tomb = record[KIND] == TOMBSTONE
    if tomb:
        return (record[HLC_], record[ORIGIN], True, TOMBSTONE, b"", record[AT])
    return (record[HLC_], record[ORIGIN], False, record[KIND], record[VALUE], record[AT])


def expiry_of(tomb: Record, live: Record) -> bool:
    """Whether tombstone ``tomb`` is the expiry of live entry ``live`` (same write, deleted at its deadline)."""
    return (tomb[KIND] == TOMBSTONE and live[KIND] != TOMBSTONE and tomb[HLC_] == live[HLC_]
            and tomb[ORIGIN] == live[ORIGIN] and live[AT] > 0 and tomb[AT] == live[AT])


def merge(a: Record, b: Record, now_ms: int) -> Record:
    """The last writer of two records for one key, as seen at ``now_ms``.

    An entry and its own expiry tombstone are the same write: while the deadline is still
    ahead of ``now_ms`` (a replica whose clock runs behind the one that expired it) the
    live form stands, so every replica expires the entry at the deadline of its own clock.
    """
    if expiry_of(a, b) and b[AT] > now_ms:
        return b
    if expiry_of(b, a) and a[AT] > now_ms:
        return a
    ea, eb = effective(a, now_ms), effective(b, now_ms)
    return ea if rank(ea) >= rank(eb) else eb


def newer(hlc: int, origin: str, than_hlc: int, than_origin: str) -> bool:
    """Whether version ``(hlc, origin)`` is later than ``(than_hlc, than_origin)``."""
    return hlc > than_hlc or (hlc == than_hlc and origin > than_origin)


class Tombstones:
    """Deleted keys: ``key -> (hlc, origin, deleted_at_ms, acquired)``.

    ``acquired`` is this replica's own HLC when the tombstone entered its state; it
    only grows, so tombstones sit in a queue in the order they may be collected and a
    collection pass pops from the front (a replaced tombstone leaves a stale queue item,
    skipped when met).
    """

    __slots__ = ("_by_key", "_queue")

    def __init__(self) -> None:
        self._by_key: dict[bytes, tuple[int, str, int, int]] = {}
        self._queue: deque[tuple[int, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def get(self, key: bytes) -> tuple[int, str, int, int] | None:
        return self._by_key.get(key)

    def record(self, key: bytes) -> Record | None:
        t = self._by_key.get(key)
        return None if t is None else (key, t[0], t[1], TOMBSTONE, b"", t[2])

    def put(self, key: bytes, hlc: int, origin: str, deleted_at_ms: int, acquired: int) -> None:
        if self._queue and acquired < self._queue[-1][0]:
            raise AssertionError("tombstones must be acquired in clock order")
        self._by_key[key] = (hlc, origin, deleted_at_ms, acquired)
        self._queue.append((acquired, key))
        if len(self._queue) > 2 * len(self._by_key) + 1024:
            self._compact()

    def pop(self, key: bytes) -> tuple[int, str, int, int] | None:
        return self._by_key.pop(key, None)

    def held(self) -> Container[bytes]:
        """The deleted keys, as a live view (``key in held()`` as fast as a dict's)."""
        return self._by_key

    def keys(self) -> Iterator[bytes]:
        return iter(self._by_key)

    def collectable(self, floor: int, horizon_acquired: int) -> Iterator[tuple[bytes, tuple[int, str, int, int], bool]]:
        """Pop and yield ``(key, tombstone, by_horizon)`` for every tombstone acquired before
        ``floor`` (acknowledged by everyone) or before ``horizon_acquired`` (the backstop)."""
        queue, by_key = self._queue, self._by_key
        limit = max(floor, horizon_acquired)
        while queue and queue[0][0] < limit:
            acquired, key = queue.popleft()
            t = by_key.get(key)
            if t is None or t[3] != acquired:
                continue  # replaced or removed since
            del by_key[key]
            yield key, t, acquired >= floor

    def clear(self) -> None:
        self._by_key.clear()
        self._queue.clear()

    def _compact(self) -> None:
        live = sorted((t[3], key) for key, t in self._by_key.items())
        self._queue = deque(live)


class Watermarks:
    """How far this replica dominates each member's state, and how far each member has
    acknowledged dominating ours (the "seen up to" watermarks; module docstring).

    Both maps are keyed by member name and hold ``(boot, hlc)``: a value is about one
    identity, and a member that restarts (a new boot) starts again from nothing.
    """

    __slots__ = ("dominance", "acks")

    def __init__(self) -> None:
        #: name -> (boot, t): we hold that member's state as of its HLC time t, or newer.
        self.dominance: dict[str, tuple[int, int]] = {}
        #: name -> (boot, t): that member said it dominates our state as of our HLC time t.
        self.acks: dict[str, tuple[int, int]] = {}

    def dominate(self, name: str, boot: int, hlc: int) -> None:
        """Record that we dominate ``(name, boot)``'s state as of ``hlc`` (keeps the maximum)."""
        current = self.dominance.get(name)
        if current is None or current[0] < boot or (current[0] == boot and current[1] < hlc):
            self.dominance[name] = (boot, hlc)

    def seen(self, name: str, boot: int) -> int:
        """How far we dominate ``(name, boot)``: the ``seen`` we send it (0: not at all)."""
        current = self.dominance.get(name)
        return current[1] if current is not None and current[0] == boot else 0

    def acknowledge(self, name: str, boot: int, hlc: int) -> None:
        current = self.acks.get(name)
        if current is None or current[0] < boot or (current[0] == boot and current[1] < hlc):
            self.acks[name] = (boot, hlc)

    def floor(self, identities: Iterable[tuple[str, int]]) -> int | None:
        """The lowest acknowledgement among ``identities`` (None when there are none:
        a replica alone may collect at once). A member with no acknowledgement for its
        current boot holds the floor at 0."""
        low: int | None = None
        acks = self.acks
        for name, boot in identities:
            ack = acks.get(name)
            value = ack[1] if ack is not None and ack[0] == boot else 0
            if low is None or value < low:
                low = value
                if low == 0:
                    return 0
        return low

    def forget(self, name: str) -> None:
        self.dominance.pop(name, None)
        self.acks.pop(name, None)

    def clear(self) -> None:
        self.dominance.clear()
        self.acks.clear()
