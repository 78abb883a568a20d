"""The desired plane's shell in-process: what runs on which thread, and how far the log is compacted."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from vfsd import codec
from vfsd.desired.plane import DesiredPlane
from vfsd.store.keyspace import Keyspace


def _quiet(flag: str, event: str, key: bytes, entry: object = None) -> None:
    return None


def _plane(tmp_path: Path, every: int) -> DesiredPlane:
    plane = DesiredPlane(Keyspace(), "n1", _quiet, str(tmp_path), [b"/ctx"], snapshot_every_entries=every)
    plane.open()
    return plane


async def _write(plane: DesiredPlane, n: int) -> None:
    for i in range(n):
        await plane.submit([[b"SET", f"/ctx/k{i}".encode(), b"v"]], 1_000 + i)


def test_only_the_event_loop_thread_uses_the_shared_packer(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """msgpack's Packer is not thread-safe: the log writer packs snapshots with a Packer of its own."""
    threads: set[int] = set()
    real = codec._packer

    class Spy:
        def pack(self, obj: object) -> bytes:
            threads.add(threading.get_ident())
            return real.pack(obj)

    monkeypatch.setattr(codec, "_packer", Spy())
    plane = _plane(tmp_path, every=10)

    async def main() -> None:
        await _write(plane, 35)
        await plane.close()

    asyncio.run(main())
    assert plane.snapshot_index >= 30
    assert threads == {threading.get_ident()}


def test_the_log_is_compacted_to_the_older_kept_snapshot(tmp_path: Path) -> None:
    plane = _plane(tmp_path, every=10)

    async def main() -> None:
        await _write(plane, 10)
        await plane.idle()
        assert plane.snapshot_index == 10 and plane.wal.first_index == 1  # one snapshot: nothing compacted
        await _write(plane, 10)
        await plane.close()

    asyncio.run(main())
    assert plane.snapshot_index == 20
    assert plane.wal.first_index == 11  # the older snapshot (10) plus the log rebuild everything
