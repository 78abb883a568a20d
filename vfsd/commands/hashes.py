"""Hash commands (t_hash.c) with Redis 7.2's replies, errors and keyspace events.

A hash is a dict of field -> value bytes in insertion order, which is the
order Redis's listpack keeps (a new field goes to the end, an updated one stays
in place), so HGETALL of a small hash answers in Redis's order. A hash Redis
would have converted to a hashtable is a ``HashTable`` (see vfsd.store.values).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from vfsd.commands.collections import (
    LONG_MAX,
    OUT_OF_RANGE,
    parse_cursor,
    parse_long_double,
    parse_range_long,
    scan_options,
    scan_reply,
    store,
    typed,
)
from vfsd.commands.context import Ctx
from vfsd.commands.errors import INT64_MAX, INT64_MIN, LONG_DOUBLE_MAX, SYNTAX, format_float, parse_int, wrong_arity
from vfsd.commands.table import command
from vfsd.resp.types import OK, ErrorReply, Pairs
from vfsd.store.keyspace import VALUE
from vfsd.store.values import HASH, HashTable, hash_after_args, hash_after_growth

NOT_INTEGER_VALUE = ErrorReply("ERR hash value is not an integer")
NOT_FLOAT_VALUE = ErrorReply("ERR hash value is not a float")


def _check_pairs(argv: list[bytes], settings: Any) -> None:
    if len(argv) % 2:
        raise wrong_arity(argv[0].decode(errors="replace").lower())


def _hash(ctx: Ctx, key: bytes) -> dict[bytes, bytes] | None:
    entry = typed(ctx, key, HASH)
    return None if entry is None else entry[VALUE]


def _set_pairs(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old = typed(ctx, key, HASH)
    value: dict[bytes, bytes] = {} if old is None else ctx.mutable(key, old)
    args = argv[2:]
    value = hash_after_args(value, args, len(args) // 2)
    before = len(value)
    for i in range(0, len(args), 2):
        value[args[i]] = args[i + 1]
    value = hash_after_growth(value)
    ctx.notify("h", "hset", key, store(ctx, key, value, HASH, old))
    return len(value) - before


@command("hset", arity=-4, flags="write denyoom fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0", check=_check_pairs,
         summary="Creates or modifies the value of a field in a hash.", complexity="O(N) for N fields",
         arguments="key field value [field value ...]")
def hset(ctx: Ctx, argv: list[bytes]) -> int:
    if len(argv) % 2:
        raise wrong_arity("hset")
    return _set_pairs(ctx, argv)


@command("hmset", arity=-4, flags="write denyoom fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0", check=_check_pairs,
         summary="Sets the values of multiple fields.", complexity="O(N) for N fields",
         arguments="key field value [field value ...]")
def hmset(ctx: Ctx, argv: list[bytes]) -> object:
    if len(argv) % 2:
        raise wrong_arity("hmset")
    _set_pairs(ctx, argv)
    return OK


@command("hsetnx", arity=4, flags="write denyoom fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Sets the value of a field in a hash only when the field doesn't exist.", arguments="key field value")
def hsetnx(ctx: Ctx, argv: list[bytes]) -> int:
    key, field = argv[1], argv[2]
    old = typed(ctx, key, HASH)
    value: dict[bytes, bytes] = {} if old is None else ctx.mutable(key, old)
    if field in value:
        return 0
    value = hash_after_args(value, argv[2:4], 1)
    value[field] = argv[3]
    value = hash_after_growth(value)
    ctx.notify("h", "hset", key, store(ctx, key, value, HASH, old))
    return 1


@command("hget", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns the value of a field in a hash.", arguments="key field")
def hget(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    value = _hash(ctx, argv[1])
    return None if value is None else value.get(argv[2])


@command("hmget", arity=-3, flags="readonly fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns the values of all fields in a hash.", complexity="O(N) for N fields",
         arguments="key field [field ...]")
def hmget(ctx: Ctx, argv: list[bytes]) -> list[bytes | None]:
    value = _hash(ctx, argv[1])
    if value is None:
        return [None] * (len(argv) - 2)
    get = value.get
    return [get(field) for field in argv[2:]]


@command("hdel", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
         complexity="O(N) for N fields", arguments="key field [field ...]")
def hdel(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old = typed(ctx, key, HASH)
    if old is None:
        return 0
    value: dict[bytes, bytes] = ctx.mutable(key, old)
    deleted = 0
    for field in argv[2:]:
        if value.pop(field, None) is not None:
            deleted += 1
            if not value:
                break
    if deleted:
        if value:
            ctx.notify("h", "hdel", key, store(ctx, key, value, HASH, old))
        else:
            ctx.remove(key)
            ctx.notify("h", "hdel", key)
            ctx.notify("g", "del", key)
    return deleted


@command("hexists", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Determines whether a field exists in a hash.", arguments="key field")
def hexists(ctx: Ctx, argv: list[bytes]) -> int:
    value = _hash(ctx, argv[1])
    return int(value is not None and argv[2] in value)


@command("hlen", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns the number of fields in a hash.", arguments="key")
def hlen(ctx: Ctx, argv: list[bytes]) -> int:
    value = _hash(ctx, argv[1])
    return 0 if value is None else len(value)


@command("hstrlen", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@hash", group="hash", since="3.2.0",
         summary="Returns the length of the value of a field.", arguments="key field")
def hstrlen(ctx: Ctx, argv: list[bytes]) -> int:
    value = _hash(ctx, argv[1])
    if value is None:
        return 0
    found = value.get(argv[2])
    return 0 if found is None else len(found)


@command("hkeys", arity=2, flags="readonly", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns all fields in a hash.", complexity="O(N)", arguments="key")
def hkeys(ctx: Ctx, argv: list[bytes]) -> list[bytes]:
    value = _hash(ctx, argv[1])
    return [] if value is None else list(value)


@command("hvals", arity=2, flags="readonly", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns all values in a hash.", complexity="O(N)", arguments="key")
def hvals(ctx: Ctx, argv: list[bytes]) -> list[bytes]:
    value = _hash(ctx, argv[1])
    return [] if value is None else list(value.values())


@command("hgetall", arity=2, flags="readonly", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         summary="Returns all fields and values in a hash.", complexity="O(N)", arguments="key")
def hgetall(ctx: Ctx, argv: list[bytes]) -> dict[bytes, bytes]:
    value = _hash(ctx, argv[1])
    return {} if value is None else dict(value)  # a copy: the reply may be encoded after later writes


def _check_hincrby(argv: list[bytes], settings: Any) -> None:
    parse_int(argv[3])


def _float_increment(arg: bytes) -> Decimal:
    delta = parse_long_double(arg, ErrorReply("ERR value is not a valid float"))
    if delta.is_infinite() or abs(delta) > LONG_DOUBLE_MAX:
        raise ErrorReply("ERR value is NaN or Infinity")
    return delta


def _check_hincrbyfloat(argv: list[bytes], settings: Any) -> None:
    _float_increment(argv[3])


@command("hincrby", arity=4, flags="write denyoom fast", keys=(1, 1, 1), acl="@hash", group="hash", since="2.0.0",
         check=_check_hincrby,
         summary="Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the "
         "field doesn't exist.", arguments="key field increment")
def hincrby(ctx: Ctx, argv: list[bytes]) -> int:
    key, field = argv[1], argv[2]
    delta = parse_int(argv[3])
    old = typed(ctx, key, HASH)
    value: dict[bytes, bytes] = {} if old is None else ctx.mutable(key, old)
    current = value.get(field)
    number = 0 if current is None else parse_int(current, NOT_INTEGER_VALUE)
    result = number + delta
    if not INT64_MIN <= result <= INT64_MAX:
        raise ErrorReply("ERR increment or decrement would overflow")
    if type(value) is not HashTable and len(field) > 64:
        value = HashTable(value)
    value[field] = b"%d" % result
    value = hash_after_growth(value)
    ctx.notify("h", "hincrby", key, store(ctx, key, value, HASH, old))
    return result


@command("hincrbyfloat", arity=4, flags="write denyoom fast", keys=(1, 1, 1), acl="@hash", group="hash",
         since="2.6.0", check=_check_hincrbyfloat, summary="Increments the floating point value of a field by a number. Uses 0 as initial "
         "value if the field doesn't exist.", arguments="key field increment")
def hincrbyfloat(ctx: Ctx, argv: list[bytes]) -> bytes:
    key, field = argv[1], argv[2]
    delta = _float_increment(argv[3])
    old = typed(ctx, key, HASH)
    value: dict[bytes, bytes] = {} if old is None else ctx.mutable(key, old)
    current = value.get(field)
    number = Decimal(0)
    if current is not None:
        number = parse_long_double(current, NOT_FLOAT_VALUE)
        if number.is_infinite():
            raise ErrorReply("ERR increment would produce NaN or Infinity")
    with localcontext() as exact:
        exact.prec = 64
        result = number + delta
    if abs(result) > LONG_DOUBLE_MAX:
        raise ErrorReply("ERR increment would produce NaN or Infinity")
    text = format_float(result)
    if type(value) is not HashTable and (len(field) > 64 or len(text) > 64):
        value = HashTable(value)
    value[field] = text
    value = hash_after_growth(value)
    ctx.notify("h", "hincrbyfloat", key, store(ctx, key, value, HASH, old))
    return text


@command("hrandfield", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@hash", group="hash", since="6.2.0",
         summary="Returns one or more random fields from a hash.", complexity="O(N) where N is the number of fields returned",
         arguments="key [count [WITHVALUES]]")
def hrandfield(ctx: Ctx, argv: list[bytes]) -> Any:
    if len(argv) >= 3:
        count = parse_range_long(argv[2], -LONG_MAX, LONG_MAX)
        if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withvalues"):
            raise SYNTAX
        with_values = len(argv) == 4
        if with_values and not -LONG_MAX // 2 <= count <= LONG_MAX // 2:
            raise OUT_OF_RANGE
        value = _hash(ctx, argv[1])
        if value is None or count == 0:
            return []
        fields = list(value)
        rng = ctx.random
        if count < 0:
            chosen = [rng.choice(fields) for _ in range(-count)]
        elif count >= len(fields):
            chosen = fields
        else:
            chosen = rng.sample(fields, count)
        if not with_values:
            return chosen
        return Pairs([[f, value[f]] for f in chosen])
    value = _hash(ctx, argv[1])
    if value is None:
        return None
    return ctx.random.choice(list(value))


@command("hscan", arity=-3, flags="readonly", keys=(1, 1, 1), acl="@hash", group="hash", since="2.8.0",
         summary="Iterates over fields and values of a hash.", complexity="O(1) for every call",
         arguments="key cursor [MATCH pattern] [COUNT count]")
def hscan(ctx: Ctx, argv: list[bytes]) -> list[Any]:
    cursor = parse_cursor(argv[2])
    value = _hash(ctx, argv[1])
    if value is None:
        return [b"0", []]
    count, match = scan_options(argv, 3)
    return scan_reply(value.items(), len(value), cursor, count, type(value) is not HashTable, match, True)

