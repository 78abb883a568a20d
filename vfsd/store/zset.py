"""The sorted set: a member -> score dict plus a SortedList of ``(score, member)``.

Redis orders a sorted set by score, ties broken by the member's bytes
(memcmp, shorter first on a common prefix: t_zset.c zslInsert); a tuple
``(score, member)`` of a float and bytes compares exactly that way, so the
SortedList needs no key function. The dict gives O(1) ZSCORE; the list gives
O(log n) ZADD, ZRANK and range boundaries.

Range boundaries are found by bisecting with a one-element tuple: ``(s,)``
sorts before every ``(s, member)``, so ``bisect_left((s,))`` is the first
element whose score is at least ``s``.

Lexicographic ranges (ZRANGEBYLEX and friends) are only meaningful when every
score is equal; then they bisect. When scores differ Redis walks its listpack
in order, and so do we (``lex_span``), which reproduces Redis's answers for the
small sets where that walk is what Redis does.

Scores are Python floats (IEEE doubles, as Redis's); NaN never enters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

#: A lex bound: (kind, value, exclusive) with kind -1 for '-', +1 for '+', 0 for a value.
LexBound = tuple[int, bytes, bool]


class ZSet:
    __slots__ = ("scores", "order", "skiplist")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: SortedList = SortedList()
        #: Redis's encoding: True once it would have converted the listpack to a skiplist.
        self.skiplist = False

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: object) -> bool:
        return member in self.scores

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ZSet) and self.scores == other.scores

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ZSet({list(self.items())!r})"

    def copy(self) -> "ZSet":
        out = ZSet()
        out.scores = dict(self.scores)
        out.order = SortedList(self.order)
        out.skiplist = self.skiplist
        return out

    def add(self, member: bytes, score: float) -> float | None:
        """Set ``member``'s score; returns the previous score (None if it was new)."""
        if score == 0 and not self.skiplist:
            score = 0.0  # a listpack stores an integral score as an integer: -0 becomes 0 (zzlInsertAt)
        scores = self.scores
        old = scores.get(member)
        if old is not None:
            if old == score:  # Redis compares with ==: 0 and -0 are the same score
                return old
            self.order.remove((old, member))
        scores[member] = score
        self.order.add((score, member))
        return old

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.order.remove((score, member))
        return True

    def items(self) -> Iterator[tuple[bytes, float]]:
        """(member, score) in ascending order."""
        for score, member in self.order:
            yield member, score

    def flat(self) -> list[Any]:
        out: list[Any] = []
        for score, member in self.order:
            out.append(member)
            out.append(score)
        return out

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        if score is None:
            return None
        return self.order.index((score, member))

    def slice(self, start: int, stop: int) -> list[tuple[float, bytes]]:
        """Elements with ranks in ``[start, stop)``, ascending."""
        return list(self.order.islice(start, stop))

    # -- score ranges ------------------------------------------------------------

    def score_start(self, low: float, exclusive: bool) -> int:
        """Rank of the first element whose score is >= low (> low when exclusive)."""
        if exclusive:
            if low == math.inf:
                return len(self.order)
            low = math.nextafter(low, math.inf)
        return self.order.bisect_left((low,))

    def score_stop(self, high: float, exclusive: bool) -> int:
        """One past the rank of the last element whose score is <= high (< high when exclusive)."""
        if not exclusive:
            if high == math.inf:
                return len(self.order)
            high = math.nextafter(high, math.inf)
        return self.order.bisect_left((high,))

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
        if not lex_gte(last[1], low) or not lex_lte(first[1], high):
            return 0, 0
        if first[0] == last[0]:  # one score: members are sorted, bisect
            score = first[0]
            start = 0 if low[0] < 0 else (
                order.bisect_right((score, low[1])) if low[2] else order.bisect_left((score, low[1])))
            if high[0] > 0:
                stop = len(order)
            else:
                stop = order.bisect_left((score, high[1])) if high[2] else order.bisect_right((score, high[1]))
            return start, max(start, stop)
        start = None
        for rank, (_, member) in enumerate(order):
            if lex_gte(member, low):
                start = rank
                break
        if start is None or not lex_lte(order[start][1], high):
            return 0, 0
        stop = start + 1
        n = len(order)
        while stop < n and lex_lte(order[stop][1], high):
            stop += 1
        return start, stop

    def lex_span_reverse(self, low: LexBound, high: LexBound) -> tuple[int, int]:
        """[start, stop) ranks a reverse lex walk covers (it starts from the end)."""
        if not lex_range_possible(low, high) or not self.order:
            return 0, 0
        order = self.order
        first, last = order[0], order[-1]
        if not lex_gte(last[1], low) or not lex_lte(first[1], high):
            return 0, 0
        if first[0] == last[0]:
            return self.lex_span(low, high)
        stop = None
        for rank in range(len(order) - 1, -1, -1):
            if lex_lte(order[rank][1], high):
                stop = rank + 1
                break
        if stop is None or not lex_gte(order[stop - 1][1], low):
            return 0, 0
        start = stop - 1
        while start > 0 and lex_gte(order[start - 1][1], low):
            start -= 1
        return start, stop

    def pop(self, count: int, highest: bool) -> list[tuple[bytes, float]]:
        """Remove and return up to ``count`` (member, score), lowest (or highest) first."""
        order = self.order
        count = min(count, len(order))
        if highest:
            taken = list(order.islice(len(order) - count, len(order), reverse=True))
            del order[len(order) - count:]
        else:
            taken = list(order.islice(0, count))
            del order[:count]
        scores = self.scores
        for _, member in taken:
            del scores[member]
        return [(member, score) for score, member in taken]

    def remove_ranks(self, start: int, stop: int) -> int:
        """Remove ranks [start, stop); returns how many were removed."""
        if start >= stop:
            return 0
        order = self.order
        scores = self.scores
        for _, member in order.islice(start, stop):
            del scores[member]
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
