"""The point-in-time walk against the naive reference: a copy of the keyspace taken when the walk began."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.codec import RAW
from vfsd.commands.context import Ctx
from vfsd.store.keyspace import Keyspace
from vfsd.store.pointintime import PointInTimeScan

KEYS = [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 9)),
    st.tuples(st.just("write"), st.sampled_from(KEYS), st.integers(0, 9)),
    st.tuples(st.just("replace"), st.sampled_from(KEYS), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("expire"), st.sampled_from(KEYS), st.integers(1, 9)),
    st.tuples(st.just("persist"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("chunk"), st.just(b""), st.integers(1, 3)),
)


def apply(db: Keyspace, ctx: Ctx, name: str, key: bytes, n: int) -> None:
    if name == "put":
        db.put(key, (b"p%d" % n, RAW, n, "n1", 0, 0))
    elif name == "write":
        ctx.write(key, b"w%d" % n, old=db.get(key), keep_ttl=n % 2 == 0)
    elif name == "replace":
        ctx.replace(key, b"r%d" % n)
    elif name == "delete":
        db.delete(key)
    elif name == "expire" and key in db.data:
        db.set_expire(key, 1_000 + n)
    elif name == "persist":
        db.persist(key)


@settings(max_examples=200, deadline=None)
@given(initial=st.dictionaries(st.sampled_from(KEYS), st.integers(0, 9)), expiring=st.sets(st.sampled_from(KEYS)),
       ops=st.lists(op, max_size=40))
def test_the_walk_sees_the_keyspace_as_it_was_when_it_began(initial: dict[bytes, int], expiring: set[bytes],
                                                             ops: list[tuple[str, bytes, int]]) -> None:
    db = Keyspace()
    ctx = Ctx(db, "local", "n1", iter(range(100, 10_000)).__next__, now_ms=0)
    for key, n in initial.items():
        db.put(key, (b"i%d" % n, RAW, n, "n1", 0, 0))
        if key in expiring:
            db.set_expire(key, 500)
    expected = {key: (db.data[key], db.expires.get(key)) for key in db.data}
    scan = PointInTimeScan(db)
    got: dict[bytes, tuple[object, int | None]] = {}

    def take(rows: list) -> None:
        for key, entry, at in rows:
            assert key not in got, f"{key!r} emitted twice"
            got[key] = (entry, at)

    for name, key, n in ops:
        if name == "chunk":
            take(scan.next_chunk(n))
        else:
            apply(db, ctx, name, key, n)
    while not scan.done:
        take(scan.next_chunk(2))
    assert got == expected
    assert db.saving is None and not scan.remembered  # unhooked, nothing kept


def test_a_filter_leaves_keys_out_and_a_closed_walk_unhooks() -> None:
    db = Keyspace()
    for key in (b"/ctx/a", b"/run/b", b"c"):
        db.put(key, (b"v", RAW, 1, "n1", 0, 0))
    scan = PointInTimeScan(db, wanted=lambda key: not key.startswith(b"/ctx"))
    assert [row[0] for row in scan.next_chunk(10)] == [b"/run/b", b"c"] and scan.done
    abandoned = PointInTimeScan(db)
    abandoned.next_chunk(1)
    abandoned.close()
    assert db.saving is None
    db.put(b"d", (b"v", RAW, 2, "n1", 0, 0))  # no walk to tell
