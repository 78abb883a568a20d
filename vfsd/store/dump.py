"""Point-in-time dumps of the local and active planes, as Redis's ``dump.rdb``.

The desired plane keeps everything in its own log; the local and active planes
would otherwise vanish at every restart. A dump holds their files (value, kind,
revision, origin, times and TTL deadline) and the high-water marks of their
revision clocks, so that revisions never run backwards after a restart (the active
plane's hybrid logical clock resumes above every revision it handed out).

Taking a dump must not stall clients: a point-in-time walk of the keyspace
(``pointintime``) visits it a chunk at a time on the event loop, copy-on-write per
key, and the packed chunks go to a writer thread (see ``saver``). This module is the
file format: its pieces, and loading.

File ``dump.vfsd`` in the data dir, written atomically (temporary file, fsync,
rename, fsync of the directory)::

    magic "VFSDDMP1" | u32 format version | body | "VFSDEND1" | u64 body length | u32 crc32(body)

(the checksum trails, so the body streams to disk as it is packed), where the body is msgpack: first ``[meta]`` (a map: ``hlc``, ``local_rev``,
``saved_ms``, ``node``, ``v`` the values' wire version), then one row per file
``[key, kind, value, rev, origin, ctime_ms, mtime_ms, expire_at_ms-or-nil]`` with the value
in its kind's wire form (``vfsd.store.values``).
A damaged dump refuses the start (as Redis does with a bad RDB), naming the file:
silently starting empty would look like lost data.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgpack

from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE, Entry
from vfsd.store.values import KINDS, WIRE_VERSION, WireError, from_wire, to_wire

DUMP_FILE_NAME: Final = "dump.vfsd"
MAGIC: Final = b"VFSDDMP1"
FORMAT_VERSION: Final = 1
_HEADER: Final = struct.Struct(">8sI")  # magic, version
_TRAILER: Final = struct.Struct(">8sQI")  # end magic, body length, crc32(body)
END_MAGIC: Final = b"VFSDEND1"




class DumpCorruption(Exception):
    """The dump file is damaged; the node refuses to start rather than lose its contents silently."""


@dataclass(frozen=True, slots=True)
class Dump:
    """What a dump holds: its files, and the revision clocks' high-water marks."""

    rows: list[list[Any]]
    hlc: int = 0
    local_rev: int = 0
    saved_ms: int = 0
    node: str = ""


def save_due(points: Iterable[tuple[int, int]], changes: int, since_save_ms: int) -> bool:
    """Whether a save point is reached: at least ``changes`` changes and ``seconds`` since the last save."""
    return any(changes >= n and changes > 0 and since_save_ms >= seconds * 1000 for seconds, n in points)


def header() -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION)


def meta(*, hlc: int, local_rev: int, saved_ms: int, node: str) -> dict[str, Any]:
    return {"hlc": hlc, "local_rev": local_rev, "saved_ms": saved_ms, "node": node, "v": WIRE_VERSION}


def row(key: bytes, entry: Entry, expire_at: int | None) -> list[Any]:
    """One file's row; its value in the wire form of its kind (vfsd.store.values), packed at once."""
    kind = entry[KIND]
    return [key, kind, to_wire(kind, entry[VALUE]), entry[REV], entry[ORIGIN], entry[CTIME], entry[MTIME], expire_at]


def trailer(body_bytes: int, body_crc: int) -> bytes:
    return _TRAILER.pack(END_MAGIC, body_bytes, body_crc)


def path_in(directory: str) -> Path:
    return Path(directory) / DUMP_FILE_NAME


def load(directory: str) -> Dump | None:
    """The dump in ``directory``, or None when there is none; DumpCorruption when it is damaged."""
    path = Path(directory) / DUMP_FILE_NAME
    (Path(directory) / (DUMP_FILE_NAME + ".tmp")).unlink(missing_ok=True)  # a save that crashed before its rename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < _HEADER.size + _TRAILER.size:
        raise DumpCorruption(f"{path}: short file ({len(data)} bytes)")
    magic, version = _HEADER.unpack_from(data, 0)
    end, length, crc = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
    body = memoryview(data)[_HEADER.size : len(data) - _TRAILER.size]
    if magic != MAGIC:
        raise DumpCorruption(f"{path}: bad magic {magic!r}")
    if version != FORMAT_VERSION:
        raise DumpCorruption(f"{path}: unsupported format version {version}")
    if end != END_MAGIC or len(body) != length or zlib.crc32(body) != crc:
        raise DumpCorruption(f"{path}: truncated, or its length or CRC does not match "
                             "(move the file aside to start without it)")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(body) + 1)
    unpacker.feed(body)
    try:
        meta = next(unpacker)
        if not isinstance(meta, dict):
            raise DumpCorruption(f"{path}: the body does not start with its meta map")
        version = meta.get("v", WIRE_VERSION)
        rows = [_checked_row(path, row, version) for row in unpacker]
    except (StopIteration, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DumpCorruption(f"{path}: undecodable body: {exc}") from None
    return Dump(rows, int(meta.get("hlc", 0)), int(meta.get("local_rev", 0)), int(meta.get("saved_ms", 0)),
                str(meta.get("node", "")))


def _checked_row(path: Path, row: Any, version: int) -> list[Any]:
    """A row as stored, its value rebuilt from its wire form; DumpCorruption for anything malformed."""
    ok = (isinstance(row, list) and len(row) == 8 and type(row[0]) is bytes and row[1] in KINDS
          and type(row[3]) is int and type(row[4]) is str
          and type(row[5]) is int and type(row[6]) is int and (row[7] is None or type(row[7]) is int))
    if not ok:
        raise DumpCorruption(f"{path}: malformed row {str(row)[:80]}")
    try:
        row[2] = from_wire(row[1], row[2], version)
    except WireError as exc:
        raise DumpCorruption(f"{path}: malformed value of {row[0]!r}: {exc}") from None
    return row
