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
"""

from __future__ import annotations

import math
import struct as pystruct
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["LibOps", "bit_functions", "cjson_functions", "cmsgpack_functions", "struct_functions"]

Result = tuple[Any, ...]


class LibOps:
    """What the libraries need from the Lua runtime."""

    __slots__ = ("new_table", "is_table", "items", "null", "is_null")

    def __init__(self, new_table: Callable[[Any], Any], is_table: Callable[[Any], bool],
                 items: Callable[[Any], Iterable[tuple[Any, Any]]], null: Any,
                 is_null: Callable[[Any], bool]) -> None:
        self.new_table = new_table
        self.is_table = is_table
        self.items = items
        self.null = null
        self.is_null = is_null


class LibError(Exception):
    pass


def _wrap(fn: Callable[..., Result]) -> Callable[..., Result]:
    def guarded(*args: Any) -> Result:
        try:
            return (True, *fn(*args))
        except LibError as exc:
            return (False, str(exc).encode())
        except RecursionError:
            return (False, b"Cannot serialise, excessive nesting")
    return guarded


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


# -- cjson ------------------------------------------------------------------------

CJSON_MAX_DEPTH = 1000
_JSON_ESCAPES = {i: "\\u%04x" % i for i in range(32)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("/"): "\\/", 8: "\\b", 12: "\\f", 10: "\\n",
                      13: "\\r", 9: "\\t", 127: "\\u007f"})
_JSON_BYTE_ESCAPES = [(_JSON_ESCAPES.get(i) or chr(i)).encode("latin-1") if i < 128 else bytes([i])
                      for i in range(256)]


def format_g14(n: float | int) -> bytes:
    """``%.14g``, as lua-cjson formats numbers."""
    text = "%.14g" % n
    return text.encode()


def cjson_functions(ops: LibOps) -> dict[str, Callable[..., Result]]:
    def encode_string(s: bytes) -> bytes:
        return b'"' + b"".join(_JSON_BYTE_ESCAPES[c] for c in s) + b'"'

    def encode_value(v: Any, depth: int, out: list[bytes]) -> None:
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
            pairs = list(ops.items(v))
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


class _JsonReader:
    """A strict JSON parser with lua-cjson's error texts (character positions are 1-based)."""

    WS = b" \t\r\n"

    def __init__(self, text: bytes, ops: LibOps) -> None:
        self.s = text
        self.i = 0
        self.ops = ops
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
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in self.WS:
            self.i += 1

    def document(self) -> Any:
        value = self.value()
        self.skip()
        if self.i < len(self.s):
            raise self.fail("the end")
        return value

    def value(self) -> Any:
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
        while True:
            if self.i >= len(s):
                self.i = start
                raise self.fail("value", "invalid token")
            c = s[self.i]
            if c == ord('"'):
                self.i += 1
                return bytes(out)
            if c == ord("\\"):
                e = s[self.i + 1:self.i + 2]
                simple = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n",
                          b"r": b"\r", b"t": b"\t"}.get(e)
                if simple is not None:
                    out += simple
                    self.i += 2
                    continue
                if e == b"u":
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
            out.append(c)
            self.i += 1

    def hex4(self, at: int) -> int:
        digits = self.s[at:at + 4]
        try:
            if len(digits) != 4:
                raise ValueError
            return int(digits, 16)
        except ValueError:
            raise self.fail("value", "invalid unicode escape code") from None

    def number(self) -> Any:
        s = self.s
        start = self.i
        n = len(s)
        while self.i < n and s[self.i] in b"+-0123456789.eE":
            self.i += 1
        text = s[start:self.i]
        try:
            if not text or text[:1] == b"+":
                raise ValueError
            value = float(text)
        except ValueError:
            self.i = start
            raise self.fail("value") from None
        return value


# -- cmsgpack ---------------------------------------------------------------------

CMSGPACK_MAX_NESTING = 16


def cmsgpack_functions(ops: LibOps) -> dict[str, Callable[..., Result]]:
    def pack_value(v: Any, depth: int, out: bytearray) -> None:
        kind = type(v)
        if kind is bytes:
            size = len(v)
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
            pairs = list(ops.items(v))
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
        return chunk

    def value(self) -> Any:
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
MAXALIGN = 8


class _Format:
    def __init__(self, fmt: bytes, function: str) -> None:
        self.function = function
        self.f = fmt.decode("latin-1")
        self.i = 0
        self.little = True
        self.align = 1

    def number(self, default: int) -> int:
        start = self.i
        while self.i < len(self.f) and self.f[self.i].isdigit():
            self.i += 1
        return int(self.f[start:self.i]) if self.i > start else default

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


def struct_functions() -> dict[str, Callable[..., Result]]:
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
            if opt == "s" or (opt == "c" and n == 0):
                raise LibError("options 'c0' - 's' have undefined sizes")
            total += form.padding(total, n) + n
        return (total,)

    return {"pack": _wrap(pack), "unpack": _wrap(unpack), "size": _wrap(size)}
