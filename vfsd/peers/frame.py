"""Peer frames: the layout, the registry of message families and types, the codec.

Theory of operation
-------------------
Everything vfsd nodes say to each other travels as frames over one TCP connection
per pair of nodes (DESIGN.md §3a). A frame is a fixed 8-byte header and a body:

    offset  size  field        (integers big-endian)
    0       4     body_length  bytes of body after the header
    4       1     version      protocol version, PROTOCOL_VERSION; at offset 4 in every version
    5       1     family       message family: PEER (connection control), RAFT, GOSSIP
    6       2     type         message type within the family
    8       n     body         exactly one msgpack object (nil, bool, int, float, str, bin, array, map)

A fixed header, rather than a msgpack array ``[version, family, type, body]``,
lets the decoder judge a frame from its first 8 bytes: a version it does not
speak, a family or type it does not know, or a length over ``max_frame_bytes``
is refused before a single body byte is buffered, so a header announcing 4 GB
allocates nothing. The body stays msgpack, the project's binary JSON, so a
family's messages are plain data (maps with named fields) that can grow fields
without a format change; msgpack extension types other than its timestamp are
refused, so nothing but data ever crosses the wire (no pickle: PySyncObj's
mistake).

Families and types are append-only registries (as memberlist's message types
and etcd's raftpb message kinds): a number, once given a meaning, keeps it
forever, and a node refuses a number it does not know. ``tests/test_peers_frame.py``
pins the wire registry, so renumbering fails a test. Invariants that hold in every
version, so that a newer peer is told its version is wrong rather than that it
sends garbage: the length and version fields keep their offsets, and the first
frame on a connection is PEER/HELLO (or PEER/CLOSE, when the sender refuses it).

The decoder is sans-IO (as h11): ``feed(bytes)`` returns the frames completed so
far. Its result does not depend on how the stream was cut: every check is a
function of the stream prefix. A protocol error stops it for good: ``feed``
returns the frames before the bad one and ``error`` says what was wrong, whose
fault it is (``RemoteProtocolError``: the peer's; ``LocalProtocolError``: this
node's), and a short ``reason`` that the counters group by.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

import msgpack

__all__ = [
    "AUTH", "CLOSE", "GOSSIP", "HANDSHAKE_MAX_FRAME_BYTES", "HEADER_BYTES", "HELLO", "MAX_FRAME_BYTES_LIMIT",
    "MAX_VERSION", "MIN_VERSION", "OPENING_FRAMES", "PEER", "PING", "PONG", "PROTOCOL_VERSION", "RAFT", "REASONS", "WIRE",
    "Frame", "FrameDecoder", "FrameEncoder", "LocalProtocolError", "PeerProtocolError", "Registry",
    "RemoteProtocolError", "encode_frame",
]

HEADER: Final = struct.Struct(">IBBH")
HEADER_BYTES: Final = HEADER.size  # 8

#: The version this node sends, and the range it accepts.
PROTOCOL_VERSION: Final = 1
MIN_VERSION: Final = 1
MAX_VERSION: Final = 1

#: Largest frame the header can describe (u32 body length).
MAX_FRAME_BYTES_LIMIT: Final = HEADER_BYTES + 0xFFFFFFFF
#: Until a connection has authenticated, frames (HELLO, AUTH, CLOSE) are small: a
#: stranger gets at most this many bytes buffered, whatever max_frame_bytes is.
HANDSHAKE_MAX_FRAME_BYTES: Final = 64 * 1024

# -- errors -----------------------------------------------------------------------------

#: Why a connection was closed, as the counters and CLOSE frames name it.
REASONS: Final[dict[str, str]] = {
    "garbage": "the bytes are not vfsd peer frames",
    "version": "a protocol version this node does not speak",
    "oversize": "a frame longer than the receiver's max_frame_bytes",
    "unknown_family": "a message family this node does not know",
    "unknown_type": "a message type this node does not know",
    "bad_body": "a body that is not exactly one msgpack object of plain data",
    "bad_hello": "a HELLO without the fields it must carry",
    "cluster": "a peer of another cluster",
    "auth": "authentication failed",
    "wrong_peer": "a peer that is not the node dialled, or that claims this node's id",
    "before_handshake": "a message before the handshake completed (unauthenticated)",
    "unexpected": "a handshake frame out of place",
    "bad_message": "a body its family refused",
    "truncated": "the connection ended inside a frame",
    "handshake_timeout": "no complete handshake within handshake_timeout_ms",
    "idle_timeout": "nothing received for idle_timeout_ms",
    "protected": "an unauthenticated peer from beyond loopback (protected mode)",
    "too_many_connections": "more connections than max_connections",
}


class PeerProtocolError(Exception):
    """A breach of the peer protocol. ``reason`` is a key of REASONS; ``str()`` the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class RemoteProtocolError(PeerProtocolError):
    """The peer sent something invalid: close that connection, count it, carry on."""


class LocalProtocolError(PeerProtocolError):
    """This node tried to send something invalid (a bug in the caller)."""


# -- the registry -----------------------------------------------------------------------


class Registry:
    """Message families and their types: numbers with names, append-only.

    ``family(code, name)`` and ``message(family, code, name)`` declare a number;
    declaring it again with the same name is a no-op, with another name (or the
    name under another number) is an error, so a meaning can never change.
    """

    def __init__(self) -> None:
        self._families: dict[int, str] = {}
        self._types: dict[int, dict[int, str]] = {}

    def family(self, code: int, name: str) -> int:
        if not 0 <= code <= 0xFF:
            raise ValueError(f"family {code} does not fit in one byte")
        self._claim(self._families, code, name, "family")
        self._types.setdefault(code, {})
        return code

    def message(self, family: int, code: int, name: str) -> int:
        if family not in self._families:
            raise ValueError(f"family {family} is not declared")
        if not 0 <= code <= 0xFFFF:
            raise ValueError(f"message type {code} does not fit in two bytes")
        self._claim(self._types[family], code, name, f"{self._families[family]} message type")
        return code

    @staticmethod
    def _claim(table: dict[int, str], code: int, name: str, what: str) -> None:
        if table.get(code, name) != name:
            raise ValueError(f"{what} {code} is {table[code]!r} already; numbers are never reused")
        for other, existing in table.items():
            if existing == name and other != code:
                raise ValueError(f"{what} {name!r} is number {other} already")
        table[code] = name

    def knows(self, family: int, mtype: int) -> bool:
        types = self._types.get(family)
        return types is not None and mtype in types

    def types_of(self, family: int) -> dict[int, str] | None:
        """The type table of ``family`` (do not modify), or None for an unknown family."""
        return self._types.get(family)

    def family_name(self, family: int) -> str:
        return self._families.get(family, f"family-{family}")

    def type_name(self, family: int, mtype: int) -> str:
        return self._types.get(family, {}).get(mtype, f"type-{mtype}")

    def families(self) -> dict[int, str]:
        return dict(self._families)

    def listing(self) -> list[tuple[int, str, int, str]]:
        """Every declared (family, family name, type, type name), for pinning in a test."""
        return sorted((f, self._families[f], t, n) for f, types in self._types.items() for t, n in types.items())

    def copy(self) -> "Registry":
        other = Registry()
        other._families = dict(self._families)
        other._types = {f: dict(t) for f, t in self._types.items()}
        return other


#: The registry every node speaks. Append only: new numbers at the end of each list.
WIRE: Final = Registry()

PEER: Final = WIRE.family(0, "peer")  # the connection's own control frames
HELLO: Final = WIRE.message(PEER, 1, "hello")  # first frame each side sends: who it is (connection.Hello)
AUTH: Final = WIRE.message(PEER, 2, "auth")  # second frame: proof of identity over both HELLOs
CLOSE: Final = WIRE.message(PEER, 3, "close")  # last frame: why the sender closes ({"reason", "detail"})
PING: Final = WIRE.message(PEER, 4, "ping")  # keepalive on an idle connection; body: sender's ms
PONG: Final = WIRE.message(PEER, 5, "pong")  # answer to PING, echoing its body (round-trip time)

# Replication families. Their message types are declared here, next to the family,
# by the code that speaks them (append-only, like the PEER types above).
RAFT: Final = WIRE.family(1, "raft")  # the desired plane (vfsd.desired)
GOSSIP: Final = WIRE.family(2, "gossip")  # the active plane: membership, dissemination, anti-entropy


#: The frames a connection may open with (see FrameDecoder's ``first``).
OPENING_FRAMES: Final = frozenset({(PEER, HELLO), (PEER, CLOSE)})

# -- encoding ---------------------------------------------------------------------------


def _check_sendable(registry: Registry, family: int, mtype: int) -> None:
    types = registry.types_of(family)
    if types is None:
        raise LocalProtocolError("unknown_family", f"family {family} is not declared")
    if mtype not in types:
        raise LocalProtocolError("unknown_type", f"{registry.family_name(family)} message type {mtype} is not declared")


def _unsendable(exc: Exception) -> LocalProtocolError:
    return LocalProtocolError("bad_body", f"the body is not plain msgpack data: {type(exc).__name__}: {exc}")


class FrameEncoder:
    """Encodes frames with one reused msgpack packer (call it from one thread: the event loop)."""

    __slots__ = ("registry", "_pack", "_types")

    def __init__(self, registry: Registry = WIRE) -> None:
        self.registry = registry
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._types = registry._types  # the live table: types declared later are seen

    def encode(self, family: int, mtype: int, body: Any, max_frame_bytes: int = MAX_FRAME_BYTES_LIMIT) -> bytes:
        """The frame's bytes. LocalProtocolError if the family or type is undeclared, the body
        is not plain data, or the frame exceeds ``max_frame_bytes``."""
        types = self._types.get(family)
        if types is None or mtype not in types:
            _check_sendable(self.registry, family, mtype)
        try:
            body_bytes = self._pack(body)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unsendable(exc) from None
        size = HEADER_BYTES + len(body_bytes)
        if size > max_frame_bytes:
            raise LocalProtocolError("oversize", f"a frame of {size} bytes exceeds max_frame_bytes {max_frame_bytes}")
        return HEADER.pack(len(body_bytes), PROTOCOL_VERSION, family, mtype) + body_bytes

    def pack_fields(self, fields: Any) -> bytes:
        """The msgpack of each item of ``fields``, concatenated (no array header): a part of a
        body packed once and joined to several bodies (``encode_joined``)."""
        try:
            packed = self._pack(list(fields))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unsendable(exc) from None
        return packed[_array_header_bytes(packed):]

    def encode_joined(self, family: int, mtype: int, head: list[Any], tail: bytes, tail_count: int,
                      max_frame_bytes: int = MAX_FRAME_BYTES_LIMIT) -> bytes:
        """The frame of the body ``[*head, *fields]``, where ``tail`` is ``pack_fields(fields)``
        and ``tail_count`` is ``len(fields)``: the same bytes ``encode`` gives for that body, with
        the shared fields packed once for every frame they go in (one gossip round, many peers)."""
        types = self._types.get(family)
        if types is None or mtype not in types:
            _check_sendable(self.registry, family, mtype)
        try:
            packed_head = self._pack(head)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unsendable(exc) from None
        n = len(head) + tail_count
        start = _array_header_bytes(packed_head)
        if n < 16 and start == 1:
            body_len = len(packed_head) + len(tail)
            array = _FIXARRAY[n]
        else:
            array = _array_header(n)
            body_len = len(array) + len(packed_head) - start + len(tail)
        size = HEADER_BYTES + body_len
        if size > max_frame_bytes:
            raise LocalProtocolError("oversize", f"a frame of {size} bytes exceeds max_frame_bytes {max_frame_bytes}")
        return b"".join((HEADER.pack(body_len, PROTOCOL_VERSION, family, mtype), array, packed_head[start:], tail))


_FIXARRAY: Final = tuple(bytes((0x90 | n,)) for n in range(16))


def _array_header(n: int) -> bytes:
    if n < 16:
        return _FIXARRAY[n]
    if n <= 0xFFFF:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _array_header_bytes(packed: bytes) -> int:
    """Bytes of the array header at the start of the msgpack of a list."""
    first = packed[0]
    return 1 if first < 0xDC else 3 if first == 0xDC else 5


def encode_frame(family: int, mtype: int, body: Any, *, registry: Registry = WIRE,
                 max_frame_bytes: int = MAX_FRAME_BYTES_LIMIT, version: int = PROTOCOL_VERSION) -> bytes:
    """One frame's bytes (``version`` is a parameter so tests can build frames of other versions)."""
    _check_sendable(registry, family, mtype)
    try:
        body_bytes = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unsendable(exc) from None
    size = HEADER_BYTES + len(body_bytes)
    if size > max_frame_bytes:
        raise LocalProtocolError("oversize", f"a frame of {size} bytes exceeds max_frame_bytes {max_frame_bytes}")
    return HEADER.pack(len(body_bytes), version, family, mtype) + body_bytes


# -- decoding ---------------------------------------------------------------------------


class Frame(NamedTuple):
    family: int
    type: int
    body: Any
    #: Bytes on the wire, header included (for the per-family byte counters).
    size: int


def _refuse_extension(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not plain data")


_unpack_header = HEADER.unpack_from
_unpackb = msgpack.unpackb
_new_tuple = tuple.__new__  # Frame(...) without NamedTuple's argument handling: twice as fast


class FrameDecoder:
    """Incremental frame decoder: ``feed(data)`` → the frames completed so far.

    ``max_frame_bytes`` bounds a whole frame (header included) and may be changed
    between feeds (a connection raises it once its peer has authenticated). With
    ``first`` (a set of ``(family, type)``) the first frame must be one of those
    kinds, and anything else is "garbage": a vfsd peer always opens with PEER/HELLO
    (or PEER/CLOSE, refusing us), so an HTTP request or a Redis command sent to the
    peer port is named for what it is.
    """

    __slots__ = ("max_frame_bytes", "registry", "error", "_buf", "_need", "_first", "_types")

    def __init__(self, *, max_frame_bytes: int, registry: Registry = WIRE,
                 first: frozenset[tuple[int, int]] | None = None) -> None:
        if not HEADER_BYTES < max_frame_bytes <= MAX_FRAME_BYTES_LIMIT:
            raise ValueError(f"max_frame_bytes must be in {HEADER_BYTES + 1}..{MAX_FRAME_BYTES_LIMIT}")
        self.max_frame_bytes = max_frame_bytes
        self.registry = registry
        self._types = registry._types
        #: The first protocol error seen; once set, feed() returns nothing more.
        self.error: RemoteProtocolError | None = None
        self._buf = bytearray()
        self._need = HEADER_BYTES  # bytes the buffer must hold before parsing can progress
        self._first = first

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an unfinished frame held (at most max_frame_bytes, or 7 of a header)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview, max_frames: int = 0) -> list[Frame]:
        """Append ``data``; return the frames it completes (at most ``max_frames`` of them
        unless 0; the rest stay buffered for the next feed, which may be ``feed(b"")``)."""
        if self.error is not None:
            return []
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            src: bytes | bytearray | memoryview = buf
        else:
            src = data
        frames: list[Frame] = []
        view = memoryview(src)
        total = len(view)
        pos = 0
        need = HEADER_BYTES
        try:
            while total - pos >= HEADER_BYTES:
                length, version, family, mtype = _unpack_header(view, pos)
                if self._first is not None or version != PROTOCOL_VERSION:
                    self._check_unusual(version, family, mtype)
                types = self._types.get(family)
                if types is None:
                    raise RemoteProtocolError("unknown_family", f"unknown message family {family}")
                if mtype not in types:
                    raise RemoteProtocolError(
                        "unknown_type", f"unknown {self.registry.family_name(family)} message type {mtype}")
                size = HEADER_BYTES + length
                if size > self.max_frame_bytes:
                    raise RemoteProtocolError(
                        "oversize", f"a frame of {size} bytes exceeds max_frame_bytes {self.max_frame_bytes}")
                end = pos + size
                if end > total:
                    need = size
                    break
                try:
                    body = _unpackb(view[pos + HEADER_BYTES:end], raw=False, strict_map_key=False,
                                    ext_hook=_refuse_extension)
                except Exception as exc:  # msgpack's errors (ExtraData, StackError, ValueError...) and UTF-8 ones
                    raise RemoteProtocolError(
                        "bad_body", f"{self.registry.family_name(family)}/{self.registry.type_name(family, mtype)} "
                                    f"body is not one msgpack object: {type(exc).__name__}: {exc}") from None
                frames.append(_new_tuple(Frame, (family, mtype, body, size)))
                pos = end
                if len(frames) == max_frames:
                    break
        except RemoteProtocolError as exc:
            self.error = exc
            view.release()
            self._buf = bytearray()
            return frames
        view.release()
        if src is buf:
            del buf[:pos]
        elif pos < total:
            self._buf = bytearray(src[pos:])
        self._need = need
        return frames

    def _check_unusual(self, version: int, family: int, mtype: int) -> None:
        """The checks off the hot path: the connection's first frame, and a version other than ours."""
        if self._first is not None:
            if (family, mtype) not in self._first:
                raise RemoteProtocolError("garbage", "the connection does not open with a vfsd HELLO frame")
            self._first = None
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise RemoteProtocolError(
                "version", f"protocol version {version}; this node speaks {MIN_VERSION}..{MAX_VERSION}")
