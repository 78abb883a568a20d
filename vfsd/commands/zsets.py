"""Sorted-set commands (t_zset.c) with Redis 7.2's replies, errors and keyspace events.

The value is a ``vfsd.store.zset.ZSet``. Scores are doubles: the encoder
prints them as Redis 7.2's d2string does (RESP2 bulk, RESP3 double), and
WITHSCORES replies are ``Pairs``: one flat array in RESP2, ``[member, score]``
rows in RESP3, as Redis sends them.

Argument errors come before the key is looked up wherever Redis parses first
(ZADD, ZRANGE...), so those commands declare a ``check`` that the desired
plane runs before proposing; ZUNIONSTORE and friends look their keys up before
parsing WEIGHTS and AGGREGATE, so only their numkeys is checked in advance.
"""

from __future__ import annotations

import math
from typing import Any

from vfsd.commands.blocking import Block, parse_timeout
from vfsd.commands.collections import (
    LONG_MAX,
    OUT_OF_RANGE,
    parse_cursor,
    parse_double,
    parse_positive,
    parse_range_long,
    replace,
    scan_options,
    scan_reply,
    store,
    typed,
)
from vfsd.commands.context import Ctx
from vfsd.commands.errors import SYNTAX, WRONGTYPE, parse_int, wrong_arity
from vfsd.commands.table import command, parses
from vfsd.resp.types import NULL_ARRAY, ErrorReply, Pairs
from vfsd.store.keyspace import KIND, VALUE, Entry
from vfsd.store.values import (
    SET,
    ZSET,
    ZSET_MAX_LISTPACK_ENTRIES,
    ZSET_MAX_LISTPACK_VALUE,
    zset_fit_encoding,
    zset_note_member,
)
from vfsd.store.zset import LexBound, ZSet

NOT_FLOAT_RANGE = ErrorReply("ERR min or max is not a float")
NOT_LEX_RANGE = ErrorReply("ERR min or max not valid string range item")
NAN_SCORE = ErrorReply("ERR resulting score is not a number (NaN)")
WEIGHT_NOT_FLOAT = ErrorReply("ERR weight value is not a float")


def _zset(ctx: Ctx, key: bytes) -> ZSet | None:
    entry = typed(ctx, key, ZSET)
    return None if entry is None else entry[VALUE]


def _pairs(rows: Any, with_scores: bool) -> Any:
    """(score, member) rows as a reply: members only, or WITHSCORES pairs."""
    if with_scores:
        return Pairs([[member, score] for score, member in rows])
    return [member for _, member in rows]


def _store_zset(ctx: Ctx, key: bytes, old: Entry, zs: ZSet, event: str) -> None:
    """After members left a sorted set: its event, then delete it if it is empty."""
    if zs:
        ctx.notify("z", event, key, store(ctx, key, zs, ZSET, old))
    else:
        ctx.remove(key)
        ctx.notify("z", event, key)
        ctx.notify("g", "del", key)


# -- ZADD, ZINCRBY ------------------------------------------------------------------


def _zadd_args(argv: list[bytes], incr: bool) -> tuple[set[bytes], list[tuple[float, bytes]], bool]:
    """(flags, [(score, member)], ch) with ZADD's errors in Redis's order."""
    flags: set[bytes] = {b"incr"} if incr else set()
    ch = False
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        if opt in (b"nx", b"xx", b"incr", b"gt", b"lt"):
            flags.add(opt)
        elif opt == b"ch":
            ch = True
        else:
            break
        i += 1
    rest = argv[i:]
    if not rest or len(rest) % 2:
        raise SYNTAX
    if b"nx" in flags and b"xx" in flags:
        raise ErrorReply("ERR XX and NX options at the same time are not compatible")
    if (b"nx" in flags and (b"gt" in flags or b"lt" in flags)) or (b"gt" in flags and b"lt" in flags):
        raise ErrorReply("ERR GT, LT, and/or NX options at the same time are not compatible")
    if b"incr" in flags and len(rest) > 2:
        raise ErrorReply("ERR INCR option supports a single increment-element pair")
    pairs = [(parse_double(rest[j]), rest[j + 1]) for j in range(0, len(rest), 2)]
    return flags, pairs, ch


def _zadd(ctx: Ctx, argv: list[bytes], incr: bool) -> Any:
    flags, pairs, ch = _zadd_args(argv, incr)
    incr = b"incr" in flags
    key = argv[1]
    old = typed(ctx, key, ZSET)
    if old is None:
        if b"xx" in flags:
            return None if incr else 0
        zs = ZSet()
        # zsetTypeCreate: sized by the pair count and the first member's length.
        zs.skiplist = len(pairs) > ZSET_MAX_LISTPACK_ENTRIES or len(pairs[0][1]) > ZSET_MAX_LISTPACK_VALUE
    else:
        zs = ctx.mutable(key, old)
        if not zs.skiplist and len(pairs) > ZSET_MAX_LISTPACK_ENTRIES:
            zs.skiplist = True
    nx, xx, gt, lt = b"nx" in flags, b"xx" in flags, b"gt" in flags, b"lt" in flags
    added = updated = processed = 0
    score = 0.0
    failed = False
    for new, member in pairs:
        current = zs.scores.get(member)
        if current is not None:
            if nx:
                continue
            if incr:
                new = current + new
                if math.isnan(new):
                    failed = True
                    break
            if (lt and new >= current) or (gt and new <= current):
                continue
            processed += 1
            score = new
            if new != current:
                zs.add(member, new)
                updated += 1
        else:
            if xx:
                continue
            processed += 1
            score = new
            zs.add(member, new)
            zset_note_member(zs, member)
            added += 1
    if added or updated:
        ctx.notify("z", "zincr" if incr else "zadd", key, store(ctx, key, zs, ZSET, old))
    if failed:
        raise NAN_SCORE
    if incr:
        return score if processed else None
    return added + updated if ch else added


@command("zadd", arity=-4, flags="write denyoom fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="1.2.0", check=parses(lambda argv: _zadd_args(argv, False)),
         summary="Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.",
         complexity="O(log(N)) for each item added", arguments="key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]")
def zadd(ctx: Ctx, argv: list[bytes]) -> Any:
    if len(argv) == 4 and argv[2][:1] not in _OPTION_HEADS:  # ZADD key score member: the common case
        score, member, key = parse_double(argv[2]), argv[3], argv[1]
        old = typed(ctx, key, ZSET)
        if old is None:
            zs = ZSet()
            zs.skiplist = len(member) > ZSET_MAX_LISTPACK_VALUE
        else:
            zs = ctx.mutable(key, old)
        previous = zs.scores.get(member)
        if previous is not None and previous == score:
            return 0
        zs.add(member, score)
        if previous is None:
            zset_note_member(zs, member)
        ctx.notify("z", "zadd", key, store(ctx, key, zs, ZSET, old))
        return 1 if previous is None else 0
    return _zadd(ctx, argv, False)


#: First letters of ZADD's options (NX XX CH INCR GT LT); a score never starts with one, except inf.
_OPTION_HEADS = frozenset(bytes([c]) for c in b"nNxXcCiIgGlL")


@command("zincrby", arity=4, flags="write denyoom fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="1.2.0", check=parses(lambda argv: _zadd_args(argv, True)),
         summary="Increments the score of a member in a sorted set.", complexity="O(log(N))",
         arguments="key increment member")
def zincrby(ctx: Ctx, argv: list[bytes]) -> Any:
    return _zadd(ctx, argv, True)


# -- simple reads and removals ---------------------------------------------------------


@command("zcard", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="1.2.0",
         summary="Returns the number of members in a sorted set.", arguments="key")
def zcard(ctx: Ctx, argv: list[bytes]) -> int:
    zs = _zset(ctx, argv[1])
    return 0 if zs is None else len(zs)


@command("zscore", arity=3, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="1.2.0",
         summary="Returns the score of a member in a sorted set.", arguments="key member")
def zscore(ctx: Ctx, argv: list[bytes]) -> float | None:
    zs = _zset(ctx, argv[1])
    return None if zs is None else zs.scores.get(argv[2])


@command("zmscore", arity=-3, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="6.2.0", summary="Returns the score of one or more members in a sorted set.", complexity="O(N)",
         arguments="key member [member ...]")
def zmscore(ctx: Ctx, argv: list[bytes]) -> list[float | None]:
    zs = _zset(ctx, argv[1])
    if zs is None:
        return [None] * (len(argv) - 2)
    get = zs.scores.get
    return [get(m) for m in argv[2:]]


@command("zrem", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="1.2.0",
         summary="Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.",
         complexity="O(M*log(N))", arguments="key member [member ...]")
def zrem(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    old = typed(ctx, key, ZSET)
    if old is None:
        return 0
    zs: ZSet = ctx.mutable(key, old)
    removed = 0
    for member in argv[2:]:
        if zs.remove(member):
            removed += 1
            if not zs:
                break
    if removed:
        _store_zset(ctx, key, old, zs, "zrem")
    return removed


def _rank(ctx: Ctx, argv: list[bytes], reverse: bool) -> Any:
    if len(argv) > 4:
        raise wrong_arity(argv[0].decode(errors="replace").lower())
    with_score = False
    if len(argv) == 4:
        if argv[3].lower() != b"withscore":
            raise SYNTAX
        with_score = True
    zs = _zset(ctx, argv[1])
    rank = None if zs is None else zs.rank(argv[2])
    if rank is None:
        return NULL_ARRAY if with_score else None
    if reverse:
        rank = len(zs) - 1 - rank  # type: ignore[arg-type]
    return [rank, zs.scores[argv[2]]] if with_score else rank  # type: ignore[union-attr]


@command("zrank", arity=-3, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="2.0.0",
         summary="Returns the index of a member in a sorted set ordered by ascending scores.", complexity="O(log(N))",
         arguments="key member [WITHSCORE]")
def zrank(ctx: Ctx, argv: list[bytes]) -> Any:
    return _rank(ctx, argv, False)


@command("zrevrank", arity=-3, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="2.0.0", summary="Returns the index of a member in a sorted set ordered by descending scores.",
         complexity="O(log(N))", arguments="key member [WITHSCORE]")
def zrevrank(ctx: Ctx, argv: list[bytes]) -> Any:
    return _rank(ctx, argv, True)


# -- ranges -------------------------------------------------------------------------------

_C_SPACE = b" \t\n\v\f\r"


def _strtod(text: bytes) -> float:
    """strtod that must consume all of ``text`` (zslParseRange): leading spaces and an empty
    string (0) are accepted, overflow gives inf, NaN and trailing bytes are errors."""
    if not text:
        return 0.0
    body = text.lstrip(_C_SPACE)
    if not body or body[-1] in _C_SPACE or b"_" in body:
        raise NOT_FLOAT_RANGE
    try:
        word = body.decode("ascii")
    except UnicodeDecodeError:
        raise NOT_FLOAT_RANGE from None
    bare = word.lower().lstrip("+-")
    negative = word.startswith("-")
    if bare in ("inf", "infinity"):
        return -math.inf if negative else math.inf
    try:
        if bare.startswith("0x"):
            return float.fromhex(word)
        if "n" in bare or "i" in bare:
            raise ValueError
        return float(word)
    except (ValueError, OverflowError):
        raise NOT_FLOAT_RANGE from None


def parse_score_range(low: bytes, high: bytes) -> tuple[float, bool, float, bool]:
    def bound(arg: bytes) -> tuple[float, bool]:
        exclusive = arg[:1] == b"("
        value = _strtod(arg[1:] if exclusive else arg)
        if math.isnan(value):
            raise NOT_FLOAT_RANGE
        return value, exclusive

    lo, lo_ex = bound(low)
    hi, hi_ex = bound(high)
    return lo, lo_ex, hi, hi_ex


def _lex_bound(arg: bytes) -> LexBound:
    head = arg[:1]
    if head == b"+" and len(arg) == 1:
        return (1, b"", True)
    if head == b"-" and len(arg) == 1:
        return (-1, b"", True)
    if head == b"(":
        return (0, arg[1:], True)
    if head == b"[":
        return (0, arg[1:], False)
    raise NOT_LEX_RANGE


def parse_lex_range(low: bytes, high: bytes) -> tuple[LexBound, LexBound]:
    return _lex_bound(low), _lex_bound(high)


class RangeQuery:
    """A parsed ZRANGE-family request (zrangeGenericCommand's steps 1 and 2)."""

    __slots__ = ("by", "reverse", "with_scores", "offset", "limit", "start", "end", "score", "lex")

    def __init__(self) -> None:
        self.by = "rank"
        self.reverse = False
        self.with_scores = False
        self.offset = 0
        self.limit = -1
        self.start = self.end = 0
        self.score: tuple[float, bool, float, bool] | None = None
        self.lex: tuple[LexBound, LexBound] | None = None


def parse_range(argv: list[bytes], at: int, store: bool, by: str | None, reverse: bool | None) -> RangeQuery:
    """ZRANGE/ZRANGESTORE/ZRANGEBYSCORE... arguments: ``argv[at]`` is the source key, then min
    and max; ``by``/``reverse`` are fixed by the legacy commands (None: an option may set it)."""
    q = RangeQuery()
    j = at + 3
    n = len(argv)
    while j < n:
        opt = argv[j].lower()
        left = n - j - 1
        if not store and opt == b"withscores":
            q.with_scores = True
        elif opt == b"limit" and left >= 2:
            q.offset = parse_int(argv[j + 1])
            q.limit = parse_int(argv[j + 2])
            j += 2
        elif reverse is None and opt == b"rev":
            reverse = True
        elif by is None and opt == b"bylex":
            by = "lex"
        elif by is None and opt == b"byscore":
            by = "score"
        else:
            raise SYNTAX
        j += 1
    q.reverse = bool(reverse)
    q.by = by or "rank"
    if q.limit != -1 and q.by == "rank":
        raise ErrorReply("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
    if q.with_scores and q.by == "lex":
        raise ErrorReply("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    lo, hi = argv[at + 1], argv[at + 2]
    if q.reverse and q.by != "rank":
        lo, hi = hi, lo
    if q.by == "rank":
        q.start, q.end = parse_int(lo), parse_int(hi)
    elif q.by == "score":
        q.score = parse_score_range(lo, hi)
    else:
        q.lex = parse_lex_range(lo, hi)
    return q


def run_range(zs: ZSet, q: RangeQuery) -> list[tuple[float, bytes]]:
    """The (score, member) rows a query selects, in reply order."""
    n = len(zs)
    if q.by == "rank":
        start, end = q.start, q.end
        if start < 0:
            start += n
        if end < 0:
            end += n
        if start < 0:
            start = 0
        if start > end or start >= n:
            return []
        end = min(end, n - 1)
        if q.reverse:
            return zs.slice(n - 1 - end, n - start, reverse=True)
        return zs.slice(start, end + 1)
    if q.offset > 0 and q.offset >= n:
        return []
    if q.by == "score":
        assert q.score is not None
        start, stop = zs.score_span(*q.score)
    else:
        assert q.lex is not None
        start, stop = (zs.lex_span_reverse if q.reverse else zs.lex_span)(*q.lex)
    if q.offset < 0 or q.limit == 0:  # Redis walks a negative offset off the end
        return []
    count = stop - start - q.offset
    if count <= 0:
        return []
    if q.limit > 0:
        count = min(count, q.limit)
    if q.reverse:
        hi = stop - q.offset
        return zs.slice(hi - count, hi, reverse=True)
    lo = start + q.offset
    return zs.slice(lo, lo + count)


def _range_reply(ctx: Ctx, argv: list[bytes], by: str | None, reverse: bool | None) -> Any:
    q = parse_range(argv, 1, False, by, reverse)
    zs = _zset(ctx, argv[1])
    if zs is None:
        return []
    return _pairs(run_range(zs, q), q.with_scores)


_READ = dict(flags="readonly", keys=(1, 1, 1), acl="@sortedset", group="sorted-set")


@command("zrange", arity=-4, **_READ, since="1.2.0", summary="Returns members in a sorted set within a range of indexes.",
         complexity="O(log(N)+M)", arguments="key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]")
def zrange(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, None, None)


@command("zrevrange", arity=-4, **_READ, since="1.2.0",
         summary="Returns members in a sorted set within a range of indexes in reverse order.",
         complexity="O(log(N)+M)", arguments="key start stop [WITHSCORES]")
def zrevrange(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, "rank", True)


@command("zrangebyscore", arity=-4, **_READ, since="1.0.5", summary="Returns members in a sorted set within a range of scores.",
         complexity="O(log(N)+M)", arguments="key min max [WITHSCORES] [LIMIT offset count]")
def zrangebyscore(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, "score", False)


@command("zrevrangebyscore", arity=-4, **_READ, since="2.2.0",
         summary="Returns members in a sorted set within a range of scores in reverse order.",
         complexity="O(log(N)+M)", arguments="key max min [WITHSCORES] [LIMIT offset count]")
def zrevrangebyscore(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, "score", True)


@command("zrangebylex", arity=-4, **_READ, since="2.8.9",
         summary="Returns members in a sorted set within a lexicographical range.", complexity="O(log(N)+M)",
         arguments="key min max [LIMIT offset count]")
def zrangebylex(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, "lex", False)


@command("zrevrangebylex", arity=-4, **_READ, since="2.8.9",
         summary="Returns members in a sorted set within a lexicographical range in reverse order.",
         complexity="O(log(N)+M)", arguments="key max min [LIMIT offset count]")
def zrevrangebylex(ctx: Ctx, argv: list[bytes]) -> Any:
    return _range_reply(ctx, argv, "lex", True)


def _zset_from_rows(rows: list[tuple[float, bytes]]) -> ZSet:
    """A sorted set a *STORE command built: encoded as Redis's zsetConvertToListpackIfNeeded leaves it."""
    zs = ZSet()
    zs.skiplist = True  # Redis builds the result as a skiplist, then converts it if it is small
    for score, member in rows:
        zs.add(member, score)
    zset_fit_encoding(zs)
    return zs


def _store_rows(ctx: Ctx, destination: bytes, zs: ZSet, event: str) -> int:
    if not zs:
        if ctx.lookup(destination) is not None:
            ctx.remove(destination)
            ctx.notify("g", "del", destination)
        return 0
    ctx.notify("z", event, destination, replace(ctx, destination, zs, ZSET))
    return len(zs)


@command("zrangestore", arity=-5, flags="write denyoom", keys=(1, 2, 1), acl="@sortedset", group="sorted-set",
         since="6.2.0", check=parses(lambda argv: parse_range(argv, 2, True, None, None)),
         summary="Stores a range of members from sorted set in a key.", complexity="O(log(N)+M)",
         arguments="dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]")
def zrangestore(ctx: Ctx, argv: list[bytes]) -> int:
    q = parse_range(argv, 2, True, None, None)
    zs = _zset(ctx, argv[2])
    rows = [] if zs is None else run_range(zs, q)
    return _store_rows(ctx, argv[1], _zset_from_rows(rows), "zrangestore")


@command("zcount", arity=4, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="2.0.0", summary="Returns the count of members in a sorted set that have scores within a range.",
         complexity="O(log(N))", arguments="key min max")
def zcount(ctx: Ctx, argv: list[bytes]) -> int:
    span = parse_score_range(argv[2], argv[3])
    zs = _zset(ctx, argv[1])
    if zs is None:
        return 0
    start, stop = zs.score_span(*span)
    return stop - start


@command("zlexcount", arity=4, flags="readonly fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="2.8.9", summary="Returns the number of members in a sorted set within a lexicographical range.",
         complexity="O(log(N))", arguments="key min max")
def zlexcount(ctx: Ctx, argv: list[bytes]) -> int:
    low, high = parse_lex_range(argv[2], argv[3])
    zs = _zset(ctx, argv[1])
    if zs is None:
        return 0
    start, stop = zs.lex_span(low, high)
    return stop - start


def _remrange(ctx: Ctx, argv: list[bytes], by: str) -> int:
    if by == "rank":
        first, last = parse_int(argv[2]), parse_int(argv[3])
    elif by == "score":
        span = parse_score_range(argv[2], argv[3])
    else:
        lex = parse_lex_range(argv[2], argv[3])
    key = argv[1]
    old = typed(ctx, key, ZSET)
    if old is None:
        return 0
    zs: ZSet = ctx.mutable(key, old)
    n = len(zs)
    if by == "rank":
        if first < 0:
            first += n
        if last < 0:
            last += n
        if first < 0:
            first = 0
        if first > last or first >= n:
            return 0
        start, stop = first, min(last, n - 1) + 1
    elif by == "score":
        start, stop = zs.score_span(*span)
    else:
        start, stop = zs.lex_span(*lex)
    removed = zs.remove_ranks(start, stop)
    if removed:
        _store_zset(ctx, key, old, zs, "zremrangeby" + by)
    return removed


def _check_remrange(by: str) -> Any:
    def check(argv: list[bytes], settings: Any) -> None:
        if by == "rank":
            parse_int(argv[2])
            parse_int(argv[3])
        elif by == "score":
            parse_score_range(argv[2], argv[3])
        else:
            parse_lex_range(argv[2], argv[3])

    return check


_REMRANGE = dict(arity=4, flags="write", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
                 complexity="O(log(N)+M)")


@command("zremrangebyrank", **_REMRANGE, since="2.0.0", check=_check_remrange("rank"),
         summary="Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members "
         "were removed.", arguments="key start stop")
def zremrangebyrank(ctx: Ctx, argv: list[bytes]) -> int:
    return _remrange(ctx, argv, "rank")


@command("zremrangebyscore", **_REMRANGE, since="1.2.0", check=_check_remrange("score"),
         summary="Removes members in a sorted set within a range of scores. Deletes the sorted set if all members "
         "were removed.", arguments="key min max")
def zremrangebyscore(ctx: Ctx, argv: list[bytes]) -> int:
    return _remrange(ctx, argv, "score")


@command("zremrangebylex", **_REMRANGE, since="2.8.9", check=_check_remrange("lex"),
         summary="Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all "
         "members were removed.", arguments="key min max")
def zremrangebylex(ctx: Ctx, argv: list[bytes]) -> int:
    return _remrange(ctx, argv, "lex")


# -- pops ---------------------------------------------------------------------------------------


def _pop_from(ctx: Ctx, key: bytes, old: Entry, count: int, highest: bool) -> list[tuple[bytes, float]]:
    zs: ZSet = ctx.mutable(key, old)
    popped = zs.pop(count, highest)
    _store_zset(ctx, key, old, zs, "zpopmax" if highest else "zpopmin")
    return popped


def _zpop(ctx: Ctx, argv: list[bytes], highest: bool) -> Any:
    if len(argv) > 3:
        raise SYNTAX
    count = parse_positive(argv[2]) if len(argv) == 3 else -1
    key = argv[1]
    old = typed(ctx, key, ZSET)
    if old is None or count == 0:
        return []
    popped = _pop_from(ctx, key, old, 1 if count == -1 else count, highest)
    if count == -1:
        return [popped[0][0], popped[0][1]]
    return Pairs([[m, s] for m, s in popped])


def _check_zpop(argv: list[bytes], settings: Any) -> None:
    if len(argv) > 3:
        raise SYNTAX
    if len(argv) == 3:
        parse_positive(argv[2])


@command("zpopmin", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="5.0.0",
         check=_check_zpop, summary="Returns the lowest-scoring members from a sorted set after removing them. "
         "Deletes the sorted set if the last member was popped.", complexity="O(log(N)*M)", arguments="key [count]")
def zpopmin(ctx: Ctx, argv: list[bytes]) -> Any:
    return _zpop(ctx, argv, False)


@command("zpopmax", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="5.0.0",
         check=_check_zpop, summary="Returns the highest-scoring members from a sorted set after removing them. "
         "Deletes the sorted set if the last member was popped.", complexity="O(log(N)*M)", arguments="key [count]")
def zpopmax(ctx: Ctx, argv: list[bytes]) -> Any:
    return _zpop(ctx, argv, True)


def _zmpop_args(argv: list[bytes], numkeys_at: int) -> tuple[list[bytes], bool, int]:
    numkeys = parse_range_long(argv[numkeys_at], 1, LONG_MAX, "numkeys should be greater than 0")
    where_at = numkeys_at + numkeys + 1
    if where_at >= len(argv):
        raise SYNTAX
    where = argv[where_at].lower()
    if where not in (b"min", b"max"):
        raise SYNTAX
    count = -1
    i = where_at + 1
    while i < len(argv):
        if count == -1 and argv[i].lower() == b"count" and i + 1 < len(argv):
            count = parse_range_long(argv[i + 1], 1, LONG_MAX, "count should be greater than 0")
            i += 2
        else:
            raise SYNTAX
    return argv[numkeys_at + 1 : where_at], where == b"max", 1 if count == -1 else count


def _first_zset(ctx: Ctx, keys: list[bytes]) -> tuple[bytes, Entry] | None:
    for key in keys:
        old = typed(ctx, key, ZSET)
        if old is not None:
            return key, old
    return None


def _zmpop(ctx: Ctx, keys: list[bytes], highest: bool, count: int) -> Any:
    found = _first_zset(ctx, keys)
    if found is None:
        return None
    key, old = found
    return [key, [[m, s] for m, s in _pop_from(ctx, key, old, count, highest)]]


def _zmpop_keys(numkeys_at: int) -> Any:
    from vfsd.commands.lists import mpop_keys

    return mpop_keys(numkeys_at)


@command("zmpop", arity=-4, flags="write", acl="@sortedset", group="sorted-set", since="7.0.0",
         key_positions=_zmpop_keys(1), check=parses(lambda argv: _zmpop_args(argv, 1)),
         summary="Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. "
         "Deletes the sorted set if the last member was popped.", complexity="O(K) + O(M*log(N))",
         arguments="numkeys key [key ...] MIN|MAX [COUNT count]")
def zmpop(ctx: Ctx, argv: list[bytes]) -> Any:
    keys, highest, count = _zmpop_args(argv, 1)
    popped = _zmpop(ctx, keys, highest, count)
    return NULL_ARRAY if popped is None else popped


def _bzpop(ctx: Ctx, argv: list[bytes], highest: bool) -> Any:
    timeout_ms = parse_timeout(argv[-1], ctx.now_ms)
    keys = argv[1:-1]
    found = _first_zset(ctx, keys)
    if found is None:
        return Block(keys, timeout_ms, ZSET, NULL_ARRAY)
    key, old = found
    member, score = _pop_from(ctx, key, old, 1, highest)[0]
    return [key, member, score]


def _check_timeout_last(argv: list[bytes], settings: Any) -> None:
    parse_timeout(argv[-1], 0)


_BLOCKING = dict(flags="write blocking fast", acl="@sortedset", group="sorted-set")


@command("bzpopmin", arity=-3, keys=(1, -2, 1), **_BLOCKING, since="5.0.0", check=_check_timeout_last,
         summary="Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a "
         "member is available otherwise. Deletes the sorted set if the last element was popped.",
         complexity="O(log(N))", arguments="key [key ...] timeout")
def bzpopmin(ctx: Ctx, argv: list[bytes]) -> Any:
    return _bzpop(ctx, argv, False)


@command("bzpopmax", arity=-3, keys=(1, -2, 1), **_BLOCKING, since="5.0.0", check=_check_timeout_last,
         summary="Removes and returns the member with the highest score from one or more sorted sets. Blocks until a "
         "member available otherwise. Deletes the sorted set if the last element was popped.",
         complexity="O(log(N))", arguments="key [key ...] timeout")
def bzpopmax(ctx: Ctx, argv: list[bytes]) -> Any:
    return _bzpop(ctx, argv, True)


def _check_bzmpop(argv: list[bytes], settings: Any) -> None:
    _zmpop_args(argv, 2)
    parse_timeout(argv[1], 0)


@command("bzmpop", arity=-5, key_positions=_zmpop_keys(2), flags="write blocking", acl="@sortedset",
         group="sorted-set", since="7.0.0", check=_check_bzmpop,
         summary="Removes and returns a member by score from one or more sorted sets. Blocks until a member is "
         "available otherwise. Deletes the sorted set if the last element was popped.",
         complexity="O(K) + O(M*log(N))", arguments="timeout numkeys key [key ...] MIN|MAX [COUNT count]")
def bzmpop(ctx: Ctx, argv: list[bytes]) -> Any:
    keys, highest, count = _zmpop_args(argv, 2)
    timeout_ms = parse_timeout(argv[1], ctx.now_ms)
    popped = _zmpop(ctx, keys, highest, count)
    return Block(keys, timeout_ms, ZSET, NULL_ARRAY) if popped is None else popped


# -- random members -----------------------------------------------------------------------------


@command("zrandmember", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@sortedset", group="sorted-set",
         since="6.2.0", summary="Returns one or more random members from a sorted set.", complexity="O(N)",
         arguments="key [count [WITHSCORES]]")
def zrandmember(ctx: Ctx, argv: list[bytes]) -> Any:
    if len(argv) >= 3:
        count = parse_range_long(argv[2], -LONG_MAX, LONG_MAX)
        if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withscores"):
            raise SYNTAX
        with_scores = len(argv) == 4
        if with_scores and not -LONG_MAX // 2 <= count <= LONG_MAX // 2:
            raise OUT_OF_RANGE
        zs = _zset(ctx, argv[1])
        if zs is None or count == 0:
            return []
        n = len(zs)
        rng = ctx.random
        if count < 0:
            ranks = [rng.randrange(n) for _ in range(-count)]
        elif count >= n:
            ranks = list(range(n))
        else:
            ranks = rng.sample(range(n), count)
        rows = [zs.at(r) for r in ranks]
        return _pairs(rows, with_scores)
    zs = _zset(ctx, argv[1])
    if zs is None:
        return None
    return zs.at(ctx.random.randrange(len(zs)))[1]


# -- set algebra ------------------------------------------------------------------------------------


def _sources(ctx: Ctx, argv: list[bytes], numkeys_at: int) -> tuple[int, list[Any]]:
    """numkeys and the inputs (a ZSet, a set, or None) with Redis's errors, in Redis's order."""
    name = argv[0].decode(errors="replace").lower()
    numkeys = parse_int(argv[numkeys_at])
    if numkeys < 1:
        raise ErrorReply(f"ERR at least 1 input key is needed for '{name}' command")
    if numkeys > len(argv) - numkeys_at - 1:
        raise SYNTAX
    inputs: list[Any] = []
    for key in argv[numkeys_at + 1 : numkeys_at + 1 + numkeys]:
        entry = ctx.lookup(key)
        if entry is None:
            inputs.append(None)
        elif entry[KIND] == ZSET or entry[KIND] == SET:
            inputs.append(entry[VALUE])
        else:
            raise WRONGTYPE
    return numkeys, inputs


def _check_numkeys(numkeys_at: int) -> Any:
    def check(argv: list[bytes], settings: Any) -> None:
        name = argv[0].decode(errors="replace").lower()
        numkeys = parse_int(argv[numkeys_at])
        if numkeys < 1:
            raise ErrorReply(f"ERR at least 1 input key is needed for '{name}' command")
        if numkeys > len(argv) - numkeys_at - 1:
            raise SYNTAX

    return check


def _algebra_options(argv: list[bytes], at: int, numkeys: int, op: str, store: bool,
                     cardinality: bool) -> tuple[list[float], str, bool, int]:
    weights = [1.0] * numkeys
    aggregate = "sum"
    with_scores = False
    limit = 0
    j = at
    n = len(argv)
    while j < n:
        remaining = n - j
        opt = argv[j].lower()
        if op != "diff" and not cardinality and remaining >= numkeys + 1 and opt == b"weights":
            weights = [parse_double(w, WEIGHT_NOT_FLOAT) for w in argv[j + 1 : j + 1 + numkeys]]
            j += 1 + numkeys
        elif op != "diff" and not cardinality and remaining >= 2 and opt == b"aggregate":
            choice = argv[j + 1].lower()
            if choice not in (b"sum", b"min", b"max"):
                raise SYNTAX
            aggregate = choice.decode()
            j += 2
        elif not store and not cardinality and opt == b"withscores":
            with_scores = True
            j += 1
        elif cardinality and remaining >= 2 and opt == b"limit":
            limit = parse_positive(argv[j + 1], "LIMIT can't be negative")
            j += 2
        else:
            raise SYNTAX
    return weights, aggregate, with_scores, limit


def _members(source: Any) -> Any:
    """(member, score) of an input: a sorted set in order, a plain set with score 1."""
    if source is None:
        return ()
    if isinstance(source, ZSet):
        return source.scores.items()
    return ((m, 1.0) for m in source)


def _score_of(source: Any, member: bytes) -> float | None:
    if isinstance(source, ZSet):
        return source.scores.get(member)
    return 1.0 if member in source else None


def _aggregate(target: float, value: float, how: str) -> float:
    if how == "sum":
        total = target + value
        return 0.0 if math.isnan(total) else total
    if how == "min":
        return value if value < target else target
    return value if value > target else target


def _weighted(weight: float, score: float) -> float:
    value = weight * score
    return 0.0 if math.isnan(value) else value


def _algebra(ctx: Ctx, argv: list[bytes], numkeys_at: int, op: str, store: bool,
             cardinality: bool = False) -> tuple[dict[bytes, float], bool, int]:
    numkeys, inputs = _sources(ctx, argv, numkeys_at)
    weights, aggregate, with_scores, limit = _algebra_options(argv, numkeys_at + 1 + numkeys, numkeys, op, store,
                                                              cardinality)
    sources = list(zip(inputs, weights))
    result: dict[bytes, float] = {}
    if op == "inter":
        sources.sort(key=lambda s: 0 if s[0] is None else len(s[0]))
        first, first_weight = sources[0]
        if first:
            for member, score in list(_members(first)):
                total = _weighted(first_weight, score)
                for other, weight in sources[1:]:
                    if other is first:
                        value = score * weight
                    else:
                        found = None if other is None else _score_of(other, member)
                        if found is None:
                            break
                        value = found * weight
                    total = _aggregate(total, value, aggregate)
                else:
                    result[member] = total
                    if cardinality and limit and len(result) >= limit:
                        break
    elif op == "union":
        sources.sort(key=lambda s: 0 if s[0] is None else len(s[0]))
        for source, weight in sources:
            for member, score in _members(source):
                value = _weighted(weight, score)
                if member in result:
                    result[member] = _aggregate(result[member], value, aggregate)
                else:
                    result[member] = value
    else:
        first = sources[0][0]
        for member, score in _members(first):
            if not any(other is not None and _score_of(other, member) is not None for other, _ in sources[1:]):
                result[member] = score
    return result, with_scores, limit


def _sorted_rows(result: dict[bytes, float]) -> list[tuple[float, bytes]]:
    return sorted((score, member) for member, score in result.items())


def _algebra_reply(ctx: Ctx, argv: list[bytes], op: str) -> Any:
    result, with_scores, _ = _algebra(ctx, argv, 1, op, False)
    return _pairs(_sorted_rows(result), with_scores)


def _algebra_store(ctx: Ctx, argv: list[bytes], op: str) -> int:
    result, _, _ = _algebra(ctx, argv, 2, op, True)
    return _store_rows(ctx, argv[1], _zset_from_rows(_sorted_rows(result)), f"z{op}store")


def _numkeys_positions(at: int) -> Any:
    def positions(argv: list[bytes]) -> list[int]:
        try:
            numkeys = int(argv[at])
        except (ValueError, IndexError):
            return []
        if numkeys < 1 or numkeys > len(argv) - at - 1:
            return [1] if at == 2 else []
        return ([1] if at == 2 else []) + list(range(at + 1, at + 1 + numkeys))

    return positions


@command("zunion", arity=-3, flags="readonly", acl="@sortedset", group="sorted-set", since="6.2.0",
         key_positions=_numkeys_positions(1), summary="Returns the union of multiple sorted sets.",
         complexity="O(N)+O(M*log(M))", arguments="numkeys key [key ...] [WEIGHTS weight [weight ...]] "
         "[AGGREGATE SUM|MIN|MAX] [WITHSCORES]")
def zunion(ctx: Ctx, argv: list[bytes]) -> Any:
    return _algebra_reply(ctx, argv, "union")


@command("zinter", arity=-3, flags="readonly", acl="@sortedset", group="sorted-set", since="6.2.0",
         key_positions=_numkeys_positions(1), summary="Returns the intersect of multiple sorted sets.",
         complexity="O(N*K)+O(M*log(M))", arguments="numkeys key [key ...] [WEIGHTS weight [weight ...]] "
         "[AGGREGATE SUM|MIN|MAX] [WITHSCORES]")
def zinter(ctx: Ctx, argv: list[bytes]) -> Any:
    return _algebra_reply(ctx, argv, "inter")


@command("zdiff", arity=-3, flags="readonly", acl="@sortedset", group="sorted-set", since="6.2.0",
         key_positions=_numkeys_positions(1), summary="Returns the difference between multiple sorted sets.",
         complexity="O(L + (N-K)log(N))", arguments="numkeys key [key ...] [WITHSCORES]")
def zdiff(ctx: Ctx, argv: list[bytes]) -> Any:
    return _algebra_reply(ctx, argv, "diff")


@command("zunionstore", arity=-4, flags="write denyoom", acl="@sortedset", group="sorted-set", since="2.0.0",
         key_positions=_numkeys_positions(2), check=_check_numkeys(2),
         summary="Stores the union of multiple sorted sets in a key.", complexity="O(N)+O(M log(M))",
         arguments="destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]")
def zunionstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _algebra_store(ctx, argv, "union")


@command("zinterstore", arity=-4, flags="write denyoom", acl="@sortedset", group="sorted-set", since="2.0.0",
         key_positions=_numkeys_positions(2), check=_check_numkeys(2),
         summary="Stores the intersect of multiple sorted sets in a key.", complexity="O(N*K)+O(M*log(M))",
         arguments="destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]")
def zinterstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _algebra_store(ctx, argv, "inter")


@command("zdiffstore", arity=-4, flags="write denyoom", acl="@sortedset", group="sorted-set", since="6.2.0",
         key_positions=_numkeys_positions(2), check=_check_numkeys(2),
         summary="Stores the difference of multiple sorted sets in a key.", complexity="O(L + (N-K)log(N))",
         arguments="destination numkeys key [key ...]")
def zdiffstore(ctx: Ctx, argv: list[bytes]) -> int:
    return _algebra_store(ctx, argv, "diff")


@command("zintercard", arity=-3, flags="readonly", acl="@sortedset", group="sorted-set", since="7.0.0",
         key_positions=_numkeys_positions(1), summary="Returns the number of members of the intersect of multiple "
         "sorted sets.", complexity="O(N*K)", arguments="numkeys key [key ...] [LIMIT limit]")
def zintercard(ctx: Ctx, argv: list[bytes]) -> int:
    result, _, _ = _algebra(ctx, argv, 1, "inter", False, cardinality=True)
    return len(result)


# -- ZSCAN -----------------------------------------------------------------------------------------


def _score_text_listpack(score: float) -> bytes:
    from vfsd.resp.encoder import _double_text

    return _double_text(score)


@command("zscan", arity=-3, flags="readonly", keys=(1, 1, 1), acl="@sortedset", group="sorted-set", since="2.8.0",
         summary="Iterates over members and scores of a sorted set.", complexity="O(1) for every call",
         arguments="key cursor [MATCH pattern] [COUNT count]")
def zscan(ctx: Ctx, argv: list[bytes]) -> list[Any]:
    cursor = parse_cursor(argv[2])
    zs = _zset(ctx, argv[1])
    if zs is None:
        return [b"0", []]
    count, match = scan_options(argv, 3)
    if zs.skiplist:  # Redis prints a hashtable's scores with %.17g, a listpack's as stored (d2string)
        items = ((m, b"%.17g" % s if math.isfinite(s) else _score_text_listpack(s)) for m, s in zs.items())
    else:
        items = ((m, _score_text_listpack(s)) for m, s in zs.items())
    return scan_reply(items, len(zs), cursor, count, not zs.skiplist, match, True)
