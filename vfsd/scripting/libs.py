"""The Lua libraries Redis scripts use: ``cjson``, ``cmsgpack``, ``bit``, ``struct``.

Written in Python against the same small set of Lua operations as ``convert``
(``LibOps``: make a table, walk a table), so this module stays pure. Each
function returns ``(True, results...)`` or ``(False, message)``; the sandbox's
Lua wrapper turns the second form into a Lua error without position, as the C
libraries' ``luaL_error`` does from a C function.

Behaviour follows the C libraries Redis 7.2 bundles:
- cjson (lua-cjson 2.1): numbers with 14 significant digits (``%.14g``), ``/``
  escaped as ``\\/``, an empty table encodes as ``{}``, tables whose keys are all
  positive integers as arrays (holes become ``null``; "excessively sparse" past
  twice as many slots as items, once above 10), nesting limited to 1000 levels,
  ``null`` decodes to the ``cjson.null`` sentinel.
- cmsgpack (lua-cmsgpack 0.4): integral numbers as the smallest integer form,
  others as float32 when exact, else float64; strings as raw (fixstr, str8,
  str16, str32); tables with keys 1..n as arrays, others as maps; nesting past
  16 levels encodes as nil.
- bit (LuaBitOp 1.0): 32-bit operations, arguments normalised with ``tobit``.
- struct (Roberto Ierusalimschy's struct 0.2 as patched by Redis).

Long calls. Lua's count hook runs only between VM instructions, and a library
call is one of them, however long it takes; so the libraries report their work
themselves, through ``LibOps.spend(units)``, in units worth about one VM
instruction each (a value encoded or decoded: ``VALUE_WORK``; ``BYTES_PER_WORK``
bytes of a string scanned). The sandbox turns every ``HOOK_STEPS`` units into a
hook period (busy replies to other clients, SCRIPT KILL, the instruction budget
of desired-plane scripts) and raises ``LibStop`` when the run must stop. The
units depend only on the input, so a budget stops every replica at the same
place. Long strings are scanned in pieces of ``PIECE_BYTES``.
"""

from __future__ import annotations

import math
import re
import struct as pystruct
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

__all__ = ["BYTES_PER_WORK", "CONCAT_ELEMENTS", "PIECE_BYTES", "VALUE_WORK", "LibError", "LibOps", "LibStop",
           "base_functions", "bit_functions", "cjson_functions", "cmsgpack_functions", "lua_tonumber", "struct_functions"]

Result = tuple[Any, ...]

#: Work units (about one Lua VM instruction's time each) of one value encoded, decoded or packed.
VALUE_WORK = 20
#: Bytes of a string scanned or copied per work unit.
BYTES_PER_WORK = 16
#: Long strings are scanned in pieces of this size, with a report of the work between pieces.
PIECE_BYTES = 16 * 1024


def _no_spend(units: int) -> None:
    return None


class LibOps:
    """What the libraries need from the Lua runtime."""

    __slots__ = ("new_table", "is_table", "items", "null", "is_null", "spend", "room", "callee", "lua_type")

    def __init__(self, new_table: Callable[[Any], Any], is_table: Callable[[Any], bool],
                 items: Callable[[Any], Iterable[tuple[Any, Any]]], null: Any,
                 is_null: Callable[[Any], bool], spend: Callable[[int], None] = _no_spend,
                 room: Callable[[int], bool] = lambda nbytes: True,
                 callee: Callable[[], tuple[Any, Any]] = lambda: (None, None),
                 lua_type: Callable[[Any], str | None] = lambda v: None) -> None:
        self.new_table = new_table
        self.is_table = is_table
        self.items = items
        self.null = null
        self.is_null = is_null
        #: ``spend(units)``: work done; raises LibStop when the run must stop (see the module docstring).
        self.spend = spend
        #: ``room(nbytes)``: whether a result of that size still fits in the runtime's memory limit.
        self.room = room
        #: ``callee()``: (name, namewhat) of the running library function as its caller named it
        #: (Lua's getinfo "n"), for argument errors.
        self.callee = callee
        #: ``lua_type(v)``: "table", "function", "thread", "userdata"... for a value from Lua; None for others.
        self.lua_type = lua_type


class LibError(Exception):
    pass


class LibStop(Exception):
    """The run must stop (SCRIPT KILL, its instruction budget): ``verdict`` is the error to raise in Lua."""

    def __init__(self, verdict: bytes) -> None:
        super().__init__(verdict.decode(errors="replace"))
        self.verdict = verdict


def _wrap(fn: Callable[..., Result]) -> Callable[..., Result]:
    def guarded(*args: Any) -> Result:
        try:
            return (True, *fn(*args))
        except LibError as exc:
            return (False, str(exc).encode())
        except RecursionError:
            return (False, b"Cannot serialise, excessive nesting")
    return guarded


def _entries(table: Any, ops: LibOps) -> list[tuple[Any, Any]]:
    """A table's (key, value) pairs, their work reported every 1024 (walking a table crosses into Lua)."""
    it = iter(ops.items(table))
    pairs: list[tuple[Any, Any]] = []
    while True:
        chunk = list(islice(it, 1024))
        if not chunk:
            return pairs
        pairs += chunk
        ops.spend(len(chunk) * VALUE_WORK)


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


# -- cjson ------------------------------------------------------------------------

CJSON_MAX_DEPTH = 1000
_JSON_ESCAPES = {i: "\\u%04x" % i for i in range(32)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("/"): "\\/", 8: "\\b", 12: "\\f", 10: "\\n",
                      13: "\\r", 9: "\\t", 127: "\\u007f"})
_JSON_BYTE_ESCAPES = [(_JSON_ESCAPES.get(i) or chr(i)).encode("latin-1") if i < 128 else bytes([i])
                      for i in range(256)]
#: The bytes lua-cjson escapes in a string (every other byte is copied as is).
_JSON_SPECIAL = re.compile(rb'[\x00-\x1f"\\/\x7f]')


def _json_escape(match: re.Match[bytes]) -> bytes:
    return _JSON_BYTE_ESCAPES[match.group()[0]]


def format_g14(n: float | int) -> bytes:
    """``%.14g``, as lua-cjson formats numbers."""
    text = "%.14g" % n
    return text.encode()


def cjson_functions(ops: LibOps) -> dict[str, Callable[..., Result]]:
    spend = ops.spend
    subn = _JSON_SPECIAL.subn

    def encode_string(s: bytes) -> bytes:
        if len(s) <= PIECE_BYTES:
            text, escaped = subn(_json_escape, s)
            if escaped > 64:
                spend(escaped * VALUE_WORK)
            return b'"' + text + b'"'
        parts = [b'"']
        for start in range(0, len(s), PIECE_BYTES):
            text, escaped = subn(_json_escape, s[start:start + PIECE_BYTES])
            parts.append(text)
            spend(PIECE_BYTES // BYTES_PER_WORK + escaped * VALUE_WORK)  # an escape costs as much as a value
        parts.append(b'"')
        return b"".join(parts)

    def encode_value(v: Any, depth: int, out: list[bytes]) -> None:
        spend(VALUE_WORK)
        kind = type(v)
        if kind is bytes:
            out.append(encode_string(v))
        elif kind is bool:
            out.append(b"true" if v else b"false")
        elif kind in (int, float):
            if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
                raise LibError("Cannot serialise number: must not be NaN or Inf")
            out.append(format_g14(v))
        elif v is None or ops.is_null(v):
            out.append(b"null")
        elif ops.is_table(v):
            depth += 1
            if depth > CJSON_MAX_DEPTH:
                raise LibError(f"Cannot serialise, excessive nesting ({depth})")
            pairs = _entries(v, ops)
            size = _array_size(pairs)
            if size > 0:
                by_index = {int(k): val for k, val in pairs}
                out.append(b"[")
                for i in range(1, size + 1):
                    if i > 1:
                        out.append(b",")
                    encode_value(by_index.get(i), depth, out)
                out.append(b"]")
            else:
                out.append(b"{")
                first = True
                for k, val in pairs:
                    if not first:
                        out.append(b",")
                    first = False
                    if type(k) is bytes:
                        out.append(encode_string(k))
                    elif _is_number(k):
                        out.append(b'"' + format_g14(k) + b'"')
                    else:
                        raise LibError("Cannot serialise table: table key must be a number or string")
                    out.append(b":")
                    encode_value(val, depth, out)
                out.append(b"}")
        else:
            raise LibError(f"Cannot serialise {_lua_type_name(v, ops)}: type not supported")

    def _array_size(pairs: list[tuple[Any, Any]]) -> int:
        """lua-cjson's lua_array_length: the array size, 0 for an object, error when too sparse."""
        largest = 0
        for k, _ in pairs:
            if not _is_number(k) or k < 1 or math.floor(k) != k:
                return 0
            largest = max(largest, int(k))
        items = len(pairs)
        if largest > 10 and largest > items * 2:  # encode_sparse_array(false, 2, 10)
            raise LibError("Cannot serialise table: excessively sparse array")
        return largest

    def encode(*args: Any) -> Result:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'encode' (expected 1 argument)")
        out: list[bytes] = []
        encode_value(args[0], 0, out)
        return (b"".join(out),)

    def decode(*args: Any) -> Result:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'decode' (expected 1 argument)")
        text = args[0]
        if _is_number(text):
            text = format_g14(text)
        if type(text) is not bytes:
            raise LibError(f"bad argument #1 to 'decode' (string expected, got {_lua_type_name(text, ops)})")
        return (_JsonReader(text, ops).document(),)

    def noop_setting(*args: Any) -> Result:
        return ()

    return {"encode": _wrap(encode), "decode": _wrap(decode), "encode_keep_buffer": _wrap(noop_setting),
            "encode_max_depth": _wrap(lambda *a: (CJSON_MAX_DEPTH,)),
            "decode_max_depth": _wrap(lambda *a: (CJSON_MAX_DEPTH,)),
            "encode_number_precision": _wrap(lambda *a: (14,)),
            "encode_invalid_numbers": _wrap(lambda *a: (False,)),
            "decode_invalid_numbers": _wrap(lambda *a: (True,)),
            "encode_sparse_array": _wrap(lambda *a: (False, 2, 10))}


def _lua_type_name(v: Any, ops: LibOps | None = None) -> str:
    if v is None:
        return "nil"
    kind = type(v)
    if kind is bool:
        return "boolean"
    if kind in (int, float):
        return "number"
    if kind is bytes:
        return "string"
    if ops is not None and ops.is_table(v):
        return "table"
    return "function" if callable(v) else "userdata"


_JSON_WS = re.compile(rb"[ \t\r\n]*")
_JSON_NUMBER = re.compile(rb"[+\-0-9.eE]*")
#: A run of string bytes that need no decoding, up to PIECE_BYTES of them.
_JSON_PLAIN = re.compile(rb'[^"\\]{1,%d}' % PIECE_BYTES)
_JSON_SIMPLE_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b", ord("f"): b"\f",
                        ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}


class _JsonReader:
    """A strict JSON parser with lua-cjson's error texts (character positions are 1-based)."""

    def __init__(self, text: bytes, ops: LibOps) -> None:
        self.s = text
        self.i = 0
        self.ops = ops
        self.spend = ops.spend
        self.depth = 0

    def fail(self, expected: str, found: str | None = None) -> LibError:
        found = found or self.token_name()
        return LibError(f"Expected {expected} but found {found} at character {self.i + 1}")

    def token_name(self) -> str:
        if self.i >= len(self.s):
            return "T_END"
        c = self.s[self.i:self.i + 1]
        return {b"{": "T_OBJ_BEGIN", b"}": "T_OBJ_END", b"[": "T_ARR_BEGIN", b"]": "T_ARR_END",
                b",": "T_COMMA", b":": "T_COLON"}.get(c, "invalid token")

    def skip(self) -> None:
        end = _JSON_WS.match(self.s, self.i).end()  # type: ignore[union-attr]
        if end - self.i > PIECE_BYTES:
            self.spend((end - self.i) // BYTES_PER_WORK)
        self.i = end

    def document(self) -> Any:
        value = self.value()
        self.skip()
        if self.i < len(self.s):
            raise self.fail("the end")
        return value

    def value(self) -> Any:
        self.spend(VALUE_WORK)
        self.skip()
        s = self.s
        if self.i >= len(s):
            raise self.fail("value")
        c = s[self.i]
        if c == ord("{"):
            return self.obj()
        if c == ord("["):
            return self.arr()
        if c == ord('"'):
            return self.string()
        for word, val in ((b"true", True), (b"false", False), (b"null", self.ops.null)):
            if s.startswith(word, self.i):
                self.i += len(word)
                return val
        return self.number()

    def nest(self) -> None:
        self.depth += 1
        if self.depth > CJSON_MAX_DEPTH:
            raise LibError(f"Found too many nested data structures ({self.depth}) at character {self.i + 1}")

    def obj(self) -> Any:
        self.nest()
        self.i += 1
        out: dict[bytes, Any] = {}
        self.skip()
        if self.s[self.i:self.i + 1] == b"}":
            self.i += 1
            self.depth -= 1
            return self.ops.new_table(out)
        while True:
            self.skip()
            if self.s[self.i:self.i + 1] != b'"':
                raise self.fail("object key string")
            key = self.string()
            self.skip()
            if self.s[self.i:self.i + 1] != b":":
                raise self.fail("colon")
            self.i += 1
            out[key] = self.value()
            self.skip()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == b"}":
                break
            if c != b",":
                self.i -= 1
                raise self.fail("comma or object end")
        self.depth -= 1
        return self.ops.new_table(out)

    def arr(self) -> Any:
        self.nest()
        self.i += 1
        out: list[Any] = []
        self.skip()
        if self.s[self.i:self.i + 1] == b"]":
            self.i += 1
            self.depth -= 1
            return self.ops.new_table(out)
        while True:
            out.append(self.value())
            self.skip()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == b"]":
                break
            if c != b",":
                self.i -= 1
                raise self.fail("comma or array end")
        self.depth -= 1
        # cjson stores every element, nulls included, at its index: keep the holes as the sentinel.
        return self.ops.new_table(out)

    def string(self) -> bytes:
        s = self.s
        start = self.i
        self.i += 1
        out = bytearray()
        plain = _JSON_PLAIN.match
        escapes = 0
        while True:
            run = plain(s, self.i)
            if run is not None:  # copied as is (lua-cjson accepts raw control characters too)
                end = run.end()
                if end - self.i >= 1024:
                    self.spend((end - self.i) // BYTES_PER_WORK)
                out += run.group()
                self.i = end
                continue  # then another run, the closing quote, a backslash or the end
            if self.i >= len(s):
                self.i = start
                raise self.fail("value", "invalid token")
            if s[self.i] == ord('"'):
                self.i += 1
                return bytes(out)
            escapes += 1  # a backslash
            if not escapes % 256:
                self.spend(256 * VALUE_WORK // 4)
            e = s[self.i + 1] if self.i + 1 < len(s) else -1
            simple = _JSON_SIMPLE_ESCAPES.get(e)
            if simple is not None:
                out += simple
                self.i += 2
                continue
            if e == ord("u"):
                code = self.hex4(self.i + 2)
                self.i += 6
                if 0xD800 <= code < 0xDC00 and s[self.i:self.i + 2] == b"\\u":
                    low = self.hex4(self.i + 2)
                    if 0xDC00 <= low < 0xE000:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        self.i += 6
                out += chr(code).encode("utf-8", "surrogatepass")
                continue
            self.i = start
            raise self.fail("value", "invalid escape code")

    def hex4(self, at: int) -> int:
        digits = self.s[at:at + 4]
        try:
            if len(digits) != 4:
                raise ValueError
            return int(digits, 16)
        except ValueError:
            raise self.fail("value", "invalid unicode escape code") from None

    def number(self) -> Any:
        start = self.i
        self.i = _JSON_NUMBER.match(self.s, start).end()  # type: ignore[union-attr]
        text = self.s[start:self.i]
        self.spend(len(text) // BYTES_PER_WORK)
        try:
            if not text or text[:1] == b"+":
                raise ValueError
            value = float(text)
        except ValueError:
            self.i = start
            raise self.fail("value") from None
        return value


# -- string.rep and table.concat --------------------------------------------------
# Lua's own are C functions that build their whole result in one call, which no hook can
# interrupt; these build big results in pieces, reporting the work between pieces, with the
# argument rules and error texts of Lua 5.1's lstrlib.c and ltablib.c.

#: table.concat joins this many elements per call of Lua's own.
CONCAT_ELEMENTS = 4096
_LUA_SPACE = b" \t\n\v\f\r"
_LUA_NUMERAL = re.compile(
    rb"[+-]?(?:0[xX][0-9a-fA-F]*(?:\.[0-9a-fA-F]*)?(?:[pP][+-]?[0-9]+)?"
    rb"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    rb"|(?i:inf(?:inity)?|nan))")


def lua_tonumber(value: Any) -> int | float | None:
    """lua_tonumber: a number, or a string that reads as one (luaO_str2d: strtod, hex, spaces); None."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is not bytes:
        return None
    text = value.split(b"\0", 1)[0].lstrip(_LUA_SPACE)  # strtod stops at a NUL, and skips leading spaces
    match = _LUA_NUMERAL.match(text)
    if match is None or text[match.end():].strip(_LUA_SPACE):
        return None
    numeral = match.group()
    try:
        if numeral.lstrip(b"+-")[:2] in (b"0x", b"0X"):
            number = float.fromhex(numeral.decode())
        else:
            number = float(numeral)
    except ValueError:
        return None
    return int(number) if number.is_integer() else number


def _c_int(number: int | float) -> int:
    """(int)(lua_Integer)d: truncation toward zero, then the low 32 bits, signed (x86-64)."""
    if number != number or number in (math.inf, -math.inf) or abs(number) >= 2.0**63:
        return 0  # (lua_Integer) of an out-of-range double is INT64_MIN, whose low 32 bits are 0
    n = int(number) & 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def base_functions(ops: LibOps, concat_range: Callable[[Any, bytes, int, int], bytes]) -> dict[str, Callable[..., Result]]:
    """``rep`` (string.rep) and ``concat`` (table.concat); ``concat_range(t, sep, i, j)`` is Lua's own
    table.concat, raising LibError with its message."""
    spend, room = ops.spend, ops.room

    def type_name(args: tuple[Any, ...], n: int) -> str:
        if n > len(args):
            return "no value"
        v = args[n - 1]
        if v is None or type(v) in (bool, int, float, bytes):
            return _lua_type_name(v)
        return ops.lua_type(v) or "userdata"

    def arg_error(n: int, message: str) -> LibError:
        """luaL_argerror: the argument's number and the function's name as its caller sees them."""
        name, namewhat = ops.callee()
        name = name.decode(errors="replace") if type(name) is bytes else "?"
        if namewhat == b"method":
            n -= 1
            if n == 0:
                return LibError(f"calling '{name}' on bad self ({message})")
        return LibError(f"bad argument #{n} to '{name}' ({message})")

    def check_string(args: tuple[Any, ...], n: int) -> bytes:
        v = args[n - 1] if n <= len(args) else None
        if type(v) is bytes:
            return v
        if type(v) in (int, float):
            return format_g14(v)
        raise arg_error(n, f"string expected, got {type_name(args, n)}")

    def check_int(args: tuple[Any, ...], n: int) -> int:
        number = lua_tonumber(args[n - 1]) if n <= len(args) else None
        if number is None:
            raise arg_error(n, f"number expected, got {type_name(args, n)}")
        return _c_int(number)

    def absent(args: tuple[Any, ...], n: int) -> bool:
        return n > len(args) or args[n - 1] is None

    def rep(*args: Any) -> Result:
        s = check_string(args, 1)
        n = check_int(args, 2)
        size = len(s) * n if n > 0 else 0
        if size > PIECE_BYTES:
            if not room(size):
                raise LibError("not enough memory")
            spend(size // BYTES_PER_WORK)  # before the copy: a stopped run does not make it
        return (s * n if n > 0 else b"",)

    def concat(*args: Any) -> Result:
        sep = b"" if absent(args, 2) else check_string(args, 2)  # checked first, as tconcat does
        table = args[0] if args else None
        if table is None or type(table) in (bool, int, float, bytes) or not ops.is_table(table):
            raise arg_error(1, f"table expected, got {type_name(args, 1)}")
        first = 1 if absent(args, 3) else check_int(args, 3)
        last = len(table) if absent(args, 4) else check_int(args, 4)
        if last - first < CONCAT_ELEMENTS:
            return (concat_range(table, sep, first, last),)
        parts, size = [], 0
        for start in range(first, last + 1, CONCAT_ELEMENTS):
            part = concat_range(table, sep, start, min(start + CONCAT_ELEMENTS - 1, last))
            parts.append(part)
            size += len(part) + len(sep)
            if not room(size):
                raise LibError("not enough memory")
            spend(CONCAT_ELEMENTS * VALUE_WORK // 4 + len(part) // BYTES_PER_WORK)
        return (sep.join(parts),)

    return {"rep": _wrap(rep), "concat": _wrap(concat)}


# -- cmsgpack ---------------------------------------------------------------------

CMSGPACK_MAX_NESTING = 16


def cmsgpack_functions(ops: LibOps) -> dict[str, Callable[..., Result]]:
    spend = ops.spend

    def pack_value(v: Any, depth: int, out: bytearray) -> None:
        spend(VALUE_WORK)
        kind = type(v)
        if kind is bytes:
            size = len(v)
            if size > PIECE_BYTES:
                spend(size // BYTES_PER_WORK)
            if size < 32:
                out.append(0xA0 | size)
            elif size <= 0xFF:
                out += bytes((0xD9, size))
            elif size <= 0xFFFF:
                out += b"\xda" + size.to_bytes(2, "big")
            else:
                out += b"\xdb" + size.to_bytes(4, "big")
            out += v
        elif kind is bool:
            out.append(0xC3 if v else 0xC2)
        elif kind in (int, float):
            pack_number(v, out)
        elif kind is not type(None) and ops.is_table(v) and not ops.is_null(v):
            if depth >= CMSGPACK_MAX_NESTING:
                out.append(0xC0)
                return
            pairs = _entries(v, ops)
            if _is_msgpack_array(pairs):
                by_index = {int(k): val for k, val in pairs}
                header(out, len(pairs), 0x90, 0xDC, 0xDD)
                for i in range(1, len(pairs) + 1):
                    pack_value(by_index[i], depth + 1, out)
            else:
                header(out, len(pairs), 0x80, 0xDE, 0xDF)
                for k, val in pairs:
                    pack_value(k, depth + 1, out)
                    pack_value(val, depth + 1, out)
        else:
            out.append(0xC0)

    def header(out: bytearray, size: int, fix: int, c16: int, c32: int) -> None:
        if size < 16:
            out.append(fix | size)
        elif size <= 0xFFFF:
            out += bytes((c16,)) + size.to_bytes(2, "big")
        else:
            out += bytes((c32,)) + size.to_bytes(4, "big")

    def pack(*args: Any) -> Result:
        if not args:
            raise LibError("bad argument #0 to 'pack' (MessagePack pack needs input.)")
        out = bytearray()
        for v in args:
            pack_value(v, 0, out)
        return (bytes(out),)

    def unpack_full(data: Any, limit: int, offset: int) -> tuple[int, list[Any]]:
        if type(data) is not bytes:
            raise LibError("MessagePack unpack needs a string")
        reader = _MsgpackReader(data, offset, ops)
        values = []
        while reader.i < len(data) and (limit <= 0 or len(values) < limit):
            values.append(reader.value())
        return (-1 if reader.i >= len(data) else reader.i), values

    def unpack(*args: Any) -> Result:
        if len(args) != 1:
            raise LibError("MessagePack unpack needs a string")
        _, values = unpack_full(args[0], 0, 0)
        return tuple(values)

    def unpack_one(data: Any = None, offset: Any = 0, *rest: Any) -> Result:
        nxt, values = unpack_full(data, 1, int(offset or 0))
        return (nxt, *values)

    def unpack_limit(data: Any = None, limit: Any = 0, offset: Any = 0, *rest: Any) -> Result:
        nxt, values = unpack_full(data, int(limit or 0), int(offset or 0))
        return (nxt, *values)

    return {"pack": _wrap(pack), "unpack": _wrap(unpack), "unpack_one": _wrap(unpack_one),
            "unpack_limit": _wrap(unpack_limit)}


def _is_msgpack_array(pairs: list[tuple[Any, Any]]) -> bool:
    """lua-cmsgpack's table_is_an_array: every key a positive integer, the largest equal to the count."""
    largest = 0
    for k, _ in pairs:
        if not _is_number(k) or k <= 0 or math.floor(k) != k:
            return False
        largest = max(largest, int(k))
    return largest == len(pairs)


def pack_number(n: float | int, out: bytearray) -> None:
    if type(n) is float and (n != math.floor(n) or math.isinf(n) or abs(n) >= 2**63):
        as_single = pystruct.unpack(">f", pystruct.pack(">f", n))[0] if abs(n) < 3.5e38 or math.isinf(n) else None
        if as_single == n or (as_single is not None and math.isnan(n)):
            out += b"\xca" + pystruct.pack(">f", n)
        else:
            out += b"\xcb" + pystruct.pack(">d", n)
        return
    i = int(n)
    if i >= 0:
        if i <= 127:
            out.append(i)
        elif i <= 0xFF:
            out += bytes((0xCC, i))
        elif i <= 0xFFFF:
            out += b"\xcd" + i.to_bytes(2, "big")
        elif i <= 0xFFFFFFFF:
            out += b"\xce" + i.to_bytes(4, "big")
        else:
            out += b"\xcf" + i.to_bytes(8, "big")
    else:
        if i >= -32:
            out += pystruct.pack(">b", i)
        elif i >= -128:
            out += b"\xd0" + pystruct.pack(">b", i)
        elif i >= -32768:
            out += b"\xd1" + pystruct.pack(">h", i)
        elif i >= -(1 << 31):
            out += b"\xd2" + pystruct.pack(">i", i)
        else:
            out += b"\xd3" + pystruct.pack(">q", i)


class _MsgpackReader:
    def __init__(self, data: bytes, offset: int, ops: LibOps) -> None:
        self.s = data
        self.i = offset
        self.ops = ops

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.s):
            raise LibError("Missing bytes in input.")
        chunk = self.s[self.i:self.i + n]
        self.i += n
        if n > PIECE_BYTES:
            self.ops.spend(n // BYTES_PER_WORK)
        return chunk

    def value(self) -> Any:
        self.ops.spend(VALUE_WORK)
        c = self.take(1)[0]
        if c <= 0x7F:
            return c
        if c >= 0xE0:
            return c - 256
        if 0xA0 <= c <= 0xBF:
            return self.take(c & 0x1F)
        if 0x90 <= c <= 0x9F:
            return self.array(c & 0x0F)
        if 0x80 <= c <= 0x8F:
            return self.map(c & 0x0F)
        if c == 0xC0:
            return None
        if c in (0xC2, 0xC3):
            return c == 0xC3
        fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
                 0xCA: ">f", 0xCB: ">d"}.get(c)
        if fixed is not None:
            value = pystruct.unpack(fixed, self.take(pystruct.calcsize(fixed)))[0]
            return float(value) if c in (0xCF, 0xD3) and abs(value) > 2**53 else value
        sized = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}.get(c)
        if sized is not None:
            return self.take(int.from_bytes(self.take(sized), "big"))
        if c in (0xDC, 0xDD):
            return self.array(int.from_bytes(self.take(2 if c == 0xDC else 4), "big"))
        if c in (0xDE, 0xDF):
            return self.map(int.from_bytes(self.take(2 if c == 0xDE else 4), "big"))
        raise LibError("Bad data format in input.")

    def array(self, n: int) -> Any:
        return self.ops.new_table([self.value() for _ in range(n)])

    def map(self, n: int) -> Any:
        out = {}
        for _ in range(n):
            k = self.value()
            out[k] = self.value()
        return self.ops.new_table({k: v for k, v in out.items() if k is not None and v is not None})


# -- bit --------------------------------------------------------------------------


def tobit(n: Any) -> int:
    """LuaBitOp's normalisation: round to an integer (ties to even), keep the low 32 bits, signed."""
    if type(n) not in (int, float):
        raise LibError("bad argument #1 to 'tobit' (number expected)")
    if type(n) is float:
        if math.isnan(n) or math.isinf(n):
            return 0
        n = round(n)
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _u(n: Any) -> int:
    return tobit(n) & 0xFFFFFFFF


def _s(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def bit_functions() -> dict[str, Callable[..., Result]]:
    def tohex(x: Any, n: Any = 8, *rest: Any) -> Result:
        width = int(tobit(n)) if n is not None else 8
        upper = width < 0
        width = min(abs(width), 8) or 8 if width != 0 else 8
        digits = "%0*x" % (width, _u(x) & ((1 << (4 * width)) - 1))
        return ((digits.upper() if upper else digits).encode(),)

    def fold(op: Callable[[int, int], int]) -> Callable[..., Result]:
        def run(*args: Any) -> Result:
            if not args:
                raise LibError("bad argument #1 (number expected, got no value)")
            acc = _u(args[0])
            for a in args[1:]:
                acc = op(acc, _u(a))
            return (_s(acc),)
        return run

    def shift(op: Callable[[int, int], int]) -> Callable[..., Result]:
        return lambda x=None, n=None, *rest: (_s(op(_u(x), _u(n) & 31)),)

    return {
        "tobit": _wrap(lambda x=None, *rest: (tobit(x),)),
        "tohex": _wrap(tohex),
        "bnot": _wrap(lambda x=None, *rest: (_s(~_u(x)),)),
        "band": _wrap(fold(lambda a, b: a & b)),
        "bor": _wrap(fold(lambda a, b: a | b)),
        "bxor": _wrap(fold(lambda a, b: a ^ b)),
        "lshift": _wrap(shift(lambda x, n: x << n)),
        "rshift": _wrap(shift(lambda x, n: x >> n)),
        "arshift": _wrap(shift(lambda x, n: _s(x) >> n)),
        "rol": _wrap(shift(lambda x, n: (x << n) | (x >> (32 - n)) if n else x)),
        "ror": _wrap(shift(lambda x, n: (x >> n) | (x << (32 - n)) if n else x)),
        "bswap": _wrap(lambda x=None, *rest: (_s(int.from_bytes(_u(x).to_bytes(4, "little"), "big")),)),
    }


# -- struct -----------------------------------------------------------------------

_INT_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "l": 8, "L": 8, "T": 8, "i": 4, "I": 4}
MAXINTSIZE = 32
INT_MAX = (1 << 31) - 1
MAXALIGN = 8


class _Format:
    def __init__(self, fmt: bytes, function: str) -> None:
        self.function = function
        self.f = fmt.decode("latin-1")
        self.i = 0
        self.little = True
        self.align = 1

    def number(self, default: int) -> int:
        """getnum: ASCII digits, at most INT_MAX (Redis's fix for the size overflow)."""
        f = self.f
        if self.i >= len(f) or not "0" <= f[self.i] <= "9":
            return default
        n = 0
        while self.i < len(f) and "0" <= f[self.i] <= "9":
            if n > INT_MAX // 10 or n * 10 > INT_MAX - (ord(f[self.i]) - 48):
                raise LibError("integral size overflow")
            n = n * 10 + ord(f[self.i]) - 48
            self.i += 1
        return n

    def items(self) -> Iterable[tuple[str, int]]:
        """(option, size) per item; endianness and alignment switches are applied here."""
        while self.i < len(self.f):
            opt = self.f[self.i]
            self.i += 1
            if opt == " ":
                continue
            if opt in "<>=":
                self.little = opt != ">"
                continue
            if opt == "!":
                self.align = self.number(MAXALIGN)
                continue
            if opt in _INT_SIZES:
                size = _INT_SIZES[opt]
                if opt in "iI":
                    size = self.number(4)
                    if size > MAXINTSIZE:
                        raise LibError(f"integral size {size} is larger than limit of {MAXINTSIZE}")
                yield opt, size
            elif opt in "fd":
                yield opt, 4 if opt == "f" else 8
            elif opt == "c":
                yield opt, self.number(1)
            elif opt in "sx":
                yield opt, 1 if opt == "x" else 0
            else:
                raise LibError(f"bad argument #1 to '{self.function}' (invalid format option '{opt}')")

    def padding(self, offset: int, size: int) -> int:
        align = min(size, self.align)
        if align <= 1 or size == 0:
            return 0
        if align & (align - 1):
            raise LibError("alignment must be power of 2")
        return (align - (offset & (align - 1))) & (align - 1)


def struct_functions(ops: LibOps | None = None) -> dict[str, Callable[..., Result]]:
    spend = ops.spend if ops is not None else _no_spend

    def pack(fmt: Any = None, *values: Any) -> Result:
        if type(fmt) is not bytes:
            raise LibError("bad argument #1 to 'pack' (string expected)")
        form = _Format(fmt, "pack")
        out = bytearray()
        args = list(values)
        arg = 0

        def next_arg(kind: str) -> Any:
            nonlocal arg
            arg += 1
            if arg > len(args):
                raise LibError(f"bad argument #{arg + 1} to 'pack' ({kind} expected, got no value)")
            return args[arg - 1]

        for opt, size in form.items():
            spend(VALUE_WORK)
            out += b"\0" * form.padding(len(out), size if opt not in "cs" else 1)
            if opt == "x":
                out += b"\0"
            elif opt in _INT_SIZES:
                v = next_arg("number")
                if type(v) not in (int, float):
                    raise LibError(f"bad argument #{arg + 1} to 'pack' (number expected, got {_lua_type_name(v)})")
                iv = int(v) & ((1 << (8 * size)) - 1)
                out += iv.to_bytes(size, "little" if form.little else "big")
            elif opt in "fd":
                v = next_arg("number")
                out += pystruct.pack(("<" if form.little else ">") + opt, float(v))
            elif opt == "c":
                v = next_arg("string")
                if type(v) is not bytes:
                    raise LibError(f"bad argument #{arg + 1} to 'pack' (string expected, got {_lua_type_name(v)})")
                n = size if size else len(v)
                if n > len(v):
                    raise LibError(f"bad argument #{arg + 1} to 'pack' (string too short)")
                out += v[:n]
            elif opt == "s":
                v = next_arg("string")
                if type(v) is not bytes:
                    raise LibError(f"bad argument #{arg + 1} to 'pack' (string expected, got {_lua_type_name(v)})")
                out += v + b"\0"
        return (bytes(out),)

    def unpack(fmt: Any = None, data: Any = None, init: Any = 1, *rest: Any) -> Result:
        if type(fmt) is not bytes:
            raise LibError("bad argument #1 to 'unpack' (string expected)")
        if type(data) is not bytes:
            raise LibError("bad argument #2 to 'unpack' (string expected)")
        form = _Format(fmt, "unpack")
        pos = int(init) - 1 if init is not None else 0
        if pos < 0 or pos > len(data):
            raise LibError("bad argument #3 to 'unpack' (offset must be 1 or greater)")
        results: list[Any] = []
        for opt, size in form.items():
            spend(VALUE_WORK)
            pos += form.padding(pos, size if opt not in "cs" else 1)
            if opt == "x":
                pos += 1
                continue
            if opt in "s":
                end = data.find(b"\0", pos)
                if end < 0:
                    raise LibError("unfinished string in data")
                results.append(data[pos:end])
                pos = end + 1
                continue
            if opt == "c" and size == 0:
                if not results or type(results[-1]) not in (int, float):
                    raise LibError("format 'c0' needs a previous size")
                size = int(results.pop())
            if pos + size > len(data):
                raise LibError("data string too short")
            chunk = data[pos:pos + size]
            pos += size
            if opt in _INT_SIZES:
                value = int.from_bytes(chunk, "little" if form.little else "big", signed=opt.islower())
                results.append(value if abs(value) <= 2**53 else float(value))
            elif opt in "fd":
                results.append(pystruct.unpack(("<" if form.little else ">") + opt, chunk)[0])
            else:
                results.append(chunk)
        return (*results, pos + 1)

    def size(fmt: Any = None, *rest: Any) -> Result:
        if type(fmt) is not bytes:
            raise LibError("bad argument #1 to 'size' (string expected)")
        form = _Format(fmt, "size")
        total = 0
        for opt, n in form.items():
            spend(VALUE_WORK)
            if opt == "s" or (opt == "c" and n == 0):
                raise LibError("options 'c0' - 's' have undefined sizes")
            total += form.padding(total, n) + n
        return (total,)

    return {"pack": _wrap(pack), "unpack": _wrap(unpack), "size": _wrap(size)}
