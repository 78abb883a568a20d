"""Protected mode, decided at accept time from the peer address (no non-loopback network needed)."""

from __future__ import annotations

from typing import Any

from vfsd.config import Config
from vfsd.node import Node
from vfsd.server import PROTECTED, Client, is_loopback


class FakeTransport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 6379)}.get(name)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def connect(node: Node, host: str) -> FakeTransport:
    transport = FakeTransport((host, 50000))
    Client(node).connection_made(transport)  # type: ignore[arg-type]
    return transport


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.4.5.6") and is_loopback("::1")
    assert not is_loopback("10.1.2.3") and not is_loopback("192.168.0.1") and not is_loopback("2001:db8::1")


def test_non_loopback_client_refused_without_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    node = Node(Config(node_id="t", data_dir=str(tmp_path), port=0))
    refused = connect(node, "10.1.2.3")
    assert refused.written == [PROTECTED] and refused.closed
    assert PROTECTED.startswith(b"-DENIED ")
    allowed = connect(node, "127.0.0.1")
    assert allowed.written == [] and not allowed.closed
    assert node.stats.rejected_connections == 1  # counted, as Redis counts protected-mode refusals


def test_password_or_disabled_protected_mode_admits_remote_clients(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with_password = Node(Config(node_id="t", data_dir=str(tmp_path / "a"), port=0, requirepass="pw"))
    assert connect(with_password, "10.1.2.3").written == []
    unprotected = Node(Config(node_id="t", data_dir=str(tmp_path / "b"), port=0, protected_mode=False))
    assert connect(unprotected, "10.1.2.3").written == []
