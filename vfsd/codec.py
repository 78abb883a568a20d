"""Values are binary JSON: msgpack.

A file holds either the exact bytes a client ``SET`` (kind RAW) or a structured
document written with ``JSON.SET`` or by a collector (kind DOC), stored as
msgpack. ``GET`` of a document returns its compact JSON text.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

RAW = 0
DOC = 1

_packer = msgpack.Packer(use_bin_type=True)


def pack(obj: Any) -> bytes:
    return _packer.pack(obj)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def dumps_json(obj: Any) -> bytes:
    """Compact JSON text, as RedisJSON prints a document."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class JSONError(ValueError):
    pass


def loads_json(text: bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JSONError(f"ERR invalid JSON: {exc}") from None


def doc_to_json(packed: bytes) -> bytes:
    return dumps_json(unpack(packed))
