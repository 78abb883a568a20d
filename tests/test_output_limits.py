"""client-output-buffer-limit: Redis's syntax and error texts, CONFIG SET's per-class update, the soft clock."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfsd.resp.output_limits import DEFAULT, ClassLimit, LimitClock, OutputLimitError, OutputLimits, parse_memory
from vfsd.resp.pushes import SPLIT_BYTES, PatternTail, channel_message, encoded_message, pattern_message


def test_defaults_print_as_config_get_shows_them() -> None:
    # Redis 7's order and names; pubsub and slave are Redis's defaults, normal is vfsd's bounded one.
    assert DEFAULT.format() == "normal 1073741824 67108864 60 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def test_a_value_naming_some_classes_changes_only_those() -> None:
    limits = DEFAULT.updated("pubsub 1k 2kb 3")
    assert limits.pubsub == ClassLimit(1000, 2048, 3)
    assert limits.normal == DEFAULT.normal and limits.replica == DEFAULT.replica
    assert DEFAULT.updated("replica 1 2 3").replica == DEFAULT.updated("SLAVE 1 2 3").replica == ClassLimit(1, 2, 3)
    assert DEFAULT.updated("normal 0 0 0").normal.check_at_bytes == float("inf")
    assert DEFAULT.updated("") == DEFAULT  # Redis accepts an empty value and changes nothing


@pytest.mark.parametrize(("text", "error"), [
    ("wrong number", "Wrong number of arguments in buffer limit configuration."),
    ("normal 1 2", "Wrong number of arguments in buffer limit configuration."),
    ("invalid_class 10mb 10mb 60", "Invalid client class specified in buffer limit configuration."),
    ("master 10mb 10mb 60", "Invalid client class specified in buffer limit configuration."),
    ("normal 10mbs 10mb 60", "Error in hard, soft or soft_seconds setting in buffer limit configuration."),
    ("normal 10mb -1 60", "Error in hard, soft or soft_seconds setting in buffer limit configuration."),
    ("normal 10mb 10mb 6x", "Error in hard, soft or soft_seconds setting in buffer limit configuration."),
])
def test_malformed_values_get_redis_error_texts(text: str, error: str) -> None:
    with pytest.raises(OutputLimitError) as caught:
        DEFAULT.updated(text)
    assert str(caught.value) == error


@given(st.integers(0, 2**40), st.sampled_from(["", "b", "k", "kb", "m", "mb", "g", "gb"]))
def test_memory_units_are_redis_memtoll(number: int, unit: str) -> None:
    factor = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}[unit]
    assert parse_memory(f"{number}{unit.upper() if number % 2 else unit}") == number * factor


def test_format_parses_back_to_the_same_limits() -> None:
    limits = OutputLimits.parse("normal 5 6 7 pubsub 8 9 10")
    assert OutputLimits.parse(limits.format()) == limits


def test_hard_limit_at_once_soft_only_after_its_seconds() -> None:
    limit = ClassLimit(hard_bytes=1000, soft_bytes=100, soft_seconds=2)
    clock = LimitClock()
    assert limit.verdict(99, 0, clock) is None
    assert limit.verdict(100, 10, clock) is None and clock.soft_since_ms == 10  # the clock starts
    assert limit.verdict(500, 2010, clock) is None  # exactly 2 s: not more than soft-seconds yet
    assert limit.verdict(500, 2011, clock) == "soft"
    assert limit.verdict(1000, 0, LimitClock()) == "hard"  # Redis: >= hard
    clock = LimitClock()
    limit.verdict(150, 0, clock)
    assert limit.verdict(50, 1000, clock) is None and clock.soft_since_ms is None  # dipped below: starts over
    assert limit.verdict(150, 5000, clock) is None


def test_zero_means_no_limit() -> None:
    none = ClassLimit(0, 0, 0)
    assert none.verdict(10**12, 10**9, LimitClock()) is None


# -- pushes encoded once ----------------------------------------------------------------


def _decode(frame: tuple[tuple[bytes, ...], int]) -> object:
    pieces, size = frame
    wire = b"".join(pieces)
    assert len(wire) == size
    reader = hiredis.Reader()
    reader.feed(wire)
    reply = reader.gets()
    assert reader.gets() is False  # exactly one message
    return reply


@pytest.mark.parametrize("payload_bytes", [0, 5, SPLIT_BYTES, SPLIT_BYTES + 1, 200_000])
def test_messages_decode_to_their_parts_in_both_protocols(payload_bytes: int) -> None:
    payload = b"p" * payload_bytes
    message = channel_message(b"message", b"news", payload)
    assert message == [b"message", b"news", payload]
    for proto in (2, 3):
        assert _decode(message.frames[proto]) == [b"message", b"news", payload]
    tail = PatternTail(b"__keyspace@0__:/ctx/a", payload)
    pmessage = pattern_message(b"__keyspace@0__:/ctx/*", tail)
    for proto in (2, 3):
        assert _decode(pmessage.frames[proto]) == [b"pmessage", b"__keyspace@0__:/ctx/*", tail.channel, payload]
    if payload_bytes > SPLIT_BYTES:  # the payload is referenced, not copied into the frame
        assert any(piece is payload for piece in message.frames[2][0])
        assert any(piece is payload for piece in pmessage.frames[3][0])
    assert message.frames[2][0][0][:1] == b"*" and message.frames[3][0][0][:1] == b">"


def test_any_push_is_encoded_once_per_protocol() -> None:
    parts = [b"vfs.event", b"/ctx/*", 7, b"n1", [[b"/ctx/a", b"set", b"v"], [b"/ctx/b", b"del", None]]]
    message = encoded_message(parts)
    assert _decode(message.frames[2]) == parts
    assert _decode(message.frames[3]) == parts
    assert message.frames[2][0][0].endswith(b"$-1\r\n") and message.frames[3][0][0].endswith(b"_\r\n")
