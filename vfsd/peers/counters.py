"""The peer port's counters, as INFO shows them (sans-IO: plain integers in dicts).

One ``PeerCounters`` per transport, shared by its connections: the connection
core counts what it decodes and the control frames it emits, the transport shell
counts the messages it writes and drops. Keys come from fixed tables (families of
the registry, REASONS, DROP_REASONS, CLOSE_REASONS), never from what a peer sent,
so a hostile peer cannot grow these dicts.
"""

from __future__ import annotations

from typing import Any, Final

from vfsd.peers.frame import REASONS, WIRE, Registry

#: Why an outgoing message was dropped instead of sent.
DROP_REASONS: Final[dict[str, str]] = {
    "queue_full": "the peer's send queue was over send_queue_max_bytes or send_queue_max_frames: oldest dropped",
    "unreachable": "queued for a peer whose dial failed (Raft and gossip retransmit what matters)",
    "unknown_peer": "sent to a peer id that is neither added nor connected",
    "oversize": "larger than the peer's max_frame_bytes",
    "removed": "queued for a peer that was removed, or for a transport that stopped",
    "no_handler": "received for a family no handler is registered for",
}

#: Why this node closes a healthy connection (no protocol error), as its CLOSE frame says.
CLOSE_REASONS: Final[dict[str, str]] = {
    "duplicate": "a second connection to the same peer lost the tie-break",
    "shutdown": "the transport is stopping",
    "removed": "the peer was removed",
}


class PeerCounters:
    __slots__ = ("registry", "frames_in", "bytes_in", "frames_out", "bytes_out", "protocol_errors",
                 "refused_by_peer", "dropped_frames", "handler_errors", "connections_accepted",
                 "connections_dialed", "dial_failures", "handshakes_completed", "reconnects", "duplicates_closed")

    def __init__(self, registry: Registry = WIRE) -> None:
        self.registry = registry
        families = registry.families()
        #: Per family code: frames and bytes (headers included) received and sent.
        self.frames_in = dict.fromkeys(families, 0)
        self.bytes_in = dict.fromkeys(families, 0)
        self.frames_out = dict.fromkeys(families, 0)
        self.bytes_out = dict.fromkeys(families, 0)
        #: Connections this node closed because the peer broke the protocol, by reason.
        self.protocol_errors = dict.fromkeys(REASONS, 0)
        #: Connections the peer closed with a reason frame, by that reason ("other" if not a known one).
        self.refused_by_peer = dict.fromkeys([*REASONS, *CLOSE_REASONS, "other"], 0)
        self.dropped_frames = dict.fromkeys(DROP_REASONS, 0)
        #: Exceptions a family's handler raised (logged; the message is dropped).
        self.handler_errors = dict.fromkeys(families, 0)
        self.connections_accepted = 0
        self.connections_dialed = 0
        self.dial_failures = 0
        self.handshakes_completed = 0
        #: Connections re-established to a peer after its previous one was lost.
        self.reconnects = 0
        self.duplicates_closed = 0

    def snapshot(self) -> dict[str, Any]:
        """Every counter, per-family ones keyed by family name."""
        name = self.registry.family_name

        def by_family(table: dict[int, int]) -> dict[str, int]:
            return {name(code): n for code, n in table.items()}

        return {
            "frames_in": by_family(self.frames_in), "bytes_in": by_family(self.bytes_in),
            "frames_out": by_family(self.frames_out), "bytes_out": by_family(self.bytes_out),
            "protocol_errors": dict(self.protocol_errors), "refused_by_peer": dict(self.refused_by_peer),
            "dropped_frames": dict(self.dropped_frames), "handler_errors": by_family(self.handler_errors),
            "connections_accepted": self.connections_accepted, "connections_dialed": self.connections_dialed,
            "dial_failures": self.dial_failures, "handshakes_completed": self.handshakes_completed,
            "reconnects": self.reconnects, "duplicates_closed": self.duplicates_closed,
        }
