"""How the core's entries and snapshots map onto the desired plane's files.

The write-ahead log stores records ``(index, term, data: bytes)`` and the snapshot
store ``(index, term, data: bytes)``; neither format changes for Raft. What the core
adds travels inside ``data``:

* a log record's data is msgpack ``[1, kind, time_ms, origin, seq, payload]`` (the
  leading 1 is this layout's version). A record written by the one-voter plane
  before Raft holds the state machine's payload directly, a msgpack *map*
  (``{t, o, ops, ...}``); it reads back as a NORMAL entry with ``time_ms`` taken from
  the payload's ``t``, so an existing data directory stays readable.
* a snapshot file's data is msgpack ``[1, meta, state]``: ``meta`` the core's
  :class:`SnapshotMeta` in wire form (index, term, time and the membership in force
  at the snapshot, which a restarted node needs, Raft §7), ``state`` the state
  machine's own bytes. A pre-Raft snapshot (a msgpack array of rows) reads back with
  ``meta`` None; the shell then supplies the configuration.

Pure: no file is touched here, the shell passes bytes in and out.
"""

from __future__ import annotations

from typing import Any

import msgpack

from vfsd.raft.messages import Entry, EntryKind, SnapshotMeta, WireError, entry_from_wire

__all__ = ["RecordError", "decode_entry", "decode_snapshot", "encode_entry", "encode_snapshot"]

_RECORD_VERSION = 1
_SNAPSHOT_VERSION = 1


class RecordError(ValueError):
    """A record or snapshot's data is not in any layout this version reads."""


def encode_entry(entry: Entry) -> bytes:
    """The ``data`` of the write-ahead log record for ``entry``."""
    return msgpack.packb([_RECORD_VERSION, entry.kind, entry.time_ms, entry.origin, entry.seq, entry.data],
                         use_bin_type=True)


def decode_entry(index: int, term: int, data: bytes) -> Entry:
    """The entry a write-ahead log record holds."""
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"log record {index}: not msgpack: {exc}") from None
    if isinstance(obj, dict):  # written by the one-voter plane before Raft
        time_ms = obj.get("t", 0)
        if type(time_ms) is not int or time_ms < 0:
            time_ms = 0
        return Entry(index, term, EntryKind.NORMAL, time_ms, "", 0, data)
    if type(obj) is not list or len(obj) != 6 or obj[0] != _RECORD_VERSION:
        raise RecordError(f"log record {index}: unknown layout")
    _, kind, time_ms, origin, seq, payload = obj
    try:
        return entry_from_wire([index, term, kind, time_ms, origin, seq, payload])
    except WireError as exc:
        raise RecordError(f"log record {index}: {exc}") from None


def encode_snapshot(meta: SnapshotMeta, state: bytes) -> bytes:
    """The ``data`` of the snapshot file for ``meta``, holding the state machine's ``state``."""
    return msgpack.packb([_SNAPSHOT_VERSION, meta.to_wire(), state], use_bin_type=True)


def decode_snapshot(index: int, term: int, data: bytes) -> tuple[SnapshotMeta | None, bytes]:
    """``(meta, state)`` from a snapshot file's data; meta None for a pre-Raft snapshot,
    whose whole data is the state machine's."""
    try:
        obj: Any = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"snapshot {index}: not msgpack: {exc}") from None
    if (type(obj) is list and len(obj) == 3 and obj[0] == _SNAPSHOT_VERSION
            and type(obj[1]) is list and type(obj[2]) is bytes):
        try:
            meta = SnapshotMeta.from_wire(obj[1])
        except WireError as exc:
            raise RecordError(f"snapshot {index}: {exc}") from None
        if (meta.index, meta.term) != (index, term):
            raise RecordError(f"snapshot file says index {index} term {term}, its meta {meta.index} {meta.term}")
        return meta, obj[2]
    if type(obj) is list:  # pre-Raft: the rows of the state machine
        return None, data
    raise RecordError(f"snapshot {index}: unknown layout")
