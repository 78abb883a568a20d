"""The conversion rules between Lua values and Redis replies (Redis 7.2 ``script_lua.c``).

Pure: no Lua runtime is imported here. The sandbox passes in the few Lua
operations the rules need (``new_table``, ``rawget``, ``items``), so the rules
can be unit-tested with plain Python stand-ins as well as with real Lua.

Reply -> Lua (what ``redis.call`` returns), for a script speaking RESP2 (the
default) or RESP3 (after ``redis.setresp(3)``):

    bulk string          string
    integer              number
    status (+OK)         {ok = "OK"}
    error                {err = "CODE message"} (raised by redis.call, returned by redis.pcall)
    null bulk / array    false (RESP2) / nil (RESP3)
    array                table (1-based)
    map                  flat array (RESP2) / {map = {k = v}} (RESP3)
    set                  array (RESP2) / {set = {member = true}} (RESP3)
    double               bulk string (RESP2) / {double = n} (RESP3)
    boolean              integer 1/0 (RESP2) / true/false (RESP3)
    verbatim string      string (RESP2) / {verbatim_string = {format = "txt", string = s}} (RESP3)
    big number           string (RESP2) / {big_number = "123..."} (RESP3)

Lua -> reply (what a script returns):

    string               bulk string
    number               integer, truncated toward zero (3.99 -> 3, -3.7 -> -3)
    true                 integer 1 (RESP2 script) / boolean true (RESP3 script)
    false, nil           null
    {err = s}            error reply (s as is; "ERR" is not added)
    {ok = s}             status reply (CR and LF become spaces)
    {double = n}         double          {big_number = s}   big number
    {map = t}            map             {set = t}          set (the keys of t)
    {verbatim_string = {format = f, string = s}}  verbatim string
    other tables         array of t[1], t[2], ... up to the first nil
    functions, userdata  null
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from vfsd.resp.types import NULL_ARRAY, BigNumber, ErrorReply, NullArray, SimpleString, Verbatim

__all__ = ["MAX_REPLY_DEPTH", "error_from_lua", "error_table_message", "format_number", "lua_to_reply", "reply_to_lua",
           "status_from_lua"]

#: How deep a returned table may nest before the reply becomes an error. Redis stops when
#: the Lua C stack is exhausted ("reached lua stack limit"); a self-referencing table must
#: not recurse forever here either.
MAX_REPLY_DEPTH = 200

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


def format_number(n: float | int) -> bytes:
    """A Lua number as an argument of ``redis.call``: Redis 7.2's ``fpconv_dtoa``.

    The shortest digits that read back as the same double, laid out as ``%.17g``
    would lay them out: exponent form below 1e-4 or from 1e17 on, else fixed,
    no trailing zeros (3.0 -> "3", 0.1 -> "0.1", 1e20 -> "1e+20").
    """
    if type(n) is int:
        if -(1 << 53) <= n <= 1 << 53:
            return b"%d" % n
        n = float(n)
    if n != n:
        return b"-nan" if math.copysign(1.0, n) < 0 else b"nan"
    if n in (math.inf, -math.inf):
        return b"inf" if n > 0 else b"-inf"
    if n == 0:
        return b"-0" if math.copysign(1.0, n) < 0 else b"0"
    sign, digits, exponent = Decimal(repr(n)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exponent)  # the decimal exponent of the leading digit, plus one
    lead = point - 1
    if lead < -4 or lead >= 17:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = f"{mantissa}e{'-' if lead < 0 else '+'}{abs(lead):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return (("-" if sign else "") + out).encode()


def truncate_number(n: float | int) -> int:
    """``(long long)`` of a Lua number, as Redis replies with it."""
    if type(n) is int:
        return n
    if n != n:
        return INT64_MIN  # what x86-64 gives for an out-of-range or NaN conversion
    if n >= 9.223372036854775807e18 or n < -9.223372036854775808e18:
        return INT64_MIN
    return int(n)


def error_table_message(message: str) -> bytes:
    """The ``err`` field Redis builds for an error reply (``luaPushErrorBuff``): code and text, no newline."""
    text = message[1:] if message.startswith("-") else message
    code, space, rest = text.partition(" ")
    if not space:
        code, rest = "ERR", text
    return f"{code} {rest.strip(chr(13) + chr(10))}".encode()


def reply_to_lua(value: Any, resp: int, new_table: Callable[[Any], Any]) -> Any:
    """A command's reply as the Lua value ``redis.call`` returns (see the module table)."""
    kind = type(value)
    if kind is bytes or kind is int:
        return value
    if value is None or kind is NullArray:
        return None if resp == 3 else False
    if kind is SimpleString:
        return new_table({b"ok": value.encode()})
    if kind is list or kind is tuple:
        return new_table([reply_to_lua(v, resp, new_table) for v in value])
    if isinstance(value, ErrorReply):
        return new_table({b"err": error_table_message(value.message)})
    if isinstance(value, bool):
        if resp == 3:
            return value
        return 1 if value else 0
    if isinstance(value, SimpleString):
        return new_table({b"ok": str(value).encode()})
    if isinstance(value, Verbatim):
        if resp == 3:
            inner = new_table({b"format": getattr(value, "format_code", "txt").encode(), b"string": value.encode()})
            return new_table({b"verbatim_string": inner})
        return value.encode()
    if isinstance(value, BigNumber):
        return new_table({b"big_number": value.encode()}) if resp == 3 else value.encode()
    if isinstance(value, float):
        if resp == 3:
            return new_table({b"double": value})
        return _double_bulk(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        if resp == 3:
            inner = new_table({reply_to_lua(k, resp, new_table): reply_to_lua(v, resp, new_table)
                               for k, v in value.items()})
            return new_table({b"map": inner})
        flat: list[Any] = []
        for k, v in value.items():
            flat += (reply_to_lua(k, resp, new_table), reply_to_lua(v, resp, new_table))
        return new_table(flat)
    if isinstance(value, (set, frozenset)):
        if resp == 3:
            return new_table({b"set": new_table({reply_to_lua(m, resp, new_table): True for m in value})})
        return new_table([reply_to_lua(m, resp, new_table) for m in value])
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"no Lua conversion for a {type(value).__name__} reply")


def _double_bulk(value: float) -> bytes:
    """A double sent to a RESP2 client: the bulk string Redis's addReplyDouble writes."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return format_number(value)


class LuaOps:
    """The Lua operations ``lua_to_reply`` needs, supplied by the sandbox."""

    __slots__ = ("is_table", "rawget", "items", "is_null")

    def __init__(self, is_table: Callable[[Any], bool], rawget: Callable[[Any, Any], Any],
                 items: Callable[[Any], Iterable[tuple[Any, Any]]],
                 is_null: Callable[[Any], bool] = lambda v: False) -> None:
        self.is_table = is_table
        self.rawget = rawget
        self.items = items
        #: cjson.null and similar sentinels: Redis sends them as null (they are light userdata there).
        self.is_null = is_null


def error_from_lua(field: bytes) -> ErrorReply:
    """The reply for ``{err = field}``: the text as is ("ERR" is not added)."""
    return ErrorReply(field.decode(errors="replace"))


def status_from_lua(field: bytes) -> SimpleString:
    """The reply for ``{ok = field}``: a status line, CR and LF turned into spaces."""
    return SimpleString(field.decode(errors="replace").replace("\r", " ").replace("\n", " "))


def lua_to_reply(value: Any, resp3_booleans: bool, ops: LuaOps, depth: int = 0) -> Any:
    """A value a script returned as the reply to send (see the module table).

    ``resp3_booleans``: the script called ``redis.setresp(3)``, so booleans are sent
    as RESP3 booleans; maps, sets and doubles are sent in the caller's protocol
    by the encoder either way.
    """
    kind = type(value)
    if kind is bytes or kind is int:
        return value
    if kind is float:
        return truncate_number(value)
    if kind is bool:
        if resp3_booleans:
            return value
        return 1 if value else None
    if value is None or not ops.is_table(value) or ops.is_null(value):
        return None
    if depth >= MAX_REPLY_DEPTH:
        return ErrorReply("ERR reached lua stack limit")
    rawget = ops.rawget
    field = rawget(value, b"err")
    if type(field) is bytes:
        return error_from_lua(field)
    field = rawget(value, b"ok")
    if type(field) is bytes:
        return status_from_lua(field)
    field = rawget(value, b"double")
    if type(field) in (int, float):
        return float(field)
    field = rawget(value, b"big_number")
    if type(field) is bytes:
        return BigNumber(field.decode(errors="replace").replace("\r", " ").replace("\n", " "))
    field = rawget(value, b"verbatim_string")
    if field is not None and ops.is_table(field):
        fmt, text = rawget(field, b"format"), rawget(field, b"string")
        if type(fmt) is bytes and type(text) is bytes:
            return Verbatim.with_format(text.decode(errors="replace"), fmt[:3].decode(errors="replace"))
    field = rawget(value, b"map")
    if field is not None and ops.is_table(field):
        out: dict[Any, Any] = {}
        for k, v in ops.items(field):
            out[_hashable(lua_to_reply(k, resp3_booleans, ops, depth + 1))] = lua_to_reply(v, resp3_booleans, ops,
                                                                                          depth + 1)
        return out
    field = rawget(value, b"set")
    if field is not None and ops.is_table(field):
        return {_hashable(lua_to_reply(k, resp3_booleans, ops, depth + 1)) for k, _ in ops.items(field)}
    items = []
    i = 1
    while True:
        item = rawget(value, i)
        if item is None:
            break
        items.append(lua_to_reply(item, resp3_booleans, ops, depth + 1))
        i += 1
    return items


def _hashable(value: Any) -> Any:
    """Map keys and set members must hash: an array reply becomes a tuple (still sent as an array)."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, set):
        return tuple(value)
    return value


_ = NULL_ARRAY  # re-exported for callers that compare against it
