"""What replication adds to an active-plane write, measured in this process.

``vfsd sim gossip --cost`` prints, per write, in µs (best of several rounds, so a busy
machine inflates the numbers less than it would an average):

* the SET handler on a /run path (``vfsd.commands.strings.set_`` through the active plane's
  Ctx): the in-process core of the benchmarked write, without RESP parsing or sockets;
* the write hook: the same SET on a replicated plane (``ReplicatedCtx``, which marks the
  path written for the replication core), less the plain one;
* a push: a batch of writes flushed to the peers of a 3-node cluster at once (the marks
  folded into the digest and the queue, the records read from the keyspace, the gossip
  messages built and encoded as the transport would: the round's shared fields packed
  once, each peer's header apart), per write;
* every transmission: in a cluster of 4 with ``push_nodes`` = 2 (so a push no longer
  reaches everyone), the push and the gossip rounds that follow until the queue is empty
  (``retransmit_limit(4)`` = 4 sends of each path), per write.

Not a core: it reads the clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vfsd.active.agent import GossipAgent
from vfsd.active.keyspace_store import KeyspaceStore
from vfsd.active.plane import ActivePlane
from vfsd.active.wire import on_roots
from vfsd.commands.strings import set_
from vfsd.paths import DEFAULT_ROOTS
from vfsd.peers.frame import GOSSIP, FrameEncoder
from vfsd.store.keyspace import Keyspace

WALL_MS = 1_700_000_000_000


def _best(rounds: int, per: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / per * 1e6


class _Hooks:
    """The shell's side of ``ReplicationHooks``: the plane marks writes in the core's own dict."""

    def __init__(self, agent: GossipAgent) -> None:
        self.written = agent.replica.dirty

    def schedule(self) -> None:
        pass  # (the rounds below flush by hand)


def write_path_cost(keys: int = 5000, rounds: int = 15) -> dict[str, float]:
    def sink(*args: Any, **kwargs: Any) -> None:
        pass

    lone = ActivePlane(Keyspace(), "n0", sink, 1 << 29)
    db = Keyspace()
    plane = ActivePlane(db, "n0", sink, 1 << 29, replicated=True)
    for ctx in (lone.ctx, plane.ctx):
        ctx.now_ms = WALL_MS
    store = KeyspaceStore(db, plane, on_roots(DEFAULT_ROOTS), sink)
    store.now_ms = WALL_MS
    agent = GossipAgent("n0", "n0:7946", store, plane.hlc, random.Random(1), WALL_MS)
    plane.hlc = agent.hlc
    agent.replica.fresh = False
    for i in (1, 2):
        agent.membership.on_alive(f"n{i}", i, 0, f"n{i}:7946", WALL_MS)
    agent.ready()
    paths = [b"/run/bench/%d" % i for i in range(keys)]
    value = b"x" * 100
    for path in paths:
        set_(lone.ctx, [b"SET", path, value])
        set_(plane.ctx, [b"SET", path, value])
    agent.replica.dirty.clear()
    plane.ctx.hooks = _Hooks(agent)

    def sets(ctx: Any, batch: list[bytes]) -> None:
        for path in batch:
            set_(ctx, [b"SET", path, value])

    encoder = FrameEncoder()

    def send(now: int) -> None:
        shared: Any = None
        packed = b""
        for out in agent.ready().messages:
            n = out.shared
            if not n:
                encoder.encode(GOSSIP, out.type, out.body)
                continue
            if out.body[-n] is not shared:
                shared, packed = out.body[-n], encoder.pack_fields(out.body[-n:])
            encoder.encode_joined(GOSSIP, out.type, out.body[:-n], packed, n)

    batch = paths[:100]

    def marked_batch() -> None:
        sets(plane.ctx, batch)
        agent.replica.dirty.clear()

    def pushed_batch() -> None:
        sets(plane.ctx, batch)
        agent.flush(WALL_MS)
        send(WALL_MS)

    def retransmitted_batch() -> None:
        sets(plane.ctx, batch)
        agent.flush(WALL_MS)
        send(WALL_MS)
        now = WALL_MS
        while agent.replica.queue:
            now += 200
            agent.next_gossip_ms = now
            agent.tick(now)
            send(now)

    set_cost = _best(rounds, keys, lambda: sets(lone.ctx, paths))
    hook_cost = _best(rounds, keys, lambda: (sets(plane.ctx, paths), agent.replica.dirty.clear())) - set_cost
    base = _best(rounds, len(batch), marked_batch)
    push_cost = _best(rounds, len(batch), pushed_batch) - base
    agent.membership.on_alive("n3", 3, 0, "n3:7946", WALL_MS)  # 4 members: pushes no longer reach everyone
    agent.profile = agent.replica.profile = replace(agent.profile, push_nodes=2)
    agent.ready()
    gossip_cost = _best(rounds, len(batch), retransmitted_batch) - base
    return {"set_handler_us": set_cost, "write_hook_us": max(0.0, hook_cost), "push_us": max(0.0, push_cost),
            "gossip_us": max(0.0, gossip_cost)}


def report() -> list[str]:
    cost = write_path_cost()
    return [
        f"SET handler on a /run path (in process):   {cost['set_handler_us']:6.2f} µs",
        f"+ write hook (the path marked):            {cost['write_hook_us']:6.2f} µs",
        f"  push to 2 peers at once (built, encoded): {cost['push_us']:6.2f} µs per write, batches of 100",
        f"+ every transmission, push and retransmits: {cost['gossip_us']:6.2f} µs per write, batches of 100",
    ]
