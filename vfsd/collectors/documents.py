"""Checking, placing and merging the documents collectors return (pure).

A plugin's output is untrusted: it may return a set, a NaN, a key that is not
a string, a sub-path with ``..`` in it. ``check_documents`` refuses all of
that with an error naming the document and the place inside it, so one bad
plugin gets a clear ``last_error`` in ``/itg`` instead of a half-written
subtree or an unreadable document (``GET`` must always be able to print JSON).
It runs in the collector's worker thread, off the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vfsd.paths import PathError, check_path

INT_MIN = -(1 << 63)
UINT_MAX = (1 << 64) - 1
#: Deeper than any sensible inventory document; RedisJSON's own limit is 128.
MAX_DEPTH = 64


class DocumentError(ValueError):
    """A collector returned something that is not a set of JSON documents; the text says what and where."""


def check_documents(docs: Any) -> dict[str, dict[str, Any]]:
    """Validate a collector's result and return it as plain dicts and lists (tuples become lists)."""
    if not isinstance(docs, Mapping):
        raise DocumentError(f"collect() must return a mapping of sub-path to document, not {type(docs).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for sub, doc in docs.items():
        check_subpath(sub)
        if not isinstance(doc, Mapping):
            raise DocumentError(f"document {sub!r}: must be a JSON object (dict), not {type(doc).__name__}")
        out[sub] = _json_value(doc, sub, "$", 0)
    return out


def check_subpath(sub: Any) -> None:
    """``""`` (the node document) or a relative path such as ``cpu`` or ``disks/sda1``."""
    if not isinstance(sub, str):
        raise DocumentError(f"sub-path {sub!r}: must be a str")
    if sub == "":
        return
    if sub.startswith("/"):
        raise DocumentError(f"sub-path {sub!r}: must be relative (no leading '/')")
    try:
        check_path(b"/x/" + sub.encode("utf-8", "surrogatepass"))
    except PathError as exc:
        raise DocumentError(f"sub-path {sub!r}: {str(exc).removeprefix('ERR ')}") from None


def _json_value(value: Any, sub: str, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise DocumentError(f"document {sub!r}: nested deeper than {MAX_DEPTH} levels at {where}")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= UINT_MAX:
            raise DocumentError(f"document {sub!r}: integer out of 64-bit range at {where}")
        return int(value)  # an IntEnum becomes a plain int
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DocumentError(f"document {sub!r}: {value} at {where} (JSON numbers must be finite)")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, child in value.items():
            if not isinstance(key, str):
                raise DocumentError(f"document {sub!r}: key {key!r} at {where} is not a string")
            out[key] = _json_value(child, sub, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(child, sub, f"{where}[{i}]", depth + 1) for i, child in enumerate(value)]
    raise DocumentError(f"document {sub!r}: {type(value).__name__} at {where} is not a JSON value")


def deep_merge(parts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge JSON objects left to right; nested objects merge, anything else is replaced by the later part."""
    out: dict[str, Any] = {}
    for part in parts:
        _merge_into(out, part)
    return out


def _merge_into(target: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        elif isinstance(value, Mapping):
            target[key] = {}
            _merge_into(target[key], value)
        else:
            target[key] = value


def document_path(root: str, node_id: str, sub: str) -> bytes:
    """``/hw/<node>/<sub>``, or ``/hw/<node>`` for the node document (``sub == ""``)."""
    base = f"{root}/{node_id}"
    return (base if sub == "" else f"{base}/{sub}").encode()


def safe_segment(text: str) -> str:
    """A name (device, interface) made usable as one path segment: '/' and control characters become '_'."""
    out = "".join("_" if ch == "/" or ord(ch) < 0x20 or ch == "\x7f" else ch for ch in text)
    return "_" + out if out in ("", ".", "..") else out
