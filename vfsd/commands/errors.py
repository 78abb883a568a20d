"""Redis's error texts, in one place so replies match Redis byte for byte."""

from __future__ import annotations

from vfsd.resp.types import ErrorReply

WRONGTYPE = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")
SYNTAX = ErrorReply("ERR syntax error")
NOT_INTEGER = ErrorReply("ERR value is not an integer or out of range")
NOT_FLOAT = ErrorReply("ERR value is not a valid float")
OVERFLOW = ErrorReply("ERR increment or decrement would overflow")
NAN_OR_INF = ErrorReply("ERR increment would produce NaN or Infinity")
OFFSET_RANGE = ErrorReply("ERR offset is out of range")
MAX_STRING = ErrorReply("ERR string exceeds maximum allowed size (proto-max-bulk-len)")

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def wrong_arity(name: str) -> ErrorReply:
    return ErrorReply(f"ERR wrong number of arguments for '{name}' command")


def invalid_expire(name: str) -> ErrorReply:
    return ErrorReply(f"ERR invalid expire time in '{name}' command")


def parse_int(arg: bytes, error: ErrorReply = NOT_INTEGER) -> int:
    """A signed 64-bit integer in Redis's strict decimal form (no spaces, no '+', no leading zeros)."""
    try:
        value = int(arg)
    except ValueError:
        raise error from None
    # int() accepts " 1", "+1", "01" and "1_0"; Redis does not. The canonical text must round-trip.
    if b"%d" % value != arg or not INT64_MIN <= value <= INT64_MAX:
        raise error
    return value


def parse_float(arg: bytes) -> float:
    import math

    text = arg.strip()
    if not arg or text != arg:
        raise NOT_FLOAT
    try:
        value = float(arg)
    except ValueError:
        raise NOT_FLOAT from None
    if math.isnan(value):
        raise NOT_FLOAT
    return value


def format_float(value: float) -> bytes:
    """Format like Redis's INCRBYFLOAT (%.17Lg, then trailing zeros trimmed)."""
    if value == int(value) and abs(value) < 1e17:
        return str(int(value)).encode()
    text = f"{value:.17g}"
    if "e" not in text and "." in text:
        shorter = repr(value)
        if "e" not in shorter and float(shorter) == value:
            text = shorter
    return text.encode()
