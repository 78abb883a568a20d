"""What replication adds to an active-plane write, measured in this process.

``vfsd sim gossip --cost`` prints, per write, in µs (best of several rounds, so a busy
machine inflates the numbers less than it would an average):

* the SET handler on a /run path (``vfsd.commands.strings.set_`` through the active plane's
  Ctx): the in-process core of the benchmarked write, without RESP parsing or sockets;
* the write hook (``GossipAgent.wrote``): the path marked written;
* a push: a batch of writes flushed to the peers of a 3-node cluster at once (the marks
  folded into the digest and the queue, the gossip messages built and encoded as the
  transport would: the round's shared fields packed once, each peer's header apart), per
  write;
* every transmission: that push and the retransmissions that follow until the queue is
  empty (``retransmit_limit(3)`` = 4 sends of each path), per write.

Not a core: it reads the clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from vfsd.active.agent import GossipAgent
from vfsd.active.plane import ActivePlane
from vfsd.commands.strings import set_
from vfsd.peers.frame import GOSSIP, FrameEncoder
from vfsd.sim.gossip import MemoryStore
from vfsd.store.keyspace import Keyspace

WALL_MS = 1_700_000_000_000


def _best(rounds: int, per: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / per * 1e6


def write_path_cost(keys: int = 5000, rounds: int = 15) -> dict[str, float]:
    db = Keyspace()
    plane = ActivePlane(db, "n0", lambda *args, **kwargs: None, 1 << 29)
    ctx = plane.ctx
    ctx.now_ms = WALL_MS
    hlc = plane.hlc
    agent = GossipAgent("n0", "n0:7946", MemoryStore(), hlc, random.Random(1), WALL_MS)
    agent.replica.fresh = False
    for i in (1, 2):
        agent.membership.on_alive(f"n{i}", i, 0, f"n{i}:7946", WALL_MS)
    agent.ready()
    paths = [b"/run/bench/%d" % i for i in range(keys)]
    value = b"x" * 100
    for path in paths:
        ctx.replace(path, value)
    versions = {path: db.data[path][2] for path in paths}

    def handler() -> None:
        for path in paths:
            set_(ctx, [b"SET", path, value])

    def hooks(batch: list[bytes]) -> None:
        for path in batch:
            rev = hlc.now(WALL_MS)
            agent.wrote(path, (versions[path], "n0"), rev)
            versions[path] = rev

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

    def hooked_batch() -> None:
        hooks(batch)
        agent.replica.dirty.clear()

    def pushed_batch() -> None:
        hooks(batch)
        agent.flush(WALL_MS)
        send(WALL_MS)
        agent.replica.queue.clear()

    def retransmitted_batch() -> None:
        hooks(batch)
        agent.flush(WALL_MS)
        send(WALL_MS)
        now = WALL_MS
        while agent.replica.queue:
            now += 200
            agent.next_gossip_ms = now
            agent.tick(now)
            send(now)

    set_cost = _best(rounds, keys, handler)
    hook_cost = _best(rounds, keys, lambda: (hooks(paths), agent.replica.dirty.clear()))
    base = _best(rounds, len(batch), hooked_batch)
    push_cost = _best(rounds, len(batch), pushed_batch) - base
    gossip_cost = _best(rounds, len(batch), retransmitted_batch) - base
    return {"set_handler_us": set_cost, "write_hook_us": hook_cost, "push_us": max(0.0, push_cost),
            "gossip_us": max(0.0, gossip_cost)}


def report() -> list[str]:
    cost = write_path_cost()
    return [
        f"SET handler on a /run path (in process):   {cost['set_handler_us']:6.2f} µs",
        f"+ write hook (the path marked):            {cost['write_hook_us']:6.2f} µs",
        f"  push to 2 peers at once (built, encoded): {cost['push_us']:6.2f} µs per write, batches of 100",
        f"+ every transmission, push and retransmits: {cost['gossip_us']:6.2f} µs per write, batches of 100",
    ]
