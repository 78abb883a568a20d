"""Tuning of the gossip cores: one frozen profile, with memberlist's named defaults.

Every knob, its default in the LAN profile, and the formula it feeds. ``n`` is the
number of members this node believes alive or suspect, itself included. The
defaults are hashicorp/memberlist's ``DefaultLANConfig`` (``DefaultLocalConfig`` and
``DefaultWANConfig`` for the other two profiles) wherever memberlist has the knob;
the rest are ours and say why.

Failure detection (SWIM, with Lifeguard's refinements):

* ``probe_interval_ms`` = 1000: one member is probed per interval, in a shuffled
  round-robin order, so every member is probed at least once per ``n`` intervals.
* ``probe_timeout_ms`` = 500: how long a direct ping waits for its ack before
  ``indirect_checks`` = 3 other members are asked to ping the target for us.
* Local health (Lifeguard §IV-A): a score ``h`` in ``[0, awareness_max_multiplier)``
  (default 8) rises when this node misses acks or nacks it should have received,
  has to refute a suspicion of itself, or detects that its own event loop stalled,
  and falls with each successful probe. Probe interval and timeout are multiplied
  by ``h + 1``: a node that is itself slow waits longer before accusing anyone.
* Suspicion (Lifeguard §IV-B): a suspected member is declared dead after
  ``min = suspicion_mult * max(1, log10(max(1, n))) * probe_interval_ms``
  (``suspicion_mult`` = 4) when ``k = suspicion_mult - 2`` independent members have
  confirmed the suspicion, ``max = suspicion_max_timeout_mult * min``
  (``suspicion_max_timeout_mult`` = 6) with no confirmation, and in between
  ``max - (max - min) * log(c + 1) / log(k + 1)`` after ``c`` confirmations
  (``k`` = 0, so ``min``, when fewer than ``k + 2`` members exist).
* ``gossip_to_the_dead_ms`` = 30000: dead members still receive gossip this long, so
  one that was only slow learns it was declared dead and refutes it.
* ``reconnect_interval_ms`` = 1000: every interval, with probability
  ``min(1, reconnect_fanout / n)`` (``reconnect_fanout`` = 3), this node pings one
  random dead member, so the two sides of a healed partition find each other within
  about one interval (Serf's reconnect, made fast).

Dissemination:

* ``gossip_interval_ms`` = 200, ``gossip_nodes`` = 3 (the fanout): every interval,
  queued updates go to 3 random members.
* ``push_nodes`` = 8 (ours): a local change goes out at once to this many random
  members. In a cluster of at most ``push_nodes + 1`` that is every member, so the
  push is all there is: nothing is retransmitted or relayed, and a write is on every
  node one hop later (with ``gossip_nodes`` alone, one node of five would wait for a
  relay at the next round, up to ``gossip_interval_ms``). Beyond that, the epidemic
  takes over from the members the push reached.
* ``retransmit_mult`` = 4: an update is sent ``retransmit_mult * ceil(log10(n + 1))``
  times by every node that learns it (SWIM's infection-style dissemination).
* ``gossip_max_bytes`` = 65536: the largest gossip message; more waits for the next round.

Anti-entropy:

* ``sync_interval_ms`` = 2000, scaled by ``scale(n) = 1`` for ``n <= 32``, else
  ``ceil(log2(n) - log2(32)) + 1`` (memberlist's ``pushPullScale``): every interval a
  node pulls from one random member — a root hash when they agree, the differing
  buckets when they do not (memberlist's push-pull is 30 s; ours is cheaper because
  it sends no member list and no state when nothing differs, so it can run often).
* ``sync_busy_records`` = 1000, ``sync_busy_max_ms`` = 30000: when at least
  ``sync_busy_records`` records were written here or received by push in the last
  interval (a stream of writes, 500 a second in this profile), the periodic pull waits,
  but never longer than ``sync_busy_max_ms`` since the last one started (periodic, or a
  join's or a repair's that completed): a comparison under such a stream mostly finds
  records still in flight, at the cost of listing thousands of versions around them. A
  periodic pull started in a quiet interval gives way to a stream that begins while it
  runs, at its first reply after 64 records (``YIELD_RECORDS``) were written here or
  received by push (``pulls_yielded``): it counts as not made, and the ticks after it
  defer as above. So does the repair pull from a member back from suspect (it was pushed
  to all along); the one from a member back from dead, or new, runs to its end.
* ``sync_timeout_ms`` = 2000: a pull that hears nothing for this long is abandoned (each
  request is answered in one round trip, a page of a full transfer included; a lost one
  costs at most this before the next pull starts over).
* ``sync_list_max`` = 64: a subtree holding at most this many records is compared
  by listing its versions rather than by descending further.
* ``max_rows`` = 1024: membership rows per pull reply (a rotating window beyond that).
* ``max_message_bytes`` = 1 MiB: the largest message the cores produce (repairs are
  split to fit); the peer transport's frame limit must be at least this, and a value
  larger than ``max_message_bytes - 4 KiB`` cannot be replicated.
* ``max_queued_paths`` = 65536, ``max_queued_updates`` = 4096: the gossip queues' bounds;
  past them the most-sent, oldest items are dropped and left to anti-entropy.

Membership life cycle:

* ``horizon_ms`` = 3600000 (one hour): a dead member is reaped this long after it
  died, and tombstones are kept at most this long when some member never
  acknowledges them. Longer than the partitions the active plane merges across; a
  member cut off for longer rejoins by a reset (``vfsd.active.gossip``).
* ``left_grace_ms`` = 30000: a member that left, or was replaced by its own restart,
  still counts for tombstone collection this long (messages it sent before going
  may still be on their way), then is reaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class GossipProfile:
    name: str = "lan"
    probe_interval_ms: int = 1000
    probe_timeout_ms: int = 500
    indirect_checks: int = 3
    awareness_max_multiplier: int = 8
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    gossip_to_the_dead_ms: int = 30_000
    reconnect_interval_ms: int = 1000
    reconnect_fanout: int = 3
    gossip_interval_ms: int = 200
    gossip_nodes: int = 3
    push_nodes: int = 8
    retransmit_mult: int = 4
    gossip_max_bytes: int = 65_536
    sync_interval_ms: int = 2000
    sync_timeout_ms: int = 2000
    sync_busy_records: int = 1000
    sync_busy_max_ms: int = 30_000
    sync_list_max: int = 64
    max_rows: int = 1024
    max_message_bytes: int = 1 << 20
    horizon_ms: int = 3_600_000
    left_grace_ms: int = 30_000
    max_queued_updates: int = 4096
    max_queued_paths: int = 65_536

    def __post_init__(self) -> None:
        for field in ("probe_interval_ms", "probe_timeout_ms", "gossip_interval_ms", "sync_interval_ms",
                      "sync_timeout_ms", "sync_busy_max_ms", "reconnect_interval_ms", "horizon_ms", "left_grace_ms"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive")
        if self.probe_timeout_ms > self.probe_interval_ms:
            raise ValueError("probe_timeout_ms must not exceed probe_interval_ms")
        if self.gossip_nodes < 1 or self.push_nodes < 1 or self.retransmit_mult < 1 or self.suspicion_mult < 1:
            raise ValueError("gossip_nodes, push_nodes, retransmit_mult and suspicion_mult must be at least 1")
        if self.awareness_max_multiplier < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("awareness_max_multiplier and suspicion_max_timeout_mult must be at least 1")
        if self.gossip_max_bytes > self.max_message_bytes or self.gossip_max_bytes < 1024:
            raise ValueError("gossip_max_bytes must be between 1 KiB and max_message_bytes")
        if self.left_grace_ms >= self.horizon_ms:
            raise ValueError("left_grace_ms must be shorter than horizon_ms")

    # -- formulas ----------------------------------------------------------------

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def suspicion_min_ms(self, n: int) -> int:
        return int(self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_ms)

    def suspicion_max_ms(self, n: int) -> int:
        return self.suspicion_max_timeout_mult * self.suspicion_min_ms(n)

    def confirmations_wanted(self, n: int) -> int:
        k = self.suspicion_mult - 2
        return 0 if n - 2 < k else max(0, k)

    @staticmethod
    def suspicion_timeout_ms(min_ms: int, max_ms: int, k: int, confirmations: int) -> int:
        if k < 1:
            return min_ms
        frac = math.log(confirmations + 1) / math.log(k + 1)
        return max(min_ms, math.floor(max_ms - frac * (max_ms - min_ms)))

    def sync_interval_for(self, n: int) -> int:
        return self.sync_interval_ms * _push_pull_scale(n)


def _push_pull_scale(n: int) -> int:
    if n <= 32:
        return 1
    return math.ceil(math.log2(n) - math.log2(32)) + 1


LAN = GossipProfile()
LOCAL = replace(LAN, name="local", indirect_checks=1, retransmit_mult=2, suspicion_mult=3,
                probe_timeout_ms=200, gossip_interval_ms=100, gossip_to_the_dead_ms=15_000,
                sync_interval_ms=1000, sync_timeout_ms=1000, sync_busy_max_ms=15_000, left_grace_ms=15_000)
WAN = replace(LAN, name="wan", suspicion_mult=6, probe_timeout_ms=3000, probe_interval_ms=5000,
              gossip_nodes=4, gossip_interval_ms=500, gossip_to_the_dead_ms=60_000,
              reconnect_interval_ms=5000, sync_interval_ms=10_000, sync_timeout_ms=10_000, sync_busy_max_ms=120_000,
              left_grace_ms=60_000, horizon_ms=6 * 3_600_000)
PROFILES = {p.name: p for p in (LOCAL, LAN, WAN)}
