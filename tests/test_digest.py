"""The anti-entropy digest (vfsd.active.digest): equal exactly when the versions are, kept
incrementally as a rebuild would be, a difference visible along one path from the root.
(Its cost on the write path: ``vfsd sim gossip --cost``.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from array import array
from zlib import crc32

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.active.digest import (
    DENSE_AT,
    DEPTH,
    FANOUT,
    LEAVES,
    Digest,
    leaf_of,
    origin_hash,
    reference_version_hash,
    span,
    version_hash,
)


def build(versions: dict[bytes, tuple[int, str]], order_seed: int) -> Digest:
    d = Digest()
    items = list(versions.items())
    random.Random(order_seed).shuffle(items)
    for key, (hlc, origin) in items:
        kh = crc32(key)
        d.add(key, kh, version_hash(kh, hlc, origin))
    return d


version_maps = st.dictionaries(
    st.binary(min_size=1, max_size=6).map(lambda b: b"/run/" + b),
    st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c"])),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(version_maps, version_maps)
def test_digests_are_equal_exactly_when_the_held_versions_are(a: dict, b: dict) -> None:
    da, db = build(a, 1), build(b, 2)
    assert (da.root() == db.root() and len(da) == len(db)) == (a == b)
    if a == b:
        assert da.hashes == db.hashes and da.counts == db.counts  # the whole tree, not just the root


@settings(max_examples=200, deadline=None)
@given(version_maps, st.lists(st.tuples(st.integers(0, 39), st.integers(0, 60), st.sampled_from(["a", "b"]),
                                        st.booleans()), max_size=60))
def test_incremental_updates_equal_a_digest_built_from_scratch(start: dict, changes: list) -> None:
    current = dict(start)
    d = build(current, 3)
    keys = sorted(current) or [b"/run/x"]
    for i, hlc, origin, drop in changes:
        key = keys[i % len(keys)] if i < 30 else b"/run/new%d" % i
        kh = crc32(key)
        old = current.get(key)
        if drop:
            if old is not None:
                d.remove(key, kh, version_hash(kh, *old))
                del current[key]
            continue
        new_h = version_hash(kh, hlc, origin)
        if old is None:
            d.add(key, kh, new_h)
        else:
            d.xor(kh, new_h ^ version_hash(kh, *old))
        current[key] = (hlc, origin)
        if hlc % 7 == 0:  # a pull reads the tree now and then: what is pending is folded in
            assert d.node(0, 0)[1] == len(current)
        assert len(d) == len(current)
    fresh = build(current, 4)
    assert d.hashes == fresh.hashes and d.counts == fresh.counts
    assert {k for b in d.buckets.values() for k in b} == set(current)


def test_a_difference_shows_along_one_path_from_the_root() -> None:
    versions = {b"/run/%d" % i: (i, "a") for i in range(500)}
    a, b = build(versions, 1), build(versions, 2)
    key = b"/run/77"
    kh = crc32(key)
    b.xor(kh, version_hash(kh, 1000, "b") ^ version_hash(kh, 77, "a"))
    assert a.root() != b.root()
    leaf = leaf_of(key)
    for level in range(DEPTH + 1):
        idx = leaf >> (4 * (DEPTH - level))
        assert a.node(level, idx)[0] != b.node(level, idx)[0]
        assert a.node(level, idx)[1] == b.node(level, idx)[1]  # same number of records
    # Every other node at the bucket level agrees.
    assert {i for i in set(a.hashes[DEPTH]) | set(b.hashes[DEPTH]) if a.node(DEPTH, i) != b.node(DEPTH, i)} == {leaf}


def test_children_and_buckets_under_a_node() -> None:
    versions = {b"/run/%d" % i: (i, "a") for i in range(2000)}
    d = build(versions, 1)
    kids = d.children(0, 0)
    assert len(kids) == FANOUT and sum(c for _, _, c in kids) == 2000
    h = 0
    for _, child_hash, _ in kids:
        h ^= child_hash
    assert h == d.root()
    first, end = span(2, 37)
    assert end - first == LEAVES // 256
    under = list(d.leaves_under(2, 37))
    assert under == sorted(under) and all(first <= b < end for b in under)
    assert sum(len(d.bucket(b)) for b in under) == d.node(2, 37)[1]
    assert list(d.leaves_under(2, 37, from_leaf=under[3])) == under[3:]


def test_version_hash_is_pinned() -> None:
    # Digests are compared between nodes (and versions of vfsd): the hash must never depend on
    # Python's per-process hash randomisation, nor change from one release to the next.
    assert version_hash(crc32(b"/hw/n1/cpu"), 123456789, "n1") == 0xA2BA7A90F25D509B
    h = version_hash(0x12345678, 1 << 40, "node-a")
    assert 0 < h < 1 << 64
    assert h != version_hash(0x12345678, (1 << 40) + 1, "node-a") != version_hash(0x12345678, 1 << 40, "node-b")


def test_version_hash_is_the_same_under_any_hash_seed() -> None:
    probe = "from vfsd.active.digest import version_hash; print(version_hash(0x12345678, 1 << 40, 'node-a'))"
    seen = set()
    for seed in ("0", "1", "4242", "random"):
        out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True, check=True).stdout
        seen.add(int(out))
    assert seen == {version_hash(0x12345678, 1 << 40, "node-a")}


@settings(max_examples=500, deadline=None)
@given(st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 64) - 1), st.text(min_size=1, max_size=20))
def test_version_hash_is_its_written_out_reference(kh: int, hlc: int, origin: str) -> None:
    assert version_hash(kh, hlc, origin) == reference_version_hash(kh, hlc, origin_hash(origin))


def test_swapping_versions_between_two_keys_changes_their_xor() -> None:
    rng = random.Random(3)
    for _ in range(1000):
        k1, k2 = rng.getrandbits(32), rng.getrandbits(32)
        a, b = rng.getrandbits(60), rng.getrandbits(60)
        assert version_hash(k1, a, "n1") ^ version_hash(k2, b, "n1") != version_hash(k1, b, "n1") ^ version_hash(k2, a, "n1")


def test_a_settle_of_many_buckets_equals_a_digest_built_from_scratch() -> None:
    rng = random.Random(7)
    versions = {b"/run/k%d" % i: (rng.randrange(1, 1 << 60), "n%d" % rng.randrange(3)) for i in range(20_000)}
    d = build(versions, 1)
    d.settle()
    for key in rng.sample(sorted(versions), 12_000):  # most buckets change; many parents take several changes
        old = versions[key]
        versions[key] = (old[0] + rng.randrange(1, 1000), old[1])
        kh = crc32(key)
        d.xor(kh, version_hash(kh, *old) ^ version_hash(kh, *versions[key]))
    # Two changes under one parent that cancel there: each bucket still changes, the parent does not.
    a, b = b"/run/cancel-a", b"/run/cancel-b"
    d.add(a, crc32(a), 0x1234)
    d.add(b, crc32(b), 0x1234)
    fresh = Digest()
    for key, (hlc, origin) in versions.items():
        kh = crc32(key)
        fresh.add(key, kh, version_hash(kh, hlc, origin))
    fresh.add(a, crc32(a), 0x1234)
    fresh.add(b, crc32(b), 0x1234)
    assert d.hashes == fresh.hashes and d.counts == fresh.counts


def test_the_digest_stays_exact_across_its_switch_to_a_dense_pending_array_and_back() -> None:
    """From ``DENSE_AT`` keys on, pending changes sit in an array (switched at a settle); below
    it, in a dict again. Every settle on either side of a switch equals a digest built afresh."""
    rng = random.Random(11)
    versions = {b"/run/d%d" % i: (rng.randrange(1, 1 << 60), "n%d" % rng.randrange(3)) for i in range(DENSE_AT + 300)}
    d = build(versions, 3)
    assert not isinstance(d._pending, array)
    d.settle()
    assert isinstance(d._pending, array)

    def rebuilt() -> Digest:
        return build(versions, 4)

    for key in rng.sample(sorted(versions), 2_000):  # rewrites, in the array
        old = versions[key]
        versions[key] = (old[0] + 1, old[1])
        kh = crc32(key)
        d.xor(kh, version_hash(kh, *old) ^ version_hash(kh, *versions[key]))
    assert d.hashes == rebuilt().hashes and d.counts == rebuilt().counts
    for key in rng.sample(sorted(versions), 600):  # removals down below DENSE_AT: a dict again
        kh = crc32(key)
        d.remove(key, kh, version_hash(kh, *versions.pop(key)))
    assert d.hashes == rebuilt().hashes and d.counts == rebuilt().counts
    assert not isinstance(d._pending, array)
    key = next(iter(versions))
    old = versions[key]
    versions[key] = (old[0] + 1, old[1])
    d.xor(crc32(key), version_hash(crc32(key), *old) ^ version_hash(crc32(key), *versions[key]))
    assert d.hashes == rebuilt().hashes
