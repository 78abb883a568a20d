"""Bit commands on strings (bitops.c): SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO.

Bit 0 is the most significant bit of byte 0, as in Redis. Offsets are checked
against proto-max-bulk-len before anything is written (Redis's
getBitOffsetFromArgument), and the same check is the command's ``check``, so a
desired-plane entry is refused before it is proposed rather than when it applies.
Strings are immutable bytes here: a write builds the new value (a bytearray
for the edit, bytes to store).
"""

from __future__ import annotations

from typing import Any

from vfsd.codec import RAW
from vfsd.commands.collections import replace, typed
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, WRONGTYPE, parse_int
from vfsd.commands.table import command, parses
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, VALUE
from vfsd.store.values import string2ll

BIT_OFFSET = ErrorReply("ERR bit offset is not an integer or out of range")
BIT_VALUE = ErrorReply("ERR bit is not an integer or out of range")
BAD_TYPE = ErrorReply("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")


def bit_offset(arg: bytes, max_bulk_bytes: int, bits: int = 0) -> int:
    """getBitOffsetFromArgument: a bit offset, ``#n`` meaning n * bits (BITFIELD)."""
    use_hash = arg[:1] == b"#" and bits > 0
    offset = string2ll(arg[1:] if use_hash else arg)
    if offset is None:
        raise BIT_OFFSET
    if use_hash:
        offset *= bits
    if offset < 0 or (offset >> 3) >= max_bulk_bytes:
        raise BIT_OFFSET
    return offset


def _string(ctx: Ctx, key: bytes) -> bytes | None:
    entry = typed(ctx, key, RAW)
    return None if entry is None else entry[VALUE]


def _write(ctx: Ctx, key: bytes, value: bytes, event: str) -> None:
    old = ctx.lookup(key)
    ctx.notify("$", event, key, ctx.write(key, value, RAW, old=old, keep_ttl=old is not None))


def _check_setbit(argv: list[bytes], settings: Any) -> None:
    bit_offset(argv[2], settings.max_bulk_bytes)
    on = parse_int(argv[3], BIT_VALUE)
    if on & ~1:
        raise BIT_VALUE


@command("setbit", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@bitmap", group="bitmap", since="2.2.0",
         check=_check_setbit, summary="Sets or clears the bit at offset of the string value. Creates the key if it "
         "doesn't exist.", arguments="key offset value")
def setbit(ctx: Ctx, argv: list[bytes]) -> int:
    offset = bit_offset(argv[2], ctx.max_bulk_bytes)
    on = parse_int(argv[3], BIT_VALUE)
    if on & ~1:
        raise BIT_VALUE
    key = argv[1]
    current = _string(ctx, key)
    byte, shift = offset >> 3, 7 - (offset & 7)
    data = bytearray(current or b"")
    grew = current is None or len(data) <= byte
    if len(data) <= byte:
        data.extend(bytes(byte + 1 - len(data)))
    old_bit = (data[byte] >> shift) & 1
    if grew or old_bit != on:
        data[byte] = (data[byte] & ~(1 << shift)) | (on << shift)
        _write(ctx, key, bytes(data), "setbit")
    return old_bit


@command("getbit", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@bitmap", group="bitmap", since="2.2.0",
         summary="Returns a bit value by offset.", arguments="key offset")
def getbit(ctx: Ctx, argv: list[bytes]) -> int:
    offset = bit_offset(argv[2], ctx.max_bulk_bytes)
    value = _string(ctx, argv[1])
    if value is None or (offset >> 3) >= len(value):
        return 0
    return (value[offset >> 3] >> (7 - (offset & 7))) & 1


def _popcount(data: bytes) -> int:
    return int.from_bytes(data, "big").bit_count()


@command("bitcount", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@bitmap", group="bitmap", since="2.6.0",
         summary="Counts the number of set bits (population counting) in a string.", complexity="O(N)",
         arguments="key [start end [BYTE|BIT]]")
def bitcount(ctx: Ctx, argv: list[bytes]) -> int:
    value = _string(ctx, argv[1])
    if value is None:
        return 0
    n = len(argv)
    if n == 2:
        return _popcount(value)
    if n not in (4, 5):
        raise SYNTAX
    start, end = parse_int(argv[2]), parse_int(argv[3])
    if start < 0 and end < 0 and start > end:
        return 0
    in_bits = False
    if n == 5:
        unit = argv[4].lower()
        if unit == b"bit":
            in_bits = True
        elif unit != b"byte":
            raise SYNTAX
    total = len(value) * 8 if in_bits else len(value)
    start, end = _clip(start, end, total)
    if start > end:
        return 0
    if not in_bits:
        return _popcount(value[start : end + 1])
    first, last = start >> 3, end >> 3
    segment = int.from_bytes(value[first : last + 1], "big")
    width = (last - first + 1) * 8
    # keep bits start..end of the segment (bit 0 is the segment's most significant)
    drop_high = start - first * 8
    drop_low = width - 1 - (end - first * 8)
    segment >>= drop_low
    segment &= (1 << (width - drop_high - drop_low)) - 1
    return segment.bit_count()


def _clip(start: int, end: int, total: int) -> tuple[int, int]:
    if start < 0:
        start += total
    if end < 0:
        end += total
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= total:
        end = total - 1
    return start, end


def _find_bit(value: bytes, bit: int, start_bit: int, end_bit: int) -> int:
    """First bit position in [start_bit, end_bit] whose value is ``bit``; -1 if none."""
    first, last = start_bit >> 3, end_bit >> 3
    skip = 0 if bit else 0xFF
    for byte_at in range(first, last + 1):
        byte = value[byte_at]
        lo = start_bit - byte_at * 8 if byte_at == first else 0
        hi = end_bit - byte_at * 8 if byte_at == last else 7
        if lo == 0 and hi == 7 and byte == skip:
            if byte_at != first and byte_at != last:
                # skip runs of uninteresting bytes at C speed
                rest = value[byte_at:last]
                run = len(rest) - len(rest.lstrip(bytes([skip])))
                if run > 1:
                    continue
            continue
        for position in range(lo, hi + 1):
            if ((byte >> (7 - position)) & 1) == bit:
                return byte_at * 8 + position
    return -1


@command("bitpos", arity=-3, flags="readonly", keys=(1, 1, 1), acl="@bitmap", group="bitmap", since="2.8.7",
         summary="Finds the first set (1) or clear (0) bit in a string.", complexity="O(N)",
         arguments="key bit [start [end [BYTE|BIT]]]")
def bitpos(ctx: Ctx, argv: list[bytes]) -> int:
    bit = parse_int(argv[2])
    if bit not in (0, 1):
        raise ErrorReply("ERR The bit argument must be 1 or 0.")
    entry = ctx.lookup(argv[1])
    if entry is None:
        return -1 if bit else 0
    if entry[KIND] != RAW:
        raise WRONGTYPE
    value: bytes = entry[VALUE]
    n = len(argv)
    end_given = False
    in_bits = False
    if n in (4, 5, 6):
        start = parse_int(argv[3])
        if n == 6:
            unit = argv[5].lower()
            if unit == b"bit":
                in_bits = True
            elif unit != b"byte":
                raise SYNTAX
        if n >= 5:
            end = parse_int(argv[4])
            end_given = True
        else:
            end = len(value) - 1
        total = len(value) * 8 if in_bits else len(value)
        start, end = _clip(start, end, total)
    elif n == 3:
        start, end = 0, len(value) - 1
    else:
        raise SYNTAX
    if start > end:
        return -1
    start_bit, end_bit = (start, end) if in_bits else (start * 8, end * 8 + 7)
    found = _find_bit(value, bit, start_bit, end_bit)
    if found != -1:
        return found
    if bit == 1 or end_given:
        return -1
    return ((end_bit >> 3) + 1) * 8  # looking for a clear bit past the end: the string is zero-padded


def _bitop_op(argv: list[bytes]) -> str:
    op = argv[1].lower()
    if op not in (b"and", b"or", b"xor", b"not"):
        raise SYNTAX
    if op == b"not" and len(argv) != 4:
        raise ErrorReply("ERR BITOP NOT must be called with a single source key.")
    return op.decode()


@command("bitop", arity=-4, flags="write denyoom", keys=(2, -1, 1), acl="@bitmap", group="bitmap", since="2.6.0",
         summary="Performs bitwise operations on multiple strings, and stores the result.", complexity="O(N)",
         arguments="AND|OR|XOR|NOT destkey key [key ...]",
         check=parses(_bitop_op))
def bitop(ctx: Ctx, argv: list[bytes]) -> int:
    op = _bitop_op(argv)
    sources: list[bytes] = []
    for key in argv[3:]:
        entry = ctx.lookup(key)
        if entry is None:
            sources.append(b"")
        elif entry[KIND] != RAW:
            raise WRONGTYPE
        else:
            sources.append(entry[VALUE])
    width = max(len(s) for s in sources)
    destination = argv[2]
    if not width:
        if ctx.lookup(destination) is not None:
            ctx.remove(destination)
            ctx.notify("g", "del", destination)
        return 0
    numbers = [int.from_bytes(s.ljust(width, b"\x00"), "big") for s in sources]
    if op == "not":
        result = ~numbers[0] & ((1 << (8 * width)) - 1)
    else:
        result = numbers[0]
        for number in numbers[1:]:
            if op == "and":
                result &= number
            elif op == "or":
                result |= number
            else:
                result ^= number
    ctx.notify("$", "set", destination, replace(ctx, destination, result.to_bytes(width, "big"), RAW))
    return width


# -- BITFIELD ----------------------------------------------------------------------------


def _bitfield_type(arg: bytes) -> tuple[bool, int]:
    head = arg[:1]
    if head not in (b"i", b"u"):
        raise BAD_TYPE
    signed = head == b"i"
    bits = string2ll(arg[1:])
    if bits is None or bits < 1 or (signed and bits > 64) or (not signed and bits > 63):
        raise BAD_TYPE
    return signed, bits


class _Op:
    __slots__ = ("kind", "signed", "bits", "offset", "value", "overflow")

    def __init__(self, kind: str, signed: bool, bits: int, offset: int, value: int, overflow: str) -> None:
        self.kind, self.signed, self.bits, self.offset, self.value, self.overflow = (
            kind, signed, bits, offset, value, overflow)


def _parse_bitfield(argv: list[bytes], max_bulk_bytes: int) -> tuple[list[_Op], int]:
    """The operations and the highest bit a write touches (-1: read only)."""
    ops: list[_Op] = []
    overflow = "wrap"
    highest = -1
    j, n = 2, len(argv)
    while j < n:
        remaining = n - j - 1
        sub = argv[j].lower()
        if sub == b"get" and remaining >= 2:
            kind = "get"
        elif sub == b"set" and remaining >= 3:
            kind = "set"
        elif sub == b"incrby" and remaining >= 3:
            kind = "incrby"
        elif sub == b"overflow" and remaining >= 1:
            choice = argv[j + 1].lower()
            if choice not in (b"wrap", b"sat", b"fail"):
                raise ErrorReply("ERR Invalid OVERFLOW type specified")
            overflow = choice.decode()
            j += 2
            continue
        else:
            raise SYNTAX
        signed, bits = _bitfield_type(argv[j + 1])
        offset = bit_offset(argv[j + 2], max_bulk_bytes, bits)
        value = 0
        if kind != "get":
            highest = max(highest, offset + bits - 1)
            value = parse_int(argv[j + 3])
        ops.append(_Op(kind, signed, bits, offset, value, overflow))
        j += 3 if kind == "get" else 4
    return ops, highest


def _read_field(data: bytes | bytearray, offset: int, bits: int, signed: bool) -> int:
    first, last = offset >> 3, (offset + bits - 1) >> 3
    chunk = bytes(data[first : last + 1]).ljust(last - first + 1, b"\x00")
    number = int.from_bytes(chunk, "big")
    number >>= (last - first + 1) * 8 - (offset - first * 8) - bits
    number &= (1 << bits) - 1
    if signed and number >> (bits - 1):
        number -= 1 << bits
    return number


def _write_field(data: bytearray, offset: int, bits: int, value: int) -> None:
    first, last = offset >> 3, (offset + bits - 1) >> 3
    width = (last - first + 1) * 8
    shift = width - (offset - first * 8) - bits
    number = int.from_bytes(data[first : last + 1], "big")
    mask = ((1 << bits) - 1) << shift
    number = (number & ~mask) | ((value & ((1 << bits) - 1)) << shift)
    data[first : last + 1] = number.to_bytes(last - first + 1, "big")


def _fit(value: int, signed: bool, bits: int, overflow: str) -> int | None:
    """``value`` in the field's range under the overflow policy; None for FAIL on overflow."""
    if signed:
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        low, high = 0, (1 << bits) - 1
    if low <= value <= high:
        return value
    if overflow == "fail":
        return None
    if overflow == "sat":
        return high if value > high else low
    wrapped = (value - low) % (1 << bits) + low
    return wrapped


def _check_bitfield(argv: list[bytes], settings: Any) -> None:
    _parse_bitfield(argv, settings.max_bulk_bytes)


def _bitfield(ctx: Ctx, argv: list[bytes], read_only: bool) -> list[int | None]:
    ops, highest = _parse_bitfield(argv, ctx.max_bulk_bytes)
    key = argv[1]
    entry = ctx.lookup(key)
    if entry is not None and entry[KIND] != RAW:
        raise WRONGTYPE
    if highest >= 0 and read_only:
        raise ErrorReply("ERR BITFIELD_RO only supports the GET subcommand")
    current: bytes = b"" if entry is None else entry[VALUE]
    if highest < 0:
        return [_read_field(current, op.offset, op.bits, op.signed) for op in ops]
    data = bytearray(current)
    grew = entry is None or len(data) <= highest >> 3
    if len(data) <= highest >> 3:
        data.extend(bytes((highest >> 3) + 1 - len(data)))
    replies: list[int | None] = []
    changes = 0
    for op in ops:
        if op.kind == "get":
            replies.append(_read_field(data, op.offset, op.bits, op.signed))
            continue
        old = _read_field(data, op.offset, op.bits, op.signed)
        if op.kind == "incrby":
            new = _fit(old + op.value, op.signed, op.bits, op.overflow)
            reply = new
        else:
            value = op.value if op.signed else op.value % (1 << 64)  # an unsigned SET reads the value as uint64
            new = _fit(value, op.signed, op.bits, op.overflow)
            reply = old
        if new is None:
            replies.append(None)
            continue
        replies.append(reply)
        _write_field(data, op.offset, op.bits, new)
        if grew or old != new:
            changes += 1
    if changes:
        _write(ctx, key, bytes(data), "setbit")
    elif grew:  # Redis creates or grows the (zero-filled) string even when no field changed, silently
        ctx.write(key, bytes(data), RAW, old=entry, keep_ttl=entry is not None)
    return replies


@command("bitfield", arity=-2, flags="write denyoom", keys=(1, 1, 1), acl="@bitmap", group="bitmap", since="3.2.0",
         check=_check_bitfield,
         summary="Performs arbitrary bitfield integer operations on strings.", complexity="O(1) for each subcommand",
         arguments="key [GET encoding offset|[OVERFLOW WRAP|SAT|FAIL] SET encoding offset value|INCRBY encoding "
         "offset increment ...]")
def bitfield(ctx: Ctx, argv: list[bytes]) -> list[int | None]:
    return _bitfield(ctx, argv, False)


@command("bitfield_ro", arity=-2, flags="readonly fast", keys=(1, 1, 1), acl="@bitmap", group="bitmap",
         since="6.0.0", summary="Performs arbitrary read-only bitfield integer operations on strings.",
         complexity="O(1) for each subcommand", arguments="key [GET encoding offset ...]")
def bitfield_ro(ctx: Ctx, argv: list[bytes]) -> list[int | None]:
    return _bitfield(ctx, argv, True)
