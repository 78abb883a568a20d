"""String commands (GET, SET and friends) with Redis 7.2's replies and errors.

Every handler is a deterministic function of ``(ctx, argv)``: see
``context.Ctx``. A structured document (kind DOC) reads as its compact JSON
text; commands that would change a document's bytes in place (APPEND, INCR...)
answer WRONGTYPE, as Redis does for a key of another type.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from vfsd.codec import DOC, RAW, doc_to_json
from vfsd.commands.context import Ctx
from vfsd.commands.errors import (
    INT64_MAX,
    INT64_MIN,
    LONG_DOUBLE_MAX,
    MAX_STRING,
    NAN_OR_INF,
    OFFSET_RANGE,
    OVERFLOW,
    SYNTAX,
    WRONGTYPE,
    format_float,
    invalid_expire,
    parse_float,
    parse_int,
    wrong_arity,
)
from vfsd.commands.table import command, parses
from vfsd.resp.types import OK, ErrorReply
from vfsd.store.keyspace import KIND, VALUE, Entry

#: Deadlines are signed 64-bit milliseconds, as in Redis (LLONG_MAX).
_MAX_MS = INT64_MAX


def read_bytes(entry: Entry) -> bytes:
    """The bytes GET returns for a file: raw bytes, or a document's JSON text; WRONGTYPE for a collection."""
    kind = entry[KIND]
    if kind == RAW:
        return entry[VALUE]
    if kind == DOC:
        return doc_to_json(entry[VALUE])
    raise WRONGTYPE


def raw_value(ctx: Ctx, key: bytes) -> tuple[Entry | None, bytes | None]:
    entry = ctx.lookup(key)
    if entry is None:
        return None, None
    if entry[KIND] != RAW:
        raise WRONGTYPE
    return entry, entry[VALUE]


def deadline_ms(ctx: Ctx, unit: bytes, arg: bytes, name: str) -> int:
    """Absolute deadline in ms for EX/PX/EXAT/PXAT ``arg``; Redis's 'invalid expire time' on <=0 or overflow."""
    amount = parse_int(arg)
    if amount <= 0:
        raise invalid_expire(name)
    unit = unit.upper()
    if unit in (b"EX", b"EXAT"):
        if amount > _MAX_MS // 1000:
            raise invalid_expire(name)
        amount *= 1000
    at = amount if unit in (b"EXAT", b"PXAT") else ctx.now_ms + amount
    if at > _MAX_MS:
        raise invalid_expire(name)
    return at


def apply_deadline(ctx: Ctx, key: bytes, at_ms: int | None, entry: Entry) -> None:
    if at_ms is not None:
        ctx.db.set_expire(key, at_ms)
        ctx.notify("g", "expire", key, entry)


@command("get", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns the string value of a key.", arguments="key")
def get(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    entry = ctx.lookup(argv[1])
    if entry is None:
        return None
    return entry[VALUE] if entry[KIND] == RAW else read_bytes(entry)


@command("set", arity=-3, flags="write denyoom", keys=(1, 1, 1), acl="@string", group="string",
         summary="Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
         complexity="O(1)", arguments="key value [NX|XX] [IFEQ comparison-value] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]")
def set_(ctx: Ctx, argv: list[bytes]) -> object:
    key, value = argv[1], argv[2]
    if len(argv) == 3:  # plain SET: the benchmarked hot path
        ctx.notify("$", "set", key, ctx.replace(key, value))
        return OK
    cond: bytes | None = None
    compare: bytes | None = None
    want_get = keep_ttl = False
    expiry: tuple[bytes, bytes] | None = None
    i, n = 3, len(argv)
    while i < n:
        opt = argv[i].upper()
        if opt in (b"NX", b"XX") and cond is None and compare is None:
            cond = opt
        elif opt == b"IFEQ" and cond is None and compare is None and i + 1 < n:
            compare = argv[i + 1]
            i += 1
        elif opt == b"GET":  # Redis accepts it more than once
            want_get = True
        elif opt == b"KEEPTTL" and expiry is None and not keep_ttl:
            keep_ttl = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expiry is None and not keep_ttl and i + 1 < n:
            expiry = (opt, argv[i + 1])
            i += 1
        else:
            raise SYNTAX
        i += 1
    at_ms = deadline_ms(ctx, expiry[0], expiry[1], "set") if expiry else None
    old = ctx.lookup(key)
    previous: bytes | None = None
    if want_get and old is not None:
        if old[KIND] != RAW:
            raise WRONGTYPE
        previous = old[VALUE]
    if (cond == b"NX" and old is not None) or (cond == b"XX" and old is None):
        return previous if want_get else None
    if compare is not None:
        if old is None or old[KIND] != RAW or old[VALUE] != compare:
            return previous if want_get else None
    entry = ctx.write(key, value, RAW, old=old, keep_ttl=keep_ttl and old is not None)
    ctx.notify("$", "set", key, entry)
    apply_deadline(ctx, key, at_ms, entry)
    return previous if want_get else OK


@command("setnx", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Set the string value of a key only when the key doesn't exist.", arguments="key value")
def setnx(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    if ctx.lookup(key) is not None:
        return 0
    entry = ctx.write(key, argv[2])
    ctx.notify("$", "set", key, entry)
    return 1


def _setex(ctx: Ctx, argv: list[bytes], unit: bytes) -> object:
    key = argv[1]
    at_ms = deadline_ms(ctx, unit, argv[2], argv[0].decode().lower())
    old = ctx.lookup(key)
    entry = ctx.write(key, argv[3], old=old)
    ctx.notify("$", "set", key, entry)
    apply_deadline(ctx, key, at_ms, entry)
    return OK


@command("setex", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@string", group="string",
         summary="Set the string value and expiration time of a key.", arguments="key seconds value")
def setex(ctx: Ctx, argv: list[bytes]) -> object:
    return _setex(ctx, argv, b"EX")


@command("psetex", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@string", group="string",
         summary="Set the string value and expiration time in milliseconds of a key.", arguments="key milliseconds value")
def psetex(ctx: Ctx, argv: list[bytes]) -> object:
    return _setex(ctx, argv, b"PX")


@command("getset", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns the previous string value of a key after setting it to a new value.", arguments="key value")
def getset(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    key = argv[1]
    old, previous = raw_value(ctx, key)
    entry = ctx.write(key, argv[2], old=old)
    ctx.notify("$", "set", key, entry)
    return previous


@command("getdel", arity=2, flags="write fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns the string value of a key after deleting the key.", arguments="key")
def getdel(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    key = argv[1]
    old, previous = raw_value(ctx, key)
    if old is not None:
        ctx.notify("g", "del", key, ctx.remove(key))
    return previous


@command("getex", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns the string value of a key after setting its expiration time.",
         arguments="key [EX seconds|PX milliseconds|EXAT unix-time-seconds|PXAT unix-time-milliseconds|PERSIST]")
def getex(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    key = argv[1]
    expiry: tuple[bytes, bytes] | None = None
    persist = False
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt in (b"EX", b"PX", b"EXAT", b"PXAT") and expiry is None and not persist and i + 1 < len(argv):
            expiry = (opt, argv[i + 1])
            i += 2
        elif opt == b"PERSIST" and expiry is None and not persist:
            persist = True
            i += 1
        else:
            raise SYNTAX
    old, previous = raw_value(ctx, key)
    if old is None:  # as Redis: a missing key answers nil before the expire time is even parsed
        return None
    if expiry is not None:
        at_ms = deadline_ms(ctx, expiry[0], expiry[1], "getex")
        if at_ms <= ctx.now_ms:
            ctx.notify("g", "del", key, ctx.remove(key))
        else:
            apply_deadline(ctx, key, at_ms, ctx.write(key, old[VALUE], RAW, old=old, keep_ttl=True))
    elif persist and ctx.db.expire_at(key) is not None:
        ctx.notify("g", "persist", key, ctx.write(key, old[VALUE], RAW, old=old))
    return previous


@command("mget", arity=-2, flags="readonly fast", keys=(1, -1, 1), acl="@string", group="string",
         summary="Atomically returns the string values of one or more keys.", complexity="O(N)", arguments="key [key ...]")
def mget(ctx: Ctx, argv: list[bytes]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for key in argv[1:]:
        entry = ctx.lookup(key)
        # Redis answers nil for a key of another type; a document reads as its JSON text.
        out.append(None if entry is None or entry[KIND] > DOC else read_bytes(entry))
    return out


@command("mset", arity=-3, flags="write denyoom", keys=(1, -1, 2), acl="@string", group="string",
         summary="Atomically creates or modifies the string values of one or more keys.", complexity="O(N)",
         arguments="key value [key value ...]")
def mset(ctx: Ctx, argv: list[bytes]) -> object:
    if len(argv) % 2 == 0:
        raise wrong_arity(argv[0].decode().lower())
    for i in range(1, len(argv), 2):
        key = argv[i]
        ctx.notify("$", "set", key, ctx.replace(key, argv[i + 1]))
    return OK


@command("msetnx", arity=-3, flags="write denyoom", keys=(1, -1, 2), acl="@string", group="string",
         summary="Atomically modifies the string values of one or more keys only when all keys don't exist.",
         complexity="O(N)", arguments="key value [key value ...]")
def msetnx(ctx: Ctx, argv: list[bytes]) -> int:
    if len(argv) % 2 == 0:
        raise wrong_arity("msetnx")
    if any(ctx.lookup(argv[i]) is not None for i in range(1, len(argv), 2)):
        return 0
    mset(ctx, argv)
    return 1


@command("append", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Appends a string to the value of a key. Creates the key if it doesn't exist.", arguments="key value")
def append(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old, current = raw_value(ctx, key)
    value = (current or b"") + argv[2]
    if len(value) > ctx.max_bulk_bytes:
        raise MAX_STRING
    entry = ctx.write(key, value, old=old, keep_ttl=old is not None)
    ctx.notify("$", "append", key, entry)
    return len(value)


@command("strlen", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns the length of a string value.", arguments="key")
def strlen(ctx: Ctx, argv: list[bytes]) -> int:
    entry = ctx.lookup(argv[1])
    return 0 if entry is None else len(read_bytes(entry))


def _incr(ctx: Ctx, key: bytes, delta: int) -> int:
    old = ctx.lookup(key)
    if old is None:
        new = delta
    else:
        if old[KIND] != RAW:
            raise WRONGTYPE
        new = parse_int(old[VALUE]) + delta
    if not INT64_MIN <= new <= INT64_MAX:
        raise OVERFLOW
    ctx.notify("$", "incrby", key, ctx.write(key, b"%d" % new, RAW, old=old, keep_ttl=old is not None))
    return new


@command("incr", arity=2, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
         arguments="key")
def incr(ctx: Ctx, argv: list[bytes]) -> int:
    return _incr(ctx, argv[1], 1)


@command("decr", arity=2, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         summary="Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
         arguments="key")
def decr(ctx: Ctx, argv: list[bytes]) -> int:
    return _incr(ctx, argv[1], -1)


def _check_delta(argv: list[bytes], settings: object) -> None:
    parse_int(argv[2])


@command("incrby", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string", check=_check_delta,
         summary="Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
         arguments="key increment")
def incrby(ctx: Ctx, argv: list[bytes]) -> int:
    return _incr(ctx, argv[1], parse_int(argv[2]))


@command("decrby", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string", check=_check_delta,
         summary="Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
         arguments="key decrement")
def decrby(ctx: Ctx, argv: list[bytes]) -> int:
    delta = parse_int(argv[2])
    if delta == INT64_MIN:
        raise ErrorReply("ERR decrement would overflow")
    return _incr(ctx, argv[1], -delta)


@command("incrbyfloat", arity=3, flags="write denyoom fast", keys=(1, 1, 1), acl="@string", group="string",
         check=parses(lambda argv: parse_float(argv[2])),
         summary="Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
         arguments="key increment")
def incrbyfloat(ctx: Ctx, argv: list[bytes]) -> bytes:
    key = argv[1]
    delta = parse_float(argv[2])
    old, current = raw_value(ctx, key)
    value = Decimal(0) if current is None else parse_float(current)
    with localcontext() as exact:
        exact.prec = 64  # the inputs are decimal text: add them exactly, then print as Redis does
        new = value + delta
    if abs(new) > LONG_DOUBLE_MAX:
        raise NAN_OR_INF
    text = format_float(new)
    entry = ctx.write(key, text, old=old, keep_ttl=old is not None)
    ctx.notify("$", "incrbyfloat", key, entry)
    return text


@command("getrange", arity=4, flags="readonly", keys=(1, 1, 1), acl="@string", group="string",
         summary="Returns a substring of the string stored at a key.", complexity="O(N)", arguments="key start end")
@command("substr", arity=4, flags="readonly", keys=(1, 1, 1), acl="@string", group="string", since="1.0.0",
         summary="Returns a substring from a string value.", complexity="O(N)", arguments="key start end")
def getrange(ctx: Ctx, argv: list[bytes]) -> bytes:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    entry = ctx.lookup(argv[1])
    if entry is None:
        return b""
    value = read_bytes(entry)
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    if start < 0:
        start = max(n + start, 0)
    if end < 0:
        end = max(n + end, 0)
    end = min(end, n - 1)
    if start > end or n == 0:
        return b""
    return value[start : end + 1]


def _check_setrange(argv: list[bytes], settings: object) -> None:
    if parse_int(argv[2]) < 0:
        raise OFFSET_RANGE


@command("setrange", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@string", group="string",
         check=_check_setrange,
         summary="Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
         arguments="key offset value")
def setrange(ctx: Ctx, argv: list[bytes]) -> int:
    key, chunk = argv[1], argv[3]
    offset = parse_int(argv[2])
    if offset < 0:
        raise OFFSET_RANGE
    old, current = raw_value(ctx, key)
    current = current or b""
    if not chunk:
        return len(current)
    if offset + len(chunk) > ctx.max_bulk_bytes:
        raise MAX_STRING
    if len(current) < offset:
        current = current + b"\x00" * (offset - len(current))
    value = current[:offset] + chunk + current[offset + len(chunk) :]
    entry = ctx.write(key, value, old=old, keep_ttl=old is not None)
    ctx.notify("$", "setrange", key, entry)
    return len(value)



# -- LCS ------------------------------------------------------------------------------


def _lcs_rows(a: bytes, b: bytes) -> list[int]:
    """Bit-parallel LCS (Allison & Dix 1986; Hyyro 2004): row i is a bit vector V_i over b where
    LCS(a[:i], b[:j]) = j - popcount(V_i & (2**j - 1)). O(len(a) * len(b) / word) with big ints."""
    mask = (1 << len(b)) - 1
    matches: dict[int, int] = {}
    for j, ch in enumerate(b):
        matches[ch] = matches.get(ch, 0) | (1 << j)
    v = mask
    rows = [v]
    for ch in a:
        u = v & matches.get(ch, 0)
        v = ((v + u) | (v - u)) & mask
        rows.append(v)
    return rows


def _lcs_at(rows: list[int], i: int, j: int) -> int:
    return j - (rows[i] & ((1 << j) - 1)).bit_count()


@command("lcs", arity=-3, flags="readonly", keys=(1, 2, 1), acl="@string", group="string", since="7.0.0",
         summary="Finds the longest common substring.", complexity="O(N*M)",
         arguments="key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]")
def lcs(ctx: Ctx, argv: list[bytes]) -> object:
    first, second = ctx.lookup(argv[1]), ctx.lookup(argv[2])
    if (first is not None and first[KIND] != RAW) or (second is not None and second[KIND] != RAW):
        raise ErrorReply("ERR The specified keys must contain string values")
    a = b"" if first is None else first[VALUE]
    b = b"" if second is None else second[VALUE]
    get_len = get_idx = with_match_len = False
    min_match = 0
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"idx":
            get_idx = True
        elif opt == b"len":
            get_len = True
        elif opt == b"withmatchlen":
            with_match_len = True
        elif opt == b"minmatchlen" and j + 1 < len(argv):
            min_match = max(parse_int(argv[j + 1]), 0)
            j += 1
        else:
            raise SYNTAX
        j += 1
    if get_len and get_idx:
        raise ErrorReply("ERR If you want both the length and indexes, please just use IDX.")
    if (len(a) + 1) * (len(b) + 1) * 4 > ctx.max_bulk_bytes:
        raise ErrorReply("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    rows = _lcs_rows(a, b)
    total = _lcs_at(rows, len(a), len(b))
    if get_len:
        return total
    # Walk back as Redis does (t_string.c lcsCommand): on a tie prefer j-1, emitting match ranges.
    out = bytearray(total)
    matches: list[list[object]] = []
    idx = total
    i, jj = len(a), len(b)
    a_start = a_end = b_start = b_end = -1
    while i > 0 and jj > 0:
        emit = False
        if a[i - 1] == b[jj - 1]:
            out[idx - 1] = a[i - 1]
            if a_start == -1:
                a_start = a_end = i - 1
                b_start = b_end = jj - 1
            elif a_start == i and b_start == jj:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            idx -= 1
            i -= 1
            jj -= 1
        else:
            if _lcs_at(rows, i - 1, jj) > _lcs_at(rows, i, jj - 1):
                i -= 1
            else:
                jj -= 1
            if a_start != -1:
                emit = True
        if emit:
            length = a_end - a_start + 1
            if get_idx and (min_match == 0 or length >= min_match):
                row: list[object] = [[a_start, a_end], [b_start, b_end]]
                if with_match_len:
                    row.append(length)
                matches.append(row)
            a_start = -1
    if get_idx:
        return {"matches": matches, "len": total}
    return bytes(out)
