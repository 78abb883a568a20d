"""The hybrid logical clock (vfsd.active.hlc), after Kulkarni et al. 2014 ("Logical Physical Clocks").

A timestamp is ``physical_ms << 16 | logical``. The properties the active plane
relies on for last-writer-wins: every timestamp a node hands out is larger than
the one before (whatever its wall clock does), a receive is ordered after both
the node's own past and the message, and the physical part follows the wall
clock whenever the wall clock is ahead.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.active.hlc import HLC, LOGICAL_BITS, LOGICAL_MASK, pack, physical_ms


def logical(ts: int) -> int:
    return ts & LOGICAL_MASK


def test_pack_and_physical_round_trip() -> None:
    ts = pack(1_700_000_000_000, 7)
    assert physical_ms(ts) == 1_700_000_000_000
    assert logical(ts) == 7
    assert pack(5, 0) > pack(4, LOGICAL_MASK)  # timestamps compare as plain ints
    assert LOGICAL_BITS == 16


def test_now_follows_a_forward_moving_wall_clock() -> None:
    clock = HLC()
    for wall in (1000, 1001, 1005, 2000):
        ts = clock.now(wall)
        assert physical_ms(ts) == wall
        assert logical(ts) == 0


def test_now_counts_logically_when_the_wall_clock_stands_still() -> None:
    clock = HLC()
    stamps = [clock.now(1000) for _ in range(5)]
    assert stamps == [pack(1000, i) for i in range(5)]


def test_now_increases_when_the_wall_clock_goes_backwards() -> None:
    clock = HLC()
    a = clock.now(5000)
    b = clock.now(4000)  # NTP stepped the clock back
    c = clock.now(3000)
    assert a < b < c
    assert physical_ms(c) == 5000  # the physical part never goes back either
    d = clock.now(6000)  # and catches up once the wall clock passes it
    assert d == pack(6000, 0)


def test_update_is_after_the_remote_timestamp_from_a_clock_ahead() -> None:
    clock = HLC()
    clock.now(1000)
    remote = pack(9000, 3)
    ts = clock.update(remote, 1000)
    assert ts > remote
    assert ts == pack(9000, 4)
    assert clock.now(1001) > ts  # later local events stay after the receive


def test_update_from_a_clock_behind_uses_the_local_wall_clock() -> None:
    clock = HLC()
    clock.now(1000)
    assert clock.update(pack(10, 99), 2000) == pack(2000, 0)


def test_update_is_after_the_local_last_timestamp() -> None:
    clock = HLC()
    last = clock.now(5000)
    assert clock.update(pack(100, 0), 10) > last


def test_initial_last_is_respected() -> None:
    # A restarted node resumes after the last timestamp it persisted.
    clock = HLC(last=pack(8000, 2))
    assert clock.now(7000) == pack(8000, 3)


def test_logical_overflow_still_increases() -> None:
    clock = HLC(last=pack(1000, LOGICAL_MASK))
    ts = clock.now(1000)
    assert ts > pack(1000, LOGICAL_MASK)


events = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.integers(0, 10_000), st.just(0)),
        st.tuples(st.just("recv"), st.integers(0, 10_000),
                  st.builds(pack, st.integers(0, 12_000), st.integers(0, 1000))),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_any_sequence_of_events_is_strictly_increasing_and_causal(sequence: list[tuple[str, int, int]]) -> None:
    clock = HLC()
    previous = 0
    for kind, wall, remote in sequence:
        if kind == "now":
            ts = clock.now(wall)
        else:
            ts = clock.update(remote, wall)
            assert ts > remote
        assert ts > previous
        assert clock.last == ts
        # The physical part is the largest clock reading seen, local or remote.
        assert physical_ms(ts) >= wall
        expected_physical = max(wall, physical_ms(previous), physical_ms(remote) if kind == "recv" else 0)
        assert physical_ms(ts) == expected_physical
        if wall > physical_ms(previous) and (kind == "now" or wall > physical_ms(remote)):
            assert ts == pack(wall, 0)  # tracks the wall clock when it moves ahead
        previous = ts


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=2, max_size=40), st.lists(st.integers(0, 100), min_size=2, max_size=40))
def test_two_nodes_exchanging_messages_stay_ordered(walls_a: list[int], walls_b: list[int]) -> None:
    """A message's receive is after its send, across any two wall clocks (happened-before)."""
    a, b = HLC(), HLC()
    for wall_a, wall_b in zip(walls_a, walls_b):
        sent = a.now(wall_a)
        received = b.update(sent, wall_b)
        assert received > sent
        reply = b.now(wall_b)
        back = a.update(reply, wall_a)
        assert back > reply > received > sent
