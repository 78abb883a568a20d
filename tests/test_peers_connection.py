"""The pure parts of a peer connection: HELLO, authentication, the connection state
machine, reconnect backoff. No sockets: two ``PeerConnection`` objects are wired
back to back and driven with explicit bytes and an explicit clock.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.peers.auth import Authenticator, NoAuth, SharedSecretAuth
from vfsd.peers.backoff import Backoff
from vfsd.peers.connection import PeerConnection
from vfsd.peers.counters import PeerCounters
from vfsd.peers.frame import (
    AUTH,
    CLOSE,
    HANDSHAKE_MAX_FRAME_BYTES,
    HELLO,
    PEER,
    PING,
    PONG,
    RAFT,
    REASONS,
    WIRE,
    FrameDecoder,
    RemoteProtocolError,
    encode_frame,
)
from vfsd.peers.hello import Hello, transcript

REG = WIRE.copy()
APPEND = REG.message(RAFT, 60001, "test_append")  # a number the real families will not reach
MiB = 1024 * 1024
TIMEOUTS = {"handshake_timeout_ms": 1000, "idle_timeout_ms": 3000, "keepalive_interval_ms": 1000}


def hello(node: str, auth: str = "none", *, cluster: str = "c1", nonce: bytes | None = None,
          max_frame_bytes: int = MiB, boot_id: int = 1) -> Hello:
    return Hello(version=1, cluster_id=cluster, node_id=node, member_id=f"{node}-m1", address=f"127.0.0.1:{len(node)}",
                 boot_id=boot_id, max_frame_bytes=max_frame_bytes, auth=auth,
                 nonce=nonce or (node.encode() * 16)[:16])


def conn(node: str, authenticator: Authenticator | None = None, now_ms: float = 0, **kwargs: Any) -> PeerConnection:
    authenticator = authenticator or NoAuth()
    h = kwargs.pop("hello", None) or hello(node, authenticator.scheme, **{
        k: kwargs.pop(k) for k in ("cluster", "nonce", "max_frame_bytes", "boot_id") if k in kwargs})
    return PeerConnection(h, authenticator, now_ms=now_ms, registry=REG, counters=PeerCounters(REG),
                          **{**TIMEOUTS, **kwargs})


def pump(a: PeerConnection, b: PeerConnection, now_ms: float = 1, rounds: int = 4) -> tuple[list[Any], list[Any]]:
    """Carry bytes both ways until quiet; the messages each side received."""
    got_a: list[Any] = []
    got_b: list[Any] = []
    for _ in range(rounds):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_a and not to_b:
            break
        got_b += b.feed(to_b, now_ms) if to_b else []
        got_a += a.feed(to_a, now_ms) if to_a else []
    return got_a, got_b


def message(body: Any) -> bytes:
    return encode_frame(RAFT, APPEND, body, registry=REG)


def decode_all(data: bytes) -> list[tuple[int, int, Any]]:
    dec = FrameDecoder(max_frame_bytes=MiB, registry=REG)
    frames = dec.feed(data)
    assert dec.error is None
    return [(f.family, f.type, f.body) for f in frames]


# --- handshake -----------------------------------------------------------------------


@pytest.mark.parametrize("auth", [NoAuth(), SharedSecretAuth(b"s3cret")], ids=["none", "hmac"])
def test_handshake_opens_both_sides_and_then_messages_flow(auth: Authenticator) -> None:
    a, b = conn("a", auth), conn("b", auth)
    assert a.state == b.state == "hello"
    pump(a, b)
    assert a.is_open and b.is_open and a.newly_open and b.newly_open
    assert a.remote is not None and a.remote.node_id == "b" and a.remote.member_id == "b-m1"
    assert b.remote is not None and b.remote.node_id == "a"
    got = b.feed(message({"n": 1}) + message({"n": 2}), 2)
    assert [(f.family, f.type, f.body) for f in got] == [(RAFT, APPEND, {"n": 1}), (RAFT, APPEND, {"n": 2})]
    assert b.counters.frames_in[RAFT] == 2 and b.counters.handshakes_completed == 1
    assert b.counters.frames_in[PEER] == 2  # HELLO and AUTH


def test_messages_right_behind_the_peers_auth_are_judged_by_the_full_limit() -> None:
    """The peer opens as soon as it has our AUTH and may send at once: its AUTH and a
    big message can arrive in one read, and the big one is not a handshake frame."""
    a, b = conn("a"), conn("b")
    b.feed(a.data_to_send(), 1)  # a's HELLO: b answers with HELLO... and AUTH
    a.feed(b.data_to_send(), 1)  # a has b's HELLO and AUTH: open
    assert a.is_open and not b.is_open
    big = message(b"x" * (HANDSHAKE_MAX_FRAME_BYTES * 4))
    got = b.feed(a.data_to_send() + big, 2)
    assert b.is_open and [f.body for f in got] == [b"x" * (HANDSHAKE_MAX_FRAME_BYTES * 4)]


def test_before_the_handshake_frames_are_small_whatever_max_frame_bytes_is() -> None:
    b = conn("b", max_frame_bytes=16 * MiB)
    b.feed(encode_frame(PEER, HELLO, {"pad": b"x" * HANDSHAKE_MAX_FRAME_BYTES}, registry=REG)[:8], 1)
    assert b.closed and b.error is not None and b.error.reason == "oversize"


def refusal(a: PeerConnection, b: PeerConnection) -> tuple[str | None, dict[str, str]]:
    """b reads a's HELLO: (the reason b closed with, the CLOSE body b sent a)."""
    b.data_to_send()
    b.feed(a.data_to_send(), 1)
    assert b.closed and not b.is_open
    frames = decode_all(b.data_to_send())
    assert frames[-1][:2] == (PEER, CLOSE)
    return b.close_reason, frames[-1][2]


def test_wrong_cluster_is_refused_with_a_reason_frame_and_counted() -> None:
    a, b = conn("a", cluster="other"), conn("b")
    reason, told = refusal(a, b)
    assert reason == "cluster" and b.counters.protocol_errors["cluster"] == 1
    assert told["reason"] == "cluster" and "'other'" in told["detail"]
    a.feed(encode_frame(PEER, CLOSE, told, registry=REG), 2)
    assert a.closed and a.closed_by_peer == ("cluster", told["detail"])
    assert a.counters.refused_by_peer["cluster"] == 1


def test_wrong_version_in_the_header_is_refused() -> None:
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG, version=2), 1)
    assert b.close_reason == "version"
    frames = decode_all(b.data_to_send())
    assert frames[-1][:2] == (PEER, CLOSE) and frames[-1][2]["reason"] == "version"


def test_a_hello_speaking_no_version_of_ours_is_refused() -> None:
    b = conn("b")
    body = {**hello("a").to_body(), "version": 0}
    b.feed(encode_frame(PEER, HELLO, body, registry=REG), 1)
    assert b.close_reason == "version"


def test_authentication_scheme_mismatch_is_refused() -> None:
    a, b = conn("a", NoAuth()), conn("b", SharedSecretAuth(b"k"))
    assert refusal(a, b)[0] == "auth"


def test_a_wrong_secret_is_refused_on_both_sides() -> None:
    a, b = conn("a", SharedSecretAuth(b"right")), conn("b", SharedSecretAuth(b"wrong"))
    pump(a, b)
    assert a.close_reason == "auth" and b.close_reason == "auth"
    assert not a.is_open and not b.is_open
    assert a.counters.protocol_errors["auth"] == 1


def test_a_proof_from_another_connection_does_not_verify() -> None:
    """Replay: the verifier's nonce is new per connection, so an old proof is worthless."""
    auth = SharedSecretAuth(b"k")
    a1, b1 = conn("a", auth, nonce=b"1" * 16), conn("b", auth, nonce=b"2" * 16)
    b1.feed(a1.data_to_send(), 1)
    a1.feed(b1.data_to_send(), 1)
    recorded = a1.data_to_send()  # a's AUTH for b1's nonce
    a_hello = encode_frame(PEER, HELLO, a1.hello.to_body(), registry=REG)
    proof = decode_all(recorded)[-1]
    assert proof[:2] == (PEER, AUTH)
    b2 = conn("b", auth, nonce=b"3" * 16)  # a fresh connection to b
    b2.feed(a_hello, 1)
    b2.feed(recorded, 1)
    assert b2.close_reason == "auth" and not b2.is_open


def test_a_proof_cannot_be_reflected_to_its_sender() -> None:
    auth = SharedSecretAuth(b"k")
    own, theirs = hello("a", auth.scheme), hello("b", auth.scheme, nonce=b"n" * 16)
    proof = auth.prove(own, theirs)
    assert auth.verify(theirs, own, proof, {}) is not None  # a's own proof, sent back as if b's
    assert auth.verify(own, theirs, proof, {}) is None  # what b checks
    assert transcript(own, theirs) != transcript(theirs, own)


def test_secret_rotation_in_three_steps_never_cuts_a_connection() -> None:
    """Every node first accepts the new secret, then proves with it, then forgets the old."""
    stage1 = SharedSecretAuth(b"old", also_accept=[b"new"])
    stage2 = SharedSecretAuth(b"new", also_accept=[b"old"])
    stage3 = SharedSecretAuth(b"new")
    for left, right in ((SharedSecretAuth(b"old"), stage1), (stage1, stage2), (stage2, stage3)):
        a, b = conn("a", left), conn("b", right)
        pump(a, b)
        assert a.is_open and b.is_open
    a, b = conn("a", SharedSecretAuth(b"old")), conn("b", stage3)
    pump(a, b)
    assert not a.is_open and not b.is_open  # skipping a step does cut it
    with pytest.raises(ValueError):
        SharedSecretAuth(b"")
    assert "new" not in repr(stage2) and "old" not in repr(stage2)


def test_the_node_dialled_must_be_the_one_that_answers() -> None:
    reason, told = refusal(conn("c"), conn("a", expect_node_id="b"))
    assert reason == "wrong_peer" and "'b'" in told["detail"] and "'c'" in told["detail"]


def test_a_peer_claiming_our_own_id_is_refused() -> None:
    a, b = conn("a"), conn("a", nonce=b"z" * 16)
    pump(a, b)
    assert a.close_reason == "wrong_peer" and b.close_reason == "wrong_peer"


def test_messages_before_the_handshake_are_refused() -> None:
    b = conn("b")
    b.feed(message("too early"), 1)
    assert b.close_reason == "garbage"  # not even a HELLO first
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG) + message("before AUTH"), 1)
    assert b.close_reason == "before_handshake" and b.counters.protocol_errors["before_handshake"] == 1
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG) + encode_frame(PEER, PING, 1, registry=REG), 1)
    assert b.close_reason == "before_handshake"


def test_handshake_frames_out_of_place_are_refused() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG), 2)
    assert b.close_reason == "unexpected"
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG), 1)
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG), 1)
    assert b.close_reason == "unexpected"
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, hello("a").to_body(), registry=REG) + encode_frame(
        PEER, AUTH, {"nope": 1}, registry=REG), 1)
    assert b.close_reason == "auth"


GOOD = hello("a").to_body()


@pytest.mark.parametrize(("change", "field"), [
    ({"cluster_id": None}, "cluster_id"),
    ({"node_id": ""}, "node_id"),
    ({"node_id": "x" * 256}, "node_id"),
    ({"node_id": "a\nb"}, "node_id"),
    ({"member_id": 7}, "member_id"),
    ({"boot_id": -1}, "boot_id"),
    ({"boot_id": True}, "boot_id"),
    ({"max_frame_bytes": 10}, "max_frame_bytes"),
    ({"nonce": b"short"}, "nonce"),
    ({"nonce": "x" * 16}, "nonce"),
    ({"version": "1"}, "version"),
    ({"auth": ""}, "auth"),
])
def test_a_malformed_hello_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, {**GOOD, **change}, registry=REG), 1)
    assert b.close_reason == "bad_hello" and field in str(b.error)


@pytest.mark.parametrize("body", [None, [1, 2], "hello"])
def test_a_hello_that_is_not_a_map_is_refused(body: Any) -> None:
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, body, registry=REG), 1)
    assert b.close_reason == "bad_hello"


def test_missing_hello_fields_are_named_and_unknown_ones_ignored() -> None:
    b = conn("b")
    b.feed(encode_frame(PEER, HELLO, {k: v for k, v in GOOD.items() if k != "member_id"}, registry=REG), 1)
    assert b.close_reason == "bad_hello" and "member_id" in str(b.error)
    a, b = conn("a"), conn("b")
    newer = encode_frame(PEER, HELLO, {**a.hello.to_body(), "a_field_of_version_2": [1, 2]}, registry=REG)
    a.data_to_send()
    b.feed(newer, 1)
    assert b.state == "auth"  # accepted


def test_own_hello_is_checked_at_construction() -> None:
    with pytest.raises(ValueError):
        conn("a", hello=hello("a\x00"))
    with pytest.raises(ValueError):
        PeerConnection(hello("a", "hmac-sha256"), NoAuth(), now_ms=0, **TIMEOUTS)


# --- after the handshake ------------------------------------------------------------


def test_keepalive_ping_measures_the_round_trip_and_counts_as_traffic() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b, now_ms=0)
    a.tick(999)
    assert a.data_to_send() == b""  # not idle long enough
    a.tick(1000)
    ping = a.data_to_send()
    assert decode_all(ping) == [(PEER, PING, 1000)]
    b.feed(ping, 1010)
    pong = b.data_to_send()
    assert decode_all(pong) == [(PEER, PONG, 1000)]
    a.feed(pong, 1025)
    assert a.rtt_ms == 25 and a.is_open and b.is_open


def test_a_pong_echoes_a_timestamp_and_nothing_bigger() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    b.feed(encode_frame(PEER, PING, b"x" * 50_000, registry=REG), 5)
    assert decode_all(b.data_to_send()) == [(PEER, PONG, None)]


def test_sending_messages_postpones_the_keepalive() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b, now_ms=0)
    a.note_sent(900)
    a.tick(1500)
    assert a.data_to_send() == b""


def test_a_silent_peer_is_closed_after_the_idle_timeout() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b, now_ms=0)
    a.tick(2999)
    assert a.is_open
    a.tick(3000)
    assert a.close_reason == "idle_timeout" and a.counters.protocol_errors["idle_timeout"] == 1
    assert decode_all(a.data_to_send())[-1][2]["reason"] == "idle_timeout"


def test_a_handshake_that_never_completes_times_out() -> None:
    a = conn("a", now_ms=100)
    a.tick(1099)
    assert not a.closed
    a.tick(1100)
    assert a.close_reason == "handshake_timeout"


def test_close_sends_the_reason_and_the_peer_records_it() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    a.close("duplicate", "keeping the other one", 5)
    assert a.closed and a.close_reason == "duplicate"
    b.feed(a.data_to_send(), 6)
    assert b.closed and b.closed_by_peer == ("duplicate", "keeping the other one")
    assert b.close_reason == "peer:duplicate" and b.counters.refused_by_peer["duplicate"] == 1
    assert b.feed(message(1), 7) == []  # nothing more after CLOSE


def test_a_hostile_close_reason_does_not_grow_the_counters() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    before = set(b.counters.refused_by_peer)
    b.feed(encode_frame(PEER, CLOSE, {"reason": "x" * 10_000, "detail": "y" * 10_000}, registry=REG), 2)
    assert b.closed_by_peer is not None and b.closed_by_peer[0] == "other" and len(b.closed_by_peer[1]) <= 512
    assert set(b.counters.refused_by_peer) == before


def test_a_connection_cut_inside_a_frame_is_truncated() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    b.feed(message(b"x" * 100)[:50], 2)
    b.connection_lost(3)
    assert b.close_reason == "truncated" and b.counters.protocol_errors["truncated"] == 1
    c, d = conn("a"), conn("b")
    pump(c, d)
    d.connection_lost(3)
    assert d.close_reason == "eof" and d.counters.protocol_errors["truncated"] == 0


def test_a_family_can_refuse_a_message_with_the_connection() -> None:
    a, b = conn("a"), conn("b")
    pump(a, b)
    b.fail(RemoteProtocolError("bad_message", "term is not an integer"), 2)
    assert b.close_reason == "bad_message" and b.counters.protocol_errors["bad_message"] == 1
    a.feed(b.data_to_send(), 3)
    assert a.closed_by_peer == ("bad_message", "term is not an integer")


def test_refuse_says_nothing_about_this_node() -> None:
    b = conn("b")
    b.refuse(RemoteProtocolError("protected", "loopback only"), 0)
    frames = decode_all(b.data_to_send())
    assert [f[:2] for f in frames] == [(PEER, CLOSE)]  # no HELLO went out first


def test_send_limit_is_the_peers_max_frame_bytes() -> None:
    a, b = conn("a", max_frame_bytes=2 * MiB), conn("b", max_frame_bytes=MiB)
    pump(a, b)
    assert a.send_limit == MiB and b.send_limit == 2 * MiB
    assert b.decoder.max_frame_bytes == MiB


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(st.binary(max_size=64) | st.sampled_from([
    encode_frame(PEER, HELLO, GOOD, registry=REG), encode_frame(PEER, AUTH, {"proof": b""}, registry=REG),
    encode_frame(PEER, PING, 1, registry=REG), encode_frame(PEER, CLOSE, {"reason": "auth"}, registry=REG),
    message([1, 2]), b"\x00\x00\x00\x01\x01\x00\x00",
]), max_size=8))
def test_whatever_a_peer_sends_the_core_never_raises(open_first: bool, chunks: list[bytes]) -> None:
    a, b = conn("a"), conn("b")
    if open_first:
        pump(a, b)
    for n, chunk in enumerate(chunks):
        b.feed(chunk, n)
        b.tick(n)
        b.data_to_send()
    if b.closed:
        assert b.close_reason is not None
        assert b.error is None or b.error.reason in REASONS
    assert b.closed or b.state in ("hello", "auth", "open")


# --- backoff -------------------------------------------------------------------------


def test_backoff_doubles_to_its_cap_with_equal_jitter_and_resets() -> None:
    backoff = Backoff(50, 1000, random.Random(7))
    delays = [backoff.next_ms() for _ in range(10)]
    ceilings = [min(1000, 50 * 2**n) for n in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert 25 <= backoff.next_ms() <= 50
    replay = Backoff(50, 1000, random.Random(7))
    assert [replay.next_ms() for _ in range(10)] == delays  # a seed reproduces every delay
    with pytest.raises(ValueError):
        Backoff(0, 10, random.Random())
    with pytest.raises(ValueError):
        Backoff(20, 10, random.Random())


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10_000), st.integers(0, 10**6), st.integers(0, 200), st.integers(0, 2**32))
def test_backoff_delay_stays_within_its_bounds(base: int, extra: int, attempts: int, seed: int) -> None:
    cap = base + extra
    backoff = Backoff(base, cap, random.Random(seed))
    for n in range(attempts):
        ceiling = min(cap, base * 2**n)
        assert ceiling / 2 <= backoff.next_ms() <= ceiling
