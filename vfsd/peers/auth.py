"""Peer authentication: the hook every connection's handshake calls, and two schemes.

Theory of operation
-------------------
Each side of a connection sends HELLO (its identity and a fresh nonce), then,
once it has the other's HELLO, an AUTH frame whose ``proof`` is
``authenticator.prove(own_hello, their_hello)``. A side accepts the connection
when ``authenticator.verify(their_hello, own_hello, proof, channel)`` returns
None; any other return value is the reason it refuses (counted as "auth"). Both
sides must use the same ``scheme`` (it travels in HELLO). No message of any
family is delivered, and none is sent, before both proofs are checked.

``channel`` is what the shell knows about the connection beyond the bytes: the
peer's socket address (``peername``) and, once the peer port runs over TLS, the
peer's certificate (``peercert``) and the ``ssl_object``. That is the seam mutual
TLS plugs into: an authenticator whose ``verify`` checks that the certificate's
identity matches ``their_hello.node_id``, with an empty proof.

Schemes here:

* ``NoAuth`` ("none"): accepts every peer. For loopback and trusted networks;
  the transport's protected mode then refuses peers from beyond loopback.
* ``SharedSecretAuth`` ("hmac-sha256"): the proof is HMAC-SHA256 of the
  handshake transcript (``hello.transcript``: both HELLOs, prover first) under a
  secret every member shares. It proves the peer holds the secret, afresh for
  each connection (the verifier's nonce is in the transcript), and binds the
  proof to both identities and the direction, so it cannot be replayed or
  reflected. What it does not do: encrypt, or protect frames after the handshake
  from someone able to rewrite the TCP stream (that is TLS's job), or stop one
  secret holder from claiming another's node id (certificates do that).
  Rotation, in three rolling steps so no connection is ever refused: on every
  node add the new secret to ``also_accept``; then on every node make it
  ``secret`` and keep the old one in ``also_accept``; then drop the old one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from vfsd.peers.hello import Hello, transcript


@runtime_checkable
class Authenticator(Protocol):
    #: Name of the scheme, sent in HELLO; peers using another scheme are refused.
    scheme: str

    def prove(self, own: Hello, theirs: Hello) -> bytes:
        """The proof this node sends in AUTH, after both HELLOs are known."""
        ...

    def verify(self, theirs: Hello, own: Hello, proof: bytes, channel: Mapping[str, Any]) -> str | None:
        """None to accept the peer's ``proof``; otherwise the reason for refusing it."""
        ...


class NoAuth:
    """Every peer is who it says it is."""

    scheme = "none"

    def prove(self, own: Hello, theirs: Hello) -> bytes:
        return b""

    def verify(self, theirs: Hello, own: Hello, proof: bytes, channel: Mapping[str, Any]) -> str | None:
        return None


class SharedSecretAuth:
    """HMAC-SHA256 challenge/response under a shared secret (see the module docstring)."""

    scheme = "hmac-sha256"

    def __init__(self, secret: bytes, also_accept: Iterable[bytes] = ()) -> None:
        if not secret:
            raise ValueError("the peer secret must not be empty")
        self._secret = bytes(secret)
        self._accepted = [self._secret, *(bytes(s) for s in also_accept if s)]

    def prove(self, own: Hello, theirs: Hello) -> bytes:
        return hmac.new(self._secret, transcript(own, theirs), hashlib.sha256).digest()

    def verify(self, theirs: Hello, own: Hello, proof: bytes, channel: Mapping[str, Any]) -> str | None:
        message = transcript(theirs, own)
        # Every candidate is compared (no early exit), each in constant time.
        ok = False
        for secret in self._accepted:
            ok |= hmac.compare_digest(hmac.new(secret, message, hashlib.sha256).digest(), proof)
        return None if ok else "the proof does not match the shared secret"

    def __repr__(self) -> str:  # never print the secret
        return f"SharedSecretAuth(<{len(self._accepted)} secret(s)>)"
