"""The blocked-keys registry (vfsd.store.blocked): FIFO per key, ready keys in signal order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.store.blocked import BlockedKeys


class W:
    def __init__(self, seq: int) -> None:
        self.seq = seq

    def __repr__(self) -> str:
        return f"W{self.seq}"


def test_waiters_come_out_first_come_first_served_and_return_to_their_place() -> None:
    reg = BlockedKeys()
    a, b, c = W(1), W(2), W(3)
    for w in (a, b, c):
        reg.add(w, [b"k", b"k"])  # a key named twice counts once
    assert reg.waiting_on(b"k") == [a, b, c]
    reg.remove(a)
    reg.add(a, [b"k"])  # put back after a lost race: still first
    assert reg.waiting_on(b"k") == [a, b, c]
    reg.remove(b)
    assert reg.waiting_on(b"k") == [a, c] and b not in reg and len(reg) == 2


def test_ready_keys_in_signal_order_only_for_keys_with_waiters() -> None:
    reg = BlockedKeys()
    reg.add(W(1), [b"x", b"y"])
    reg.signal(b"nobody-waits")
    reg.signal(b"y")
    reg.signal(b"x")
    reg.signal(b"y")
    assert [reg.pop_ready(), reg.pop_ready(), reg.pop_ready()] == [b"y", b"x", None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 6),
                          st.lists(st.sampled_from([b"a", b"b", b"c"]), min_size=1, max_size=3)), max_size=40))
def test_registry_matches_a_naive_model(ops: list[tuple[str, int, list[bytes]]]) -> None:
    reg = BlockedKeys()
    waiters = {i: W(i) for i in range(7)}
    model: dict[int, set[bytes]] = {}
    for op, i, keys in ops:
        if op == "add" and i not in model:
            reg.add(waiters[i], keys)
            model[i] = set(keys)
        elif op == "remove":
            reg.remove(waiters[i])
            model.pop(i, None)
    for key in (b"a", b"b", b"c"):
        assert [w.seq for w in reg.waiting_on(key)] == sorted(i for i, ks in model.items() if key in ks)
    assert len(reg) == len(model)
    assert set(reg.by_key) == {k for ks in model.values() for k in ks}
