"""Saving the local and active planes: SAVE, BGSAVE, the ``save`` schedule, and loading at start.

The shell around ``dump`` (the format) and ``pointintime`` (the walk). A save walks
the keyspace on the event loop ``CHUNK_KEYS`` keys per step, packing rows as it goes,
and yields to the loop between steps, so a client waits at most one step (about a
millisecond) however large the keyspace; the packed bytes are written, fsynced and
renamed into place by one writer thread. INFO persistence shows the longest step of
the last save. At most one save runs at a time; a failed scheduled save is retried no
sooner than ``RETRY_DELAY_MS`` later (as Redis's CONFIG_BGSAVE_RETRY_DELAY).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

from vfsd.desired.log import fsync_directory
from vfsd.store import dump
from vfsd.store.keyspace import Keyspace
from vfsd.store.pointintime import PointInTimeScan

log = logging.getLogger(__name__)

RETRY_DELAY_MS = 5000
#: Keys walked (and packed) per event-loop step of a save: about a millisecond of work.
CHUNK_KEYS = 500
#: Keys moved into key order per step before the walk (an insert into a million-key SortedList
#: costs up to ~25 µs, so this bounds a step at a few ms).
MERGE_KEYS = 200
#: Packed bytes handed to the writer thread at a time.
WRITE_BYTES = 1 << 20


class _DumpFile:
    """The writer thread's side: a temporary file that becomes the dump once complete and durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def finish(self, last: bytes) -> None:
        self.write(last)
        os.fsync(self.fd)
        os.close(self.fd)
        os.replace(self.tmp, self.path)
        fsync_directory(self.path.parent)

    def abort(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)


class Saver:
    def __init__(self, keyspace: Keyspace, local_plane: Any, active_plane: Any, desired_roots: list[bytes],
                 directory: str, node_id: str, now_ms: Callable[[], int]) -> None:
        self.keyspace = keyspace
        self.local_plane = local_plane
        self.active_plane = active_plane
        self.desired_roots = frozenset(desired_roots)
        self.directory = directory
        self.node_id = node_id
        self.now_ms = now_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfsd-save")
        self._task: asyncio.Task[int] | None = None
        self._again = False  # BGSAVE SCHEDULE during a save: one more when it ends
        self._changes_at_save = 0  # changes() when the last successful save's view was taken
        self.last_save_ms = now_ms()
        self.last_status_ok = True
        self.last_failure_ms = 0
        self.last_duration_ms = -1
        self.current_started_ms = 0
        self.saves = 0
        self.files_saved = 0
        self.longest_step_ms = 0.0  # the longest event-loop step of the last save: what a client may wait

    # -- what changed -----------------------------------------------------------------

    def changes(self) -> int:
        """Changes ever made on the local and active planes (each write, delete, expiry or TTL change)."""
        return self.local_plane.rev + self.active_plane.changes

    def changes_since_save(self) -> int:
        return self.changes() - self._changes_at_save

    # -- loading ----------------------------------------------------------------------

    def load(self) -> int:
        """Install the dump, if there is one, before any client connects; returns the files loaded.

        Files whose deadline has passed are left out (as a Redis primary does); no change
        event is raised. Revision clocks resume above everything the dump holds.
        """
        saved = dump.load(self.directory)
        if saved is None:
            return 0
        now = self.now_ms()
        db = self.keyspace
        loaded = 0
        for key, kind, value, rev, origin, ctime_ms, mtime_ms, expire_at in saved.rows:
            if expire_at is not None and expire_at <= now:
                continue
            db.put(key, (value, kind, rev, origin, ctime_ms, mtime_ms))
            if expire_at is not None:
                db.set_expire(key, expire_at)
            loaded += 1
        self.local_plane.rev = max(self.local_plane.rev, saved.local_rev)
        hlc = self.active_plane.hlc
        hlc.last = max(hlc.last, saved.hlc)
        self._changes_at_save = self.changes()
        self.last_save_ms = saved.saved_ms or now
        log.info("loaded %d local and active files from %s/%s (saved by %s)", loaded, self.directory,
                 dump.DUMP_FILE_NAME, saved.node or "?")
        return loaded

    # -- saving -----------------------------------------------------------------------

    @property
    def in_progress(self) -> bool:
        return self._task is not None and not self._task.done()

    def bgsave(self) -> bool:
        """Start a save in the background; False if one is already running."""
        if self.in_progress:
            return False
        self._task = asyncio.get_running_loop().create_task(self._save())
        self._task.add_done_callback(self._background_done)
        return True

    def schedule_after_current(self) -> None:
        self._again = True

    def _background_done(self, task: asyncio.Task[int]) -> None:
        if not task.cancelled():
            task.exception()  # logged by _save and shown in INFO; not "never retrieved"
        if self._again:
            self._again = False
            self.bgsave()

    async def save(self) -> int:
        """Save now (waiting for a save already running first); returns the files saved, raises on failure."""
        while self.in_progress:
            assert self._task is not None
            await asyncio.wait([self._task])
        self._task = asyncio.get_running_loop().create_task(self._save())
        return await asyncio.shield(self._task)

    async def _save(self) -> int:
        loop = asyncio.get_running_loop()
        self.current_started_ms = self.now_ms()
        started = time.perf_counter()
        db = self.keyspace
        longest = 0.0
        while db.merge_some(MERGE_KEYS):  # spread the key-order sort the walk would start with
            await asyncio.sleep(0)
        roots = self.desired_roots
        scan = PointInTimeScan(db, wanted=lambda key: not _is_desired(key, roots))
        changes = self.changes()
        saved_ms = self.now_ms()
        packer = msgpack.Packer(use_bin_type=True, autoreset=False)  # this save's own
        packer.pack(dump.meta(hlc=self.active_plane.hlc.last, local_rev=self.local_plane.rev, saved_ms=saved_ms,
                              node=self.node_id))
        target: _DumpFile | None = None
        count = crc = length = 0
        try:
            target = await loop.run_in_executor(self._executor, _DumpFile, dump.path_in(self.directory))
            await loop.run_in_executor(self._executor, target.write, dump.header())
            while not scan.done:
                step = time.perf_counter()
                for key, entry, at in scan.next_chunk(CHUNK_KEYS):
                    packer.pack(dump.row(key, entry, at))
                    count += 1
                longest = max(longest, time.perf_counter() - step)
                if scan.done or packer.getbuffer().nbytes >= WRITE_BYTES:
                    chunk = packer.bytes()
                    packer.reset()
                    crc, length = zlib.crc32(chunk, crc), length + len(chunk)
                    await loop.run_in_executor(self._executor, target.write, chunk)
                else:
                    await asyncio.sleep(0)
            await loop.run_in_executor(self._executor, target.finish, dump.trailer(length, crc))
        except BaseException as exc:
            scan.close()
            if target is not None:
                await loop.run_in_executor(self._executor, target.abort)
            if isinstance(exc, Exception):
                self.last_status_ok = False
                self.last_failure_ms = self.now_ms()
                log.error("saving the local and active planes to %s failed: %s", self.directory, exc)
            raise
        finally:
            self.last_duration_ms = int((time.perf_counter() - started) * 1000)
            self.longest_step_ms = longest * 1000
        self._changes_at_save = changes
        self.last_save_ms = saved_ms
        self.last_status_ok = True
        self.saves += 1
        self.files_saved = count
        return count

    def tick(self, save_points: list[tuple[int, int]]) -> None:
        """From the cron: start a save when a save point is reached (and a failure is not too recent)."""
        if self.in_progress or not save_points:
            return
        now = self.now_ms()
        if not self.last_status_ok and now - self.last_failure_ms < RETRY_DELAY_MS:
            return
        if dump.save_due(save_points, self.changes_since_save(), now - self.last_save_ms):
            self.bgsave()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task])
        self._executor.shutdown(wait=True)

    def info(self) -> dict[str, Any]:
        now = self.now_ms()
        return {
            "rdb_changes_since_last_save": self.changes_since_save(),
            "rdb_bgsave_in_progress": int(self.in_progress),
            "rdb_last_save_time": self.last_save_ms // 1000,
            "rdb_last_bgsave_status": "ok" if self.last_status_ok else "err",
            "rdb_last_bgsave_time_sec": -1 if self.last_duration_ms < 0 else round(self.last_duration_ms / 1000),
            "rdb_current_bgsave_time_sec": (now - self.current_started_ms) // 1000 if self.in_progress else -1,
            "rdb_saves": self.saves,
            "rdb_last_saved_files": self.files_saved,
            "rdb_last_save_longest_step_ms": f"{self.longest_step_ms:.1f}",
        }


def _is_desired(key: bytes, desired_roots: frozenset[bytes]) -> bool:
    if key[:1] != b"/":
        return False
    end = key.find(b"/", 1)
    return (key if end < 0 else key[:end]) in desired_roots
