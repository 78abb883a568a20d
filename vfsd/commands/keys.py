"""Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, conditional deletes."""

from __future__ import annotations

from vfsd.codec import RAW
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, invalid_expire, parse_int
from vfsd.commands.strings import _MAX_MS
from vfsd.commands.table import command
from vfsd.resp.types import ErrorReply, SimpleString
from vfsd.store.keyspace import KIND, VALUE, Entry

TYPE_NAMES = {RAW: "string", 1: "ReJSON-RL"}


def type_name(entry: Entry | None) -> str:
    return "none" if entry is None else TYPE_NAMES[entry[KIND]]


def _delete(ctx: Ctx, argv: list[bytes]) -> int:
    removed = 0
    for key in argv[1:]:
        if ctx.lookup(key) is not None:
            ctx.notify("g", "del", key, ctx.remove(key))
            removed += 1
    return removed


@command("del", arity=-2, flags="write", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Deletes one or more keys.", complexity="O(N)", arguments="key [key ...]")
def del_(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete(ctx, argv)


@command("unlink", arity=-2, flags="write fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Asynchronously deletes one or more keys.", complexity="O(N)", arguments="key [key ...]", since="4.0.0")
def unlink(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete(ctx, argv)


@command("exists", arity=-2, flags="readonly fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Determines whether one or more keys exist.", complexity="O(N)", arguments="key [key ...]")
def exists(ctx: Ctx, argv: list[bytes]) -> int:
    return sum(1 for key in argv[1:] if ctx.lookup(key) is not None)


@command("touch", arity=-2, flags="readonly fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Returns the number of existing keys out of those specified after updating the time they were last accessed.",
         complexity="O(N)", arguments="key [key ...]", since="3.2.1")
def touch(ctx: Ctx, argv: list[bytes]) -> int:
    return exists(ctx, argv)


@command("type", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Determines the type of value stored at a key.", arguments="key")
def type_(ctx: Ctx, argv: list[bytes]) -> SimpleString:
    return SimpleString(type_name(ctx.lookup(argv[1])))


def _expire(ctx: Ctx, argv: list[bytes], unit_ms: int, absolute: bool) -> int:
    key = argv[1]
    name = argv[0].decode().lower()
    flags = {a.upper() for a in argv[3:]}  # options first, as Redis parses them
    for flag in flags:
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            raise ErrorReply(f"ERR Unsupported option {flag.decode(errors='replace')}")
    if b"NX" in flags and len(flags) > 1:
        raise ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise ErrorReply("ERR GT and LT options at the same time are not compatible")
    amount = parse_int(argv[2])
    # Redis's checks: the amount must fit in ms, and so must the sum with the base time.
    if amount > _MAX_MS // unit_ms or amount < -(_MAX_MS // unit_ms):
        raise invalid_expire(name)
    at_ms = amount * unit_ms + (0 if absolute else ctx.now_ms)
    if at_ms > _MAX_MS:
        raise invalid_expire(name)
    entry = ctx.lookup(key)
    if entry is None:
        return 0
    current = ctx.db.expire_at(key)
    if b"NX" in flags and current is not None:
        return 0
    if b"XX" in flags and current is None:
        return 0
    # Redis: a key with no TTL counts as an infinite TTL for GT and LT.
    if b"GT" in flags and (current is None or at_ms <= current):
        return 0
    if b"LT" in flags and current is not None and at_ms >= current:
        return 0
    if at_ms <= ctx.now_ms:
        ctx.notify("g", "del", key, ctx.remove(key))
        return 1
    entry = ctx.write(key, entry[VALUE], entry[KIND], old=entry, keep_ttl=True)  # a TTL change is a change
    ctx.db.set_expire(key, at_ms)
    ctx.notify("g", "expire", key, entry)
    return 1


_EXPIRE_ARGS = "key {} [NX|XX|GT|LT]"


@command("expire", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key in seconds.", arguments=_EXPIRE_ARGS.format("seconds"))
def expire(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1000, absolute=False)


@command("pexpire", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key in milliseconds.", arguments=_EXPIRE_ARGS.format("milliseconds"), since="2.6.0")
def pexpire(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1, absolute=False)


@command("expireat", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key to a Unix timestamp.", arguments=_EXPIRE_ARGS.format("unix-time-seconds"), since="1.2.0")
def expireat(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1000, absolute=True)


@command("pexpireat", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key to a Unix milliseconds timestamp.",
         arguments=_EXPIRE_ARGS.format("unix-time-milliseconds"), since="2.6.0")
def pexpireat(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1, absolute=True)


def _ttl(ctx: Ctx, key: bytes, divisor: int) -> int:
    if ctx.lookup(key) is None:
        return -2
    remaining = ctx.ttl_ms(key)
    if remaining is None:
        return -1
    return (remaining + divisor // 2) // divisor if divisor > 1 else remaining


@command("ttl", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time in seconds of a key.", arguments="key")
def ttl(ctx: Ctx, argv: list[bytes]) -> int:
    return _ttl(ctx, argv[1], 1000)


@command("pttl", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time in milliseconds of a key.", arguments="key", since="2.6.0")
def pttl(ctx: Ctx, argv: list[bytes]) -> int:
    return _ttl(ctx, argv[1], 1)


def _expiretime(ctx: Ctx, key: bytes, divisor: int) -> int:
    if ctx.lookup(key) is None:
        return -2
    at = ctx.db.expire_at(key)
    return -1 if at is None else at // divisor


@command("expiretime", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time of a key as a Unix timestamp.", arguments="key", since="7.0.0")
def expiretime(ctx: Ctx, argv: list[bytes]) -> int:
    return _expiretime(ctx, argv[1], 1000)


@command("pexpiretime", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time of a key as a Unix milliseconds timestamp.", arguments="key", since="7.0.0")
def pexpiretime(ctx: Ctx, argv: list[bytes]) -> int:
    return _expiretime(ctx, argv[1], 1)


@command("persist", arity=2, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Removes the expiration time of a key.", arguments="key", since="2.2.0")
def persist(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    entry = ctx.lookup(key)
    if entry is None or ctx.db.expire_at(key) is None:
        return 0
    entry = ctx.write(key, entry[VALUE], entry[KIND], old=entry)  # a new revision, and no TTL
    ctx.notify("g", "persist", key, entry)
    return 1


def _delete_if(ctx: Ctx, key: bytes, mode: bytes, value: bytes) -> int:
    entry = ctx.lookup(key)
    if entry is None:
        return 0
    if entry[KIND] != RAW:
        from vfsd.commands.errors import WRONGTYPE

        raise WRONGTYPE
    matches = entry[VALUE] == value
    if matches != (mode == b"IFEQ"):
        return 0
    ctx.notify("g", "del", key, ctx.remove(key))
    return 1


@command("delifeq", arity=3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Deletes a key only if its value equals the given value (releases a lock held with that token).",
         arguments="key value", since="7.2.0")
def delifeq(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete_if(ctx, argv[1], b"IFEQ", argv[2])


@command("delex", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Conditionally removes the specified key based on value comparison.",
         arguments="key [IFEQ match-value|IFNE match-value]", since="8.4.0")
def delex(ctx: Ctx, argv: list[bytes]) -> int:
    if len(argv) == 2:
        return _delete(ctx, argv)
    if len(argv) != 4:
        raise SYNTAX
    mode = argv[2].upper()
    if mode not in (b"IFEQ", b"IFNE"):
        raise ErrorReply(f"ERR DELEX: unsupported condition '{argv[2].decode(errors='replace')}' (IFEQ or IFNE)")
    return _delete_if(ctx, argv[1], mode, argv[3])
