"""Set commands (t_set.c) with Redis 7.2's replies, errors and keyspace events.

A set is a Python set of member bytes; its type records the encoding Redis
would use (plain ``set`` for intset, ``ListpackSet``, ``HashSet``; see
vfsd.store.values). Replies that Redis sends as RESP3 sets (SMEMBERS, SINTER,
SPOP with a count...) are returned as Python sets (copies), in no particular
order, as Redis's hashtable order is none either.

Random choices (SPOP, SRANDMEMBER) use ``ctx.random``. On the desired plane
(``ctx.deterministic``) they draw from the members in sorted order, so every
replica pops the same members; elsewhere a large set draws from its pool
(``HashSet.pool``) in O(1).
"""

from __future__ import annotations

from typing import Any

from vfsd.commands.collections import (
    LONG_MAX,
    parse_cursor,
    parse_positive,
    parse_range_long,
    replace,
    scan_options,
    scan_reply,
    store,
    typed,
)
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, WRONGTYPE
from vfsd.commands.table import command
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, VALUE, Entry
from vfsd.store.values import SET, HashSet, new_set, set_add, set_before_adds, set_from_members


def _set(ctx: Ctx, key: bytes) -> set[bytes] | None:
    entry = typed(ctx, key, SET)
    return None if entry is None else entry[VALUE]


# -- random members -------------------------------------------------------------


def _pick(ctx: Ctx, members: set[bytes]) -> bytes:
    """One member chosen at random (see the module docstring)."""
    rng = ctx.random
    if ctx.deterministic:
        return rng.choice(sorted(members))
    if type(members) is not HashSet:
        return rng.choice(list(members))
    pool = members.pool  # type: ignore[attr-defined]
    if pool is None or len(pool) > 2 * len(members) + 64:
        pool = members.pool = list(members)  # type: ignore[attr-defined]
    while True:
        i = rng.randrange(len(pool))
        member = pool[i]
        if member in members:
            return member
        pool[i] = pool[-1]  # stale: removed since it was pooled
        pool.pop()


def _sample(ctx: Ctx, members: set[bytes], count: int) -> list[bytes]:
    """``count`` distinct members (count < len(members))."""
    if ctx.deterministic or type(members) is not HashSet or count * 3 > len(members):
        return ctx.random.sample(sorted(members) if ctx.deterministic else list(members), count)
    chosen: dict[bytes, None] = {}
    while len(chosen) < count:
        chosen[_pick(ctx, members)] = None
    return list(chosen)


# -- commands -----------------------------------------------------------------------


@command("sadd", arity=-3, flags="write denyoom fast", keys=(1, 1, 1), acl="@set", group="set",
         summary="Adds one or more members to a set. Creates the key if it doesn't exist.",
         complexity="O(1) for each element added", arguments="key member [member ...]")
def sadd(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old = typed(ctx, key, SET)
    hint = len(argv) - 2
    value = new_set(argv[2], hint) if old is None else set_before_adds(ctx.mutable(key, old), hint)
    added = 0
    for member in argv[2:]:
        value, fresh = set_add(value, member)
        added += fresh
    if added:
        ctx.notify("s", "sadd", key, store(ctx, key, value, SET, old))
    elif old is not None and type(value) is not type(old[VALUE]):
        # Only the encoding changed (a bulk add of existing members passed a limit): no change a
        # client can see, so the same revision, no event, no WATCH.
        ctx.db.data[key] = (value, *old[1:])
    return added


def _removed(ctx: Ctx, key: bytes, old: Entry, value: set[bytes], event: str) -> None:
    if value:
        ctx.notify("s", event, key, store(ctx, key, value, SET, old))
    else:
        ctx.remove(key)
        ctx.notify("s", event, key)
        ctx.notify("g", "del", key)


@command("srem", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@set", group="set",
         summary="Removes one or more members from a set. Deletes the set if the last member was removed.",
         complexity="O(N)", arguments="key member [member ...]")
def srem(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old = typed(ctx, key, SET)
    if old is None:
        return 0
    value: set[bytes] = ctx.mutable(key, old)
    removed = 0
    for member in argv[2:]:
        if member in value:
            value.discard(member)
            removed += 1
            if not value:
                break
    if removed:
        _removed(ctx, key, old, value, "srem")
    return removed


@command("scard", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@set", group="set",
         summary="Returns the number of members in a set.", arguments="key")
def scard(ctx: Ctx, argv: list[bytes]) -> int:
    value = _set(ctx, argv[1])
    return 0 if value is None else len(value)


@command("sismember", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@set", group="set",
         summary="Determines whether a member belongs to a set.", arguments="key member")
def sismember(ctx: Ctx, argv: list[bytes]) -> int:
    value = _set(ctx, argv[1])
    return int(value is not None and argv[2] in value)


@command("smismember", arity=-3, flags="readonly fast", keys=(1, 1, 1), acl="@set", group="set", since="6.2.0",
         summary="Determines whether multiple members belong to a set.", complexity="O(N)",
         arguments="key member [member ...]")
def smismember(ctx: Ctx, argv: list[bytes]) -> list[int]:
    value = _set(ctx, argv[1]) or ()
    return [int(member in value) for member in argv[2:]]


@command("smembers", arity=2, flags="readonly", keys=(1, 1, 1), acl="@set", group="set",
         summary="Returns all members of a set.", complexity="O(N)", arguments="key")
def smembers(ctx: Ctx, argv: list[bytes]) -> set[bytes]:
    value = _set(ctx, argv[1])
    return set() if value is None else set(value)


def _check_spop(argv: list[bytes], settings: Any) -> None:
    if len(argv) == 3:
        parse_positive(argv[2])
    elif len(argv) > 3:
        raise SYNTAX


@command("spop", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@set", group="set", check=_check_spop,
         summary="Returns one or more random members from a set after removing them. Deletes the set if the last "
         "member was popped.", complexity="O(N)", arguments="key [count]")
def spop(ctx: Ctx, argv: list[bytes]) -> Any:
    key = argv[1]
    if len(argv) > 3:
        raise SYNTAX
    if len(argv) == 3:
        count = parse_positive(argv[2])
        old = typed(ctx, key, SET)
        if old is None or count == 0:
            return set()
        value: set[bytes] = ctx.mutable(key, old)
        if count >= len(value):
            popped = set(value)
            ctx.remove(key)
            ctx.notify("s", "spop", key)
            ctx.notify("g", "del", key)
            return popped
        chosen = _sample(ctx, value, count)
        value.difference_update(chosen)
        ctx.notify("s", "spop", key, store(ctx, key, value, SET, old))
        return set(chosen)
    old = typed(ctx, key, SET)
    if old is None:
        return None
    value = ctx.mutable(key, old)
    member = _pick(ctx, value)
    value.discard(member)
    _removed(ctx, key, old, value, "spop")
    return member


@command("srandmember", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@set", group="set",
         summary="Get one or multiple random members from a set", complexity="O(N)", arguments="key [count]")
def srandmember(ctx: Ctx, argv: list[bytes]) -> Any:
    if len(argv) == 3:
        count = parse_range_long(argv[2], -LONG_MAX, LONG_MAX)
        value = _set(ctx, argv[1])
        if value is None or count == 0:
            return []
        if count < 0:
            return [_pick(ctx, value) for _ in range(-count)]
        if count >= len(value):
            return list(value)
        return _sample(ctx, value, count)
    if len(argv) > 3:
        raise SYNTAX
    value = _set(ctx, argv[1])
    return None if value is None else _pick(ctx, value)


@command("smove", arity=4, flags="write fast", keys=(1, 2, 1), acl="@set", group="set",
         summary="Moves a member from one set to another.", arguments="source destination member")
def smove(ctx: Ctx, argv: list[bytes]) -> int:
    source, destination, member = argv[1], argv[2], argv[3]
    src = ctx.lookup(source)
    dst = ctx.lookup(destination)
    if src is None:
        return 0
    if src[KIND] != SET or (dst is not None and dst[KIND] != SET):
        raise WRONGTYPE
    if source == destination:
        return int(member in src[VALUE])
    value: set[bytes] = ctx.mutable(source, src)
    if member not in value:
        return 0
    value.discard(member)
    _removed(ctx, source, src, value, "srem")
    target = new_set(member, 1) if dst is None else ctx.mutable(destination, dst)
    target, added = set_add(target, member)
    if added:
        ctx.notify("s", "sadd", destination, store(ctx, destination, target, SET, dst))
    return 1


# -- set algebra --------------------------------------------------------------------


def _sets(ctx: Ctx, keys: list[bytes]) -> list[set[bytes] | None]:
    """The sets at ``keys`` (None for a missing key); WRONGTYPE for any other type, checked in order."""
    return [_set(ctx, key) for key in keys]


def _inter(sets: list[set[bytes] | None], limit: int = 0) -> set[bytes]:
    if any(s is None for s in sets):
        return set()
    ordered = sorted(sets, key=len)  # type: ignore[arg-type]
    smallest, rest = ordered[0], ordered[1:]
    out: set[bytes] = set()
    for member in smallest:  # type: ignore[union-attr]
        if all(member in other for other in rest):  # type: ignore[operator]
            out.add(member)
            if limit and len(out) >= limit:
                break
    return out


def _union(sets: list[set[bytes] | None]) -> set[bytes]:
    out: set[bytes] = set()
    for s in sets:
        if s:
            out |= s
    return out


def _diff(sets: list[set[bytes] | None]) -> set[bytes]:
    first = sets[0]
    if not first:
        return set()
    out = set(first)
    for s in sets[1:]:
        if s:
            out -= s
        if not out:
            break
    return out


def _store_result(ctx: Ctx, destination: bytes, members: set[bytes], event: str) -> int:
    if not members:
        if ctx.lookup(destination) is not None:
            ctx.remove(destination)
            ctx.notify("g", "del", destination)
        return 0
    ctx.notify("s", event, destination, replace(ctx, destination, set_from_members(members), SET))
    return len(members)


@command("sinter", arity=-2, flags="readonly", keys=(1, -1, 1), acl="@set", group="set",
         summary="Returns the intersect of multiple sets.", complexity="O(N*M)", arguments="key [key ...]")
def sinter(ctx: Ctx, argv: list[bytes]) -> set[bytes]:
    return _inter(_sets(ctx, argv[1:]))


@command("sinterstore", arity=-3, flags="write denyoom", keys=(1, -1, 1), acl="@set", group="set",
         summary="Stores the intersect of multiple sets in a key.", complexity="O(N*M)",
         arguments="destination key [key ...]")
def sinterstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _store_result(ctx, argv[1], _inter(_sets(ctx, argv[2:])), "sinterstore")


def _numkeys_positions(argv: list[bytes]) -> list[int]:
    try:
        numkeys = int(argv[1])
    except ValueError:
        return []
    if numkeys < 1 or numkeys > len(argv) - 2:
        return []
    return list(range(2, 2 + numkeys))


def _sintercard_args(argv: list[bytes]) -> tuple[list[bytes], int]:
    numkeys = parse_range_long(argv[1], 1, LONG_MAX, "numkeys should be greater than 0")
    if numkeys > len(argv) - 2:
        raise ErrorReply("ERR Number of keys can't be greater than number of args")
    limit = 0
    i = 2 + numkeys
    while i < len(argv):
        if argv[i].lower() == b"limit" and i + 1 < len(argv):
            limit = parse_positive(argv[i + 1], "LIMIT can't be negative")
            i += 2
        else:
            raise SYNTAX
    return argv[2 : 2 + numkeys], limit


@command("sintercard", arity=-3, flags="readonly", acl="@set", group="set", since="7.0.0",
         key_positions=_numkeys_positions, summary="Returns the number of members of the intersect of multiple sets.",
         complexity="O(N*M)", arguments="numkeys key [key ...] [LIMIT limit]")
def sintercard(ctx: Ctx, argv: list[bytes]) -> int:
    keys, limit = _sintercard_args(argv)
    return len(_inter(_sets(ctx, keys), limit))


@command("sunion", arity=-2, flags="readonly", keys=(1, -1, 1), acl="@set", group="set",
         summary="Returns the union of multiple sets.", complexity="O(N)", arguments="key [key ...]")
def sunion(ctx: Ctx, argv: list[bytes]) -> set[bytes]:
    return _union(_sets(ctx, argv[1:]))


@command("sunionstore", arity=-3, flags="write denyoom", keys=(1, -1, 1), acl="@set", group="set",
         summary="Stores the union of multiple sets in a key.", complexity="O(N)",
         arguments="destination key [key ...]")
def sunionstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _store_result(ctx, argv[1], _union(_sets(ctx, argv[2:])), "sunionstore")


@command("sdiff", arity=-2, flags="readonly", keys=(1, -1, 1), acl="@set", group="set",
         summary="Returns the difference of multiple sets.", complexity="O(N)", arguments="key [key ...]")
def sdiff(ctx: Ctx, argv: list[bytes]) -> set[bytes]:
    return _diff(_sets(ctx, argv[1:]))


@command("sdiffstore", arity=-3, flags="write denyoom", keys=(1, -1, 1), acl="@set", group="set",
         summary="Stores the difference of multiple sets in a key.", complexity="O(N)",
         arguments="destination key [key ...]")
def sdiffstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _store_result(ctx, argv[1], _diff(_sets(ctx, argv[2:])), "sdiffstore")


@command("sscan", arity=-3, flags="readonly", keys=(1, 1, 1), acl="@set", group="set", since="2.8.0",
         summary="Iterates over members of a set.", complexity="O(1) for every call",
         arguments="key cursor [MATCH pattern] [COUNT count]")
def sscan(ctx: Ctx, argv: list[bytes]) -> list[Any]:
    cursor = parse_cursor(argv[2])
    value = _set(ctx, argv[1])
    if value is None:
        return [b"0", []]
    count, match = scan_options(argv, 3)
    return scan_reply(((m, None) for m in value), len(value), cursor, count, type(value) is not HashSet, match, False)
