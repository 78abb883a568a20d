"""One peer connection's protocol as a pure state machine: handshake, control frames, timeouts.

Theory of operation
-------------------
The shell (``transport``) owns the socket and feeds this object what it reads
and the time (``feed(data, now_ms)``, ``tick(now_ms)``); it writes whatever
``data_to_send()`` returns and closes the socket once ``closed`` is true (after
writing, so the peer gets the CLOSE frame that says why). Messages of the
replication families come back from ``feed``; PEER frames never leave here.

States and the frames each accepts (anything else is a protocol error):

    hello   our HELLO sent, waiting for theirs     HELLO -> send AUTH, go to auth; CLOSE
    auth    our AUTH sent, waiting for theirs      AUTH  -> verify, go to open;     CLOSE
    open    messages flow both ways                messages; PING -> PONG; PONG; CLOSE
    closed  terminal; nothing more is read

Both sides send HELLO at once (no client/server roles), each answers the other's
HELLO with AUTH, so a connection is open after one round trip plus the TCP one.
A side goes ``open`` only after checking the peer's proof; it sends its first
message only then, so no message reaches an unauthenticated peer and none is
accepted from one ("before_handshake"). Until then the decoder accepts frames of
at most HANDSHAKE_MAX_FRAME_BYTES, whatever max_frame_bytes is.

A HELLO is refused, with a CLOSE frame naming the reason, when it is malformed
("bad_hello"), from another cluster ("cluster"), speaks no version we do
("version"), uses another authentication scheme or a bad proof ("auth"), or is
not the node that was dialled, or claims our own id ("wrong_peer").

Time: a connection not open within ``handshake_timeout_ms`` is closed; an open
one that has received nothing (not even a PING) for ``idle_timeout_ms`` is closed
(a peer that stopped, or a half-open TCP connection); an open one that has sent
nothing for ``keepalive_interval_ms`` sends a PING, whose PONG measures the round
trip. ``idle_timeout_ms`` must be several keepalive intervals, so that a peer
whose event loop stalls for a second or two is not cut off (memberlist's
Lifeguard lesson: a slow node is not a dead one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from vfsd.peers.auth import Authenticator
from vfsd.peers.counters import CLOSE_REASONS, PeerCounters
from vfsd.peers.frame import (
    AUTH,
    CLOSE,
    HANDSHAKE_MAX_FRAME_BYTES,
    HELLO,
    MIN_VERSION,
    OPENING_FRAMES,
    PEER,
    PING,
    PONG,
    REASONS,
    WIRE,
    Frame,
    FrameDecoder,
    PeerProtocolError,
    Registry,
    RemoteProtocolError,
    encode_frame,
)
from vfsd.peers.hello import Hello

HELLO_STATE: Final = "hello"
AUTH_STATE: Final = "auth"
OPEN: Final = "open"
CLOSED: Final = "closed"

MAX_CLOSE_DETAIL_CHARS: Final = 512


class PeerConnection:
    """One connection's protocol state (see the module docstring)."""

    def __init__(self, hello: Hello, authenticator: Authenticator, *, now_ms: float,
                 handshake_timeout_ms: float, idle_timeout_ms: float, keepalive_interval_ms: float,
                 expect_node_id: str | None = None, channel: Mapping[str, Any] | None = None,
                 registry: Registry = WIRE, counters: PeerCounters | None = None) -> None:
        if hello.auth != authenticator.scheme:
            raise ValueError(f"HELLO says auth {hello.auth!r} but the authenticator is {authenticator.scheme!r}")
        self.hello = hello.check_local()
        self.authenticator = authenticator
        self.expect_node_id = expect_node_id
        self.channel: Mapping[str, Any] = channel or {}
        self.registry = registry
        self.counters = counters if counters is not None else PeerCounters(registry)
        self.handshake_timeout_ms = handshake_timeout_ms
        self.idle_timeout_ms = idle_timeout_ms
        self.keepalive_interval_ms = keepalive_interval_ms
        self.decoder = FrameDecoder(max_frame_bytes=min(HANDSHAKE_MAX_FRAME_BYTES, hello.max_frame_bytes),
                                    registry=registry, first=OPENING_FRAMES)
        self.state = HELLO_STATE
        #: The peer's HELLO, once received and accepted.
        self.remote: Hello | None = None
        #: Largest frame the peer accepts (known once open): the shell sends nothing bigger.
        self.send_limit = HANDSHAKE_MAX_FRAME_BYTES
        #: Set by feed() when the connection has just opened; the shell clears it.
        self.newly_open = False
        #: Why the connection closed: a key of REASONS or CLOSE_REASONS, or "peer:<reason>".
        self.close_reason: str | None = None
        #: The peer's fault, when that is why it closed.
        self.error: RemoteProtocolError | None = None
        #: (reason, detail) of the CLOSE frame the peer sent, when it closed first.
        self.closed_by_peer: tuple[str, str] | None = None
        #: Round-trip time of the last PING answered, in ms.
        self.rtt_ms: float | None = None
        self.opened_ms = now_ms
        self.last_received_ms = now_ms
        self.last_sent_ms = now_ms
        self._out: list[bytes] = []
        self._control(HELLO, hello.to_body(), now_ms)

    # -- what the shell calls -----------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    def data_to_send(self) -> bytes:
        """Control frames to write (HELLO, AUTH, PONG, CLOSE...), in order; b"" if none."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def feed(self, data: bytes | bytearray | memoryview, now_ms: float) -> list[Frame]:
        """Bytes read from the socket → the messages (non-PEER frames) they complete."""
        if self.state == CLOSED:
            return []
        self.last_received_ms = now_ms
        decoder = self.decoder
        messages: list[Frame] = []
        if self.state != OPEN:
            # One frame at a time while the handshake runs: the frame limit rises only
            # once the peer has proved who it is, so frames after its AUTH in the same
            # read must not be judged by the handshake limit (nor decoded before it).
            batch = decoder.feed(data, max_frames=1)
            while batch:
                self._take(batch, messages, now_ms)
                if self.state != HELLO_STATE and self.state != AUTH_STATE:
                    break
                batch = decoder.feed(b"", max_frames=1)
            data = b""
        if self.state == OPEN:
            self._take(decoder.feed(data), messages, now_ms)
        if decoder.error is not None:
            self.fail(decoder.error, now_ms)
        return messages

    def _take(self, frames: list[Frame], messages: list[Frame], now_ms: float) -> None:
        """Count ``frames``; messages go to ``messages``, PEER frames to the protocol, until closed."""
        counters = self.counters
        frames_in = counters.frames_in
        bytes_in = counters.bytes_in
        for frame in frames:
            family = frame.family
            frames_in[family] += 1
            bytes_in[family] += frame.size
            if family != PEER and self.state == OPEN:
                messages.append(frame)
                continue
            try:
                self._on_control(frame, now_ms)
            except RemoteProtocolError as exc:
                self.fail(exc, now_ms)
            if self.state == CLOSED:
                return

    def tick(self, now_ms: float) -> None:
        """Timeouts and keepalive; call every so often (the shell does, every tick_interval_ms)."""
        state = self.state
        if state == CLOSED:
            return
        if state != OPEN:
            if now_ms - self.opened_ms >= self.handshake_timeout_ms:
                self.fail(RemoteProtocolError(
                    "handshake_timeout", f"no handshake within {self.handshake_timeout_ms:g} ms"), now_ms)
            return
        if now_ms - self.last_received_ms >= self.idle_timeout_ms:
            self.fail(RemoteProtocolError(
                "idle_timeout", f"nothing received for {now_ms - self.last_received_ms:.0f} ms"), now_ms)
        elif now_ms - self.last_sent_ms >= self.keepalive_interval_ms:
            self._control(PING, now_ms, now_ms)

    def note_sent(self, now_ms: float) -> None:
        """The shell wrote messages: no keepalive needed for a while."""
        self.last_sent_ms = now_ms

    def close(self, reason: str, detail: str, now_ms: float) -> None:
        """Close for a reason of this node's (CLOSE_REASONS): a CLOSE frame says it to the peer."""
        assert reason in CLOSE_REASONS, reason
        if self.state == CLOSED:
            return
        self._control(CLOSE, {"reason": reason, "detail": detail[:MAX_CLOSE_DETAIL_CHARS]}, now_ms)
        self.state = CLOSED
        self.close_reason = reason

    def connection_lost(self, now_ms: float) -> None:
        """The socket ended. Mid-frame, or mid-handshake, that is the peer's fault."""
        if self.state == CLOSED:
            return
        if self.decoder.buffered_bytes:
            self.fail(RemoteProtocolError(
                "truncated", f"the connection ended {self.decoder.buffered_bytes} bytes into a frame"), now_ms)
        else:
            self.state = CLOSED
            self.close_reason = "eof"
        self._out.clear()  # nothing can be written any more

    # -- the protocol ------------------------------------------------------------------

    def _on_control(self, frame: Frame, now_ms: float) -> None:
        family, mtype, body = frame.family, frame.type, frame.body
        state = self.state
        if family == PEER and mtype == CLOSE:
            self._on_close(body)
        elif state == OPEN:
            if mtype == PING:  # echo a timestamp, nothing bigger: a PONG never amplifies
                self._control(PONG, body if type(body) in (int, float) else None, now_ms)
            elif mtype == PONG:
                if type(body) in (int, float) and body <= now_ms:
                    self.rtt_ms = now_ms - body
            else:
                raise RemoteProtocolError("unexpected", f"{self.registry.type_name(family, mtype)} after the handshake")
        elif family != PEER or mtype in (PING, PONG):
            raise RemoteProtocolError(
                "before_handshake",
                f"{self.registry.family_name(family)}/{self.registry.type_name(family, mtype)} before the handshake")
        elif state == HELLO_STATE and mtype == HELLO:
            self._on_hello(body, now_ms)
        elif state == AUTH_STATE and mtype == AUTH:
            self._on_auth(body, now_ms)
        else:
            raise RemoteProtocolError("unexpected", f"{self.registry.type_name(family, mtype)} in state {state}")

    def _on_hello(self, body: Any, now_ms: float) -> None:
        theirs = Hello.from_body(body)
        own = self.hello
        if theirs.version < MIN_VERSION:
            raise RemoteProtocolError("version", f"the peer speaks protocol versions up to {theirs.version}; "
                                                 f"this node needs at least {MIN_VERSION}")
        if theirs.cluster_id != own.cluster_id:
            raise RemoteProtocolError(
                "cluster", f"the peer is in cluster {theirs.cluster_id!r}, this node in {own.cluster_id!r}")
        if theirs.node_id == own.node_id:
            raise RemoteProtocolError("wrong_peer", f"the peer claims this node's own id {own.node_id!r}")
        if self.expect_node_id is not None and theirs.node_id != self.expect_node_id:
            raise RemoteProtocolError(
                "wrong_peer", f"dialled {self.expect_node_id!r} but {theirs.node_id!r} answered")
        if theirs.auth != own.auth:
            raise RemoteProtocolError("auth", f"the peer authenticates with {theirs.auth!r}, this node with {own.auth!r}")
        self.remote = theirs
        self._control(AUTH, {"proof": self.authenticator.prove(own, theirs)}, now_ms)
        self.state = AUTH_STATE

    def _on_auth(self, body: Any, now_ms: float) -> None:
        proof = body.get("proof") if isinstance(body, dict) else None
        if type(proof) is not bytes:
            raise RemoteProtocolError("auth", "AUTH carries no proof")
        theirs = self.remote
        assert theirs is not None
        refusal = self.authenticator.verify(theirs, self.hello, proof, self.channel)
        if refusal is not None:
            raise RemoteProtocolError("auth", f"{theirs.node_id!r}: {refusal}")
        self.state = OPEN
        self.newly_open = True
        self.decoder.max_frame_bytes = self.hello.max_frame_bytes
        self.send_limit = theirs.max_frame_bytes
        self.counters.handshakes_completed += 1

    def _on_close(self, body: Any) -> None:
        reason, detail = "other", ""
        if isinstance(body, dict):
            raw_reason, raw_detail = body.get("reason"), body.get("detail")
            if isinstance(raw_reason, str) and (raw_reason in REASONS or raw_reason in CLOSE_REASONS):
                reason = raw_reason
            if isinstance(raw_detail, str):
                detail = raw_detail[:MAX_CLOSE_DETAIL_CHARS]
        self.counters.refused_by_peer[reason] += 1
        self.closed_by_peer = (reason, detail)
        self.close_reason = f"peer:{reason}"
        self.state = CLOSED

    def refuse(self, exc: RemoteProtocolError, now_ms: float) -> None:
        """Turn the peer away before saying who this node is (our HELLO is not sent)."""
        self._out.clear()
        self.fail(exc, now_ms)

    def fail(self, exc: PeerProtocolError, now_ms: float) -> None:
        """The peer broke the protocol (or its family refused a message): count it, tell it why, close."""
        if self.state == CLOSED:
            return
        assert isinstance(exc, RemoteProtocolError)
        self.counters.protocol_errors[exc.reason] += 1
        self.error = exc
        self.close_reason = exc.reason
        self._control(CLOSE, {"reason": exc.reason, "detail": exc.detail[:MAX_CLOSE_DETAIL_CHARS]}, now_ms)
        self.state = CLOSED

    def _control(self, mtype: int, body: Any, now_ms: float) -> None:
        data = encode_frame(PEER, mtype, body, registry=self.registry)
        self._out.append(data)
        self.counters.frames_out[PEER] += 1
        self.counters.bytes_out[PEER] += len(data)
        self.last_sent_ms = now_ms
