"""The linearizability checker (vfsd.sim.linearizability) on known histories, against a
brute-force reference on small generated ones, and on large ones for speed."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.sim.linearizability import UNKNOWN, History, Operation, _step, check_history, check_key

INF = math.inf


def op(client: str, kind: str, args: tuple[Any, ...], result: Any, call: float, ret: float, key: str = "x") -> Operation:
    return Operation(client, key, kind, args, result, call, ret)


def w(client: str, value: Any, call: float, ret: float, key: str = "x") -> Operation:
    return op(client, "set", (value,), None, call, ret, key)


def r(client: str, value: Any, call: float, ret: float, key: str = "x") -> Operation:
    return op(client, "get", (), value, call, ret, key)


def cas(client: str, old: Any, new: Any, swapped: Any, call: float, ret: float, key: str = "x") -> Operation:
    return op(client, "cas", (old, new), swapped, call, ret, key)


GOOD = {
    "empty": [],
    "read of the initial value": [r("a", None, 0, 1)],
    "sequential write then read": [w("a", 1, 0, 1), r("b", 1, 2, 3)],
    "concurrent read sees the old value": [w("a", 1, 0, 10), r("b", None, 1, 2)],
    "concurrent read sees the new value": [w("a", 1, 0, 10), r("b", 1, 1, 2)],
    "two reads straddle a concurrent write": [w("a", 1, 0, 10), r("b", None, 1, 2), r("c", 1, 3, 4)],
    "concurrent writes in either order": [w("a", 1, 0, 5), w("b", 2, 0, 5), r("c", 1, 6, 7)],
    "cas succeeds once of two": [w("a", 0, 0, 1), cas("b", 0, 1, True, 2, 5), cas("c", 0, 2, False, 2, 5),
                                 r("d", 1, 6, 7)],
    "touching intervals are concurrent": [w("a", 1, 0, 5), r("b", None, 5, 6)],
    "an unknown write may take effect late": [w("a", 1, 0, INF), r("b", None, 1, 2), r("c", 1, 3, 4)],
    "an unknown write may never take effect": [w("a", 1, 0, INF), r("b", None, 100, 101)],
    "unknown cas": [w("a", 0, 0, 1), cas("b", 0, 5, UNKNOWN, 2, INF), r("c", 5, 10, 11)],
    "independent keys": [w("a", 1, 0, 1, "x"), r("b", None, 2, 3, "y"), r("c", 1, 2, 3, "x")],
}

BAD = {
    "stale read after a completed write": [w("a", 1, 0, 1), r("b", None, 2, 3)],
    "read of a value never written": [r("a", 7, 0, 1)],
    "reads go back in time": [w("a", 1, 0, 1), w("a", 2, 2, 3), r("b", 2, 4, 5), r("c", 1, 6, 7)],
    "both cas succeed": [w("a", 0, 0, 1), cas("b", 0, 1, True, 2, 5), cas("c", 0, 2, True, 2, 5)],
    "cas fails though the value matched": [w("a", 0, 0, 1), cas("b", 0, 1, False, 2, 3), r("c", 0, 4, 5)],
    "lost update": [w("a", 1, 0, 1), cas("b", 1, 2, True, 2, 3), cas("c", 1, 3, True, 4, 5)],
    "non-monotonic concurrent reads": [w("a", 1, 0, 10), r("b", 1, 1, 2), r("c", None, 3, 4)],
    "one bad key spoils the history": [w("a", 1, 0, 1, "x"), w("a", 1, 0, 1, "y"), r("b", None, 2, 3, "y")],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_linearizable_histories_pass(name: str) -> None:
    result = check_history(GOOD[name])
    assert result.ok is True, result.explain()


@pytest.mark.parametrize("name", sorted(BAD))
def test_non_linearizable_histories_fail_and_say_why(name: str) -> None:
    result = check_history(BAD[name])
    assert result.ok is False
    (bad,) = result.failures
    text = bad.explain()
    assert "not linearizable" in text and bad.stuck, text


def test_the_explanation_names_the_operation_that_cannot_be_placed() -> None:
    result = check_key([w("a", 1, 0, 1), r("b", None, 2, 3)])
    assert [o.client for o in result.longest_prefix] == ["a"]
    assert "b" in {o.client for o in result.stuck}


def test_the_step_budget_gives_undecided_not_a_wrong_answer() -> None:
    ops = [w(f"c{i}", i, 0, 100) for i in range(12)] + [r("z", 99, 101, 102)]
    result = check_key(ops, max_steps=50)
    assert result.ok is None and "undecided" in result.explain()


def test_operations_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="unknown register operation"):
        op("a", "incr", (), None, 0, 1)
    with pytest.raises(ValueError, match="returns"):
        w("a", 1, 5, 4)


def test_the_history_recorder_keeps_known_drops_failed_and_marks_open_unknown() -> None:
    h = History()
    a = h.invoke("a", "x", "set", 1, time=0)
    b = h.invoke("b", "x", "set", 2, time=0)
    c = h.invoke("c", "x", "get", time=1)
    h.ok(a, time=2)
    h.fail(b)
    ops = h.operations()
    assert [(o.client, o.ret) for o in ops] == [("a", 2), ("c", INF)]
    assert not h.is_open(c) and ops[1].result is UNKNOWN


# -- against a brute-force reference --------------------------------------------------


def brute_force(ops: list[Operation], initial: Any = None) -> bool:
    """Try every order that respects real time (a before b when a returned before b was
    called); operations of unknown outcome may also be left out."""
    known = [o for o in ops if o.ret != INF]
    unknown = [o for o in ops if o.ret == INF and not (o.op == "get")]
    for k in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, k):
            pool = known + list(chosen)
            for order in itertools.permutations(pool):
                if any(order[j].ret < order[i].call for i in range(len(order)) for j in range(i + 1, len(order))):
                    continue
                state, ok = initial, True
                for o in order:
                    ok, state = _step(state, o)
                    if not ok:
                        break
                if ok:
                    return True
    return False


@st.composite
def small_histories(draw: Any) -> list[Operation]:
    n = draw(st.integers(1, 6))
    ops = []
    for i in range(n):
        call = draw(st.integers(0, 10))
        ret = INF if draw(st.integers(0, 9)) == 0 else call + draw(st.integers(0, 6))
        kind = draw(st.sampled_from(["get", "set", "cas"]))
        value = draw(st.sampled_from([None, 1, 2]))
        if kind == "get":
            ops.append(r(f"c{i}", UNKNOWN if ret == INF else value, call, ret))
        elif kind == "set":
            ops.append(w(f"c{i}", draw(st.sampled_from([1, 2])), call, ret))
        else:
            swapped = UNKNOWN if ret == INF else draw(st.booleans())
            ops.append(cas(f"c{i}", value, draw(st.sampled_from([1, 2])), swapped, call, ret))
    return ops


@settings(max_examples=200, deadline=None)
@given(small_histories())
def test_the_checker_agrees_with_brute_force(ops: list[Operation]) -> None:
    assert check_key(ops).ok is brute_force(ops)


# -- generated histories, at the scale of a real cluster test ----------------------------


def generate(seed: int, clients: int, per_client: int, *, corrupt: bool = False) -> list[Operation]:
    """A linearizable history by construction: each operation takes effect at a random
    instant inside its interval, against a real register. ``corrupt`` then makes one
    read return a value that was overwritten long before it started."""
    rng = random.Random(seed)
    events = []
    for c in range(clients):
        t = rng.uniform(0, 5)
        for _ in range(per_client):
            call = t
            ret = call + rng.uniform(0.5, 10)
            point = rng.uniform(call, ret)
            events.append((point, c, call, ret))
            t = ret + rng.uniform(0, 3)
    events.sort()
    state: Any = None
    ops = []
    for n, (_, c, call, ret) in enumerate(events):
        roll = rng.random()
        if roll < 0.4:
            state = n
            ops.append(w(f"c{c}", n, call, ret))
        elif roll < 0.6:
            expected = state if rng.random() < 0.5 else -1
            swapped = state == expected
            if swapped:
                state = n
            ops.append(cas(f"c{c}", expected, n, swapped, call, ret))
        else:
            ops.append(r(f"c{c}", state, call, ret))
    if corrupt:
        writes = [o for o in ops if o.op == "set"]
        first = min(writes, key=lambda o: o.ret)
        # Reads that start after another write began and finished after the first one.
        overwritten_by = min(x.ret for x in writes if x.call > first.ret)
        later_reads = [o for o in ops if o.op == "get" and o.result != first.args[0] and o.call > overwritten_by]
        victim = later_reads[len(later_reads) // 2]
        ops[ops.index(victim)] = r(victim.client, first.args[0], victim.call, victim.ret)
    return ops


@pytest.mark.parametrize("seed", range(5))
def test_generated_linearizable_histories_pass_and_corrupted_ones_fail(seed: int) -> None:
    assert check_history(generate(seed, clients=6, per_client=40)).ok is True
    assert check_history(generate(seed, clients=6, per_client=40, corrupt=True)).ok is False


def test_a_few_thousand_operations_on_one_key_check_quickly() -> None:
    """The size of a real cluster run: 10 concurrent clients, 3,000 operations on one key.
    The search is bounded in steps (not time) so the test cannot flake on a slow machine:
    a few hundred list steps per operation (about 1 s for each history here)."""
    ops = generate(11, clients=10, per_client=300)
    result = check_key(ops, max_steps=250 * len(ops))
    assert result.ok is True, result.explain()
    corrupted = generate(11, clients=10, per_client=150, corrupt=True)
    bad = check_key(corrupted, max_steps=600 * len(corrupted))
    assert bad.ok is False
