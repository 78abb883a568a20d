"""Encode reply values as RESP2 or RESP3 bytes.

Wire forms follow the RESP3 spec
(https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md) and, for
RESP2 downgrades, what Redis 7.2 sends to a client that did not `HELLO 3`: booleans
become integers, doubles and verbatim strings become bulks, maps become flat arrays,
sets and pushes become arrays, and every null becomes `$-1` (or `*-1` for NULL_ARRAY).

The server calls `encode_into` once per reply and joins the pieces once per batch of
pipelined replies, so the common cases (bulk, integer, status, null) are tested first
and served from prebuilt bytes where possible.
"""

from __future__ import annotations

import math
from typing import Any, Final

from vfsd.resp.types import BigNumber, ErrorReply, NullArray, Pairs, Push, SimpleString, Verbatim

__all__ = ["encode", "encode_into"]

_CRLF: Final = b"\r\n"

# Replies for small integers and aggregate headers are prebuilt: `:0`, `:1` and
# `*2` dominate real traffic (EXISTS, SADD, DEL, MGET of a few keys).
_CACHED_COUNT: Final = 1024
_INT_REPLIES: Final = tuple(b":%d\r\n" % n for n in range(_CACHED_COUNT))
_ARRAY_HEADERS: Final = tuple(b"*%d\r\n" % n for n in range(_CACHED_COUNT))
# A bulk goes out as three pieces (header, payload, CRLF): extending the list with a
# tuple is cheaper than formatting one piece, and the payload is then copied only
# once, by the server's join.
_BULK_HEADERS: Final = tuple(b"$%d\r\n" % n for n in range(_CACHED_COUNT))
_SIMPLE_REPLIES: Final[dict[str, bytes]] = {
    "OK": b"+OK\r\n",
    "QUEUED": b"+QUEUED\r\n",
    "PONG": b"+PONG\r\n",
}
_NULL_BULK: Final = b"$-1\r\n"
_NULL_ARRAY_RESP2: Final = b"*-1\r\n"
_NULL_RESP3: Final = b"_\r\n"
_TRUE_RESP3: Final = b"#t\r\n"
_FALSE_RESP3: Final = b"#f\r\n"


def encode(value: object, proto: int) -> bytes:
    """Return the wire form of one reply; `proto` is 2 or 3 (the client's HELLO)."""
    out: list[bytes] = []
    encode_into(out, value, proto)
    return out[0] if len(out) == 1 else b"".join(out)


def encode_into(out: list[bytes], value: object, proto: int) -> None:
    """Append the wire form of `value` to `out` as one or more pieces.

    Raises TypeError for a value with no RESP mapping: that is a handler bug, not
    something to send to the client.
    """
    # `v` is `value` untyped: each branch below is chosen by its exact type, which
    # mypy cannot narrow through `kind`, and isinstance asserts would cost on the
    # hottest line of the server.
    v: Any = value
    kind = type(v)
    if kind is bytes:
        size = len(v)
        out += (_BULK_HEADERS[size] if size < _CACHED_COUNT else b"$%d\r\n" % size, v, _CRLF)
    elif kind is int:
        out.append(_INT_REPLIES[v] if 0 <= v < _CACHED_COUNT else b":%d\r\n" % v)
    elif kind is SimpleString:
        cached = _SIMPLE_REPLIES.get(v)
        out.append(cached if cached is not None else _status(v))
    elif v is None:
        out.append(_NULL_RESP3 if proto == 3 else _NULL_BULK)
    elif kind is list:
        _encode_items(out, v, len(v), proto)
    else:
        _encode_other(out, v, proto)


def _status(text: str) -> bytes:
    """`+text`; a CR or LF would end the line early and desync the client, so blank it."""
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return b"+%b\r\n" % text.encode()


def _error(message: str) -> bytes:
    """`-message`; newlines are replaced like Redis's addReplyErrorFormat does."""
    if "\r" in message or "\n" in message:
        message = message.replace("\r", " ").replace("\n", " ")
    return b"-%b\r\n" % message.encode()


def _bulk(out: list[bytes], data: bytes) -> None:
    """`$len` bulk string as three pieces (see _BULK_HEADERS)."""
    size = len(data)
    out += (_BULK_HEADERS[size] if size < _CACHED_COUNT else b"$%d\r\n" % size, data, _CRLF)


def _double_text(number: float) -> bytes:
    """Redis 7.2's d2string (util.c): nan/inf/-0 spelled out, integral values below 2**62
    as integers, the rest as fpconv_dtoa prints the shortest round-trip digits."""
    if number != number:
        return b"nan"
    if math.isinf(number):
        return b"inf" if number > 0 else b"-inf"
    if number == 0:
        return b"-0" if math.copysign(1.0, number) < 0 else b"0"
    if -_HALF_LLONG <= number <= _HALF_LLONG and number == int(number):
        return b"%d" % int(number)
    return _fpconv(number)


#: (double)(LLONG_MAX / 2): double2ll's range for printing a double as an integer.
_HALF_LLONG: Final = float((2**63 - 1) // 2)


def _fpconv(number: float) -> bytes:
    """fpconv_dtoa's layout (deps/fpconv) of the shortest digits Python's repr finds."""
    neg = number < 0
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    k = (int(exponent) if exponent else 0) - len(fraction)
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    exp = abs(k + n - 1)
    if k >= 0 and exp < n + 7:
        text = digits + "0" * k
    elif k < 0 and (k > -7 or exp < 4):
        offset = n + k
        text = "0." + "0" * -offset + digits if offset <= 0 else digits[:offset] + "." + digits[offset:]
    else:
        n = min(n, 18 - neg)
        text = digits[0] + ("." + digits[1:n] if n > 1 else "") + "e" + ("-" if k + n - 1 < 0 else "+")
        text += str(exp)
    return (("-" if neg else "") + text).encode()


def _encode_items(out: list[bytes], items: list[object] | tuple[object, ...], count: int,
                  proto: int) -> None:
    """`*n` followed by each element; bulk elements are inlined for speed."""
    out.append(_ARRAY_HEADERS[count] if count < _CACHED_COUNT else b"*%d\r\n" % count)
    if count > 8:
        # A reply of many short strings (LRANGE, SMEMBERS, HGETALL...): framed in one join, which
        # costs half of appending three pieces per element. Anything else (a longer string, a
        # number, a nested reply) raises here, and the general loop below takes it.
        headers = _BULK_HEADERS
        try:
            body = _CRLF.join([headers[len(item)] + item for item in items])  # type: ignore[operator,index]
        except (TypeError, IndexError):
            pass
        else:
            out.append(body)
            out.append(_CRLF)
            return
    for item in items:
        if type(item) is bytes:
            size = len(item)
            out += (_BULK_HEADERS[size] if size < _CACHED_COUNT else b"$%d\r\n" % size,
                    item, _CRLF)
        else:
            encode_into(out, item, proto)


def _encode_other(out: list[bytes], value: object, proto: int) -> None:
    """Every type outside the fast path, in an order where subclasses come first."""
    resp3 = proto == 3
    if isinstance(value, bool):  # bool is an int subclass: must precede int
        if resp3:
            out.append(_TRUE_RESP3 if value else _FALSE_RESP3)
        else:
            out.append(_INT_REPLIES[1] if value else _INT_REPLIES[0])
    elif isinstance(value, ErrorReply):
        out.append(_error(value.message))
    elif isinstance(value, SimpleString):
        out.append(_status(value))
    elif isinstance(value, Verbatim):
        data = value.encode()
        if resp3:
            out.append(b"=%d\r\n%b:%b\r\n" % (len(data) + 4, value.format_code.encode(), data))
        else:
            _bulk(out, data)
    elif isinstance(value, BigNumber):
        if resp3:
            out.append(b"(%b\r\n" % value.encode())
        else:
            _bulk(out, value.encode())
    elif isinstance(value, int):
        out.append(b":%d\r\n" % value)
    elif isinstance(value, float):
        text = _double_text(value)
        if resp3:
            out.append(b",%b\r\n" % text)
        else:
            _bulk(out, text)
    elif isinstance(value, str):
        _bulk(out, value.encode())
    elif isinstance(value, (bytes, bytearray, memoryview)):
        # bytes() snapshots mutable buffers: the join happens later, after the handler.
        _bulk(out, bytes(value))
    elif isinstance(value, NullArray):
        out.append(_NULL_RESP3 if resp3 else _NULL_ARRAY_RESP2)
    elif isinstance(value, Push):
        if resp3:
            out.append(b">%d\r\n" % len(value))
            for item in value:
                encode_into(out, item, proto)
        else:
            _encode_items(out, value, len(value), proto)
    elif isinstance(value, Pairs):
        if resp3:
            _encode_items(out, value, len(value), proto)
        else:
            _encode_items(out, [item for row in value for item in row], 2 * len(value), proto)  # type: ignore[attr-defined]
    elif isinstance(value, (list, tuple)):
        _encode_items(out, value, len(value), proto)
    elif isinstance(value, dict):
        if resp3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            count = 2 * len(value)
            out.append(_ARRAY_HEADERS[count] if count < _CACHED_COUNT else b"*%d\r\n" % count)
        for key, item in value.items():
            encode_into(out, key, proto)
            encode_into(out, item, proto)
    elif isinstance(value, (set, frozenset)):
        out.append(b"~%d\r\n" % len(value) if resp3 else b"*%d\r\n" % len(value))
        for item in value:
            encode_into(out, item, proto)
    else:
        raise TypeError(f"no RESP encoding for {type(value).__name__}: {value!r:.80}")
