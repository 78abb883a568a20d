"""Every knob of the peer port, with its default and why.

The few an operator is expected to touch are also node settings (``vfsd.config``:
``[peers] cluster_id``, ``max_frame_bytes``, ``send_queue_max_bytes``,
``[security] peer_secret``); ``PeerSettings.from_config`` maps them. The rest are
defaults tuned for a LAN, changed here (or in tests, to make time short).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vfsd.peers.frame import HANDSHAKE_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT

MiB = 1024 * 1024


@dataclass(frozen=True)
class PeerSettings:
    #: Largest frame this node accepts, header included (16 MiB). Peers learn it from HELLO
    #: and never send more; a message larger than the peer's limit is dropped ("oversize")
    #: at the sender. Raft must keep an entry batch, and a snapshot chunk, under it.
    max_frame_bytes: int = 16 * MiB
    #: Per peer, the most bytes of frames waiting to be written (64 MiB) ...
    send_queue_max_bytes: int = 64 * MiB
    #: ... and the most frames (65536). Past either bound the OLDEST waiting frames are
    #: dropped ("queue_full"): Raft and gossip both recover from a lost message, and the
    #: newest is the one worth sending (the latest heartbeat, the latest value). A peer
    #: that stops reading is therefore never allowed to grow memory; if it also sends
    #: nothing, idle_timeout_ms closes its connection.
    send_queue_max_frames: int = 65536
    #: asyncio's write buffer high-water mark per connection (1 MiB; low water is a quarter).
    #: Above it, frames stay in the send queue, where the bound above applies; it is also the
    #: most bytes handed to one write() call. Memory per peer is at most
    #: send_queue_max_bytes + 2 * write_buffer_high_bytes.
    write_buffer_high_bytes: int = 1 * MiB
    #: TCP connect timeout for a dial (3 s).
    connect_timeout_ms: int = 3000
    #: A connection must complete HELLO/AUTH within this (5 s) or is closed ("handshake_timeout").
    handshake_timeout_ms: int = 5000
    #: An open connection that has sent nothing for this long (1 s) sends a PING.
    keepalive_interval_ms: int = 1000
    #: An open connection that has received nothing for this long (10 s) is closed
    #: ("idle_timeout"). At least 3 keepalive intervals, so a peer whose loop stalls for a
    #: couple of seconds is not cut off. Failure detection is the job of Raft's heartbeats
    #: and gossip's probes, which are faster; this only frees half-open connections.
    idle_timeout_ms: int = 10000
    #: Reconnect backoff: the n-th retry waits d/2 + U(0, d/2), d = min(reconnect_max_ms,
    #: reconnect_base_ms * 2**n); reset once a connection is established (vfsd.peers.backoff).
    #: The cap (1 s) bounds how long a healed partition or a restarted peer waits for the next
    #: dial: at most a second, for the cost of a dial or two a second to a peer that is down.
    reconnect_base_ms: int = 50
    reconnect_max_ms: int = 1000
    #: How often timeouts and keepalives are checked (250 ms): their granularity.
    tick_interval_ms: int = 250
    #: Most connections at once, in either direction, handshaking or open (1024).
    max_connections: int = 1024
    #: With no authentication configured (auth scheme "none"), accept peer connections from
    #: loopback addresses only, as Redis's protected mode does for clients.
    protected_mode: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"peer settings: {what}")

        need(HANDSHAKE_MAX_FRAME_BYTES <= self.max_frame_bytes <= MAX_FRAME_BYTES_LIMIT,
             f"max_frame_bytes must be in {HANDSHAKE_MAX_FRAME_BYTES}..{MAX_FRAME_BYTES_LIMIT}")
        need(self.send_queue_max_bytes >= self.max_frame_bytes, "send_queue_max_bytes must be >= max_frame_bytes")
        need(self.send_queue_max_frames >= 1, "send_queue_max_frames must be >= 1")
        need(self.write_buffer_high_bytes >= 4096, "write_buffer_high_bytes must be >= 4096")
        need(min(self.connect_timeout_ms, self.handshake_timeout_ms, self.keepalive_interval_ms,
                 self.tick_interval_ms) > 0, "timeouts and intervals must be positive")
        need(self.idle_timeout_ms >= 3 * self.keepalive_interval_ms,
             "idle_timeout_ms must be at least 3 * keepalive_interval_ms")
        need(0 < self.reconnect_base_ms <= self.reconnect_max_ms, "need 0 < reconnect_base_ms <= reconnect_max_ms")
        need(self.max_connections >= 1, "max_connections must be >= 1")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> "PeerSettings":
        """The settings a node's Config names (``vfsd.config.Config``), the rest defaults."""
        values: dict[str, Any] = {
            "max_frame_bytes": config.peer_max_frame_bytes,
            "send_queue_max_bytes": config.peer_send_queue_max_bytes,
            "protected_mode": config.protected_mode,
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> "PeerSettings":
        return dataclasses.replace(self, **changes)
