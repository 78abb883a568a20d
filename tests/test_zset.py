"""The sorted-set structure (vfsd.store.zset) against a naive reference: a dict sorted on demand."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.store.zset import LexBound, ZSet, lex_gte, lex_lte, lex_range_possible

member = st.sampled_from([b"", b"a", b"aa", b"ab", b"b", b"c", b"\x00", b"\xff", b"z"])
score = st.sampled_from([-math.inf, -2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.5, 3.0, math.inf])
ops = st.lists(st.one_of(
    st.tuples(st.just("add"), member, score),
    st.tuples(st.just("remove"), member, st.just(0.0)),
    st.tuples(st.just("pop"), st.integers(0, 4), st.booleans()),
), max_size=60)


def naive_order(model: dict[bytes, float]) -> list[tuple[float, bytes]]:
    return sorted((s, m) for m, s in model.items())


def replay(steps: list[Any]) -> tuple[ZSet, dict[bytes, float]]:
    zs, model = ZSet(), {}
    for op, a, b in steps:
        if op == "add":
            zs.add(a, b)
            model[a] = model[a] if a in model and model[a] == b else (0.0 if b == 0 else b)
        elif op == "remove":
            assert zs.remove(a) == (a in model)
            model.pop(a, None)
        else:
            expected = naive_order(model)
            expected = expected[::-1][:a] if b else expected[:a]
            assert zs.pop(a, b) == [(m, s) for s, m in expected]
            for _, m in expected:
                del model[m]
    return zs, model


@settings(max_examples=300, deadline=None)
@given(ops)
def test_order_ranks_and_scores_match_the_reference(steps: list[Any]) -> None:
    zs, model = replay(steps)
    order = naive_order(model)
    assert [(s, m) for m, s in zs.items()] == order
    assert len(zs) == len(model) and zs.scores == model
    for rank, (_, m) in enumerate(order):
        assert zs.rank(m) == rank
    assert zs.rank(b"absent") is None


bound = st.tuples(score, st.booleans())


@settings(max_examples=300, deadline=None)
@given(ops, bound, bound)
def test_score_spans_match_a_filter(steps: list[Any], low: tuple[float, bool], high: tuple[float, bool]) -> None:
    zs, model = replay(steps)
    (lo, lo_ex), (hi, hi_ex) = low, high
    start, stop = zs.score_span(lo, lo_ex, hi, hi_ex)
    expected = [(s, m) for s, m in naive_order(model)
                if (s > lo if lo_ex else s >= lo) and (s < hi if hi_ex else s <= hi)]
    assert zs.slice(start, stop) == expected


lex_bound = st.one_of(st.just((-1, b"", True)), st.just((1, b"", True)), st.tuples(st.just(0), member, st.booleans()))


def naive_lex_walk(order: list[tuple[float, bytes]], low: LexBound, high: LexBound) -> list[bytes]:
    """Redis's listpack walk (zzlFirstInLexRange, then forward while <= max), with its pre-checks."""
    if not lex_range_possible(low, high) or not order:
        return []
    if not lex_gte(order[-1][1], low) or not lex_lte(order[0][1], high):
        return []
    out: list[bytes] = []
    started = False
    for _, m in order:
        if not started:
            if not lex_gte(m, low):
                continue
            if not lex_lte(m, high):
                return []
            started = True
        if not lex_lte(m, high):
            break
        out.append(m)
    return out


def naive_lex_walk_reverse(order: list[tuple[float, bytes]], low: LexBound, high: LexBound) -> list[bytes]:
    """zzlLastInLexRange, then backward while >= min."""
    if not lex_range_possible(low, high) or not order:
        return []
    if not lex_gte(order[-1][1], low) or not lex_lte(order[0][1], high):
        return []
    out: list[bytes] = []
    started = False
    for _, m in reversed(order):
        if not started:
            if not lex_lte(m, high):
                continue
            if not lex_gte(m, low):
                return []
            started = True
        if not lex_gte(m, low):
            break
        out.append(m)
    return out


@settings(max_examples=400, deadline=None)
@given(ops, lex_bound, lex_bound, st.booleans())
def test_lex_spans_walk_as_redis_does(steps: list[Any], low: LexBound, high: LexBound, same_score: bool) -> None:
    zs, model = replay(steps)
    if same_score:  # the meaningful case: then the walk is a bisection
        zs, model = replay([("add", m, 1.0) for m in model])
    order = naive_order(model)
    start, stop = zs.lex_span(low, high)
    assert [m for _, m in zs.slice(start, stop)] == naive_lex_walk(order, low, high)
    start, stop = zs.lex_span_reverse(low, high)
    assert [m for _, m in zs.slice(start, stop)][::-1] == naive_lex_walk_reverse(order, low, high)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(-3, 12), st.integers(-3, 12))
def test_remove_ranks(steps: list[Any], start: int, stop: int) -> None:
    zs, model = replay(steps)
    order = naive_order(model)
    lo, hi = max(0, start), min(len(order), stop)
    removed = zs.remove_ranks(lo, hi)
    assert removed == max(0, hi - lo)
    assert [(s, m) for m, s in zs.items()] == order[:lo] + order[max(lo, hi):]


def test_a_listpack_set_stores_minus_zero_as_zero_a_skiplist_keeps_it() -> None:
    small = ZSet()
    small.add(b"m", -0.0)
    assert math.copysign(1.0, small.scores[b"m"]) == 1.0
    big = ZSet()
    big.skiplist = True
    big.add(b"m", -0.0)
    assert math.copysign(1.0, big.scores[b"m"]) == -1.0
