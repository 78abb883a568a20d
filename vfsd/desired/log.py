"""Segmented write-ahead log of the desired-state plane.

Theory of operation
-------------------
The log is the Raft log (Raft §5.3): entries ``(index, term, data)`` with contiguous
indexes and non-decreasing terms. A single-node plane uses it as a one-voter log; the
Raft shell later adopts it unchanged. The log is not thread-safe: one writer thread
owns it (it is synchronous and never touches asyncio).

Files (all in one directory, which may be shared with the snapshot and hard-state
stores, whose names do not collide):

* ``wal-<first index, 20 digits>.log`` -- a segment. It opens with a 20-byte header
  ``magic "VFSDWAL1" | u32 format version | u64 first index`` (big-endian; the first
  index repeats the file name so a renamed file is caught), followed by records::

      u32 body length | u32 zlib.crc32(body) | body = msgpack [index, term, data]

  Record ``k`` of a segment holds index ``first index + k``. The active (last) segment
  rolls to a new one when a record would push it past ``segment_max_bytes`` (a single
  record larger than that still gets a segment of its own).
* ``wal.meta`` -- where the log starts: ``magic "VFSDWMT1" | u32 body length |
  u32 crc32 | msgpack [version, compact index, compact term]``. It is written only by
  :meth:`WriteAheadLog.compact`, atomically (write ``wal.meta.tmp``, fsync, rename,
  fsync the directory). Absent means nothing was ever compacted (``0, 0``). It lets
  ``first_index``/``last_term`` survive a restart even when every segment was deleted.

Preallocation. The active segment's file is extended ahead of its records, 4 MiB at a
time (never past ``segment_max_bytes`` unless one record needs it), with
``posix_fallocate``: the space past the last record reads as zeros. Writing into space
the file already has changes no file size, so ``sync`` can use ``fdatasync``, which then
has no metadata to commit: on ext4 that made a small sync about a third cheaper when
three members fsync on one disk (the cost every replicated write waits for). Where the
file system cannot preallocate the log simply grows as it is written. ``close`` cuts
the unused space off again, so a cleanly closed log's files are exact.

What is fsynced when, and why
-----------------------------
* ``append`` only buffers (and writes the buffer out past 1 MiB); nothing is durable
  until ``sync`` (flush + ``fdatasync`` of the active segment, then ``fsync`` of the
  directory if a segment was created since). ``fdatasync`` also makes a changed file
  size durable (preallocation, truncation), which is all the metadata a reader of the
  log needs. Raft acknowledges entries only after ``sync``.
* Rolling to a new segment first cuts the old one's preallocated space off, fsyncs and
  closes it, *before* the new file exists. Hence only the last segment can ever have a
  torn tail or a zero-filled end, which is what lets recovery treat damage in any
  earlier segment as corruption.
* ``truncate_suffix`` unlinks whole later segments newest first, fsyncing the directory
  after each unlink, before it cuts the segment holding ``index``. A crash therefore
  leaves a prefix of the old log (never a gap); the cut itself becomes durable at the
  next ``sync``. Losing a not-yet-synced cut is harmless: the node acknowledged nothing
  after it, so it is as if the leader's message had never arrived.
* ``compact`` makes ``wal.meta`` durable first (the commit point), then deletes the
  segments it no longer needs. Recovery re-applies the meta to whatever segments
  survived, so a crash in between is finished on the next open. When the whole log is
  discarded (Raft §7, a snapshot whose last entry the log does not hold), segments are
  unlinked newest first with a directory fsync after each, so a crash cannot leave a
  conflicting later segment without the earlier one that proves the conflict.
* Open fsyncs the last segment and the directory, so that bytes a crashed process left
  in the page cache are durable before the log reports them as held.

Recovery rules (on open)
------------------------
Segments are read in index order; each must start right after the previous one ends,
and the first must start no later than ``compact index + 1``. Every record must hold the
next index and a term no lower than the one before. In the LAST segment, zeros from the
end of the last record to the end of the file are preallocated space: the log continues
there, silently. Otherwise a torn tail --
a short record header, a short body, a CRC mismatch or a zero-filled region (a zero
length is never valid) with no valid record anywhere after it, and whose first bytes are
what a partly written record holds (zeros, or the start of the body the expected record
must have: the msgpack array marker and its index) -- is what a crash during ``append``
leaves: the file is truncated to the last good record and fsynced. A torn (a prefix of
the expected header) or zero-filled segment header in the last segment is rewritten the
same way. Foreign bytes where a header or record should start are not a torn write: a
segment that holds only garbage is corruption, not an empty log. Anything else raises :class:`LogCorruption` naming the file and byte offset: a bad record in an
earlier segment, a bad record followed by a valid one (acknowledged entries may follow
it; silently dropping them would lose committed writes), a CRC-valid record that does
not decode, a wrong index or a decreasing term. After that the compaction point from
``wal.meta`` is applied (see ``compact``). Every entry still held is kept in memory, so
``entries`` never reads the disk; snapshots keep the log bounded.

To find "a valid record after the bad one" when the bad record's length cannot be
trusted, recovery scans byte by byte for a record whose length fits, whose CRC matches
and whose body decodes. A torn final record whose *data* happens to contain a complete
valid WAL record would be reported as corruption: refusing to start is the safe side.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgpack

__all__ = [
    "LogCorruption",
    "LogEntry",
    "WriteAheadLog",
    "fsync_directory",
    "write_file_atomically",
]

_log = logging.getLogger(__name__)

SEGMENT_MAGIC: Final = b"VFSDWAL1"
SEGMENT_FORMAT_VERSION: Final = 1
META_MAGIC: Final = b"VFSDWMT1"
META_FORMAT_VERSION: Final = 1
META_FILE_NAME: Final = "wal.meta"
DEFAULT_SEGMENT_MAX_BYTES: Final = 64 * 1024 * 1024

_SEGMENT_HEADER: Final = struct.Struct(">8sIQ")  # magic, format version, first index
_RECORD_HEADER: Final = struct.Struct(">II")  # body length, crc32(body)
_META_HEADER: Final = struct.Struct(">8sII")  # magic, body length, crc32(body)
# msgpack [1, 0, b""] is 5 bytes (fixarray, two fixints, bin8 of length 0); in
# particular a zero-filled record header (length 0, crc 0 == crc32(b"")) is invalid.
_MIN_BODY_BYTES: Final = 5
_MSGPACK_FIXARRAY_3: Final = 0x93  # first byte of every record body
_WRITE_BUFFER_BYTES: Final = 1 << 20
_PREALLOCATE_BYTES: Final = 4 << 20  # the active segment's file is extended this far ahead of its records
_posix_fallocate = getattr(os, "posix_fallocate", None)
_fdatasync = getattr(os, "fdatasync", os.fsync)  # (fsync where the platform has no fdatasync)
_SEGMENT_NAME: Final = re.compile(r"wal-(\d{20})\.log")


@dataclass(frozen=True, slots=True)
class LogEntry:
    index: int
    term: int
    data: bytes  # opaque payload (the caller's msgpack)


class LogCorruption(Exception):
    """Damage that is not a torn tail; the node must refuse to start."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make creations, renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(
    path: Path, parts: Iterable[bytes], *, tmp_path: Path | None = None
) -> None:
    """Replace ``path`` with ``parts``: write a temporary file, fsync, rename, fsync dir.

    A reader (or a restart after a crash) sees either the old file or the whole new one.
    """
    tmp = tmp_path if tmp_path is not None else path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        offset = 0
        for part in parts:
            offset += _pwrite_all(fd, part, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
    return written


_IOV_MAX = 1024  # Linux's limit on the pieces of one pwritev
_LARGE_DATA_BYTES = 64 * 1024  # entries from this size on are written from their own buffer, never copied


def _pwritev_all(fd: int, pieces: list[bytes], offset: int) -> int:
    """Write ``pieces`` back to back at ``offset``, as few system calls as it takes; bytes written."""
    total = 0
    views = [memoryview(piece) for piece in pieces]
    at = 0  # views[at:] are still to write
    while at < len(views):
        written = os.pwritev(fd, views[at : at + _IOV_MAX], offset + total)
        total += written
        while at < len(views) and written >= len(views[at]):
            written -= len(views[at])
            at += 1
        if written:
            views[at] = views[at][written:]
    return total


def _segment_name(first_index: int) -> str:
    return f"wal-{first_index:020d}.log"


def _encode_record(entry: LogEntry) -> tuple[bytes, bytes]:
    """The record as two pieces: header plus the body's msgpack framing, then the data itself.

    The body is msgpack ``[index, term, data]``, whose encoding ends with ``data``'s bytes
    exactly; building the framing apart and checksumming across both pieces means a large
    entry is never copied here (nor, through ``pwritev``, on its way to the file), and the
    writer thread holds the interpreter lock only for the small framing -- zlib and the
    write release it for the large part -- so clients are not stalled by a big write.
    """
    data = entry.data
    n = len(data)
    bin_header = (b"\xc4" + n.to_bytes(1, "big") if n < 1 << 8 else
                  b"\xc5" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xc6" + n.to_bytes(4, "big"))
    framing = b"\x93" + msgpack.packb(entry.index) + msgpack.packb(entry.term) + bin_header
    crc = zlib.crc32(data, zlib.crc32(framing))
    return _RECORD_HEADER.pack(len(framing) + n, crc) + framing, data


def _decode_body(body: memoryview) -> LogEntry | None:
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not (isinstance(obj, list) and len(obj) == 3):
        return None
    index, term, data = obj
    if type(index) is not int or type(term) is not int or type(data) is not bytes:
        return None
    if index < 1 or term < 0:
        return None
    return LogEntry(index, term, data)


@dataclass(frozen=True, slots=True)
class _BadRecord:
    reason: str
    crc_valid: bool  # a torn write cannot produce a matching CRC


def _parse_record(view: memoryview, pos: int) -> tuple[LogEntry, int] | _BadRecord:
    """The record at ``pos`` and the offset just past it, or why it is not valid."""
    remaining = len(view) - pos
    if remaining < _RECORD_HEADER.size:
        return _BadRecord(f"short record header ({remaining} of 8 bytes)", False)
    length, crc = _RECORD_HEADER.unpack_from(view, pos)
    if length < _MIN_BODY_BYTES:
        return _BadRecord(f"record length {length} is impossible", False)
    body_at = pos + _RECORD_HEADER.size
    if length > len(view) - body_at:
        return _BadRecord(f"short body ({len(view) - body_at} of {length} bytes)", False)
    body = view[body_at : body_at + length]
    if zlib.crc32(body) != crc:
        return _BadRecord("CRC mismatch", False)
    entry = _decode_body(body)
    if entry is None:
        return _BadRecord("CRC-valid record is not msgpack [index, term, data]", True)
    return entry, body_at + length


def _torn_shaped(view: memoryview, pos: int, index: int) -> bool:
    """Whether the bad bytes at ``pos`` could be a record that a crash cut short.

    A crash during ``append`` leaves a prefix of the records it was writing, possibly
    with zero-filled blocks the file system had allocated but not yet written. So a
    torn tail starts with zeros, with a record header too short to judge, or with a
    header whose body begins as record ``index``'s must: the msgpack array marker and
    the index itself. Anything else there is foreign data, not a torn write.
    """
    head = bytes(view[pos : pos + _RECORD_HEADER.size])
    if len(head) < _RECORD_HEADER.size or not any(head):
        return True
    length, _ = _RECORD_HEADER.unpack(head)
    if length < _MIN_BODY_BYTES:
        return False
    expected = bytes([_MSGPACK_FIXARRAY_3]) + msgpack.packb(index)
    body = bytes(view[pos + _RECORD_HEADER.size : pos + _RECORD_HEADER.size + len(expected)])
    return expected.startswith(body) or not any(body)


def _find_valid_record(data: bytes, start: int) -> int | None:
    """Offset of the first valid record beginning at or after ``start``, if any."""
    view = memoryview(data)
    body_at = data.find(_MSGPACK_FIXARRAY_3, start + _RECORD_HEADER.size)
    while body_at != -1:
        if not isinstance(_parse_record(view, body_at - _RECORD_HEADER.size), _BadRecord):
            return body_at - _RECORD_HEADER.size
        body_at = data.find(_MSGPACK_FIXARRAY_3, body_at + 1)
    return None


@dataclass(slots=True)
class _Segment:
    path: Path
    first_index: int
    size_bytes: int  # including bytes still in the write buffer
    offsets: list[int] = field(default_factory=list)  # record k holds first_index + k
    allocated: int = 0  # the file's length: size_bytes plus preallocated (zero) space, once flushed

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


@dataclass(slots=True)
class _ScannedSegment:
    entries: list[LogEntry]
    offsets: list[int]
    valid_bytes: int  # 0 when the header itself is torn
    preallocated: bool = False  # the bytes from valid_bytes to the end are all zeros: space to write into


def _scan_segment(
    path: Path, first_index: int, prev_term: int, data: bytes, *, is_last: bool
) -> _ScannedSegment:
    """Validate one segment; raises LogCorruption for anything but a torn tail."""
    if len(data) < _SEGMENT_HEADER.size or data.count(0) == len(data):
        if not is_last:
            raise LogCorruption(path, 0, "segment header is torn or zero-filled")
        expected = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, first_index)
        if data.count(0) != len(data) and not expected.startswith(data):
            raise LogCorruption(path, 0, f"{len(data)} bytes that are not a segment header")
        return _ScannedSegment([], [], 0)
    magic, version, header_first = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise LogCorruption(path, 0, f"bad segment magic {magic!r}")
    if version != SEGMENT_FORMAT_VERSION:
        raise LogCorruption(path, 8, f"unsupported segment format version {version}")
    if header_first != first_index:
        raise LogCorruption(
            path, 12, f"header says first index {header_first}, file name says {first_index}"
        )
    view = memoryview(data)
    entries: list[LogEntry] = []
    offsets: list[int] = []
    pos = _SEGMENT_HEADER.size
    while pos < len(data):
        parsed = _parse_record(view, pos)
        if isinstance(parsed, _BadRecord):
            if is_last and data.count(0, pos) == len(data) - pos:
                return _ScannedSegment(entries, offsets, pos, preallocated=True)
            if parsed.crc_valid or not is_last:
                raise LogCorruption(path, pos, parsed.reason)
            if not _torn_shaped(view, pos, first_index + len(entries)):
                raise LogCorruption(path, pos, f"{parsed.reason}, and the bytes there are not a partly written record")
            later = _find_valid_record(data, pos + 1)
            if later is not None:
                raise LogCorruption(
                    path, pos, f"{parsed.reason}, yet a valid record follows at offset {later}"
                )
            break  # torn tail: a crash during append
        entry, end = parsed
        expected = first_index + len(entries)
        if entry.index != expected:
            raise LogCorruption(path, pos, f"record holds index {entry.index}, expected {expected}")
        if entry.term < prev_term:
            raise LogCorruption(
                path, pos, f"term {entry.term} at index {entry.index} is below {prev_term}"
            )
        prev_term = entry.term
        entries.append(entry)
        offsets.append(pos)
        pos = end
    return _ScannedSegment(entries, offsets, pos)


class WriteAheadLog:
    """The Raft log on disk. Create with :meth:`open`; see the module docstring."""

    def __init__(self, directory: Path, segment_max_bytes: int) -> None:
        if segment_max_bytes <= 0:
            raise ValueError(f"segment_max_bytes must be positive, got {segment_max_bytes}")
        self._dir = directory
        self._segment_max_bytes = segment_max_bytes
        self._segments: list[_Segment] = []
        self._entries: list[LogEntry] = []  # indexes compact_index + 1 .. last_index
        self._compact_index = 0
        self._compact_term = 0
        # The active segment is self._segments[-1]; its descriptor is open whenever a
        # segment exists. Bytes up to _flushed_bytes are in the file, _pending follows.
        self._active_fd: int | None = None
        self._flushed_bytes = 0
        self._pending: list[bytes] = []  # pieces to write after _flushed_bytes, in order
        self._pending_bytes = 0
        self._dir_dirty = False  # a segment was created since the last directory fsync
        self._closed = False

    # -- opening and recovery -------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
    ) -> WriteAheadLog:
        path = Path(directory)
        if not path.is_dir():
            path.mkdir(parents=True)
            fsync_directory(path.parent)
        log = cls(path, segment_max_bytes)
        log._recover()
        return log

    def _recover(self) -> None:
        (self._dir / (META_FILE_NAME + ".tmp")).unlink(missing_ok=True)
        meta_index, meta_term = self._read_meta()
        found = sorted(
            (int(m.group(1)), self._dir / m.group(0))
            for m in (_SEGMENT_NAME.fullmatch(name) for name in os.listdir(self._dir))
            if m is not None
        )
        prev_term = 0
        for position, (first_index, path) in enumerate(found):
            if self._segments and first_index != self._segments[-1].last_index + 1:
                raise LogCorruption(
                    path,
                    0,
                    f"segment starts at index {first_index}, but the previous one ends at "
                    f"{self._segments[-1].last_index}",
                )
            if not self._segments and first_index > meta_index + 1:
                raise LogCorruption(
                    path,
                    0,
                    f"log starts at index {first_index}, but only entries up to {meta_index} "
                    "were compacted",
                )
            is_last = position == len(found) - 1
            data = path.read_bytes()
            scanned = _scan_segment(path, first_index, prev_term, data, is_last=is_last)
            allocated = len(data)
            if not scanned.preallocated and (scanned.valid_bytes < len(data) or scanned.valid_bytes == 0):
                self._repair_torn_tail(path, first_index, scanned.valid_bytes, len(data))
                allocated = max(scanned.valid_bytes, _SEGMENT_HEADER.size)
            valid_bytes = max(scanned.valid_bytes, _SEGMENT_HEADER.size)
            self._segments.append(_Segment(path, first_index, valid_bytes, scanned.offsets, allocated))
            self._entries.extend(scanned.entries)
            if scanned.entries:
                prev_term = scanned.entries[-1].term
        if self._segments:
            # Pretend the log starts where its files start, then apply wal.meta as a
            # compaction would: this also finishes a compaction that crashed midway.
            self._compact_index = self._segments[0].first_index - 1
            self._compact_term = meta_term
            self._open_active()
            os.fsync(self._active_fd_checked())
        if meta_index > self._compact_index:
            self._drop_through(meta_index, meta_term)
        self._compact_index, self._compact_term = meta_index, meta_term
        fsync_directory(self._dir)

    def _repair_torn_tail(self, path: Path, first_index: int, valid_bytes: int, size: int) -> None:
        _log.warning(
            "%s: truncating torn tail at byte offset %d (%d bytes dropped)",
            path,
            valid_bytes,
            size - valid_bytes,
        )
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, valid_bytes)
            if valid_bytes == 0:  # torn segment header: write it again
                header = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, first_index)
                _pwrite_all(fd, header, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_meta(self) -> tuple[int, int]:
        path = self._dir / META_FILE_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0, 0
        if len(data) < _META_HEADER.size:
            raise LogCorruption(path, 0, f"short meta file ({len(data)} bytes)")
        magic, length, crc = _META_HEADER.unpack_from(data, 0)
        body = data[_META_HEADER.size :]
        if magic != META_MAGIC:
            raise LogCorruption(path, 0, f"bad meta magic {magic!r}")
        if len(body) != length or zlib.crc32(body) != crc:
            raise LogCorruption(path, _META_HEADER.size, "meta body length or CRC mismatch")
        try:
            version, index, term = msgpack.unpackb(body)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise LogCorruption(path, _META_HEADER.size, f"undecodable meta: {exc}") from exc
        if version != META_FORMAT_VERSION:
            raise LogCorruption(path, _META_HEADER.size, f"unsupported meta version {version}")
        if type(index) is not int or type(term) is not int or index < 0 or term < 0:
            raise LogCorruption(path, _META_HEADER.size, f"bad compaction point {index}, {term}")
        return index, term

    def _write_meta(self, index: int, term: int) -> None:
        body = msgpack.packb([META_FORMAT_VERSION, index, term], use_bin_type=True)
        header = _META_HEADER.pack(META_MAGIC, len(body), zlib.crc32(body))
        write_file_atomically(self._dir / META_FILE_NAME, [header, body])

    # -- reading --------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """Index of the first entry held; ``last_index + 1`` when the log is empty."""
        return self._compact_index + 1

    @property
    def last_index(self) -> int:
        """Index of the last entry; the compaction point (0 if none) when empty."""
        return self._compact_index + len(self._entries)

    @property
    def last_term(self) -> int:
        """Term of the last entry, or of the compaction point when empty."""
        return self._entries[-1].term if self._entries else self._compact_term

    @property
    def size_bytes(self) -> int:
        """Bytes the segments hold, counting writes still buffered (not preallocated space)."""
        return sum(segment.size_bytes for segment in self._segments)

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; the compaction point's term at that index
        (0 at index 0), so the §5.3 consistency check works at the log's start; None
        when ``index`` was compacted away or is past the end."""
        if index == self._compact_index:
            return self._compact_term
        if self._compact_index < index <= self.last_index:
            return self._entries[index - self.first_index].term
        return None

    def entries(self, lo: int, hi: int) -> list[LogEntry]:
        """Entries with ``lo <= index < hi`` (``hi`` is clipped to the end of the log).

        ``lo`` below ``first_index`` is a caller bug: those entries live only in a
        snapshot, which the Raft shell must send instead.
        """
        if lo < self.first_index:
            raise AssertionError(
                f"entries from {lo} requested, but the log starts at {self.first_index}"
            )
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        base = self.first_index
        return self._entries[lo - base : hi - base]

    # -- writing --------------------------------------------------------------------

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Buffer ``entries`` (indexes ``last_index + 1, + 2, ...``); durable after sync()."""
        self._check_open()
        for entry in entries:
            if entry.index != self.last_index + 1:
                raise AssertionError(
                    f"append of index {entry.index}, expected {self.last_index + 1}"
                )
            if entry.term < self.last_term:
                raise AssertionError(
                    f"append of term {entry.term} after term {self.last_term}: terms in a "
                    "Raft log never decrease"
                )
            head, data = _encode_record(entry)
            size = len(head) + len(data)
            if not self._segments or (
                self._segments[-1].offsets
                and self._segments[-1].size_bytes + size > self._segment_max_bytes
            ):
                self._start_segment(entry.index)
            segment = self._segments[-1]
            segment.offsets.append(segment.size_bytes)
            segment.size_bytes += size
            if len(data) < _LARGE_DATA_BYTES:
                self._queue(head + data)  # small: one piece (copying it is cheaper than another iovec)
            else:
                self._queue(head)
                self._queue(data)
            self._entries.append(entry)
            if self._pending_bytes >= _WRITE_BUFFER_BYTES:
                self._flush()

    def sync(self) -> None:
        """Make every appended entry and every truncation durable."""
        self._check_open()
        if self._active_fd is not None:
            self._flush()
            _fdatasync(self._active_fd)
        if self._dir_dirty:
            fsync_directory(self._dir)
            self._dir_dirty = False

    def truncate_suffix(self, index: int) -> None:
        """Drop entries with index >= ``index``; durable after sync().

        Raft §5.3: when an entry conflicts with the leader's (same index, different
        term), the follower deletes it and all that follow. Entries up to the commit
        index never conflict, so cutting into the compacted prefix is a caller bug.
        """
        self._check_open()
        if index <= self._compact_index:
            raise AssertionError(
                f"truncate_suffix({index}) would cut compacted entries (log starts at "
                f"{self.first_index})"
            )
        if index > self.last_index:
            return
        self._flush()
        # Newest segment first, one directory fsync per unlink: a crash leaves a
        # prefix of the old log, never a gap (see the module docstring).
        while self._segments and self._segments[-1].first_index >= index:
            self._remove_segment(self._segments.pop())
            fsync_directory(self._dir)
        if self._segments:
            self._open_active()
            segment = self._segments[-1]
            if index <= segment.last_index:
                cut = segment.offsets[index - segment.first_index]
                del segment.offsets[index - segment.first_index :]
                os.ftruncate(self._active_fd_checked(), cut)
                segment.size_bytes = segment.allocated = self._flushed_bytes = cut
        del self._entries[index - self.first_index :]

    def compact(self, upto_index: int, upto_term: int) -> None:
        """Drop entries <= ``upto_index`` once a durable snapshot covers them.

        Raft §7: if the log holds ``upto_index`` with ``upto_term`` the entries after it
        are kept; otherwise (a snapshot installed from the leader that the log does not
        match, or that lies past its end) the whole log is discarded and the next append
        is ``upto_index + 1``. A compaction point at or below the current one is a no-op.
        """
        self._check_open()
        if upto_index <= self._compact_index:
            return
        self._write_meta(upto_index, upto_term)  # the commit point; the rest is redone on open
        self._drop_through(upto_index, upto_term)

    def _drop_through(self, upto_index: int, upto_term: int) -> None:
        if self.term_at(upto_index) == upto_term:
            del self._entries[: upto_index - self._compact_index]
            removed = False
            while self._segments and self._segments[0].last_index <= upto_index:
                self._remove_segment(self._segments.pop(0))
                removed = True
            if removed:
                fsync_directory(self._dir)
        else:
            self._entries.clear()
            while self._segments:
                self._remove_segment(self._segments.pop())
                fsync_directory(self._dir)
        self._compact_index, self._compact_term = upto_index, upto_term

    def close(self) -> None:
        """Sync, cut off preallocated space and release the active segment; further calls are
        errors (close is idempotent)."""
        if self._closed:
            return
        self.sync()
        if self._active_fd is not None:
            segment = self._segments[-1]
            if segment.allocated > segment.size_bytes:  # a cleanly closed log's files are exact
                os.ftruncate(self._active_fd, segment.size_bytes)
                os.fsync(self._active_fd)
                segment.allocated = segment.size_bytes
            os.close(self._active_fd)
            self._active_fd = None
        self._closed = True

    # -- segment files --------------------------------------------------------------

    def _start_segment(self, first_index: int) -> None:
        if self._active_fd is not None:
            # The old segment is exact and durable before the new one can exist: only the
            # last segment may ever have a torn tail or preallocated space.
            self._flush()
            old = self._segments[-1]
            if old.allocated > old.size_bytes:
                os.ftruncate(self._active_fd, old.size_bytes)
                old.allocated = old.size_bytes
            os.fsync(self._active_fd)
            os.close(self._active_fd)
            self._active_fd = None
        path = self._dir / _segment_name(first_index)
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._dir_dirty = True
        self._flushed_bytes = 0
        self._queue(_SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, first_index))
        self._segments.append(_Segment(path, first_index, _SEGMENT_HEADER.size))

    def _open_active(self) -> None:
        if self._active_fd is None and self._segments:
            self._active_fd = os.open(self._segments[-1].path, os.O_WRONLY)
            self._flushed_bytes = self._segments[-1].size_bytes
            self._segments[-1].allocated = os.fstat(self._active_fd).st_size
            self._drop_pending()

    def _remove_segment(self, segment: _Segment) -> None:
        """Unlink a segment already taken off self._segments."""
        if self._active_fd is not None and (
            not self._segments or segment.first_index > self._segments[-1].first_index
        ):
            os.close(self._active_fd)  # it was the active segment
            self._active_fd = None
            self._drop_pending()
        segment.path.unlink()

    def _queue(self, piece: bytes) -> None:
        if piece:
            self._pending.append(piece)
            self._pending_bytes += len(piece)

    def _drop_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0

    def _flush(self) -> None:
        if self._pending and self._active_fd is not None:
            end = self._flushed_bytes + self._pending_bytes
            segment = self._segments[-1]
            if end > segment.allocated:
                self._preallocate(segment, end)
            self._flushed_bytes += _pwritev_all(self._active_fd, self._pending, self._flushed_bytes)
            segment.allocated = max(segment.allocated, self._flushed_bytes)
            self._drop_pending()

    def _preallocate(self, segment: _Segment, end: int) -> None:
        """Extend the active segment's file past ``end`` (see Preallocation); a file system
        that cannot, or is too full to, is left to grow as it is written."""
        if _posix_fallocate is None or self._active_fd is None:
            return
        target = max(end, min(end + _PREALLOCATE_BYTES, self._segment_max_bytes))
        try:
            _posix_fallocate(self._active_fd, segment.allocated, target - segment.allocated)
        except OSError:
            return
        segment.allocated = target

    def _active_fd_checked(self) -> int:
        if self._active_fd is None:
            raise AssertionError("no active segment")
        return self._active_fd

    def _check_open(self) -> None:
        if self._closed:
            raise AssertionError("write-ahead log used after close()")
