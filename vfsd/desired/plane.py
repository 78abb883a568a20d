"""The desired plane's shell: a one-voter log on this node.

Writes are proposed as log entries (see ``machine``), appended to the
write-ahead log and fsynced by one writer thread, then applied, and only then
is the client answered: an acknowledged write survives ``kill -9``. Proposals
that arrive while an fsync is in flight are grouped into the next one (group
commit), so many clients share each fsync. The Raft work replaces the "one
voter" part — replicating entries before they count as committed — and keeps
the entry format, the log, the snapshots and the state machine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vfsd import codec
from vfsd.commands.context import ChangeSink, Ctx
from vfsd.desired.log import LogEntry, WriteAheadLog
from vfsd.desired.machine import StateMachine, encode_entry
from vfsd.desired.snapshot import Snapshot, SnapshotStore
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import Keyspace

log = logging.getLogger(__name__)

TERM = 1  # a single voter never holds an election; Raft takes over terms


class DesiredPlane:
    name = "log"
    deferred = True

    def __init__(self, db: Keyspace, origin: str, sink: ChangeSink, data_dir: str, log_roots: list[bytes], *,
                 max_bulk_bytes: int, snapshot_every_entries: int = 10000, segment_max_bytes: int = 64 << 20,
                 replay_sink: ChangeSink | None = None) -> None:
        self.origin = origin
        self.data_dir = os.path.join(data_dir, "desired")
        self.machine = StateMachine(db, log_roots, sink, max_bulk_bytes)
        self.ctx = Ctx(db, "log", origin, lambda: 0, sink, lazy_delete=False, max_bulk_bytes=max_bulk_bytes)
        self.snapshot_every_entries = snapshot_every_entries
        self.segment_max_bytes = segment_max_bytes
        self.log_roots = log_roots
        self._sink = sink
        #: Change events of the log replay at start-up go here (the watch history), not to ``sink``.
        self._replay_sink: ChangeSink = replay_sink or _quiet
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfsd-wal")
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failed: str | None = None
        self.wal: WriteAheadLog | None = None
        self.snapshots: SnapshotStore | None = None
        self.snapshot_index = 0
        self._snapshot_failed_at = 0
        self.fsyncs = 0

    # -- start and stop ---------------------------------------------------------

    def open(self) -> None:
        """Recover: install the newest snapshot, then replay the log after it (its change events go to
        ``replay_sink`` only: nobody is subscribed yet)."""
        os.makedirs(self.data_dir, exist_ok=True)
        self.snapshots = SnapshotStore(self.data_dir)
        self.wal = WriteAheadLog.open(self.data_dir, segment_max_bytes=self.segment_max_bytes)
        machine = self.machine
        sink, machine.ctx.notify = machine.ctx.notify, self._replay_sink
        try:
            snap = self.snapshots.load()
            if snap is not None:
                machine.restore(snap.index, codec.unpack(snap.data))
                self.snapshot_index = snap.index
            start = max(machine.applied_index + 1, self.wal.first_index)
            if start > machine.applied_index + 1:
                raise RuntimeError(f"desired log starts at {start} but the snapshot ends at {machine.applied_index}")
            for entry in self.wal.entries(start, self.wal.last_index + 1):
                machine.apply(entry.index, entry.data)
            self._log_failures()
        finally:
            machine.ctx.notify = sink
        log.info("desired plane recovered to index %d (snapshot %d)", machine.applied_index, self.snapshot_index)

    async def close(self) -> None:
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        self._executor.shutdown(wait=True)
        if self.wal is not None:
            self.wal.close()

    # -- writes -----------------------------------------------------------------

    def submit(self, ops: list[list[bytes]], now_ms: int, *, transaction: bool = False,
               watches: list[tuple[bytes, int | None]] | None = None) -> asyncio.Future[Any]:
        """Propose one entry; the future resolves with its reply once it is durable and applied."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            future.set_result(ErrorReply(f"ERR desired-state log unavailable: {self._failed}"))
            return future
        self._pending.append((encode_entry(ops, now_ms, self.origin, transaction=transaction, watches=watches), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        wal = self.wal
        assert wal is not None
        while self._pending:
            batch, self._pending = self._pending, []
            first = wal.last_index + 1
            entries = [LogEntry(first + i, TERM, data) for i, (data, _) in enumerate(batch)]
            try:
                await loop.run_in_executor(self._executor, self._persist, entries)
            except Exception as exc:  # fsync failure: the log can no longer be trusted (fsyncgate)
                log.critical("desired-state log write failed, refusing further writes: %s", exc)
                self._failed = str(exc)
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_result(ErrorReply(f"ERR desired-state log unavailable: {exc}"))
                self._pending = []
                return
            self.fsyncs += 1
            for entry, (_, future) in zip(entries, batch):
                reply = self.machine.apply(entry.index, entry.data)
                if not future.done():
                    future.set_result(reply)
            self._log_failures()
            last_try = max(self.snapshot_index, self._snapshot_failed_at)
            if self.machine.applied_index - last_try >= self.snapshot_every_entries:
                try:
                    await self._snapshot(loop)
                except Exception as exc:  # the log still holds everything: keep serving, try again later
                    log.error("desired-plane snapshot failed, will retry after %d more entries: %s",
                              self.snapshot_every_entries, exc)
                    self._snapshot_failed_at = self.machine.applied_index

    def _log_failures(self) -> None:
        failures = self.machine.failures
        for index, name, exc in failures:
            log.error("applying %r at index %d failed", name, index, exc_info=exc)
        failures.clear()

    def _persist(self, entries: list[LogEntry]) -> None:
        assert self.wal is not None
        self.wal.append(entries)
        self.wal.sync()

    async def _snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        index = self.machine.applied_index
        rows = self.machine.snapshot_rows()
        await loop.run_in_executor(self._executor, self._save_snapshot, index, rows)
        self.snapshot_index = index

    def _save_snapshot(self, index: int, rows: list[list[Any]]) -> None:
        assert self.wal is not None and self.snapshots is not None
        self.snapshots.save(Snapshot(index, TERM, codec.pack(rows)))
        self.wal.compact(index, TERM)

    def info(self) -> dict[str, Any]:
        wal = self.wal
        return {
            "desired_applied_index": self.machine.applied_index,
            "desired_snapshot_index": self.snapshot_index,
            "desired_log_entries": 0 if wal is None else wal.last_index - wal.first_index + 1,
            "desired_log_bytes": 0 if wal is None else wal.size_bytes,
            "desired_fsyncs": self.fsyncs,
            "desired_pending": len(self._pending),
        }


def _quiet(flag: str, event: str, key: bytes, entry: object = None) -> None:
    return None
