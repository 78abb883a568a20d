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


# --- drift bound ---------------------------------------------------------------

def test_update_refuses_a_timestamp_beyond_the_drift_bound_and_leaves_the_clock_alone() -> None:
    clock = HLC(max_drift_ms=60_000)
    before = clock.now(1_000_000)
    far_future = pack(1_000_000 + 60_001, 0)
    assert clock.update(far_future, 1_000_000) is None
    assert clock.last == before  # not dragged forward
    assert clock.now(1_000_001) == pack(1_000_001, 0)


def test_update_accepts_a_timestamp_exactly_at_the_drift_bound() -> None:
    clock = HLC(max_drift_ms=60_000)
    edge = pack(1_000_000 + 60_000, 5)
    assert clock.update(edge, 1_000_000) == edge + 1
    assert clock.admits(edge, 1_000_000)
    assert not clock.admits(pack(1_060_001, 0), 1_000_000)
    assert clock.drift_ms(edge, 1_000_000) == 60_000


def test_timestamps_behind_are_never_refused() -> None:
    clock = HLC(max_drift_ms=1)
    assert clock.update(pack(5, 0), 10**9) == pack(10**9, 0)


def test_default_drift_bound_tolerates_minutes_of_skew() -> None:
    clock = HLC()
    wall = 1_700_000_000_000
    assert clock.update(pack(wall + 4 * 60_000, 0), wall) is not None
    assert clock.update(pack(wall + 10 * 60_000, 0), wall) is None


def test_bad_options_are_refused() -> None:
    import pytest

    with pytest.raises(ValueError):
        HLC(max_drift_ms=0)
    with pytest.raises(ValueError):
        HLC(reserve_ms=1)


# --- persisted high-water mark -------------------------------------------------

def test_high_water_mark_is_reserved_in_windows_not_per_timestamp() -> None:
    clock = HLC(reserve_ms=10_000)
    clock.now(1_000)
    assert clock.high_water_due() == 11_000  # first reservation
    persisted = [11_000]
    for wall in range(1_001, 6_000, 7):
        clock.now(wall)
        mark = clock.high_water_due()
        if mark is not None:
            persisted.append(mark)
    assert persisted == [11_000]  # 5 s of clock time fit in the first window's first half
    clock.now(6_001)  # within half a window of the mark: renew
    assert clock.high_water_due() == 16_001
    assert clock.high_water_due() is None


def test_a_jump_past_the_reserved_mark_is_reserved_at_once() -> None:
    clock = HLC(reserve_ms=10_000)
    clock.now(1_000)
    clock.high_water_due()
    clock.update(pack(200_000, 0), 1_000)  # a peer 199 s ahead, within the drift bound
    assert clock.high_water_due() == 210_000


def test_resumed_clock_is_above_everything_before_the_restart_even_with_a_clock_behind() -> None:
    before = HLC(reserve_ms=10_000)
    issued = [before.now(wall) for wall in (50_000, 50_000, 51_000)]
    mark = before.high_water_due()
    assert mark is not None
    issued += [before.now(wall) for wall in range(51_001, 55_000, 100)]
    assert before.high_water_due() is None  # still inside the reserved window
    after = HLC.resume(mark, reserve_ms=10_000)  # restarted with the wall clock an hour behind
    first = after.now(50_000 - 3_600_000)
    assert first > max(issued)
    assert after.reserved_ms == mark
    assert after.high_water_due() == physical_ms(first) + 10_000  # it re-reserves before sending


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100_000), st.booleans()), min_size=1, max_size=80),
       st.integers(2, 20_000), st.integers(-200_000, 200_000))
def test_every_sent_timestamp_stays_below_the_persisted_mark_and_resume_beats_it(
    steps: list[tuple[int, bool]], reserve_ms: int, restart_offset_ms: int
) -> None:
    """Model the shell's obligation: before sending, persist what high_water_due returns."""
    clock = HLC(reserve_ms=reserve_ms)
    persisted = -1
    sent: list[int] = []
    for wall, send in steps:
        ts = clock.now(wall)
        if send:
            mark = clock.high_water_due()
            if mark is not None:
                persisted = mark
            sent.append(ts)
            assert physical_ms(ts) <= persisted
    if persisted >= 0:
        resumed = HLC.resume(persisted, reserve_ms=reserve_ms)
        assert resumed.now(max(0, steps[-1][0] + restart_offset_ms)) > max(sent)
