"""The transmit-limited gossip queue (vfsd.active.broadcast), after memberlist's."""

from __future__ import annotations

from vfsd.active.broadcast import TransmitQueue


def size1(key: object, value: object) -> int:
    return 1


def test_an_item_is_sent_exactly_limit_times_then_leaves() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("a", 1)
    sent = 0
    while q:
        sent += len(q.take(limit=4, budget_bytes=100, size_of=size1))
    assert sent == 4


def test_fewest_transmissions_first_then_newest_first() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("old", 0)
    q.take(10, 100, size1, transmits=2)
    q.push("a", 1)
    q.push("b", 2)
    q.push("c", 3)
    assert [k for k, _ in q.take(10, 2, size1)] == ["c", "b"]  # never sent, newest first
    assert q.fresh()
    assert [k for k, _ in q.take(10, 1, size1)] == ["a"]
    assert not q.fresh()
    # Sent once each now: the one waiting longest goes first, and "old" (sent twice) last.
    assert [k for k, _ in q.take(10, 3, size1)] == ["c", "b", "a"]
    assert [k for k, _ in q.take(10, 1, size1)] == ["old"]


def test_rewriting_a_key_coalesces_and_resets_its_count() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("k", 1)
    q.take(3, 100, size1)
    q.take(3, 100, size1)
    q.push("k", 2)  # a newer value: it needs every transmission again, and only it travels
    assert len(q) == 1
    out = []
    while q:
        out += q.take(3, 100, size1)
    assert out == [("k", 2)] * 3


def test_budget_and_oversize_items() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    for i in range(10):
        q.push(f"k{i}", i)
    assert len(q.take(10, 25, lambda k, v: 10)) == 2
    q2: TransmitQueue[str, int] = TransmitQueue()
    q2.push("huge", 0)
    assert q2.take(10, 5, lambda k, v: 50) == [("huge", 0)]  # larger than any budget: goes alone


def test_gone_items_are_dropped_and_transmits_count_per_peer() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("gone", 0)
    q.push("here", 1)
    assert q.take(9, 100, lambda k, v: None if k == "gone" else 1, transmits=3) == [("here", 1)]
    assert "gone" not in q
    assert q.where["here"] == 3
    q.take(9, 100, size1, transmits=3)
    q.take(9, 100, size1, transmits=3)
    assert not q


def test_the_queue_is_bounded_dropping_the_most_sent_and_oldest() -> None:
    q: TransmitQueue[str, int] = TransmitQueue(max_items=3)
    q.push("a", 0)
    q.push("b", 0)
    q.take(10, 1, size1)  # b sent once
    q.push("c", 0)
    q.push("d", 0)  # over the bound: b (sent most) goes
    assert set(q.where) == {"a", "c", "d"} and q.dropped == 1


def test_a_shrinking_limit_retires_items_past_it() -> None:
    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("a", 0)
    q.take(10, 100, size1, transmits=5)
    q.push("b", 0)
    assert q.take(4, 100, size1) == [("b", 0)]  # cluster shrank: a (5 sent) is done
    assert "a" not in q


def test_a_nearly_full_message_stops_looking_for_smaller_items_soon() -> None:
    from vfsd.active.broadcast import MAX_MISFITS

    q: TransmitQueue[str, int] = TransmitQueue()
    q.push("small", -1)  # the oldest: reached last (never-sent items go newest first)
    for i in range(1000):
        q.push(f"big{i}", i)
    asked: list[str] = []

    def size_of(key: str, value: int) -> int:
        asked.append(key)
        return 1 if key == "small" else 60

    taken = q.take(10, 100, size_of)
    assert len(taken) == 1  # one big item; the next does not fit
    assert len(asked) == 1 + MAX_MISFITS  # not a walk over the 999 others (each size_of reads a value)
    assert len(q) == 1001
