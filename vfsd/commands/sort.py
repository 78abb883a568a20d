"""SORT and SORT_RO (sort.c): sort a list, set or sorted set, by itself or by external keys.

``BY pattern`` and ``GET pattern`` substitute each element for the first ``*``
of the pattern and read that key (a string), or with ``->field`` a hash field;
``GET #`` is the element itself. A BY pattern without ``*`` skips sorting.
Numeric sorting parses with strtod (an unparsable value answers "One or more
scores can't be converted into double"); ties, and ALPHA, compare bytes (Redis
uses strcoll, which is byte order in the C locale it runs under by default).

Pattern keys are read from the same keyspace wherever they live. On the
desired plane SORT ... STORE is applied from the log, so BY and GET patterns
there should name desired paths: a local key would be read as it is on the
node applying the entry (see compat/DIFFERENCES.md).
"""

from __future__ import annotations

import math
from functools import cmp_to_key
from typing import Any

from vfsd.codec import RAW
from vfsd.commands.collections import replace
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, WRONGTYPE, parse_int
from vfsd.commands.table import command, parses
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, VALUE
from vfsd.store.values import HASH, LIST, SET, ZSET, list_items, list_value

NOT_DOUBLE = ErrorReply("ERR One or more scores can't be converted into double")
_C_SPACE = b" \t\n\v\f\r"


class _Options:
    __slots__ = ("desc", "alpha", "start", "count", "store", "by", "gets")

    def __init__(self) -> None:
        self.desc = self.alpha = False
        self.start, self.count = 0, -1
        self.store: bytes | None = None
        self.by: bytes | None = None
        self.gets: list[bytes] = []


def _parse(argv: list[bytes], read_only: bool) -> _Options:
    o = _Options()
    j, n = 2, len(argv)
    while j < n:
        opt = argv[j].lower()
        left = n - j - 1
        if opt == b"asc":
            o.desc = False
        elif opt == b"desc":
            o.desc = True
        elif opt == b"alpha":
            o.alpha = True
        elif opt == b"limit" and left >= 2:
            o.start, o.count = parse_int(argv[j + 1]), parse_int(argv[j + 2])
            j += 2
        elif not read_only and opt == b"store" and left >= 1:
            o.store = argv[j + 1]
            j += 1
        elif opt == b"by" and left >= 1:
            o.by = argv[j + 1]
            j += 1
        elif opt == b"get" and left >= 1:
            o.gets.append(argv[j + 1])
            j += 1
        else:
            raise SYNTAX
        j += 1
    return o


def _lookup_pattern(ctx: Ctx, pattern: bytes, element: bytes) -> bytes | None:
    """lookupKeyByPattern: the string (or hash field) the pattern names for ``element``."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    key_pattern = pattern
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2 :]
        key_pattern = pattern[:arrow]
    key = key_pattern[:star] + element + key_pattern[star + 1 :]
    entry = ctx.lookup(key)
    if entry is None:
        return None
    if field is not None:
        if entry[KIND] != HASH:
            return None
        return entry[VALUE].get(field)
    if entry[KIND] != RAW:
        return None
    return entry[VALUE]


def _strtod(text: bytes) -> float | None:
    """strtod consuming all of ``text``; None where SORT reports a conversion error."""
    if not text:
        return 0.0
    body = text.lstrip(_C_SPACE)
    if not body or body[-1] in _C_SPACE or b"_" in body:
        return None
    try:
        word = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    bare = word.lower().lstrip("+-")
    if bare in ("inf", "infinity"):
        return -math.inf if word.startswith("-") else math.inf
    try:
        if bare.startswith("0x"):
            value = float.fromhex(word)
        elif "n" in bare or "i" in bare:
            return None
        else:
            value = float(word)
    except (ValueError, OverflowError):
        return None
    if math.isinf(value) or math.isnan(value):
        return None  # ERANGE
    if value == 0 and any(c in "123456789" for c in bare.partition("e")[0]):
        return None  # underflow: ERANGE
    return value


def _bounds(start: int, count: int, n: int) -> tuple[int, int]:
    """sort.c's LIMIT arithmetic: inclusive [start, end] (end < start when empty)."""
    start = min(max(start, 0), n)
    count = min(max(count, -1), n)
    end = n - 1 if count < 0 else start + count - 1
    if start >= n:
        start, end = n - 1, n - 2
    if end >= n:
        end = n - 1
    return start, end


def _sort(ctx: Ctx, argv: list[bytes], read_only: bool) -> Any:
    o = _parse(argv, read_only)
    entry = ctx.lookup(argv[1])
    kind = None if entry is None else entry[KIND]
    if kind is not None and kind not in (LIST, SET, ZSET):
        raise WRONGTYPE
    dont_sort = o.by is not None and b"*" not in o.by
    alpha, by = o.alpha, o.by
    if dont_sort and kind == SET and o.store is not None:
        dont_sort, alpha, by = False, True, None  # a stored set must not depend on hash order
    if entry is None:
        elements: list[bytes] = []
    elif kind == LIST:
        elements = list(list_items(entry[VALUE]))
    elif kind == SET:
        elements = list(entry[VALUE])
    else:
        elements = [member for member, _ in entry[VALUE].items()]
        # Redis sorts a sorted set through its skiplist, converting it for good (sort.c zsetConvert);
        # OBJECT ENCODING shows it.
        entry[VALUE].skiplist = True
    n = len(elements)
    start, end = _bounds(o.start, o.count, n)
    if dont_sort:
        if kind in (LIST, ZSET) and o.desc:
            elements.reverse()
        chosen = elements[start : end + 1] if end >= start else []
    else:
        ordered = _sorted(ctx, elements, by, alpha, o.desc, o.store is not None)  # scores every element: a bad
        chosen = ordered[start : end + 1] if end >= start else []  # one is an error whatever LIMIT picks
    rows: list[bytes | None] = []
    for element in chosen:
        if not o.gets:
            rows.append(element)
        for pattern in o.gets:
            rows.append(_lookup_pattern(ctx, pattern, element))
    if o.store is None:
        return rows
    destination = o.store
    if rows:
        items = [b"" if r is None else r for r in rows]
        ctx.notify("l", "sortstore", destination, replace(ctx, destination, list_value(items), LIST))
    elif ctx.lookup(destination) is not None:
        ctx.remove(destination)
        ctx.notify("g", "del", destination)
    return len(rows)


def _sorted(ctx: Ctx, elements: list[bytes], by: bytes | None, alpha: bool, desc: bool,
            storing: bool) -> list[bytes]:
    if alpha:
        if by is None:
            keyed = sorted(elements)
            return keyed[::-1] if desc else keyed
        weights = {e: _lookup_pattern(ctx, by, e) for e in elements}

        def compare_alpha(x: bytes, y: bytes) -> int:
            a, b = weights[x], weights[y]
            if a is None or b is None:
                cmp = 0 if a is b else (-1 if a is None else 1)
            else:
                cmp = (a > b) - (a < b)
            return -cmp if desc else cmp

        return sorted(elements, key=cmp_to_key(compare_alpha))
    scores: dict[bytes, float] = {}
    failed = False
    for element in elements:
        text = element if by is None else _lookup_pattern(ctx, by, element)
        if text is None:
            scores[element] = 0.0
            continue
        value = _strtod(text)
        if value is None:
            failed = True
            value = 0.0
        scores[element] = value
    if failed:
        raise NOT_DOUBLE

    def compare(x: bytes, y: bytes) -> int:
        a, b = scores[x], scores[y]
        cmp = 1 if a > b else -1 if a < b else (x > y) - (x < y)
        return -cmp if desc else cmp

    return sorted(elements, key=cmp_to_key(compare))


def _sort_keys(argv: list[bytes]) -> list[int]:
    """The sorted key and, with STORE, the destination (sortGetKeys)."""
    positions = [1]
    j = 2
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"limit":
            j += 3
            continue
        if opt in (b"get", b"by"):
            j += 2
            continue
        if opt == b"store" and j + 1 < len(argv):
            positions[1:] = [j + 1]
            j += 2
            continue
        j += 1
    return positions


@command("sort", arity=-2, flags="write denyoom", acl="@set @sortedset @list @dangerous", group="generic",
         key_positions=_sort_keys, check=parses(lambda argv: _parse(argv, False)),
         summary="Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
         complexity="O(N+M*log(M))", arguments="key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] "
         "[ASC|DESC] [ALPHA] [STORE destination]")
def sort(ctx: Ctx, argv: list[bytes]) -> Any:
    return _sort(ctx, argv, False)


@command("sort_ro", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@set @sortedset @list @dangerous",
         group="generic", since="7.0.0", summary="Returns the sorted elements of a list, a set, or a sorted set.",
         complexity="O(N+M*log(M))", arguments="key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] "
         "[ASC|DESC] [ALPHA]")
def sort_ro(ctx: Ctx, argv: list[bytes]) -> Any:
    return _sort(ctx, argv, True)
