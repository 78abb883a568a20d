"""Pub/sub messages encoded once, for every subscriber and both protocols.

A published message may go to thousands of subscribers. Encoding it for each
one (as the shell once did) costs O(subscribers × size) in Python; instead a
``Message`` is encoded once per protocol when it is made, and each subscriber
queues the same byte pieces (no copy: the pieces are shared, immutable bytes).
RESP2 and RESP3 differ only in the aggregate's first byte (``*`` for an array,
``>`` for a push, RESP3 spec "Push type"), so for all-bulk messages the two
forms share everything after it.

A small message is one piece per protocol, so a subscriber's queue joins
cheaply; a payload larger than ``SPLIT_BYTES`` stays a separate piece, so it
is never copied into a frame, only referenced (the socket write takes the
pieces as they are, see ``Client.flush_pushes``).

``Message`` is a ``list`` of the message's parts (``[b"message", channel,
payload]``), so code that only wants to look at a message, such as a test's
fake subscriber, can treat it as the list it is.
"""

from __future__ import annotations

from typing import Final

from vfsd.resp.encoder import encode_into
from vfsd.resp.types import Push

__all__ = ["SPLIT_BYTES", "Message", "PatternTail", "channel_message", "encoded_message", "pattern_message"]

#: Payloads above this size are queued as their own piece instead of being copied into the frame.
SPLIT_BYTES: Final = 16 * 1024

_CRLF: Final = b"\r\n"
_PMESSAGE_HEAD: Final = (b"*4\r\n$8\r\npmessage\r\n", b">4\r\n$8\r\npmessage\r\n")


#: What a subscriber queues for one protocol: the byte pieces and their total size.
Frame = tuple[tuple[bytes, ...], int]


class Message(list):  # type: ignore[type-arg]
    """A push's parts, plus ``frames[proto]``: its wire form for RESP ``proto`` (2 or 3) as a ``Frame``."""

    __slots__ = ("frames",)

    frames: tuple[Frame | None, Frame | None, Frame, Frame]


def _bulk_header(size: int) -> bytes:
    return b"$%d\r\n" % size


def channel_message(kind: bytes, channel: bytes, payload: bytes) -> Message:
    """``[kind, channel, payload]``: ``message`` (PUBLISH) or ``smessage`` (SPUBLISH)."""
    head = b"$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n" % (len(kind), kind, len(channel), channel, len(payload))
    message = Message((kind, channel, payload))
    size = 4 + len(head) + len(payload) + 2
    if len(payload) <= SPLIT_BYTES:
        body = head + payload + _CRLF
        message.frames = (None, None, ((b"*3\r\n" + body,), size), ((b">3\r\n" + body,), size))
    else:
        message.frames = (None, None, ((b"*3\r\n" + head, payload, _CRLF), size),
                          ((b">3\r\n" + head, payload, _CRLF), size))
    return message


class PatternTail:
    """What every ``pmessage`` of one publish shares: the channel and payload, encoded once."""

    __slots__ = ("channel", "payload", "encoded", "split")

    def __init__(self, channel: bytes, payload: bytes) -> None:
        self.channel = channel
        self.payload = payload
        self.split = len(payload) > SPLIT_BYTES
        head = b"$%d\r\n%b\r\n$%d\r\n" % (len(channel), channel, len(payload))
        self.encoded = head if self.split else head + payload + _CRLF


def pattern_message(pattern: bytes, tail: PatternTail) -> Message:
    """``[pmessage, pattern, channel, payload]`` for one matching pattern."""
    bulk = b"$%d\r\n%b\r\n" % (len(pattern), pattern)
    message = Message((b"pmessage", pattern, tail.channel, tail.payload))
    head2, head3 = _PMESSAGE_HEAD
    rest = bulk + tail.encoded
    if tail.split:
        size = len(head2) + len(rest) + len(tail.payload) + 2
        message.frames = (None, None, ((head2 + rest, tail.payload, _CRLF), size),
                          ((head3 + rest, tail.payload, _CRLF), size))
    else:
        size = len(head2) + len(rest)
        message.frames = (None, None, ((head2 + rest,), size), ((head3 + rest,), size))
    return message


def encoded_message(parts: list[object]) -> Message:
    """Any push (integers, nils, nested arrays): encoded with the reply encoder, once per protocol."""
    message = Message(parts)
    frames: list[Frame] = []
    for proto in (2, 3):
        out: list[bytes] = []
        encode_into(out, Push(parts), proto)
        size = sum(map(len, out))
        if all(len(piece) <= SPLIT_BYTES for piece in out):
            frames.append(((b"".join(out),), size))
        else:  # keep large values as their own pieces: referenced, not copied
            frames.append((tuple(out), size))
    message.frames = (None, None, frames[0], frames[1])
    return message
