"""Redis's error texts, in one place so replies match Redis byte for byte."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

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


def parse_float(arg: bytes) -> Decimal:
    """A finite number as Redis's strtold reads it (no spaces, no '_', no inf/nan), kept exact."""
    if not arg or arg != arg.strip() or b"_" in arg:
        raise NOT_FLOAT
    try:
        value = Decimal(arg.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        raise NOT_FLOAT from None
    if not value.is_finite() or abs(value) > LONG_DOUBLE_MAX:  # strtold: ERANGE
        raise NOT_FLOAT
    return value


#: Redis computes INCRBYFLOAT in long double; beyond its range the result is "Infinity".
LONG_DOUBLE_MAX = Decimal("1.18973149535723176502e4932")
_SEVENTEEN_PLACES = Decimal("1e-17")


def format_float(value: Decimal) -> bytes:
    """Format like Redis's INCRBYFLOAT: ``%.17Lf`` with trailing zeros (and point) trimmed, never an exponent."""
    with localcontext() as wide:
        wide.prec = 4960  # room for long double's largest integer part and 17 decimals
        text = format(value.quantize(_SEVENTEEN_PLACES), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text.encode()
