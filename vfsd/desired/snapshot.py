"""Snapshot store and hard-state store of the desired-state plane.

Both write whole files atomically (temporary file, fsync, rename, fsync directory), so
a crash leaves either the old file or the complete new one; a CRC catches media damage.

Snapshot file ``snap-<index, 20 digits>.snap``::

    magic "VFSDSNP1" | u32 format version | u64 index | u64 term | u64 data length
    | u32 crc32(index, term, length fields + data) | data

The newest two snapshots are kept so that a damaged newest one falls back to the
previous one. That fallback only restores the state if the log still holds the entries
after the older snapshot, so the Raft shell should compact the log no further than the
older of the two kept snapshots (or be ready to fetch a snapshot from the leader).

Hard state file ``hardstate``::

    magic "VFSDHST1" | u32 body length | u32 crc32(body) | body = msgpack
    [version, term, voted_for, commit]

Raft §5.2: term and vote are persisted before the node answers a RequestVote or an
AppendEntries. A damaged hard state raises instead of defaulting: forgetting a vote
could let the node vote twice in one term.

The directory may be shared with the write-ahead log; file names do not collide.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgpack

from vfsd.desired.log import fsync_directory, write_file_atomically

__all__ = [
    "HardState",
    "HardStateCorruption",
    "HardStateStore",
    "Snapshot",
    "SnapshotCorruption",
    "SnapshotStore",
]

_log = logging.getLogger(__name__)

SNAPSHOT_MAGIC: Final = b"VFSDSNP1"
SNAPSHOT_FORMAT_VERSION: Final = 1
SNAPSHOTS_KEPT: Final = 2
HARD_STATE_MAGIC: Final = b"VFSDHST1"
HARD_STATE_FORMAT_VERSION: Final = 1
HARD_STATE_FILE_NAME: Final = "hardstate"

_SNAPSHOT_PREFIX: Final = struct.Struct(">8sI")  # magic, format version
_SNAPSHOT_FIELDS: Final = struct.Struct(">QQQ")  # index, term, data length (CRC-covered)
_SNAPSHOT_CRC: Final = struct.Struct(">I")
_SNAPSHOT_HEADER_BYTES: Final = _SNAPSHOT_PREFIX.size + _SNAPSHOT_FIELDS.size + _SNAPSHOT_CRC.size
_HARD_STATE_HEADER: Final = struct.Struct(">8sII")  # magic, body length, crc32(body)
_SNAPSHOT_NAME: Final = re.compile(r"snap-(\d{20})\.snap")
_SNAPSHOT_TMP_NAME: Final = re.compile(r"snap-(\d{20})\.tmp")


def _ensure_directory(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(parents=True)
        fsync_directory(path.parent)


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: int  # last log index the snapshot covers
    term: int  # term of that entry
    data: bytes


class SnapshotCorruption(Exception):
    """Snapshot files exist but none of them is valid; the node must refuse to start."""


class SnapshotStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        _ensure_directory(self._dir)
        for name in os.listdir(self._dir):
            if _SNAPSHOT_TMP_NAME.fullmatch(name):  # a save that crashed before its rename
                (self._dir / name).unlink()

    def save(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` durably and atomically; keep the newest two."""
        if snapshot.index < 0 or snapshot.term < 0:
            raise AssertionError(f"bad snapshot point {snapshot.index}, {snapshot.term}")
        fields = _SNAPSHOT_FIELDS.pack(snapshot.index, snapshot.term, len(snapshot.data))
        crc = zlib.crc32(snapshot.data, zlib.crc32(fields))
        prefix = _SNAPSHOT_PREFIX.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION)
        write_file_atomically(
            self._dir / f"snap-{snapshot.index:020d}.snap",
            [prefix, fields, _SNAPSHOT_CRC.pack(crc), snapshot.data],
            tmp_path=self._dir / f"snap-{snapshot.index:020d}.tmp",
        )
        # Deleting older snapshots needs no fsync: one that reappears after a crash is
        # merely kept a little longer.
        for _, path in self._listed()[SNAPSHOTS_KEPT:]:
            path.unlink(missing_ok=True)

    def kept_indexes(self) -> list[int]:
        """Indexes of the snapshot files present, newest first (valid or not)."""
        return [index for index, _ in self._listed()]

    def read(self, index: int) -> Snapshot | None:
        """The snapshot saved at ``index`` if it is still kept and valid, else None."""
        for kept, path in self._listed():
            if kept == index:
                found = _read_snapshot(path, index)
                return found if isinstance(found, Snapshot) else None
        return None

    def load_or_replay(self, log_first_index: int) -> Snapshot | None:
        """``load``, except that when every snapshot is damaged but the log was never compacted
        (``log_first_index`` 1: compaction waits for a second snapshot) the log alone holds every
        entry, so None is returned (a longer replay) instead of SnapshotCorruption."""
        try:
            return self.load()
        except SnapshotCorruption:
            if log_first_index > 1:
                raise
            _log.warning("every desired-plane snapshot is damaged; replaying the whole log instead")
            return None

    def load(self) -> Snapshot | None:
        """The newest valid snapshot; None when there is none at all.

        A damaged newest snapshot is skipped (with a warning) in favour of the previous
        one; when every snapshot file is damaged, SnapshotCorruption is raised rather
        than starting from an empty state machine.
        """
        problems: list[str] = []
        for index, path in self._listed():
            snapshot_or_problem = _read_snapshot(path, index)
            if isinstance(snapshot_or_problem, Snapshot):
                for problem in problems:
                    _log.warning("skipping damaged snapshot: %s", problem)
                return snapshot_or_problem
            problems.append(f"{path}: {snapshot_or_problem}")
        if problems:
            raise SnapshotCorruption("no valid snapshot: " + "; ".join(problems))
        return None

    def _listed(self) -> list[tuple[int, Path]]:
        """Snapshot files, newest first."""
        found = (_SNAPSHOT_NAME.fullmatch(name) for name in os.listdir(self._dir))
        return sorted(
            ((int(m.group(1)), self._dir / m.group(0)) for m in found if m is not None),
            reverse=True,
        )


def _read_snapshot(path: Path, index_from_name: int) -> Snapshot | str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "vanished while loading"
    if len(data) < _SNAPSHOT_HEADER_BYTES:
        return f"short header ({len(data)} bytes)"
    magic, version = _SNAPSHOT_PREFIX.unpack_from(data, 0)
    if magic != SNAPSHOT_MAGIC:
        return f"bad magic {magic!r}"
    if version != SNAPSHOT_FORMAT_VERSION:
        return f"unsupported format version {version}"
    index, term, length = _SNAPSHOT_FIELDS.unpack_from(data, _SNAPSHOT_PREFIX.size)
    (crc,) = _SNAPSHOT_CRC.unpack_from(data, _SNAPSHOT_PREFIX.size + _SNAPSHOT_FIELDS.size)
    body = memoryview(data)[_SNAPSHOT_HEADER_BYTES:]
    fields = memoryview(data)[_SNAPSHOT_PREFIX.size : _SNAPSHOT_PREFIX.size + _SNAPSHOT_FIELDS.size]
    if len(body) != length:
        return f"data is {len(body)} bytes, header says {length}"
    if zlib.crc32(body, zlib.crc32(fields)) != crc:
        return "CRC mismatch"
    if index != index_from_name:
        return f"holds index {index}, file name says {index_from_name}"
    return Snapshot(index, term, bytes(body))


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    voted_for: str | None = None
    commit: int = 0


class HardStateCorruption(Exception):
    """The hard-state file is damaged; the node must refuse to start."""


class HardStateStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._dir = Path(directory)
        _ensure_directory(self._dir)
        self._path = self._dir / HARD_STATE_FILE_NAME

    def save(self, state: HardState) -> None:
        """Persist ``state`` atomically and durably (Raft §5.2: before answering)."""
        body = msgpack.packb(
            [HARD_STATE_FORMAT_VERSION, state.term, state.voted_for, state.commit],
            use_bin_type=True,
        )
        header = _HARD_STATE_HEADER.pack(HARD_STATE_MAGIC, len(body), zlib.crc32(body))
        write_file_atomically(self._path, [header, body])

    def load(self) -> HardState:
        """The saved hard state; ``HardState()`` when none was ever saved."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return HardState()
        if len(data) < _HARD_STATE_HEADER.size:
            raise HardStateCorruption(f"{self._path}: short header ({len(data)} bytes)")
        magic, length, crc = _HARD_STATE_HEADER.unpack_from(data, 0)
        body = data[_HARD_STATE_HEADER.size :]
        if magic != HARD_STATE_MAGIC:
            raise HardStateCorruption(f"{self._path}: bad magic {magic!r}")
        if len(body) != length or zlib.crc32(body) != crc:
            raise HardStateCorruption(f"{self._path}: body length or CRC mismatch")
        try:
            version, term, voted_for, commit = msgpack.unpackb(body, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise HardStateCorruption(f"{self._path}: undecodable body: {exc}") from exc
        if version != HARD_STATE_FORMAT_VERSION:
            raise HardStateCorruption(f"{self._path}: unsupported format version {version}")
        if (
            type(term) is not int
            or type(commit) is not int
            or not (voted_for is None or isinstance(voted_for, str))
        ):
            raise HardStateCorruption(f"{self._path}: malformed fields")
        return HardState(term=term, voted_for=voted_for, commit=commit)
