"""The local and active planes' dump file: format, damage, save points."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vfsd.active.hlc import HLC
from vfsd.codec import DOC, RAW
from vfsd.config import parse_save_points
from vfsd.store import dump
from vfsd.store.keyspace import Keyspace
from vfsd.store.saver import CHUNK_KEYS, Saver


class Planes:
    """The two counters a Saver reads from the local and active planes."""

    def __init__(self) -> None:
        self.rev = 7
        self.changes = 0
        self.hlc = HLC(123 << 16)


def saver(directory: Path, db: Keyspace | None = None) -> tuple[Saver, Keyspace, Planes]:
    db = Keyspace() if db is None else db
    planes = Planes()
    return Saver(db, planes, planes, [b"/ctx", b"/lk"], str(directory), "n1", lambda: 5_000), db, planes


def save(s: Saver) -> int:
    async def run() -> int:
        try:
            return await s.save()
        finally:
            await s.close()

    return asyncio.run(run())


def test_round_trip_keeps_every_field_and_leaves_out_desired_files(tmp_path: Path) -> None:
    s, db, _ = saver(tmp_path)
    db.put(b"local", (b"v", RAW, 3, "n1", 1_000, 2_000))
    db.set_expire(b"local", 9_000)
    db.put(b"/run/doc", (b"\x81\xa1a\x01", DOC, 99 << 16, "n2", 1_500, 1_600))
    db.put(b"/ctx/desired", (b"x", RAW, 4, "n1", 1, 1))
    db.put(b"/lk", (b"root-file", RAW, 5, "n1", 1, 1))
    assert save(s) == 2
    loaded = dump.load(str(tmp_path))
    assert loaded is not None
    assert (loaded.hlc, loaded.local_rev, loaded.saved_ms, loaded.node) == (123 << 16, 7, 5_000, "n1")
    assert sorted(map(tuple, loaded.rows)) == [
        (b"/run/doc", DOC, b"\x81\xa1a\x01", 99 << 16, "n2", 1_500, 1_600, None),
        (b"local", RAW, b"v", 3, "n1", 1_000, 2_000, 9_000),
    ]
    other, db2, planes2 = saver(tmp_path)
    planes2.rev, planes2.hlc.last = 0, 0
    assert other.load() == 2
    assert db2.data == {b"local": db.data[b"local"], b"/run/doc": db.data[b"/run/doc"]}
    assert db2.expires == {b"local": 9_000}
    assert (planes2.rev, planes2.hlc.last) == (7, 123 << 16)  # revision clocks resume where they were


def test_a_save_is_a_point_in_time_image_while_writes_go_on(tmp_path: Path) -> None:
    """Writes that interleave with the save's steps are not in the dump; what they replaced is."""
    s, db, _ = saver(tmp_path)
    for i in range(5 * CHUNK_KEYS):
        db.put(b"k%05d" % i, (b"old", RAW, i, "n1", 0, 0))
    expected: dict[bytes, bytes] = {}

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(s.save())
        while db.saving is None:  # the instant the walk begins is the dump's point in time
            await asyncio.sleep(0)
        expected.update((key, entry[0]) for key, entry in db.data.items())
        i = 0
        while not task.done():
            db.put(b"k%05d" % (i * 7 % (5 * CHUNK_KEYS)), (b"new", RAW, 0, "n1", 0, 0))
            db.delete(b"k%05d" % (i * 13 % (5 * CHUNK_KEYS)))
            db.put(b"fresh%d" % i, (b"new", RAW, 0, "n1", 0, 0))
            i += 1
            await asyncio.sleep(0)
        assert await task == 5 * CHUNK_KEYS
        assert i > 3  # the writes really did interleave with the save
        await s.close()

    asyncio.run(run())
    loaded = dump.load(str(tmp_path))
    assert loaded is not None
    assert {row[0]: row[2] for row in loaded.rows} == expected


def test_a_large_dump_streams_in_chunks(tmp_path: Path) -> None:
    s, db, _ = saver(tmp_path)
    for i in range(10_000):
        db.put(f"k{i}".encode(), (b"x" * 300, RAW, i, "n1", 0, 0))  # 3 MB: several writes of WRITE_BYTES
    assert save(s) == 10_000
    loaded = dump.load(str(tmp_path))
    assert loaded is not None and len(loaded.rows) == 10_000


def test_no_dump_is_none_and_a_crashed_save_leaves_no_trace(tmp_path: Path) -> None:
    (tmp_path / "dump.vfsd.tmp").write_bytes(b"half a save")
    assert dump.load(str(tmp_path)) is None
    assert not (tmp_path / "dump.vfsd.tmp").exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "empty"])
def test_damage_is_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    s, db, _ = saver(tmp_path)
    db.put(b"k", (b"v", RAW, 1, "n1", 0, 0))
    save(s)
    path = tmp_path / "dump.vfsd"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:-3]
    elif damage == "flip":
        raw[15] ^= 1
    elif damage == "magic":
        raw[0:8] = b"NOTADUMP"
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(dump.DumpCorruption, match=str(path)):
        dump.load(str(tmp_path))


def test_save_points() -> None:
    assert parse_save_points("3600 1 300 100 60 10000") == [(3600, 1), (300, 100), (60, 10000)]
    assert parse_save_points("") == []
    for bad in ("1", "a 1", "0 1", "1 -1"):
        with pytest.raises(ValueError, match="Invalid save parameters"):
            parse_save_points(bad)
    points = [(3600, 1), (60, 100)]
    assert not dump.save_due(points, 0, 10_000_000)  # nothing changed: never
    assert not dump.save_due(points, 50, 3_599_000)
    assert dump.save_due(points, 1, 3_600_000)
    assert dump.save_due(points, 100, 60_000) and not dump.save_due(points, 99, 60_000)


def test_a_collection_changed_in_place_during_a_save_is_dumped_as_it_was(tmp_path: Path) -> None:
    """HSET changes a hash in place; the walk still holding the hash's entry gets the old one (copy-on-write)."""
    import vfsd.commands.families  # noqa: F401  (fills the command table)
    from vfsd.commands.context import Ctx
    from vfsd.commands.table import TABLE

    s, db, _ = saver(tmp_path)
    ctx = Ctx(db, "local", "n1", iter(range(10, 100_000)).__next__, now_ms=1_000)
    hset = TABLE["hset"].handler
    for i in range(3 * CHUNK_KEYS):
        hset(ctx, [b"HSET", b"h%05d" % i, b"f", b"old"])

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(s.save())
        while db.saving is None:
            await asyncio.sleep(0)
        i = 0
        while not task.done():  # rewrite hashes the walk has not reached yet, in place
            hset(ctx, [b"HSET", b"h%05d" % (3 * CHUNK_KEYS - 1 - i % (3 * CHUNK_KEYS)), b"f", b"new", b"g", b"x"])
            i += 1
            await asyncio.sleep(0)
        await task
        await s.close()

    asyncio.run(run())
    loaded = dump.load(str(tmp_path))
    assert loaded is not None and len(loaded.rows) == 3 * CHUNK_KEYS
    assert all(row[2] == {b"f": b"old"} for row in loaded.rows)
    assert db.get(b"h%05d" % (3 * CHUNK_KEYS - 1))[0] == {b"f": b"new", b"g": b"x"}
