"""Last-writer-wins records and tombstones (vfsd.active.lww), and the replica that merges them.

The merge laws are checked twice against a naive reference ("for each key, the
highest-ranked record ever delivered, as it stands at time t"): once on the pure
``merge`` function, once on real ``Replicator`` instances over an in-memory store,
fed the same records in different orders, groupings and with duplicates.
"""

from __future__ import annotations

import random
from functools import reduce
from zlib import crc32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.active.gossip import Replicator, _columns_if_all_fit
from vfsd.active.hlc import HLC, pack
from vfsd.active.lww import TOMBSTONE, Record, Tombstones, Watermarks, effective, expiry_of, merge, newer, rank
from vfsd.active.membership import Membership
from vfsd.active.profile import LAN
from vfsd.sim.gossip import MemoryStore

NOW = 1_000_000


def live(key: bytes, hlc: int, origin: str, value: bytes = b"v", deadline: int = 0, kind: int = 0) -> Record:
    return (key, hlc, origin, kind, value, deadline)


def tomb(key: bytes, hlc: int, origin: str, at: int = 5) -> Record:
    return (key, hlc, origin, TOMBSTONE, b"", at)


def observable(record: Record | None, now: int) -> tuple[int, str, int, bytes] | None:
    """What a client sees: the value of a live, unexpired entry, or nothing."""
    if record is None:
        return None
    r = effective(record, now)
    return None if r[3] == TOMBSTONE else (r[1], r[2], r[3], r[4])


# -- the order -------------------------------------------------------------------------

def test_later_version_wins_whatever_the_kind() -> None:
    a, b = live(b"/k", 10, "a"), tomb(b"/k", 11, "a")
    assert merge(a, b, NOW) == b and merge(b, a, NOW) == b
    c = live(b"/k", 12, "a", b"again")
    assert merge(b, c, NOW) == c  # a write after a delete re-creates the key


def test_origin_breaks_a_timestamp_tie_deterministically() -> None:
    a, b = live(b"/k", 10, "a", b"from a"), live(b"/k", 10, "b", b"from b")
    assert merge(a, b, NOW) == b == merge(b, a, NOW)
    assert newer(10, "b", 10, "a") and not newer(10, "a", 10, "b") and not newer(10, "a", 10, "a")


def test_a_tombstone_wins_a_tie_with_a_live_entry_of_the_same_version() -> None:
    a, t = live(b"/k", 10, "a"), tomb(b"/k", 10, "a", at=99)
    assert merge(a, t, NOW) == t == merge(t, a, NOW)
    assert rank(t) > rank(a)


def test_an_expired_entry_is_its_own_tombstone_and_later_writes_still_win() -> None:
    entry = live(b"/k", 10, "a", deadline=NOW - 1)
    assert effective(entry, NOW) == tomb(b"/k", 10, "a", at=NOW - 1)
    assert observable(entry, NOW) is None
    assert observable(entry, NOW - 2) is not None  # not yet, on a clock behind
    older = live(b"/k", 9, "z", b"older")
    assert observable(merge(entry, older, NOW), NOW) is None  # never comes back
    later = live(b"/k", 11, "a", b"later")
    assert observable(merge(entry, later, NOW), NOW) == (11, "a", 0, b"later")


def test_an_entry_and_its_expiry_are_one_write_until_the_local_deadline() -> None:
    entry = live(b"/k", 10, "a", deadline=NOW + 50)
    expiry = tomb(b"/k", 10, "a", at=NOW + 50)
    assert expiry_of(expiry, entry) and not expiry_of(tomb(b"/k", 10, "a", at=7), entry)
    # A replica whose clock is behind keeps the entry until its own clock reaches the deadline.
    assert merge(entry, expiry, NOW) == entry == merge(expiry, entry, NOW)
    assert observable(merge(entry, expiry, NOW + 50), NOW + 50) is None


# -- the merge laws, against a naive reference --------------------------------------------

keys = st.sampled_from([b"/run/a", b"/run/b", b"/run/c"])
origins = st.sampled_from(["n1", "n2", "n3"])
hlcs = st.integers(1, 40)


@st.composite
def records(draw: st.DrawFn) -> Record:
    key, hlc, origin = draw(keys), draw(hlcs), draw(origins)
    if draw(st.booleans()):
        return tomb(key, hlc, origin, at=draw(st.integers(0, 30)))
    # A version names one write: every copy of it carries the same value, kind and deadline (a TTL
    # change is a new version), so they are drawn from the version, not independently.
    pick = crc32(b"%b|%d|%b" % (key, hlc, origin.encode()))
    deadline = (0, 0, 5, 15, 25)[pick % 5]
    return live(key, hlc, origin, (b"x", b"y", b"")[pick // 5 % 3], deadline, pick // 15 % 2)


def reference(delivered: list[Record], now: int) -> dict[bytes, object]:
    """The naive reference: per key, the highest-ranked record, as it stands at ``now``."""
    out: dict[bytes, object] = {}
    for key in {r[0] for r in delivered}:
        mine = [r for r in delivered if r[0] == key]
        best = reduce(lambda a, b: merge(a, b, now), mine)
        out[key] = observable(best, now)
    return {k: v for k, v in out.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=12), st.integers(0, 30), st.randoms(use_true_random=False))
def test_merge_is_commutative_associative_and_idempotent(rs: list[Record], now: int, rnd: random.Random) -> None:
    rs = [r for r in rs if r[0] == rs[0][0]]  # one key
    forward = reduce(lambda a, b: merge(a, b, now), rs)
    shuffled = rs[:]
    rnd.shuffle(shuffled)
    backward = reduce(lambda a, b: merge(a, b, now), shuffled)
    assert observable(forward, now) == observable(backward, now)
    doubled = reduce(lambda a, b: merge(a, b, now), rs + shuffled)  # every record twice
    assert observable(doubled, now) == observable(forward, now)
    if len(rs) >= 3:  # (a . b) . c == a . (b . c)
        a, b, c = rs[0], rs[1], rs[2]
        left = merge(merge(a, b, now), c, now)
        right = merge(a, merge(b, c, now), now)
        assert observable(left, now) == observable(right, now)


def make_replica(seed: int) -> tuple[Replicator, MemoryStore]:
    store = MemoryStore()
    hlc = HLC()
    membership = Membership("self", "self:1", 1, LAN, random.Random(seed), NOW)
    replica = Replicator("self", store, hlc, membership, LAN, random.Random(seed), NOW)
    replica.fresh = False
    return replica, store


def replica_state(replica: Replicator, store: MemoryStore, now: int) -> dict[bytes, object]:
    out: dict[bytes, object] = {}
    for key, (kind, value, hlc, origin, deadline) in store.data.items():
        obs = observable((key, hlc, origin, kind, value, deadline), now)
        if obs is not None:
            out[key] = obs
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=25), st.integers(0, 30), st.integers(1, 4),
       st.randoms(use_true_random=False))
def test_replicas_fed_in_any_order_grouping_and_duplication_agree_with_the_reference(
    rs: list[Record], now: int, groups: int, rnd: random.Random
) -> None:
    expected = reference(rs, now)
    digests = set()
    for trial in range(3):
        replica, store = make_replica(trial)
        order = rs[:] + rnd.sample(rs, k=min(len(rs), rnd.randint(0, 5)))  # some delivered twice
        rnd.shuffle(order)
        # Deliver in batches at increasing times, as messages arrive.
        cuts = sorted(rnd.sample(range(len(order) + 1), k=min(groups, len(order) + 1)))
        start = 0
        for cut in [*cuts, len(order)]:
            replica.apply_all(order[start:cut], min(now, rnd.randint(0, now)), relay=False)
            start = cut
        # Whatever was applied early, the state at `now` is the reference's.
        assert replica_state(replica, store, now) == expected
        digests.add(replica.digest.root())
    # The same versions held: the same digest, whatever the order.
    assert len(digests) == 1


def test_applying_a_remote_entry_keeps_its_revision_origin_and_deadline() -> None:
    replica, store = make_replica(0)
    assert replica.apply(live(b"/run/a", pack(NOW, 3), "other", b"v", deadline=NOW + 500), NOW, relay=True)
    assert store.data[b"/run/a"] == (0, b"v", pack(NOW, 3), "other", NOW + 500)
    assert b"/run/a" in replica.queue  # relayed
    assert not replica.apply(live(b"/run/a", pack(NOW, 3), "other", b"v", deadline=NOW + 500), NOW, relay=True)


def test_a_remote_tombstone_removes_the_entry_and_a_remote_expired_entry_is_a_tombstone() -> None:
    replica, store = make_replica(0)
    replica.apply(live(b"/run/a", 10, "x"), NOW, relay=False)
    replica.apply(tomb(b"/run/a", 11, "y"), NOW, relay=False)
    assert b"/run/a" not in store.data and replica.tombstones.get(b"/run/a")[:2] == (11, "y")
    replica.apply(live(b"/run/b", 12, "x", deadline=NOW - 1), NOW, relay=False)
    assert b"/run/b" not in store.data and replica.tombstones.get(b"/run/b")[:3] == (12, "x", NOW - 1)
    assert not replica.apply(live(b"/run/b", 11, "z"), NOW, relay=False)  # the expired key never returns


# -- tombstones ---------------------------------------------------------------------------

def test_tombstones_are_collected_in_acquisition_order_below_the_floor() -> None:
    t = Tombstones()
    t.put(b"/a", 5, "n", 0, acquired=100)
    t.put(b"/b", 6, "n", 0, acquired=200)
    t.put(b"/a", 7, "n", 0, acquired=300)  # replaced: the queue item at 100 is stale
    assert [k for k, _, _ in t.collectable(250, 0)] == [b"/b"]
    assert len(t) == 1 and t.get(b"/a")[0] == 7
    got = list(t.collectable(0, 301))
    assert got == [(b"/a", (7, "n", 0, 300), True)]  # by the horizon, and counted as such
    assert not t


def test_tombstones_must_be_acquired_in_clock_order() -> None:
    t = Tombstones()
    t.put(b"/a", 1, "n", 0, acquired=10)
    with pytest.raises(AssertionError):
        t.put(b"/b", 1, "n", 0, acquired=9)


def test_tombstone_queue_is_compacted_under_churn() -> None:
    t = Tombstones()
    for i in range(5000):
        t.put(b"/same", i, "n", 0, acquired=i)
    assert len(t) == 1 and len(t._queue) <= 2 * len(t) + 1025


def test_watermarks_floor_needs_an_acknowledgement_from_every_identity() -> None:
    w = Watermarks()
    assert w.floor([]) is None  # alone
    w.acknowledge("a", 1, 50)
    assert w.floor([("a", 1), ("b", 1)]) == 0  # b has not acknowledged
    w.acknowledge("b", 1, 40)
    assert w.floor([("a", 1), ("b", 1)]) == 40
    assert w.floor([("a", 2), ("b", 1)]) == 0  # a restarted: its new identity acknowledged nothing
    w.acknowledge("b", 1, 30)  # an older acknowledgement does not lower it
    assert w.floor([("b", 1)]) == 40
    w.dominate("a", 1, 70)
    w.dominate("a", 1, 60)
    assert w.seen("a", 1) == 70 and w.seen("a", 2) == 0
    w.dominate("a", 2, 5)  # a new boot replaces the old identity's value
    assert w.seen("a", 2) == 5 and w.seen("a", 1) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=300), st.sampled_from(["self", "n1", "n2"]),
                          st.sampled_from([0, 1]), st.sampled_from([0, NOW + 5000])), min_size=1, max_size=60),
       st.integers(200, 20_000))
def test_a_push_of_all_the_fold_read_is_the_push_record_by_record(writes: list[tuple], budget: int) -> None:
    """The push after a fold takes its records from what the fold read, in columns at once when
    all of them fit (``_columns_if_all_fit``), and is then what the record-by-record loop of
    ``_take_fresh_final`` makes of the same queue; when they do not fit, it is that loop."""
    twins = [make_replica(1), make_replica(1)]
    for replica, store in twins:
        for i, value, origin, kind, deadline in writes:
            key = b"/run/k%02d" % i
            old = store.version(key)
            hlc = replica.hlc.now(NOW)
            store.data[key] = (kind, value, hlc, origin, deadline)
            replica.wrote(key, old, hlc)
    (kept, _), (loop, _) = twins
    kept.fold(keep_reads=True)
    loop.fold()  # nothing kept: _take_fresh_final reads every key itself, record by record
    limit = LAN.retransmit_limit(1)
    fast = kept._take_fresh_final(limit, budget)
    assert fast == loop._take_fresh_final(limit, budget)
    assert kept.queue.where == loop.queue.where and kept.queue.tiers == loop.queue.tiers
    origins, columns = fast
    sizes = sum(len(k) + len(v) for k, v in zip(columns[0], columns[4]))
    assert columns[0] and sizes <= budget or len(columns[0]) == 1
    assert [origins[o] for o in columns[2]] == [twins[1][1].data[k][3] for k in columns[0]]


def test_the_column_lane_of_a_push_is_taken_when_everything_fits() -> None:
    replica, store = make_replica(2)
    for i in range(50):
        key = b"/run/c%02d" % i
        store.data[key] = (0, b"v", replica.hlc.now(NOW), "self", 0)
        replica.wrote(key, None, store.data[key][2])
    replica.fold(keep_reads=True)
    reads = replica._reads
    assert reads is not None
    whole = _columns_if_all_fit(reads, replica.queue.tiers[0], 1 << 16)
    assert whole is not None and whole[1][0] == [b"/run/c%02d" % i for i in range(49, -1, -1)]
    assert _columns_if_all_fit(reads, replica.queue.tiers[0], 100) is None  # too much for one push
