"""The sorted set: a member -> score dict plus a SortedList of order keys.

Redis orders a sorted set by score, ties broken by the member's bytes
(memcmp, shorter first on a common prefix: t_zset.c zslInsert). Each member's
place is kept as one ``bytes`` order key, ``score_key(score) + member``, where
``score_key`` is the 8-byte big-endian IEEE 754 form with the sign bit flipped
(and every bit flipped for negative numbers), which sorts byte-wise exactly as
the doubles sort. Comparing bytes is one memcmp, about twice as fast as
comparing ``(score, member)`` tuples, and the key takes less memory than a
tuple plus a float object for members under 40 bytes. -0 and 0 get the same
key (Redis compares them as equal scores); the dict keeps the score as given.
The dict gives O(1) ZSCORE; the list gives O(log n) ZADD, ZRANK and range
boundaries.

Range boundaries are found by bisecting with a bare score key: it sorts
before every key that extends it, so ``bisect_left(score_key(s))`` is the
first element whose score is at least ``s``.

The order is kept lazily, as the keyspace keeps its key order: ZADD, ZINCRBY
and ZREM change the dict and note the member's previous score in ``_pending``;
the first command that needs order (``order``) applies the pending changes to
the SortedList (one remove and one add each), or rebuilds it with one sort when
more than an eighth of the members changed. A stream of ZADDs then costs dict
updates, not ordered inserts, and a ZADD followed by a ZRANGE costs what it did.

Lexicographic ranges (ZRANGEBYLEX and friends) are only meaningful when every
score is equal; then they bisect. When scores differ Redis walks its listpack
in order, and so do we (``lex_span``), which reproduces Redis's answers for the
small sets where that walk is what Redis does.

Scores are Python floats (IEEE doubles, as Redis's); NaN never enters.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

_DOUBLE = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def score_key(score: float) -> bytes:
    """8 bytes that sort as ``score`` does among doubles (no NaN); -0 and 0 alike."""
    (bits,) = _U64.unpack(_DOUBLE.pack(score + 0.0))  # + 0.0 turns -0.0 into 0.0
    return _U64.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)

#: A lex bound: (kind, value, exclusive) with kind -1 for '-', +1 for '+', 0 for a value.
LexBound = tuple[int, bytes, bool]


class ZSet:
    __slots__ = ("scores", "_order", "_pending", "skiplist")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self._order: SortedList = SortedList()
        #: member -> the score it is filed under in ``_order`` (None: not filed), for members changed
        #: since the order was last brought up to date.
        self._pending: dict[bytes, float | None] = {}
        #: Redis's encoding: True once it would have converted the listpack to a skiplist.
        self.skiplist = False

    @property
    def order(self) -> SortedList:
        """The order keys, ascending (pending changes applied first)."""
        pending = self._pending
        if pending:
            scores = self.scores
            if len(pending) * 8 > len(self._order) + 64:
                self._order = SortedList(score_key(s) + m for m, s in scores.items())
            else:
                order = self._order
                for member, filed in pending.items():
                    if filed is not None:
                        order.remove(score_key(filed) + member)
                    score = scores.get(member)
                    if score is not None:
                        order.add(score_key(score) + member)
            pending.clear()
        return self._order

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: object) -> bool:
        return member in self.scores

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ZSet({list(self.items())!r})"

    def _rows(self, keys: Any) -> list[tuple[float, bytes]]:
        scores = self.scores
        return [(scores[k[8:]], k[8:]) for k in keys]

    def copy(self) -> "ZSet":
        out = ZSet()
        out.scores = dict(self.scores)
        out._order = SortedList(self.order)
        out.skiplist = self.skiplist
        return out

    def add(self, member: bytes, score: float) -> float | None:
        """Set ``member``'s score; returns the previous score (None if it was new)."""
        if score == 0 and not self.skiplist:
            score = 0.0  # a listpack stores an integral score as an integer: -0 becomes 0 (zzlInsertAt)
        scores = self.scores
        old = scores.get(member)
        if old is not None and old == score:  # Redis compares with ==: 0 and -0 are the same score
            return old
        if member not in self._pending:
            self._pending[member] = old
        scores[member] = score
        return old

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        if member not in self._pending:
            self._pending[member] = score
        return True

    def items(self) -> Iterator[tuple[bytes, float]]:
        """(member, score) in ascending order."""
        scores = self.scores
        for key in self.order:
            member = key[8:]
            yield member, scores[member]

    def flat(self) -> list[Any]:
        out: list[Any] = []
        scores = self.scores
        for key in self.order:
            member = key[8:]
            out.append(member)
            out.append(scores[member])
        return out

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return self.order.index(score_key(score) + member)

    def at(self, rank: int) -> tuple[float, bytes]:
        """(score, member) at ``rank``."""
        member = self.order[rank][8:]
        return self.scores[member], member

    def slice(self, start: int, stop: int, reverse: bool = False) -> list[tuple[float, bytes]]:
        """(score, member) with ranks in ``[start, stop)``, ascending (or descending)."""
        return self._rows(self.order.islice(start, stop, reverse=reverse))

    # -- score ranges ------------------------------------------------------------

    def score_start(self, low: float, exclusive: bool) -> int:
        """Rank of the first element whose score is >= low (> low when exclusive)."""
        if exclusive:
            if low == math.inf:
                return len(self.order)
            low = math.nextafter(low, math.inf)
        return self.order.bisect_left(score_key(low))

    def score_stop(self, high: float, exclusive: bool) -> int:
        """One past the rank of the last element whose score is <= high (< high when exclusive)."""
        if not exclusive:
            if high == math.inf:
                return len(self.order)
            high = math.nextafter(high, math.inf)
        return self.order.bisect_left(score_key(high))

    def score_span(self, low: float, low_ex: bool, high: float, high_ex: bool) -> tuple[int, int]:
        """[start, stop) ranks of a score range (empty when the range is)."""
        if low > high or (low == high and (low_ex or high_ex)):
            return 0, 0
        start = self.score_start(low, low_ex)
        return start, max(start, self.score_stop(high, high_ex))

    # -- lexicographic ranges ----------------------------------------------------

    def lex_span(self, low: LexBound, high: LexBound) -> tuple[int, int]:
        """[start, stop) ranks of a lex range, as Redis walks it (see the module docstring)."""
        if not lex_range_possible(low, high) or not self.order:
            return 0, 0
        order = self.order
        first, last = order[0], order[-1]
        if not lex_gte(last[8:], low) or not lex_lte(first[8:], high):
            return 0, 0
        if first[:8] == last[:8]:  # one score: members are sorted, bisect
            prefix = first[:8]
            if low[0] < 0:
                start = 0
            else:
                probe = prefix + low[1]
                start = order.bisect_right(probe) if low[2] else order.bisect_left(probe)
            if high[0] > 0:
                stop = len(order)
            else:
                probe = prefix + high[1]
                stop = order.bisect_left(probe) if high[2] else order.bisect_right(probe)
            return start, max(start, stop)
        start = None
        for rank, key in enumerate(order):
            if lex_gte(key[8:], low):
                start = rank
                break
        if start is None or not lex_lte(order[start][8:], high):
            return 0, 0
        stop = start + 1
        n = len(order)
        while stop < n and lex_lte(order[stop][8:], high):
            stop += 1
        return start, stop

    def lex_span_reverse(self, low: LexBound, high: LexBound) -> tuple[int, int]:
        """[start, stop) ranks a reverse lex walk covers (it starts from the end)."""
        if not lex_range_possible(low, high) or not self.order:
            return 0, 0
        order = self.order
        first, last = order[0], order[-1]
        if not lex_gte(last[8:], low) or not lex_lte(first[8:], high):
            return 0, 0
        if first[:8] == last[:8]:
            return self.lex_span(low, high)
        stop = None
        for rank in range(len(order) - 1, -1, -1):
            if lex_lte(order[rank][8:], high):
                stop = rank + 1
                break
        if stop is None or not lex_gte(order[stop - 1][8:], low):
            return 0, 0
        start = stop - 1
        while start > 0 and lex_gte(order[start - 1][8:], low):
            start -= 1
        return start, stop

    def pop(self, count: int, highest: bool) -> list[tuple[bytes, float]]:
        """Remove and return up to ``count`` (member, score), lowest (or highest) first."""
        order = self.order
        count = min(count, len(order))
        if highest:
            keys = list(order.islice(len(order) - count, len(order), reverse=True))
            del order[len(order) - count:]
        else:
            keys = list(order.islice(0, count))
            del order[:count]
        scores = self.scores
        return [(key[8:], scores.pop(key[8:])) for key in keys]

    def remove_ranks(self, start: int, stop: int) -> int:
        """Remove ranks [start, stop); returns how many were removed."""
        if start >= stop:
            return 0
        order = self.order
        scores = self.scores
        for key in order.islice(start, stop):
            del scores[key[8:]]
        del order[start:stop]
        return stop - start


def lex_gte(member: bytes, low: LexBound) -> bool:
    kind, value, exclusive = low
    if kind:
        return kind < 0
    return member > value if exclusive else member >= value


def lex_lte(member: bytes, high: LexBound) -> bool:
    kind, value, exclusive = high
    if kind:
        return kind > 0
    return member < value if exclusive else member <= value


def lex_range_possible(low: LexBound, high: LexBound) -> bool:
    """Redis's zslIsInLexRange pre-check on the bounds alone."""
    if low[0] > 0 or high[0] < 0:  # min '+' or max '-'
        return False
    if low[0] < 0 or high[0] > 0:
        return True
    if low[1] > high[1]:
        return False
    return not (low[1] == high[1] and (low[2] or high[2]))
