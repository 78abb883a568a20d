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

#: One reusable Packer for the event loop's thread; a Packer is not thread-safe, so code on any
#: other thread (the log writer packing a snapshot) calls ``pack_elsewhere``.
_packer = msgpack.Packer(use_bin_type=True)


def pack(obj: Any) -> bytes:
    """msgpack ``obj`` (event-loop thread only: see ``_packer``)."""
    return _packer.pack(obj)


def pack_elsewhere(obj: Any) -> bytes:
    """``pack`` for any thread: a Packer of its own for each call."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def dumps_json(obj: Any) -> bytes:
    """Compact JSON text, as RedisJSON prints a document."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class JSONError(ValueError):
    pass


def loads_json(text: bytes) -> Any:
    """Parse JSON text into a value a document can store.

    Python's parser lets a lone UTF-16 surrogate through (``"\\ud800"``, or the raw bytes
    ``ED A0 80``, which it decodes with ``surrogatepass``); such a string has no UTF-8 form,
    so msgpack could not store it. It is refused here, like any other invalid JSON,
    whichever command or plane the text arrived on.
    """
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JSONError(f"ERR invalid JSON: {exc}") from None
    if not isinstance(text, bytes) or b"\\u" in text or b"\xed" in text:  # the only ways a surrogate gets in
        _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError as exc:
                raise JSONError(f"ERR invalid JSON: lone surrogate {item[exc.start]!r} in a string "
                                "(it has no UTF-8 encoding)") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def doc_to_json(packed: bytes) -> bytes:
    return dumps_json(unpack(packed))
