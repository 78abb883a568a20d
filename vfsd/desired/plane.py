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
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vfsd import codec
from vfsd.commands.context import DEFAULT_MAX_BULK_BYTES, ChangeSink, Ctx
from vfsd.desired.log import LogCorruption, LogEntry, WriteAheadLog
from vfsd.desired.machine import StateMachine, entry_body, pack_pieces
from vfsd.desired.snapshot import Snapshot, SnapshotStore
from vfsd.paths import Router
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import Keyspace

log = logging.getLogger(__name__)

TERM = 1  # a single voter never holds an election; Raft takes over terms

#: Every name the desired plane's directory may hold: log segments and their meta file, snapshots,
#: the hard state, and the temporary files of their atomic writes. Anything else is refused.
_OWN_FILES = re.compile(r"wal-\d{20}\.log|wal\.meta(\.tmp)?|snap-\d{20}\.(snap|tmp)|hardstate(\.tmp)?")


def check_own_files(directory: str) -> None:
    """Refuse to start on a directory holding something that is not ours: it may be a damaged or
    misplaced file, and treating it as absent could hide lost entries."""
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not _OWN_FILES.fullmatch(name) or not os.path.isfile(path):
            raise LogCorruption(Path(path), 0, "not a log segment, snapshot, hard-state or meta file")


class DesiredPlane:
    name = "log"
    deferred = True
    #: One voter: every write goes through this node, so local reads are linearizable as they are.
    linearizable = False
    may_expire = True

    def __init__(self, db: Keyspace, origin: str, sink: ChangeSink, data_dir: str, log_roots: list[bytes], *,
                 snapshot_every_entries: int = 10000, segment_max_bytes: int = 64 << 20,
                 script_max_memory_bytes: int = 256 << 20, router: Router | None = None,
                 replay_sink: ChangeSink | None = None) -> None:
        self.origin = origin
        self.data_dir = os.path.join(data_dir, "desired")
        self.machine = StateMachine(db, log_roots, sink, router=router, script_max_memory_bytes=script_max_memory_bytes)
        self.ctx = Ctx(db, "log", origin, lambda: 0, sink, lazy_delete=False)  # for reads: writes go through the log
        self.snapshot_every_entries = snapshot_every_entries
        self.segment_max_bytes = segment_max_bytes
        self.log_roots = log_roots
        self._sink = sink
        #: Change events of the log replay at start-up go here (the watch history), not to ``sink``.
        self._replay_sink: ChangeSink = replay_sink or _quiet
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfsd-wal")
        self._pending: list[tuple[bytes | list[bytes], dict[str, Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._failed: str | None = None
        self.wal: WriteAheadLog | None = None
        self.snapshots: SnapshotStore | None = None
        self.snapshot_index = 0
        self._snapshot_failed_at = 0
        self.fsyncs = 0
        #: Called after each applied entry (the node ends a busy script's polling there).
        self.after_apply: Callable[[], None] | None = None

    # -- start and stop ---------------------------------------------------------

    def open(self) -> None:
        """Recover: install the newest snapshot, then replay the log after it (its change events go to
        ``replay_sink`` only: nobody is subscribed yet)."""
        os.makedirs(self.data_dir, exist_ok=True)
        check_own_files(self.data_dir)
        self.snapshots = SnapshotStore(self.data_dir)
        self.wal = WriteAheadLog.open(self.data_dir, segment_max_bytes=self.segment_max_bytes)
        machine = self.machine
        sink, machine.ctx.notify = machine.ctx.notify, self._replay_sink
        try:
            snap = self.snapshots.load_or_replay(self.wal.first_index)
            if snap is not None:
                machine.restore_state(snap.index, codec.unpack(snap.data))
                self.snapshot_index = snap.index
            start = max(machine.applied_index + 1, self.wal.first_index)
            if start > machine.applied_index + 1:
                raise RuntimeError(f"desired log starts at {start} but the snapshot ends at {machine.applied_index}")
            for entry in self.wal.entries(start, self.wal.last_index + 1):
                machine.apply(entry.index, entry.data)
                if self.after_apply is not None:
                    self.after_apply()
            self._log_failures()
        finally:
            machine.ctx.notify = sink
        log.info("desired plane recovered to index %d (snapshot %d)", machine.applied_index, self.snapshot_index)

    async def idle(self) -> None:
        """Wait until every submitted entry is durable and applied, and any snapshot due is taken."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def close(self) -> None:
        await self.idle()
        self._executor.shutdown(wait=True)
        if self.wal is not None:
            self.wal.close()

    # -- writes -----------------------------------------------------------------

    def submit(self, ops: list[list[bytes]], now_ms: int, *, transaction: bool = False,
               watches: list[tuple[bytes, int | None]] | None = None,
               max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES) -> asyncio.Future[Any]:
        """Propose one entry; the future resolves with its reply once it is durable and applied."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            future.set_result(ErrorReply(f"ERR desired-state log unavailable: {self._failed}"))
            return future
        body = entry_body(ops, now_ms, self.origin, transaction=transaction, watches=watches,
                          max_bulk_bytes=max_bulk_bytes)
        self._pending.append((pack_pieces(body), body, future))
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
            payloads = [(first + i, data) for i, (data, _, _) in enumerate(batch)]
            try:
                entries = await loop.run_in_executor(self._executor, self._persist, payloads)
            except Exception as exc:  # fsync failure: the log can no longer be trusted (fsyncgate)
                log.critical("desired-state log write failed, refusing further writes: %s", exc)
                self._failed = str(exc)
                for _, _, future in batch + self._pending:
                    if not future.done():
                        future.set_result(ErrorReply(f"ERR desired-state log unavailable: {exc}"))
                self._pending = []
                return
            self.fsyncs += 1
            for entry, (_, body, future) in zip(entries, batch):
                reply = self.machine.apply(entry.index, entry.data, body=body)
                if self.after_apply is not None:
                    self.after_apply()
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

    def _persist(self, payloads: list[tuple[int, bytes | list[bytes]]]) -> list[LogEntry]:
        """On the writer thread: join any large entry's pieces (here, off the event loop), append, fsync."""
        assert self.wal is not None
        entries = [LogEntry(index, TERM, data if type(data) is bytes else b"".join(data)) for index, data in payloads]
        self.wal.append(entries)
        self.wal.sync()
        return entries

    async def _snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        index = self.machine.applied_index
        state = self.machine.snapshot_state()
        await loop.run_in_executor(self._executor, self._save_snapshot, index, state)
        self.snapshot_index = index

    def _save_snapshot(self, index: int, state: dict[str, Any]) -> None:
        """On the writer thread: save the snapshot, then compact the log to the OLDER kept snapshot,
        so that if the newest one is found damaged at start-up the older one plus the log still
        rebuild everything (see snapshot.py)."""
        assert self.wal is not None and self.snapshots is not None
        self.snapshots.save(Snapshot(index, TERM, codec.pack_elsewhere(state)))
        kept = self.snapshots.kept_indexes()
        if len(kept) > 1:
            older = kept[1]
            term = self.wal.term_at(older)
            if term is not None:
                self.wal.compact(older, term)

    def info(self) -> dict[str, Any]:
        return log_info(self.machine, self.snapshot_index, self.wal, self.fsyncs, len(self._pending))


def log_info(machine: StateMachine, snapshot_index: int, wal: WriteAheadLog | None, fsyncs: int,
             pending: int) -> dict[str, Any]:
    """The desired plane's INFO fields (both shells, one voter or Raft, show the same)."""
    return {
        "desired_applied_index": machine.applied_index,
        "desired_snapshot_index": snapshot_index,
        "desired_log_entries": 0 if wal is None else wal.last_index - wal.first_index + 1,
        "desired_log_bytes": 0 if wal is None else wal.size_bytes,
        "desired_fsyncs": fsyncs,
        "desired_pending": pending,
    }


def _quiet(flag: str, event: str, key: bytes, entry: object = None) -> None:
    return None
