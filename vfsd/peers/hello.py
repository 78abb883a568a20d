"""HELLO: the first frame each side of a peer connection sends, saying who it is.

Both sides send their HELLO at once, without waiting for the other's (the
handshake costs one round trip for HELLOs and one for AUTH proofs; see
``connection``). The body is a msgpack map, so a later version can add fields; a
receiver ignores fields it does not know and refuses a HELLO that lacks one it
needs or gives it the wrong type ("bad_hello"). Everything here is checked, since
it arrives from a stranger before authentication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from vfsd.peers.frame import HANDSHAKE_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT, RemoteProtocolError

MAX_ID_BYTES: Final = 255
MIN_NONCE_BYTES: Final = 16
MAX_NONCE_BYTES: Final = 64
MAX_ADDRESS_BYTES: Final = 300
MAX_SCHEME_BYTES: Final = 64


@dataclass(frozen=True, slots=True)
class Hello:
    #: Highest protocol version the sender speaks (frame headers carry the version in use).
    version: int
    #: The cluster the sender belongs to: peers of another cluster are refused ("cluster").
    cluster_id: str
    #: The sender's node id: what ``PeerTransport.send`` calls it.
    node_id: str
    #: The sender's member id: one per incarnation of its data dir (Raft refuses a wiped voter by it).
    member_id: str
    #: ``host:port`` where the sender's peer port accepts connections ("" if none).
    address: str
    #: Random per process start: a connection from a peer that restarted replaces the old one.
    boot_id: int
    #: Largest frame the sender accepts; the other side never sends it a bigger one.
    max_frame_bytes: int
    #: Authentication scheme (``Authenticator.scheme``); both sides must use the same.
    auth: str
    #: Fresh random bytes per connection: the challenge the other side's proof must cover.
    nonce: bytes

    def to_body(self) -> dict[str, Any]:
        return {
            "version": self.version, "cluster_id": self.cluster_id, "node_id": self.node_id,
            "member_id": self.member_id, "address": self.address, "boot_id": self.boot_id,
            "max_frame_bytes": self.max_frame_bytes, "auth": self.auth, "nonce": self.nonce,
        }

    @classmethod
    def from_body(cls, body: Any) -> "Hello":
        """The HELLO a peer sent, or RemoteProtocolError("bad_hello") naming the first bad field."""
        if not isinstance(body, dict):
            raise RemoteProtocolError("bad_hello", f"HELLO body is a {type(body).__name__}, not a map")
        return cls(
            version=_int(body, "version", 0, 0xFF),
            cluster_id=_text(body, "cluster_id", MAX_ID_BYTES, allow_empty=False),
            node_id=_text(body, "node_id", MAX_ID_BYTES, allow_empty=False),
            member_id=_text(body, "member_id", MAX_ID_BYTES, allow_empty=False),
            address=_text(body, "address", MAX_ADDRESS_BYTES, allow_empty=True),
            boot_id=_int(body, "boot_id", 0, (1 << 64) - 1),
            max_frame_bytes=_int(body, "max_frame_bytes", HANDSHAKE_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT),
            auth=_text(body, "auth", MAX_SCHEME_BYTES, allow_empty=False),
            nonce=_nonce(body),
        )

    def check_local(self) -> "Hello":
        """This node's own HELLO passes the checks a peer will make (ValueError otherwise)."""
        try:
            return Hello.from_body(self.to_body())
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None

    def transcript_fields(self) -> list[Any]:
        """The fields an authentication proof covers, in a fixed order."""
        return [self.version, self.cluster_id, self.node_id, self.member_id, self.address, self.boot_id,
                self.max_frame_bytes, self.auth, self.nonce]


def transcript(prover: Hello, verifier: Hello) -> bytes:
    """Canonical bytes naming both sides of one connection, prover first.

    A proof over it is fresh (it covers the verifier's nonce, new per connection),
    bound to both identities and to the direction (A's proof to B is not B's proof
    to A, so a proof cannot be reflected back to its sender).
    """
    return msgpack.packb([b"vfsd-peer-auth/1", prover.transcript_fields(), verifier.transcript_fields()],
                         use_bin_type=True)


def _field(body: dict[Any, Any], name: str) -> Any:
    if name not in body:
        raise RemoteProtocolError("bad_hello", f"HELLO lacks {name}")
    return body[name]


def _int(body: dict[Any, Any], name: str, low: int, high: int) -> int:
    value = _field(body, name)
    if type(value) is not int or not low <= value <= high:
        raise RemoteProtocolError("bad_hello", f"HELLO {name} must be an integer in {low}..{high}, got {value!r:.80}")
    return value


def _text(body: dict[Any, Any], name: str, max_bytes: int, *, allow_empty: bool) -> str:
    value = _field(body, name)
    if type(value) is not str:
        raise RemoteProtocolError("bad_hello", f"HELLO {name} must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise RemoteProtocolError("bad_hello", f"HELLO {name} is empty")
    if len(value.encode()) > max_bytes:
        raise RemoteProtocolError("bad_hello", f"HELLO {name} is longer than {max_bytes} bytes")
    if not value.isprintable():
        raise RemoteProtocolError("bad_hello", f"HELLO {name} holds a control character: {value!r:.80}")
    return value


def _nonce(body: dict[Any, Any]) -> bytes:
    value = _field(body, "nonce")
    if type(value) is not bytes or not MIN_NONCE_BYTES <= len(value) <= MAX_NONCE_BYTES:
        raise RemoteProtocolError("bad_hello", f"HELLO nonce must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES} bytes")
    return value
