"""List commands (t_list.c), blocking pops included, with Redis 7.2's replies and events.

A list value is packed (one msgpack blob) while short and a deque once long
(vfsd.store.values): a command opens it with ``open_list`` (a deque: new for a
packed list, the live one otherwise), changes it, and stores ``close_list``'s
result under a fresh revision. A list that becomes empty is deleted, with
Redis's ``del`` event after the command's own.

The blocking pops return ``Block`` when every key is empty (vfsd.commands.blocking);
a push never wakes anyone itself: the shell sees the change event and re-runs
the waiting command.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

from vfsd.commands.blocking import Block, parse_timeout
from vfsd.commands.collections import LONG_MAX, NO_SUCH_KEY, parse_positive, parse_range_long, store, typed
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, WRONGTYPE, parse_int, wrong_arity
from vfsd.commands.table import command, parses
from vfsd.resp.types import NULL_ARRAY, OK, ErrorReply
from vfsd.store.keyspace import KIND, VALUE, Entry
from vfsd.store.values import LIST, close_list, list_items, open_list, packed_len

INDEX_OUT_OF_RANGE = ErrorReply("ERR index out of range")
LEFT, RIGHT = True, False


def _length(value: Any) -> int:
    return packed_len(value) if type(value) is bytes else len(value)


def _opened(ctx: Ctx, key: bytes, entry: Entry) -> tuple[deque[bytes], bool]:
    """The list to change (a deque) and whether it was packed."""
    value = ctx.mutable(key, entry)
    return open_list(value), type(value) is bytes


def _push(ctx: Ctx, argv: list[bytes], left: bool, only_existing: bool) -> int:
    key = argv[1]
    old = typed(ctx, key, LIST)
    if old is None:
        if only_existing:
            return 0
        items: deque[bytes] = deque()
        packed = True
    else:
        items, packed = _opened(ctx, key, old)
    if left:
        items.extendleft(argv[2:])
    else:
        items.extend(argv[2:])
    ctx.notify("l", "lpush" if left else "rpush", key, store(ctx, key, close_list(items, packed), LIST, old))
    return len(items)


_PUSH = dict(arity=-3, flags="write denyoom fast", keys=(1, 1, 1), acl="@list", group="list",
             complexity="O(1) for each element added")


@command("lpush", **_PUSH, summary="Prepends one or more elements to a list. Creates the key if it doesn't exist.",
         arguments="key element [element ...]")
def lpush(ctx: Ctx, argv: list[bytes]) -> int:
    return _push(ctx, argv, LEFT, False)


@command("rpush", **_PUSH, summary="Appends one or more elements to a list. Creates the key if it doesn't exist.",
         arguments="key element [element ...]")
def rpush(ctx: Ctx, argv: list[bytes]) -> int:
    return _push(ctx, argv, RIGHT, False)


@command("lpushx", **_PUSH, since="2.2.0", summary="Prepends one or more elements to a list only when the list exists.",
         arguments="key element [element ...]")
def lpushx(ctx: Ctx, argv: list[bytes]) -> int:
    return _push(ctx, argv, LEFT, True)


@command("rpushx", **_PUSH, since="2.2.0", summary="Appends an element to a list only when the list exists.",
         arguments="key element [element ...]")
def rpushx(ctx: Ctx, argv: list[bytes]) -> int:
    return _push(ctx, argv, RIGHT, True)


def _removed(ctx: Ctx, key: bytes, old: Entry, items: deque[bytes], packed: bool, event: str) -> None:
    """After elements left the list: the command's event, then delete the key if it is empty."""
    if items:
        ctx.notify("l", event, key, store(ctx, key, close_list(items, packed), LIST, old))
    else:
        ctx.remove(key)
        ctx.notify("l", event, key)
        ctx.notify("g", "del", key)


def _take(items: deque[bytes], left: bool, count: int) -> list[bytes]:
    pop = items.popleft if left else items.pop
    return [pop() for _ in range(min(count, len(items)))]


def _pop(ctx: Ctx, argv: list[bytes], left: bool) -> Any:
    if len(argv) > 3:
        raise wrong_arity(argv[0].decode(errors="replace").lower())
    has_count = len(argv) == 3
    count = parse_positive(argv[2]) if has_count else 0
    key = argv[1]
    old = typed(ctx, key, LIST)
    if old is None:
        return NULL_ARRAY if has_count else None
    if has_count and count == 0:
        return []
    items, packed = _opened(ctx, key, old)
    taken = _take(items, left, count if has_count else 1)
    _removed(ctx, key, old, items, packed, "lpop" if left else "rpop")
    return taken if has_count else taken[0]


def _check_pop(argv: list[bytes], settings: Any) -> None:
    if len(argv) > 3:
        raise wrong_arity(argv[0].decode(errors="replace").lower())
    if len(argv) == 3:
        parse_positive(argv[2])


@command("lpop", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@list", group="list", check=_check_pop,
         summary="Returns the first elements in a list after removing it. Deletes the list if the last element was popped.",
         complexity="O(N) where N is the number of elements returned", arguments="key [count]")
def lpop(ctx: Ctx, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, LEFT)


@command("rpop", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@list", group="list", check=_check_pop,
         summary="Returns and removes the last elements of a list. Deletes the list if the last element was popped.",
         complexity="O(N) where N is the number of elements returned", arguments="key [count]")
def rpop(ctx: Ctx, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, RIGHT)


@command("llen", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@list", group="list",
         summary="Returns the length of a list.", arguments="key")
def llen(ctx: Ctx, argv: list[bytes]) -> int:
    entry = typed(ctx, argv[1], LIST)
    return 0 if entry is None else _length(entry[VALUE])


def _span(start: int, end: int, n: int) -> tuple[int, int]:
    """Redis's inclusive [start, end] with negative indexes, as a [lo, hi) slice (empty if lo >= hi)."""
    if start < 0:
        start += n
    if end < 0:
        end += n
    if start < 0:
        start = 0
    if start > end or start >= n:
        return 0, 0
    return start, min(end, n - 1) + 1


@command("lrange", arity=4, flags="readonly", keys=(1, 1, 1), acl="@list", group="list",
         summary="Returns a range of elements from a list.", complexity="O(S+N)", arguments="key start stop")
def lrange(ctx: Ctx, argv: list[bytes]) -> list[bytes]:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    entry = typed(ctx, argv[1], LIST)
    if entry is None:
        return []
    value = entry[VALUE]
    if type(value) is bytes:
        items = list_items(value)
        lo, hi = _span(start, end, len(items))
        return items[lo:hi]
    lo, hi = _span(start, end, len(value))
    if hi - lo and lo > len(value) // 2:  # walk from the nearer end
        out = list(islice(reversed(value), len(value) - hi, len(value) - lo))
        out.reverse()
        return out
    return list(islice(value, lo, hi))


@command("lindex", arity=3, flags="readonly", keys=(1, 1, 1), acl="@list", group="list",
         summary="Returns an element from a list by its index.", complexity="O(N)", arguments="key index")
def lindex(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    entry = typed(ctx, argv[1], LIST)
    if entry is None:
        return None
    index = parse_int(argv[2])
    items = list_items(entry[VALUE])
    if not -len(items) <= index < len(items):
        return None
    return items[index]


@command("lset", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@list", group="list",
         summary="Sets the value of an element in a list by its index.", complexity="O(N)",
         arguments="key index element")
def lset(ctx: Ctx, argv: list[bytes]) -> Any:
    key = argv[1]
    old = typed(ctx, key, LIST)
    if old is None:
        raise NO_SUCH_KEY
    index = parse_int(argv[2])
    items, packed = _opened(ctx, key, old)
    if not -len(items) <= index < len(items):
        raise INDEX_OUT_OF_RANGE
    items[index] = argv[3]
    ctx.notify("l", "lset", key, store(ctx, key, close_list(items, packed), LIST, old))
    return OK


def _check_linsert(argv: list[bytes], settings: Any) -> None:
    if argv[2].lower() not in (b"before", b"after"):
        raise SYNTAX


@command("linsert", arity=5, flags="write denyoom", keys=(1, 1, 1), acl="@list", group="list", since="2.2.0",
         check=_check_linsert, summary="Inserts an element before or after another element in a list.", complexity="O(N)",
         arguments="key BEFORE|AFTER pivot element")
def linsert(ctx: Ctx, argv: list[bytes]) -> int:
    where = argv[2].lower()
    if where not in (b"before", b"after"):
        raise SYNTAX
    key = argv[1]
    old = typed(ctx, key, LIST)
    if old is None:
        return 0
    items, packed = _opened(ctx, key, old)
    try:
        at = items.index(argv[3])
    except ValueError:
        return -1
    items.insert(at + (where == b"after"), argv[4])
    ctx.notify("l", "linsert", key, store(ctx, key, close_list(items, packed), LIST, old))
    return len(items)


@command("lrem", arity=4, flags="write", keys=(1, 1, 1), acl="@list", group="list",
         check=parses(lambda argv: parse_int(argv[2])),
         summary="Removes elements from a list. Deletes the list if the last element was removed.",
         complexity="O(N+M)", arguments="key count element")
def lrem(ctx: Ctx, argv: list[bytes]) -> int:
    count = parse_int(argv[2])
    key, element = argv[1], argv[3]
    old = typed(ctx, key, LIST)
    if old is None:
        return 0
    items, packed = _opened(ctx, key, old)
    values = list(items)
    limit = abs(count)
    removed = 0
    if count < 0:
        values.reverse()
    kept: list[bytes] = []
    for value in values:
        if value == element and (not limit or removed < limit):
            removed += 1
        else:
            kept.append(value)
    if not removed:
        return 0
    if count < 0:
        kept.reverse()
    items.clear()
    items.extend(kept)
    _removed(ctx, key, old, items, packed, "lrem")
    return removed


@command("ltrim", arity=4, flags="write", keys=(1, 1, 1), acl="@list", group="list",
         check=parses(lambda argv: (parse_int(argv[2]), parse_int(argv[3]))),
         summary="Removes elements from both ends a list. Deletes the list if all elements were trimmed.",
         complexity="O(N)", arguments="key start stop")
def ltrim(ctx: Ctx, argv: list[bytes]) -> Any:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    key = argv[1]
    old = typed(ctx, key, LIST)
    if old is None:
        return OK
    items, packed = _opened(ctx, key, old)
    lo, hi = _span(start, end, len(items))
    for _ in range(len(items) - hi):
        items.pop()
    for _ in range(lo):
        items.popleft()
    _removed(ctx, key, old, items, packed, "ltrim")
    return OK


@command("lpos", arity=-3, flags="readonly", keys=(1, 1, 1), acl="@list", group="list", since="6.0.6",
         summary="Returns the index of matching elements in a list.", complexity="O(N)",
         arguments="key element [RANK rank] [COUNT num-matches] [MAXLEN len]")
def lpos(ctx: Ctx, argv: list[bytes]) -> Any:
    element = argv[2]
    rank, count, maxlen = 1, -1, 0
    i = 3
    while i < len(argv):
        opt = argv[i].lower()
        more = len(argv) - 1 - i
        if opt == b"rank" and more:
            i += 1
            rank = parse_range_long(argv[i], -LONG_MAX, LONG_MAX)
            if rank == 0:
                raise ErrorReply("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
                                 "or use negative to start from the end of the list")
        elif opt == b"count" and more:
            i += 1
            count = parse_positive(argv[i], "COUNT can't be negative")
        elif opt == b"maxlen" and more:
            i += 1
            maxlen = parse_positive(argv[i], "MAXLEN can't be negative")
        else:
            raise SYNTAX
        i += 1
    entry = typed(ctx, argv[1], LIST)
    if entry is None:
        return [] if count != -1 else None
    items = list(list_items(entry[VALUE]))  # a list: indexing a deque inside the walk would be O(n) a step
    n = len(items)
    backwards = rank < 0
    rank = abs(rank)
    found: list[int] = []
    matches = 0
    scanned = 0
    walk = range(n - 1, -1, -1) if backwards else range(n)
    for index in walk:
        if maxlen and scanned >= maxlen:
            break
        scanned += 1
        if items[index] == element:
            matches += 1
            if matches >= rank:
                found.append(index)
                if count == -1 or (count and len(found) >= count):
                    break
    if count != -1:
        return found
    return found[0] if found else None


def _direction(arg: bytes) -> bool:
    low = arg.lower()
    if low == b"left":
        return LEFT
    if low == b"right":
        return RIGHT
    raise SYNTAX


def _move(ctx: Ctx, source: bytes, destination: bytes, from_left: bool, to_left: bool) -> bytes | None:
    src = typed(ctx, source, LIST)
    if src is None:
        return None
    dst = ctx.lookup(destination) if destination != source else src
    if dst is not None and dst[KIND] != LIST:
        raise WRONGTYPE
    items, packed = _opened(ctx, source, src)
    element = items.popleft() if from_left else items.pop()
    if destination == source:
        (items.appendleft if to_left else items.append)(element)
        entry = store(ctx, source, close_list(items, packed), LIST, src)
        ctx.notify("l", "lpush" if to_left else "rpush", destination, entry)
        ctx.notify("l", "lpop" if from_left else "rpop", source, entry)
        return element
    if dst is None:
        target: deque[bytes] = deque()
        target_packed = True
    else:
        target, target_packed = _opened(ctx, destination, dst)
    (target.appendleft if to_left else target.append)(element)
    ctx.notify("l", "lpush" if to_left else "rpush", destination,
               store(ctx, destination, close_list(target, target_packed), LIST, dst))
    _removed(ctx, source, src, items, packed, "lpop" if from_left else "rpop")
    return element


def _check_lmove(argv: list[bytes], settings: Any) -> None:
    _direction(argv[3])
    _direction(argv[4])


@command("lmove", arity=5, flags="write denyoom", keys=(1, 2, 1), acl="@list", group="list", since="6.2.0",
         check=_check_lmove, summary="Returns an element after popping it from one list and pushing it to another. "
         "Deletes the list if the last element was moved.", arguments="source destination LEFT|RIGHT LEFT|RIGHT")
def lmove(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    from_left, to_left = _direction(argv[3]), _direction(argv[4])
    return _move(ctx, argv[1], argv[2], from_left, to_left)


@command("rpoplpush", arity=3, flags="write denyoom", keys=(1, 2, 1), acl="@list", group="list", since="1.2.0",
         summary="Returns the last element of a list after removing and pushing it to another list. Deletes the "
         "list if the last element was popped.", arguments="source destination")
def rpoplpush(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    return _move(ctx, argv[1], argv[2], RIGHT, LEFT)


def _mpop_args(argv: list[bytes], numkeys_at: int) -> tuple[list[bytes], bool, int]:
    """(keys, from the left?, count) of LMPOP/BLMPOP, with Redis's errors in Redis's order."""
    numkeys = parse_range_long(argv[numkeys_at], 1, LONG_MAX, "numkeys should be greater than 0")
    where_at = numkeys_at + numkeys + 1
    if where_at >= len(argv):
        raise SYNTAX
    left = _direction(argv[where_at])
    count = -1
    i = where_at + 1
    while i < len(argv):
        if count == -1 and argv[i].lower() == b"count" and i + 1 < len(argv):
            count = parse_range_long(argv[i + 1], 1, LONG_MAX, "count should be greater than 0")
            i += 2
        else:
            raise SYNTAX
    return argv[numkeys_at + 1 : where_at], left, 1 if count == -1 else count


def _mpop(ctx: Ctx, keys: list[bytes], left: bool, count: int) -> list[Any] | None:
    """Pop up to ``count`` from the first non-empty list: [key, [elements]]; None if all are empty."""
    for key in keys:
        old = typed(ctx, key, LIST)
        if old is None:
            continue
        items, packed = _opened(ctx, key, old)
        taken = _take(items, left, count)
        _removed(ctx, key, old, items, packed, "lpop" if left else "rpop")
        return [key, taken]
    return None


def mpop_keys(numkeys_at: int) -> Any:
    """Key positions of an *MPOP command whose numkeys is at ``numkeys_at`` (none if it is malformed)."""

    def positions(argv: list[bytes]) -> list[int]:
        try:
            numkeys = int(argv[numkeys_at])
        except (ValueError, IndexError):
            return []
        # Too few arguments for the keys and the direction after them: no keys (the handler
        # answers the syntax error), as Redis's genericGetKeys finds none.
        if numkeys < 1 or numkeys > len(argv) - numkeys_at - 2:
            return []
        return list(range(numkeys_at + 1, numkeys_at + 1 + numkeys))

    return positions


@command("lmpop", arity=-4, flags="write", acl="@list", group="list", since="7.0.0", key_positions=mpop_keys(1),
         check=parses(lambda argv: _mpop_args(argv, 1)),
         summary="Returns multiple elements from a list after removing them. Deletes the list if the last element "
         "was popped.", complexity="O(N+M)", arguments="numkeys key [key ...] LEFT|RIGHT [COUNT count]")
def lmpop(ctx: Ctx, argv: list[bytes]) -> Any:
    keys, left, count = _mpop_args(argv, 1)
    popped = _mpop(ctx, keys, left, count)
    return NULL_ARRAY if popped is None else popped


# -- blocking pops ----------------------------------------------------------------------


def _bpop(ctx: Ctx, argv: list[bytes], left: bool) -> Any:
    timeout_ms = parse_timeout(argv[-1], ctx.now_ms)
    keys = argv[1:-1]
    for key in keys:
        old = typed(ctx, key, LIST)
        if old is None:
            continue
        items, packed = _opened(ctx, key, old)
        element = items.popleft() if left else items.pop()
        _removed(ctx, key, old, items, packed, "lpop" if left else "rpop")
        return [key, element]
    return Block(keys, timeout_ms, LIST, NULL_ARRAY)


def _check_timeout_last(argv: list[bytes], settings: Any) -> None:
    parse_timeout(argv[-1], 0)


_BLOCKING = dict(flags="write blocking", acl="@list", group="list")


@command("blpop", arity=-3, keys=(1, -2, 1), **_BLOCKING, since="2.0.0", check=_check_timeout_last,
         summary="Removes and returns the first element in a list. Blocks until an element is available otherwise. "
         "Deletes the list if the last element was popped.", complexity="O(N) where N is the number of provided keys",
         arguments="key [key ...] timeout")
def blpop(ctx: Ctx, argv: list[bytes]) -> Any:
    return _bpop(ctx, argv, LEFT)


@command("brpop", arity=-3, keys=(1, -2, 1), **_BLOCKING, since="2.0.0", check=_check_timeout_last,
         summary="Removes and returns the last element in a list. Blocks until an element is available otherwise. "
         "Deletes the list if the last element was popped.", complexity="O(N) where N is the number of provided keys",
         arguments="key [key ...] timeout")
def brpop(ctx: Ctx, argv: list[bytes]) -> Any:
    return _bpop(ctx, argv, RIGHT)


def _check_blmove(argv: list[bytes], settings: Any) -> None:
    _direction(argv[3])
    _direction(argv[4])
    parse_timeout(argv[5], 0)


@command("blmove", arity=6, keys=(1, 2, 1), **_BLOCKING, since="6.2.0", check=_check_blmove,
         summary="Pops an element from a list, pushes it to another list and returns it. Blocks until an element "
         "is available otherwise. Deletes the list if the last element was moved.",
         arguments="source destination LEFT|RIGHT LEFT|RIGHT timeout")
def blmove(ctx: Ctx, argv: list[bytes]) -> Any:
    from_left, to_left = _direction(argv[3]), _direction(argv[4])
    timeout_ms = parse_timeout(argv[5], ctx.now_ms)
    if typed(ctx, argv[1], LIST) is None:
        return Block([argv[1]], timeout_ms, LIST, None)
    return _move(ctx, argv[1], argv[2], from_left, to_left)


@command("brpoplpush", arity=4, keys=(1, 2, 1), **_BLOCKING, since="2.2.0", check=_check_timeout_last,
         summary="Pops an element from a list, pushes it to another list and returns it. Block until an element is "
         "available otherwise. Deletes the list if the last element was popped.",
         arguments="source destination timeout")
def brpoplpush(ctx: Ctx, argv: list[bytes]) -> Any:
    timeout_ms = parse_timeout(argv[3], ctx.now_ms)
    if typed(ctx, argv[1], LIST) is None:
        return Block([argv[1]], timeout_ms, LIST, None)
    return _move(ctx, argv[1], argv[2], RIGHT, LEFT)


def _check_blmpop(argv: list[bytes], settings: Any) -> None:
    _mpop_args(argv, 2)
    parse_timeout(argv[1], 0)


@command("blmpop", arity=-5, key_positions=mpop_keys(2), **_BLOCKING, since="7.0.0", check=_check_blmpop,
         summary="Pops the first element from one of multiple lists. Blocks until an element is available otherwise. "
         "Deletes the list if the last element was popped.", complexity="O(N+M)",
         arguments="timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]")
def blmpop(ctx: Ctx, argv: list[bytes]) -> Any:
    keys, left, count = _mpop_args(argv, 2)
    timeout_ms = parse_timeout(argv[1], ctx.now_ms)
    popped = _mpop(ctx, keys, left, count)
    return Block(keys, timeout_ms, LIST, NULL_ARRAY) if popped is None else popped
