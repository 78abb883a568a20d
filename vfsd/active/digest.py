"""The anti-entropy digest: a fixed hash tree over the versions a replica holds.

Theory of operation
-------------------
Each record (live entry or tombstone) contributes a 64-bit hash of its *version*,
``(key, hlc, origin)`` — not of its value, which the replica already names
uniquely by version, and not of its liveness, so an entry that expires keeps its
hash (see ``vfsd.active.lww``). A key falls in one of ``LEAVES`` = 16**4 = 65536
buckets by a CRC-32 of its bytes; the tree has ``DEPTH`` + 1 levels with fan-out 16
(1, 16, 256, 4096, 65536 nodes), and a node's hash is the XOR of the record
hashes below it, with a count of the records below it beside. XOR makes every
update O(DEPTH): a write XORs ``old ^ new`` into one node per level, which is the
whole cost of a write — and that deferred: a write notes the change for its bucket,
and the levels take it when anti-entropy next reads the tree (measured by ``vfsd sim
gossip --cost``). Two replicas holding the same versions have equal trees, whatever
order they got them in; a difference shows as unequal hashes along the path from the
root to the bucket, so anti-entropy (``vfsd.active.gossip``) compares a root,
descends only into unequal children, and exchanges versions only for the buckets
that differ (the level-by-level exchange Riak's hashtrees use).

Memory: the tree is sparse (dicts holding non-zero nodes only), plus, per bucket,
the list of its keys — about 10 bytes per key on top of the keyspace, and no copy
of any value; from ``DENSE_AT`` keys on, a fixed 512 KiB array of pending bucket
changes besides (``Digest``). A million keys fill every bucket with about 15 keys, so
a bucket's version list is a few hundred bytes.

Hashes are stable across processes, machines and versions: a key's bucket is a CRC-32
of its bytes, and a version's hash is CPython's hash of a tuple of three integers
(``version_hash``), which no hash seed touches (only ``str`` and ``bytes`` hashes are
randomized) and which every 64-bit CPython since 3.8 computes alike. The algorithm is
written out in ``reference_version_hash``; the module checks the interpreter against it
when imported, so a node whose ``hash`` differs refuses to start rather than disagree
with every peer's digest.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterator, MutableSequence
from zlib import crc32

FANOUT_BITS = 4
FANOUT = 1 << FANOUT_BITS
DEPTH = 4
LEAF_BITS = FANOUT_BITS * DEPTH
LEAVES = 1 << LEAF_BITS
LEAF_MASK = LEAVES - 1
MASK64 = (1 << 64) - 1
#: Keys held from which a digest keeps its pending bucket changes in a dense array (see ``Digest``).
DENSE_AT = LEAVES // 8
#: Buckets per slice when a dense pending array is scanned for changes (a slice of zeros is skipped whole).
SCAN_SLICE = 1024
_ZERO_SLICE = array("Q", bytes(8 * SCAN_SLICE))
_ZERO_LEAVES = bytes(8 * LEAVES)

#: origin -> crc32(origin): ``origin_hash``'s cache (the hot paths read it inline, and call
#: ``origin_hash`` on a miss).
ORIGIN_HASHES: dict[str, int] = {}


def key_hash(key: bytes) -> int:
    return crc32(key)


def leaf_of(key: bytes) -> int:
    return crc32(key) & LEAF_MASK


def origin_hash(origin: str) -> int:
    h = ORIGIN_HASHES.get(origin)
    if h is None:
        if len(ORIGIN_HASHES) > 65536:  # a bounded cache: origins are node names, few
            ORIGIN_HASHES.clear()
        h = ORIGIN_HASHES[origin] = crc32(origin.encode())
    return h


def version_hash(kh: int, hlc: int, origin: str) -> int:
    """The hash of one record's version, given ``kh = key_hash(key)``. Never 0 in practice.

    ``hash((kh, hlc, crc32(origin)))`` as an unsigned 64-bit number: the builtin computes it
    in C (this runs twice per write, on the writer and on every replica, where the same mix
    written in Python costs three times as much), and ``reference_version_hash`` spells it
    out. Not a cryptographic hash (peers are authenticated; a digest only has to tell
    honest replicas apart), but not separable either: its rounds of multiply-and-rotate mix
    the three numbers together, so swapping versions between two keys changes the XOR of
    their hashes. The hot loops of ``vfsd.active.gossip`` inline it."""
    return hash((kh, hlc, origin_hash(origin))) & MASK64


_M61 = (1 << 61) - 1
_XXPRIME_1 = 11400714785074694791
_XXPRIME_2 = 14029467366897019727
_XXPRIME_5 = 2870177450012600261


def reference_version_hash(kh: int, hlc: int, oh: int) -> int:
    """``version_hash`` with ``oh = origin_hash(origin)``, step by step (the specification).

    CPython's hash of a tuple: an xxHash-style accumulator taking each item's hash (for a
    non-negative int, the int modulo the Mersenne prime 2**61 - 1) by multiply, rotate
    and multiply; then the tuple's length. A port to another language computes this."""
    acc = _XXPRIME_5
    for item in (kh, hlc, oh):
        acc = (acc + (item % _M61) * _XXPRIME_2) & MASK64
        acc = ((acc << 31) | (acc >> 33)) & MASK64
        acc = (acc * _XXPRIME_1) & MASK64
    acc = (acc + (3 ^ _XXPRIME_5 ^ 3527539)) & MASK64
    return 1546275796 if acc == MASK64 else acc


def _check_interpreter() -> None:
    for kh, hlc, oh in ((0, 0, 0), (0xFFFFFFFF, MASK64, 0xFFFFFFFF), (0x12345678, 1 << 40, 0x9ABCDEF0)):
        if hash((kh, hlc, oh)) & MASK64 != reference_version_hash(kh, hlc, oh):
            raise ImportError("this Python hashes tuples of integers unlike 64-bit CPython 3.8 and later: "
                              "its anti-entropy digests would match no other vfsd node's")


_check_interpreter()


class Digest:
    """The hash tree plus the bucket index (bucket -> keys).

    A write leaves its change to its bucket and the bucket's ancestors *pending*, folded in
    when anti-entropy next reads the tree (``settle``): a path a collector rewrites a
    thousand times between two pulls costs one update per level, not a thousand, and the
    write path pays one XOR: ``_pending[leaf] ^= delta``, which the hot loops of
    ``vfsd.active.gossip`` inline. So do the counts: a key added or removed marks its bucket
    (``_resized``), and the settle counts the marked buckets' lists and carries the
    differences up, instead of five count updates per new key.

    ``_pending`` is a ``defaultdict(int)`` while the digest is small, and from ``DENSE_AT``
    keys on (switched at a settle, when nothing is pending) an ``array('Q')`` of one word per
    bucket: 512 KiB, against the several MiB a dict of 65536 buckets and their int objects
    spread over, so that a write touches one cache line there instead of three or four (a
    node under a stream of writes to many keys spends most of each write waiting on memory).
    A settle then scans the array a slice at a time, skipping slices of zeros.
    """

    __slots__ = ("_hashes", "_counts", "buckets", "_pending", "_resized", "_size")

    def __init__(self) -> None:
        #: _hashes[level][index]; level 0 is the root, level DEPTH the buckets. Zero nodes are absent.
        self._hashes: list[dict[int, int]] = [{} for _ in range(DEPTH + 1)]
        self._counts: list[dict[int, int]] = [{} for _ in range(DEPTH + 1)]
        self.buckets: dict[int, list[bytes]] = {}
        #: bucket -> XOR not yet applied to the bucket and the levels above it.
        self._pending: MutableSequence[int] = defaultdict(int)  # type: ignore[assignment]
        #: Buckets that gained or lost keys since the last settle (their counts, and the levels
        #: above, are brought up to date from the bucket lists then).
        self._resized: set[int] = set()
        self._size = 0

    @property
    def hashes(self) -> list[dict[int, int]]:
        self.settle()
        return self._hashes

    @property
    def counts(self) -> list[dict[int, int]]:
        """counts[level][index]: the records below each node (zero nodes absent)."""
        self.settle()
        return self._counts

    def settle(self) -> None:
        """Fold the pending bucket changes into the buckets and the levels above.

        Level by level: the changes under one parent are XORed together before it takes them,
        so a parent of many changed buckets is updated once (a pull after a busy interval finds
        most of the 65536 buckets changed: 1 + 1/16 + ... updates per bucket instead of 5)."""
        if self._resized:
            self._settle_counts()
        pending = self._pending
        dense = self._size >= DENSE_AT
        deltas = _changes(pending) if type(pending) is array else pending
        if deltas or (type(pending) is array) != dense:  # taken, or the wrong form for the size now
            self._pending = array("Q", _ZERO_LEAVES) if dense else defaultdict(int)
        levels = self._hashes
        for level in range(DEPTH, -1, -1):
            if not deltas:
                return
            nodes = levels[level]
            up: dict[int, int] = {}
            for idx, delta in deltas.items():
                if not delta:
                    continue
                value = nodes.get(idx, 0) ^ delta
                if value:
                    nodes[idx] = value
                else:
                    del nodes[idx]
                if level:
                    parent = idx >> FANOUT_BITS
                    up[parent] = up.get(parent, 0) ^ delta
            deltas = up

    def _settle_counts(self) -> None:
        """Bring the counts of the resized buckets, and of the levels above, up to date."""
        resized, self._resized = self._resized, set()
        counts = self._counts
        nodes = counts[DEPTH]
        buckets = self.buckets
        diffs: dict[int, int] = {}
        for leaf in resized:
            bucket = buckets.get(leaf)
            n = len(bucket) if bucket is not None else 0
            diff = n - nodes.get(leaf, 0)
            if diff:
                diffs[leaf] = diff
                if n:
                    nodes[leaf] = n
                else:
                    del nodes[leaf]
        for level in range(DEPTH - 1, -1, -1):
            up: dict[int, int] = {}
            for idx, diff in diffs.items():
                parent = idx >> FANOUT_BITS
                up[parent] = up.get(parent, 0) + diff
            nodes = counts[level]
            for idx, diff in up.items():
                n = nodes.get(idx, 0) + diff
                if n:
                    nodes[idx] = n
                elif idx in nodes:
                    del nodes[idx]
            diffs = up

    # -- updates (the local write path calls these) --------------------------------

    def xor(self, kh: int, delta: int) -> None:
        """Replace one version by another at a key already held: XOR ``old ^ new``."""
        self._pending[kh & LEAF_MASK] ^= delta

    def add(self, key: bytes, kh: int, h: int) -> None:
        """A key not held before, with version hash ``h``."""
        leaf = kh & LEAF_MASK
        bucket = self.buckets.get(leaf)
        if bucket is None:
            self.buckets[leaf] = [key]
        else:
            bucket.append(key)
        self._resized.add(leaf)
        self._size += 1
        self._pending[leaf] ^= h

    def remove(self, key: bytes, kh: int, h: int) -> None:
        """A key no longer held at all (a tombstone collected, or a reset)."""
        leaf = kh & LEAF_MASK
        bucket = self.buckets[leaf]
        bucket.remove(key)
        if not bucket:
            del self.buckets[leaf]
        self._resized.add(leaf)
        self._size -= 1
        self._pending[leaf] ^= h

    def clear(self) -> None:
        for level in range(DEPTH + 1):
            self._hashes[level].clear()
            self._counts[level].clear()
        self.buckets.clear()
        self._pending = defaultdict(int)
        self._resized = set()
        self._size = 0

    # -- reads (anti-entropy) --------------------------------------------------------

    def root(self) -> int:
        self.settle()
        return self._hashes[0].get(0, 0)

    def __len__(self) -> int:
        return self._size

    def node(self, level: int, idx: int) -> tuple[int, int]:
        """``(hash, count)`` of one node."""
        self.settle()
        return self._hashes[level].get(idx, 0), self._counts[level].get(idx, 0)

    def children(self, level: int, idx: int) -> list[tuple[int, int, int]]:
        """``(child index, hash, count)`` of the non-empty children of node ``(level, idx)``."""
        self.settle()
        hashes, counts = self._hashes[level + 1], self._counts[level + 1]
        first = idx << FANOUT_BITS
        out = []
        for child in range(first, first + FANOUT):
            count = counts.get(child)
            if count:
                out.append((child, hashes.get(child, 0), count))
        return out

    def leaves_under(self, level: int, idx: int, from_leaf: int = 0) -> Iterator[int]:
        """The non-empty buckets under node ``(level, idx)``, in order, from ``from_leaf`` on."""
        shift = FANOUT_BITS * (DEPTH - level)
        first, end = idx << shift, (idx + 1) << shift
        start = max(first, from_leaf)
        buckets = self.buckets
        if end - start > 4 * len(buckets):  # sparse: walk the buckets we have instead
            yield from sorted(b for b in buckets if start <= b < end)
            return
        for leaf in range(start, end):
            if leaf in buckets:
                yield leaf

    def bucket(self, leaf: int) -> list[bytes]:
        return self.buckets.get(leaf, [])


def _changes(pending: MutableSequence[int]) -> dict[int, int]:
    """The non-zero entries of a dense pending array, by bucket."""
    out: dict[int, int] = {}
    for start in range(0, LEAVES, SCAN_SLICE):
        part = pending[start:start + SCAN_SLICE]
        if part != _ZERO_SLICE:
            for i, delta in enumerate(part, start):
                if delta:
                    out[i] = delta
    return out


def span(level: int, idx: int) -> tuple[int, int]:
    """The buckets ``[first, end)`` under node ``(level, idx)``."""
    shift = FANOUT_BITS * (DEPTH - level)
    return idx << shift, (idx + 1) << shift
