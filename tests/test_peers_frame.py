"""The peer frame codec (vfsd.peers.frame): layout, registry, decoder, encoder.

As h11's tests do: frames fed whole, one byte at a time, split at every offset and
with trailing garbage; lengths refused from the header alone; the decoder never
raises and its verdict never depends on how the stream was cut (hypothesis,
against a naive whole-buffer reference decoder written here from the layout).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vfsd.active.wire  # noqa: F401  (declares the gossip family's message types)
from vfsd.peers.frame import (
    CLOSE,
    GOSSIP,
    HEADER_BYTES,
    HELLO,
    MAX_FRAME_BYTES_LIMIT,
    OPENING_FRAMES,
    PEER,
    PING,
    PONG,
    RAFT,
    REASONS,
    WIRE,
    Frame,
    FrameDecoder,
    FrameEncoder,
    LocalProtocolError,
    Registry,
    RemoteProtocolError,
    encode_frame,
)

REG = WIRE.copy()
APPEND = REG.message(RAFT, 60001, "test_append")  # numbers the real families will not reach
VOTE = REG.message(RAFT, 60002, "test_vote")
PUSH = REG.message(GOSSIP, 60001, "test_push")
KINDS = [(PEER, PING), (PEER, PONG), (RAFT, APPEND), (RAFT, VOTE), (GOSSIP, PUSH)]
MiB = 1024 * 1024


def frame(family: int, mtype: int, body: Any, version: int = 1) -> bytes:
    return encode_frame(family, mtype, body, registry=REG, version=version)


def header(length: int, version: int = 1, family: int = RAFT, mtype: int = APPEND) -> bytes:
    return struct.pack(">IBBH", length, version, family, mtype)


def decoder(max_frame_bytes: int = MiB, first: frozenset[tuple[int, int]] | None = None) -> FrameDecoder:
    return FrameDecoder(max_frame_bytes=max_frame_bytes, registry=REG, first=first)


def feed_in(pieces: list[bytes], dec: FrameDecoder | None = None) -> tuple[list[Frame], str | None]:
    dec = dec or decoder()
    out: list[Frame] = []
    for piece in pieces:
        out += dec.feed(piece)
    return out, dec.error.reason if dec.error else None


SAMPLE = [
    (RAFT, APPEND, {"term": 3, "entries": [b"\x00" * 300, b"x"], "commit": 2**63}),
    (PEER, PING, 12345),
    (GOSSIP, PUSH, ["/hw/n1/cpu", {"k": "v"}, None, True, -1.5]),
    (RAFT, VOTE, {"term": 4, "candidate": "n2", "last": [7, 3]}),
    (PEER, PONG, None),
]
STREAM = b"".join(frame(*f) for f in SAMPLE)


def expected(frames: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    return [(f, t, msgpack.unpackb(msgpack.packb(b, use_bin_type=True), raw=False)) for f, t, b in frames]


def triples(frames: list[Frame]) -> list[tuple[int, int, Any]]:
    return [(f.family, f.type, f.body) for f in frames]


# --- whole, byte by byte, every split -------------------------------------------


def test_frames_fed_whole_come_back_with_their_sizes() -> None:
    frames, error = feed_in([STREAM])
    assert error is None
    assert triples(frames) == expected(SAMPLE)
    assert [f.size for f in frames] == [len(frame(*f)) for f in SAMPLE]
    assert sum(f.size for f in frames) == len(STREAM)


def test_frames_fed_one_byte_at_a_time() -> None:
    frames, error = feed_in([STREAM[i:i + 1] for i in range(len(STREAM))])
    assert error is None and triples(frames) == expected(SAMPLE)


def test_frames_split_at_every_offset() -> None:
    for cut in range(len(STREAM) + 1):
        frames, error = feed_in([STREAM[:cut], STREAM[cut:]])
        assert error is None and triples(frames) == expected(SAMPLE), cut


def test_input_may_be_bytearray_or_memoryview_and_is_not_kept() -> None:
    data = bytearray(STREAM + STREAM[:5])
    dec = decoder()
    frames = dec.feed(memoryview(data))
    data[:] = b"\xff" * len(data)  # the caller reuses its buffer: the decoder copied what it kept
    frames += dec.feed(STREAM[5:])
    assert dec.error is None and triples(frames) == expected(SAMPLE) * 2


def test_an_unfinished_frame_waits_without_error() -> None:
    dec = decoder()
    assert dec.feed(STREAM[:-1]) and dec.error is None
    assert dec.buffered_bytes == len(frame(*SAMPLE[-1])) - 1
    assert triples(dec.feed(STREAM[-1:])) == expected(SAMPLE[-1:])
    assert dec.buffered_bytes == 0


def test_max_frames_leaves_the_rest_buffered() -> None:
    dec = decoder()
    assert triples(dec.feed(STREAM, max_frames=1)) == expected(SAMPLE[:1])
    assert triples(dec.feed(b"", max_frames=2)) == expected(SAMPLE[1:3])
    assert triples(dec.feed(b"")) == expected(SAMPLE[3:])


# --- trailing garbage and bad headers -------------------------------------------


@pytest.mark.parametrize(("garbage", "reason"), [
    (b"\xff" * 8, "version"),
    (header(5, version=0), "version"),
    (header(1, family=9), "unknown_family"),
    (header(1, family=PEER, mtype=999), "unknown_type"),
    (header(1, family=RAFT, mtype=77), "unknown_type"),
    (header(MiB), "oversize"),
    (header(1) + b"\xc1", "bad_body"),  # 0xc1 is never used in msgpack
])
def test_trailing_garbage_keeps_the_good_frames_and_names_the_fault(garbage: bytes, reason: str) -> None:
    for pieces in ([STREAM + garbage], [STREAM[i:i + 1] for i in range(len(STREAM))] + [garbage]):
        dec = decoder()
        frames, error = feed_in(pieces, dec)
        assert triples(frames) == expected(SAMPLE)
        assert error == reason
        assert isinstance(dec.error, RemoteProtocolError) and str(dec.error)
        assert dec.feed(STREAM) == []  # a failed decoder stays failed
        assert dec.buffered_bytes == 0


def test_oversize_length_is_refused_from_the_header_before_any_body_is_buffered() -> None:
    dec = decoder(max_frame_bytes=MiB)
    assert dec.feed(header(0xFFFFFFFF)) == []  # "4 GB follow": nothing is allocated for them
    assert dec.error is not None and dec.error.reason == "oversize"
    assert "4294967303" in str(dec.error)
    assert dec.buffered_bytes == 0


def test_the_limit_counts_the_header_and_is_exact() -> None:
    body = msgpack.packb(b"x" * 1000, use_bin_type=True)
    limit = HEADER_BYTES + len(body)
    exact = header(len(body)) + body
    assert triples(feed_in([exact], decoder(max_frame_bytes=limit))[0]) == [(RAFT, APPEND, b"x" * 1000)]
    assert feed_in([exact[:HEADER_BYTES]], decoder(max_frame_bytes=limit - 1)) == ([], "oversize")


def test_the_limit_may_rise_between_feeds() -> None:
    dec = decoder(max_frame_bytes=100)
    big = frame(RAFT, APPEND, b"y" * 500)
    dec.max_frame_bytes = 1000
    assert triples(dec.feed(big)) == [(RAFT, APPEND, b"y" * 500)]


@pytest.mark.parametrize(("body", "what"), [
    (b"", "empty body"),
    (msgpack.packb(1) + msgpack.packb(2), "two objects"),
    (b"\x92\x01", "truncated array"),
    (b"\xa2\xff\xfe", "invalid UTF-8 in a str"),
    (msgpack.packb(msgpack.ExtType(5, b"pickle?")), "an extension type"),
    (b"\x91" * 5000 + b"\xc0", "nesting deeper than msgpack's stack"),
    (b"\xdd\xff\xff\xff\xff", "an array header announcing 4G elements"),
])
def test_a_body_that_is_not_one_plain_msgpack_object_is_refused(body: bytes, what: str) -> None:
    frames, error = feed_in([header(len(body)) + body])
    assert (frames, error) == ([], "bad_body"), what


def test_the_first_frame_must_be_hello_or_close() -> None:
    hello = frame(PEER, HELLO, {"node_id": "n1"})
    assert triples(feed_in([hello + STREAM], decoder(first=OPENING_FRAMES))[0])[0] == (PEER, HELLO, {"node_id": "n1"})
    for stray in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"*1\r\n$4\r\nPING\r\n", frame(PEER, PING, 1), STREAM):
        assert feed_in([stray], decoder(first=OPENING_FRAMES)) == ([], "garbage"), stray
    refused = frame(PEER, CLOSE, {"reason": "protected"})
    assert triples(feed_in([refused], decoder(first=OPENING_FRAMES))[0]) == [(PEER, CLOSE, {"reason": "protected"})]
    # A HELLO of another version is a version problem, not garbage (the invariant that lets a newer peer be told).
    assert feed_in([frame(PEER, HELLO, {}, version=2)], decoder(first=OPENING_FRAMES)) == ([], "version")


def test_every_reason_has_a_description() -> None:
    assert all(isinstance(text, str) and text for text in REASONS.values())
    with pytest.raises(AssertionError):
        RemoteProtocolError("no such reason", "x")


# --- encoder ----------------------------------------------------------------------


def test_encoder_refuses_undeclared_families_and_types_and_oversize_frames() -> None:
    enc = FrameEncoder(REG)
    assert enc.encode(RAFT, APPEND, [1, 2]) == frame(RAFT, APPEND, [1, 2])
    with pytest.raises(LocalProtocolError) as exc:
        enc.encode(9, 1, None)
    assert exc.value.reason == "unknown_family"
    with pytest.raises(LocalProtocolError) as exc:
        enc.encode(RAFT, 99, None)
    assert exc.value.reason == "unknown_type"
    with pytest.raises(LocalProtocolError) as exc:
        enc.encode(RAFT, APPEND, b"z" * 100, max_frame_bytes=50)
    assert exc.value.reason == "oversize"
    for bad in (object(), 2**64, {"k": {1, 2}}):
        with pytest.raises(LocalProtocolError) as exc:
            enc.encode(RAFT, APPEND, bad)
        assert exc.value.reason == "bad_body"
    with pytest.raises(LocalProtocolError):
        encode_frame(RAFT, APPEND, object(), registry=REG)


def test_decoder_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_bytes=HEADER_BYTES)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES_LIMIT + 1)


# --- registry ------------------------------------------------------------------------

#: The wire registry as released. Append to it; never change a line (a peer of another
#: version would read a number with another meaning).
PINNED_WIRE = [
    (0, "peer", 1, "hello"),
    (0, "peer", 2, "auth"),
    (0, "peer", 3, "close"),
    (0, "peer", 4, "ping"),
    (0, "peer", 5, "pong"),
    (2, "gossip", 1, "ping"),
    (2, "gossip", 2, "ack"),
    (2, "gossip", 3, "ping_req"),
    (2, "gossip", 4, "nack"),
    (2, "gossip", 5, "gossip"),
    (2, "gossip", 6, "sync_open"),
    (2, "gossip", 7, "sync_reply"),
    (2, "gossip", 8, "sync_descend"),
    (2, "gossip", 9, "sync_tree"),
    (2, "gossip", 10, "sync_versions"),
    (2, "gossip", 11, "sync_records"),
    (2, "gossip", 12, "records"),
    (2, "gossip", 13, "split"),
]
PINNED_FAMILIES = {0: "peer", 1: "raft", 2: "gossip"}


def test_the_wire_registry_only_ever_grows() -> None:
    assert set(PINNED_WIRE) <= set(WIRE.listing())
    families = WIRE.families()
    assert {code: families[code] for code in PINNED_FAMILIES} == PINNED_FAMILIES
    assert (PEER, HELLO, CLOSE) == (0, 1, 3)


def test_registry_numbers_keep_their_meaning() -> None:
    reg = Registry()
    fam = reg.family(7, "test")
    assert reg.message(fam, 1, "one") == 1
    assert reg.message(fam, 1, "one") == 1  # declaring the same again is harmless
    with pytest.raises(ValueError, match="never reused"):
        reg.message(fam, 1, "uno")
    with pytest.raises(ValueError, match="already"):
        reg.message(fam, 2, "one")
    with pytest.raises(ValueError):
        reg.family(7, "other")
    with pytest.raises(ValueError):
        reg.message(8, 1, "x")  # undeclared family
    with pytest.raises(ValueError):
        reg.family(256, "big")
    with pytest.raises(ValueError):
        reg.message(fam, 65536, "big")
    assert reg.knows(fam, 1) and not reg.knows(fam, 2) and not reg.knows(9, 1)
    assert reg.type_name(fam, 1) == "one" and reg.type_name(fam, 5) == "type-5"
    copy = reg.copy()
    copy.message(fam, 2, "two")
    assert not reg.knows(fam, 2)


# --- properties -----------------------------------------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
frames_st = st.lists(st.tuples(st.sampled_from(KINDS), plain), max_size=8)
#: Frames whose bodies are cheap to generate, where the body is not the point.
simple_frames = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=60)), max_size=4)


def no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code}")


def reference_decode(stream: bytes, max_frame_bytes: int) -> tuple[list[tuple[int, int, Any]], str | None]:
    """The layout read naively, whole stream at once (the definition the decoder must match)."""
    out = []
    pos = 0
    while len(stream) - pos >= 8:
        length, version, family, mtype = struct.unpack(">IBBH", stream[pos:pos + 8])
        if version != 1:
            return out, "version"
        if family not in REG.families():
            return out, "unknown_family"
        if not REG.knows(family, mtype):
            return out, "unknown_type"
        if 8 + length > max_frame_bytes:
            return out, "oversize"
        if pos + 8 + length > len(stream):
            return out, None
        try:
            body = msgpack.unpackb(stream[pos + 8:pos + 8 + length], raw=False, strict_map_key=False,
                                   ext_hook=no_extensions)
        except Exception:
            return out, "bad_body"
        out.append((family, mtype, body))
        pos += 8 + length
    return out, None


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=100, deadline=None)
@given(frames_st, st.lists(st.integers(0, 10**6), max_size=6))
def test_round_trip_whatever_the_cuts(frames: list[tuple[tuple[int, int], Any]], points: list[int]) -> None:
    stream = b"".join(frame(f, t, body) for (f, t), body in frames)
    decoded, error = feed_in(cut(stream, points))
    want = [(f, t, msgpack.unpackb(msgpack.packb(b, use_bin_type=True), raw=False, strict_map_key=False))
            for (f, t), b in frames]
    assert error is None
    assert triples(decoded) == want


#: After the good frames: random bytes, or a header of random fields (often plausible) and random bytes.
tails = st.binary(max_size=40) | st.builds(
    lambda length, version, family, mtype, rest: struct.pack(">IBBH", length, version, family, mtype) + rest,
    st.integers(0, 400) | st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 1, 1, 2]), st.integers(0, 4),
    st.integers(0, 6), st.binary(max_size=40))


@settings(max_examples=200, deadline=None)
@given(simple_frames, tails, st.lists(st.integers(0, 10**6), max_size=6),
       st.sampled_from([64, 300, MiB]))
def test_any_bytes_give_the_reference_verdict_whatever_the_cuts(
        frames: list[tuple[tuple[int, int], Any]], tail: bytes, points: list[int], limit: int) -> None:
    stream = b"".join(frame(f, t, body) for (f, t), body in frames) + tail
    want = reference_decode(stream, limit)
    got, error = feed_in(cut(stream, points), decoder(max_frame_bytes=limit))  # never raises
    assert (triples(got), error) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**63 - 1), max_size=20), st.lists(st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(),
                                                                              st.text(), st.lists(st.binary())),
                                                                    max_size=20))
def test_a_body_joined_from_a_shared_packed_tail_is_the_body_encoded_whole(head: list[int], fields: list[Any]) -> None:
    enc = FrameEncoder(REG)
    joined = enc.encode_joined(RAFT, APPEND, head, enc.pack_fields(fields), len(fields))
    assert joined == enc.encode(RAFT, APPEND, [*head, *fields])
    assert FrameDecoder(max_frame_bytes=MAX_FRAME_BYTES_LIMIT, registry=REG).feed(joined)[0].body == [*head, *fields]


def test_a_joined_body_is_checked_like_any_other() -> None:
    enc = FrameEncoder(REG)
    with pytest.raises(LocalProtocolError) as exc:
        enc.encode_joined(RAFT, APPEND, [1], enc.pack_fields([b"z" * 100]), 1, max_frame_bytes=50)
    assert exc.value.reason == "oversize"
    with pytest.raises(LocalProtocolError) as exc:
        enc.encode_joined(RAFT, 99, [1], b"", 0)
    assert exc.value.reason == "unknown_type"
    with pytest.raises(LocalProtocolError) as exc:
        enc.pack_fields([object()])
    assert exc.value.reason == "bad_body"
