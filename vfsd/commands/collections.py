"""What the collection families (hashes, lists, sets, sorted sets) share.

Typed lookups (WRONGTYPE as Redis's checkType), storing a changed collection
under a fresh revision with its TTL kept (Redis keeps a key's TTL when its
value is modified), deleting a collection that became empty (with Redis's
``del`` event after the command's own), number parsing with Redis's texts, and
the HSCAN/SSCAN/ZSCAN walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from itertools import islice
from typing import Any

from vfsd.commands.context import Ctx
from vfsd.commands.errors import INT64_MAX, NOT_INTEGER, SYNTAX, WRONGTYPE, parse_int
from vfsd.glob import compile_glob
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, Entry

NOT_VALID_FLOAT = ErrorReply("ERR value is not a valid float")
OUT_OF_RANGE = ErrorReply("ERR value is out of range")
INVALID_CURSOR = ErrorReply("ERR invalid cursor")
NO_SUCH_KEY = ErrorReply("ERR no such key")

LONG_MAX = INT64_MAX


def typed(ctx: Ctx, key: bytes, kind: int) -> Entry | None:
    """The live entry at ``key`` if it holds ``kind``; None if absent; WRONGTYPE otherwise."""
    entry = ctx.lookup(key)
    if entry is not None and entry[KIND] != kind:
        raise WRONGTYPE
    return entry


def store(ctx: Ctx, key: bytes, value: Any, kind: int, old: Entry | None) -> Entry:
    """Write a (changed or new) collection: a fresh revision, the TTL kept if the key lived."""
    return ctx.write(key, value, kind, old=old, keep_ttl=old is not None)


def drop(ctx: Ctx, key: bytes) -> None:
    """Delete a collection that became empty, with the ``del`` event Redis raises after the command's."""
    ctx.remove(key)
    ctx.notify("g", "del", key)


def replace(ctx: Ctx, key: bytes, value: Any, kind: int) -> Entry:
    """A *STORE destination: overwrite whatever is there (any type), dropping its TTL."""
    return ctx.write(key, value, kind, old=ctx.lookup(key))


# -- numbers --------------------------------------------------------------------


def parse_range_long(arg: bytes, low: int, high: int, message: str | None = None) -> int:
    """getRangeLongFromObjectOrReply: an integer in [low, high]; ``message`` replaces both errors."""
    error = ErrorReply("ERR " + message) if message else None
    value = parse_int(arg, error or NOT_INTEGER)
    if not low <= value <= high:
        raise error or ErrorReply(f"ERR value is out of range, value must between {low} and {high}")
    return value


def parse_positive(arg: bytes, message: str = "value is out of range, must be positive") -> int:
    """getPositiveLongFromObjectOrReply (LPOP count, SPOP count, LPOS COUNT...)."""
    return parse_range_long(arg, 0, LONG_MAX, message)


_SPACE = b" \t\n\v\f\r"


def parse_double(arg: bytes, error: ErrorReply = NOT_VALID_FLOAT) -> float:
    """A double as Redis's getDoubleFromObject reads it (strtod): inf allowed, NaN, spaces,
    trailing bytes, overflow and underflow to zero refused."""
    if not arg or arg[0] in _SPACE or arg[-1] in _SPACE or b"_" in arg:
        raise error
    try:
        value = float(arg)  # the common case; float() also takes what strtod would not, sorted out below
    except ValueError:
        value = None  # type: ignore[assignment]
    if value is not None and value - value == 0:  # finite (not inf, not NaN)
        if value == 0 and any(48 < c <= 57 for c in arg.lower().partition(b"e")[0]):
            raise error  # strtod's ERANGE on underflow to zero
        return value
    try:
        text = arg.decode("ascii")
    except UnicodeDecodeError:
        raise error from None
    bare = text.lower().lstrip("+-")
    if bare in ("inf", "infinity"):
        return -math.inf if text[0] == "-" else math.inf
    if bare.startswith("0x"):
        try:
            return float.fromhex(text)
        except (ValueError, OverflowError):
            raise error from None
    raise error  # NaN, or an overflow float() turned into inf (strtod: ERANGE)


def parse_long_double(arg: bytes, error: ErrorReply) -> Decimal:
    """strtold as getLongDoubleFromObject reads it, kept exact; inf allowed, NaN refused."""
    if not arg or arg[0] in _SPACE or arg[-1] in _SPACE or b"_" in arg:
        raise error
    try:
        value = Decimal(arg.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        raise error from None
    if value.is_nan():
        raise error
    return value


# -- HSCAN, SSCAN, ZSCAN ------------------------------------------------------------


def parse_cursor(arg: bytes) -> int:
    """strtoul as parseScanCursorOrReply reads it."""
    if not arg or not arg.isdigit() or int(arg) >= 1 << 64:
        if arg[:1] == b"-" and arg[1:].isdigit() and int(arg[1:]) < 1 << 64:
            return (1 << 64) - int(arg[1:])  # strtoul wraps a negative number
        raise INVALID_CURSOR
    return int(arg)


def scan_options(argv: list[bytes], start: int) -> tuple[int, Callable[[bytes], Any] | None]:
    """COUNT and MATCH of a collection scan (TYPE is a syntax error here, as in Redis)."""
    count = 10
    match: Callable[[bytes], Any] | None = None
    i, n = start, len(argv)
    while i < n:
        opt = argv[i].lower()
        if opt == b"count" and n - i >= 2:
            count = parse_int(argv[i + 1])
            if count < 1:
                raise SYNTAX
        elif opt == b"match" and n - i >= 2:
            pattern = argv[i + 1]
            match = None if pattern == b"*" else compile_glob(pattern)
        else:
            raise SYNTAX
        i += 2
    return count, match


def scan_reply(items: Iterable[tuple[bytes, Any]], size: int, cursor: int, count: int, whole: bool,
               match: Callable[[bytes], Any] | None, pairs: bool) -> list[Any]:
    """One step of a collection scan over ``items`` ((element, value-or-None) in a stable order).

    ``whole``: the collection is small (Redis's listpack/intset), so Redis returns all of it at
    once with cursor 0. Otherwise the cursor is the position to resume at: elements present for
    the whole scan are all returned when nothing is removed meanwhile; a removal may make the
    scan skip an element after it (see compat/DIFFERENCES.md).
    """
    if whole:
        chosen = items
        next_cursor = 0
    else:
        if cursor >= size:
            return [b"0", []]
        chosen = islice(items, cursor, cursor + count)
        next_cursor = cursor + count if cursor + count < size else 0
    out: list[Any] = []
    for element, value in chosen:
        if match is None or match(element) is not None:
            out.append(element)
            if pairs:
                out.append(value)
    return [b"%d" % next_cursor, out]
