"""Deterministic simulation of the active plane's gossip cores.

Theory of operation
-------------------
A run is one seed. ``n`` nodes, each a real ``GossipAgent`` over an in-memory
``MemoryStore`` (the same contract the shell implements over the keyspace), talk
through a simulated network driven by an event queue in simulated milliseconds.
Every node's wall clock is the simulated time plus its own skew (some nodes run
minutes off); its HLC high-water mark is its only "disk" and survives crashes.

**Safety phase** (``safety_ms``): clients write, delete and write with short TTLs on
every side; the network loses, delays and duplicates messages (per-pair FIFO, as one
TCP connection is, unless ``reorder`` is set); partitions split the cluster and heal;
nodes crash and restart with an empty store and their persisted clock; event loops
stall. Every write checks that it is stamped after everything its node has seen
(causality despite skew).

**Liveness phase**: every fault is healed, loss stops, and the run waits for
convergence: every live node holds exactly the expected state, as of its own clock.
The expected state is derived from what survived: for each key, the highest-ranked
record any live node ever held (a node's history restarts when it crashes or resets).
That comparison means no deleted key came back (a tombstone anywhere in the surviving
history beats the older value), no expired key came back, and causally later writes
won. Then every node's *live root* — a hash over the versions of its live entries —
must be the same, and every node's incrementally kept digest must equal one recomputed
from its state. A run that does not converge within ``converge_ms`` fails and prints
the command that reproduces it.

``scaling`` runs one update, and one failure, through 1,000 or 10,000 nodes.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any
from zlib import crc32

from vfsd.active.agent import GossipAgent
from vfsd.active.digest import version_hash
from vfsd.active.gossip import merge_by_install
from vfsd.active.hlc import HLC
from vfsd.active.lww import Merged, Record, Tombstones
from vfsd.active.membership import ActiveSet, Member, identity_hash
from vfsd.active.profile import LAN, GossipProfile
from vfsd.active.wire import ALIVE as ALIVE_STATE

BASE_WALL_MS = 1_700_000_000_000


class MemoryStore:
    """``ReplicaStore`` over a dict ``key -> (kind, value, hlc, origin, deadline_ms)``.

    ``on_version(key, hlc, origin, tomb, deadline_ms)`` is told of every version the node
    comes to hold (the oracle's history).
    """

    def __init__(self, on_version: Callable[[bytes, int, str, bool, int], None] | None = None) -> None:
        self.data: dict[bytes, tuple[int, bytes, int, str, int]] = {}
        self.on_version = on_version

    def version(self, key: bytes) -> tuple[int, str] | None:
        e = self.data.get(key)
        return None if e is None else (e[2], e[3])

    def reads(self, keys: list[bytes]) -> list[tuple[int, bytes, int, str, int] | None]:
        return [self.data.get(key) for key in keys]

    def read(self, key: bytes) -> tuple[int, bytes, int, str, int] | None:
        return self.data.get(key)

    def install(self, key: bytes, kind: int, value: bytes, hlc: int, origin: str, deadline_ms: int) -> None:
        self.data[key] = (kind, value, hlc, origin, deadline_ms)
        if self.on_version is not None:
            self.on_version(key, hlc, origin, False, deadline_ms)

    def merge_newer(self, records: list[Record], start: int, merged: list[Merged], gone: Container[bytes]) -> int:
        return merge_by_install(self, records, start, merged, gone)

    def remove(self, key: bytes) -> None:
        del self.data[key]

    def restamp(self, key: bytes, hlc: int) -> None:
        kind, value, _, origin, deadline = self.data[key]
        self.data[key] = (kind, value, hlc, origin, deadline)
        if self.on_version is not None:
            self.on_version(key, hlc, origin, False, deadline)

    def keys(self) -> Iterable[bytes]:
        return list(self.data)

    def live(self, now_ms: int) -> dict[bytes, tuple[int, str]]:
        return {k: (e[2], e[3]) for k, e in self.data.items() if not (0 < e[4] <= now_ms)}


class _TrackedTombstones(Tombstones):
    __slots__ = ("hook",)

    def __init__(self, hook: Callable[[bytes, int, str, bool, int], None]) -> None:
        super().__init__()
        self.hook = hook

    def put(self, key: bytes, hlc: int, origin: str, deleted_at_ms: int, acquired: int) -> None:
        super().put(key, hlc, origin, deleted_at_ms, acquired)
        self.hook(key, hlc, origin, True, deleted_at_ms)


@dataclass
class SimConfig:
    """One run. Every field is a knob of the scenario; ``seed`` picks everything random."""

    seed: int = 0
    nodes: int = 5
    profile: GossipProfile = LAN
    safety_ms: int = 20_000
    converge_ms: int = 60_000
    loss: float = 0.05
    duplicate: float = 0.02
    delay_ms: tuple[int, int] = (1, 30)
    reorder: bool = False
    keys: int = 30
    ops_per_s: float = 20.0
    delete_share: float = 0.25
    ttl_share: float = 0.2
    ttl_ms: tuple[int, int] = (200, 5000)
    value_bytes: int = 32
    partitions: int = 2
    partition_ms: tuple[int, int] = (2000, 8000)
    crashes: int = 1
    down_ms: tuple[int, int] = (500, 5000)
    stalls: int = 1
    stall_ms: tuple[int, int] = (200, 2000)
    skewed: int = 1
    skew_ms: tuple[int, int] = (-120_000, 120_000)  # a spread within the HLC drift bound (5 min)
    check_every_ms: int = 100


@dataclass
class SimResult:
    seed: int
    converged: bool
    converge_ms: int | None
    rounds: float | None
    problems: list[str] = field(default_factory=list)
    writes: int = 0
    deletes: int = 0
    messages: int = 0
    bytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    reproduce: str = ""

    @property
    def ok(self) -> bool:
        return self.converged and not self.problems

    def summary(self) -> str:
        state = "ok" if self.ok else "FAILED"
        rounds = f"{self.rounds:.1f} rounds ({self.converge_ms} ms)" if self.rounds is not None else "no convergence"
        line = (f"seed {self.seed}: {state}: converged after {rounds}; {self.writes} writes, {self.deletes} deletes, "
                f"{self.messages} messages, {self.bytes} bytes")
        if not self.ok:
            line += "\n  " + "\n  ".join(self.problems[:10])
            line += f"\n  reproduce: {self.reproduce or f'vfsd sim gossip --seed {self.seed}'}"
        return line


class SimNode:
    def __init__(self, sim: Simulation, name: str, skew_ms: int) -> None:
        self.sim = sim
        self.name = name
        self.address = f"{name}:7946"
        self.skew_ms = skew_ms
        self.persisted_ms: int | None = None  # the HLC high-water mark: the node's only disk
        self.up = False
        self.stalled_until = 0
        self.generation = 0
        self.wake_at: int | None = None
        #: key -> (hlc, origin, tombstone, deadline_ms): the highest record this node ever held.
        self.history: dict[bytes, tuple[int, str, bool, int]] = {}
        #: key -> the latest tombstone version this node held (an expiry it may have collected since).
        self.tombs_seen: dict[bytes, tuple[int, str]] = {}
        self.agent: GossipAgent
        self.store: MemoryStore
        self.hlc: HLC

    def wall(self) -> int:
        return BASE_WALL_MS + self.sim.now + self.skew_ms

    def start(self, seeds: list[str]) -> None:
        self.generation += 1
        self.up = True
        self.history = {}
        self.tombs_seen = {}
        self.store = MemoryStore(self._saw)
        wall = self.wall()
        self.hlc = HLC() if self.persisted_ms is None else HLC.resume(self.persisted_ms)
        self.agent = GossipAgent(self.name, self.address, self.store, self.hlc,
                                 random.Random(self.sim.rng.getrandbits(64)), wall, profile=self.sim.config.profile,
                                 measure_bytes=self.sim.measure_bytes)
        self.agent.replica.tombstones = _TrackedTombstones(self._saw)
        self.agent.join(seeds, wall)
        self.settle()

    def crash(self) -> None:
        self.up = False
        self.generation += 1
        self.wake_at = None

    def _saw(self, key: bytes, hlc: int, origin: str, tomb: bool, deadline_ms: int) -> None:
        if origin == self.name and self.agent.replica.fresh:
            return  # written while alone: published (re-stamped) at first contact, or never
        self.history[key] = _later(self.history.get(key), (hlc, origin, tomb, deadline_ms))
        if tomb:
            seen = self.tombs_seen.get(key)
            if seen is None or (hlc, origin) > seen:
                self.tombs_seen[key] = (hlc, origin)

    def settle(self) -> None:
        """Hand the agent's Ready to the world and arm its timer."""
        ready = self.agent.ready()
        if ready.persist_high_water_ms is not None:
            self.persisted_ms = ready.persist_high_water_ms
        for out in ready.messages:
            self.sim.network_send(self, out)
        if ready.reset:
            self.sim.counters["resets"] = self.sim.counters.get("resets", 0) + 1
            self.history = {k: v for k, v in self.history.items() if self._still_held(k)}
        for event in ready.events:
            self.sim.on_event(self, event)
        deadline = self.agent.wake_ms - self.skew_ms - BASE_WALL_MS
        at = max(deadline, self.sim.now + 1)
        if self.wake_at is None or at < self.wake_at or self.wake_at <= self.sim.now:
            self.wake_at = at
            self.sim.schedule(at, ("wake", self.name, self.generation))

    def _still_held(self, key: bytes) -> bool:
        return key in self.store.data or key in self.agent.replica.tombstones

    def sweep(self) -> None:
        wall = self.wall()
        for key, (_kind, _value, hlc, origin, deadline) in list(self.store.data.items()):
            if 0 < deadline <= wall:
                del self.store.data[key]
                self.agent.expired(key, (hlc, origin), deadline)

    # -- client operations -----------------------------------------------------------

    def write(self, key: bytes, value: bytes, ttl_ms: int | None) -> None:
        wall = self.wall()
        self.sweep()
        seen = self.store.version(key)
        tomb = self.agent.replica.tombstones.get(key)
        rev = self.hlc.now(wall)
        for before in (seen, tomb[:2] if tomb else None):
            if before is not None and (rev, self.name) <= (before[0], before[1]):
                self.sim.problems.append(f"t={self.sim.now}: {self.name} wrote {key!r} at {rev} not after {before}")
        deadline = wall + ttl_ms if ttl_ms else 0
        self.store.data[key] = (0, value, rev, self.name, deadline)
        self._saw(key, rev, self.name, False, deadline)
        self.agent.wrote(key, seen, rev)
        self.agent.flush(wall)
        self.settle()

    def delete(self, key: bytes) -> bool:
        wall = self.wall()
        self.sweep()
        entry = self.store.data.pop(key, None)
        if entry is None:
            return False
        rev = self.agent.deleted(key, (entry[2], entry[3]), wall)
        self.agent.flush(wall)
        self.settle()
        return rev > 0

    def live_root(self, earliest_ms: int, latest_ms: int) -> int:
        """A hash over the versions of the live entries, leaving out those whose deadline falls
        between the earliest and the latest clock of the cluster (live on some nodes, expired
        on others, as each node's own clock says: both right)."""
        root = 0
        for key, (_kind, _value, hlc, origin, deadline) in self.store.data.items():
            if deadline == 0 or deadline > latest_ms:  # live by every clock (else: expired, or in between)
                root ^= version_hash(crc32(key), hlc, origin)
        return root


def _later(old: tuple[int, str, bool, int] | None, new: tuple[int, str, bool, int]) -> tuple[int, str, bool, int]:
    """The later of two records a node held for one key; an entry and its expiry are one write,
    kept in its live form (with its deadline) so each node's clock decides when it lapses."""
    if old is None:
        return new
    if old[:2] == new[:2]:
        tomb, live = (old, new) if old[2] else (new, old)
        if tomb[2] and not live[2] and live[3] > 0 and tomb[3] == live[3]:
            return live
        return max(old, new)
    return new if new[:2] > old[:2] else old


class Simulation:
    def __init__(self, config: SimConfig, *, measure_bytes: bool = True) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.measure_bytes = measure_bytes
        self.now = 0
        self._queue: list[tuple[int, int, Any]] = []
        self._seq = 0
        self.nodes: dict[str, SimNode] = {}
        self.by_address: dict[str, str] = {}
        self.groups: list[set[str]] | None = None  # a partition: who can reach whom
        self.loss = config.loss
        self.duplicate = config.duplicate
        #: Message types the network drops (a scenario that loses every push, say).
        self.drop_types: set[int] = set()
        self.last_delivery: dict[tuple[str, str], int] = {}
        self.problems: list[str] = []
        self.counters: dict[str, int] = {}
        self.messages = 0
        self.bytes = 0
        self.writes = 0
        self.deletes = 0
        self.events: list[tuple[int, str, Any]] = []
        skewed = set(self.rng.sample(range(config.nodes), min(config.skewed, config.nodes)))
        lo, hi = config.skew_ms
        skews = [self.rng.randint(lo, hi) if i in skewed else self.rng.randint(-50, 50) for i in range(config.nodes)]
        for i in range(config.nodes):
            node = SimNode(self, f"n{i:02d}", skews[i])
            self.nodes[node.name] = node
            self.by_address[node.address] = node.name

    # -- the event queue -----------------------------------------------------------------

    def schedule(self, at: int, event: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, event))

    def run_until(self, end: int, check: Callable[[], bool] | None = None) -> bool:
        """Process events up to ``end``; with ``check``, stop early (True) once it holds."""
        next_check = self.now
        while self._queue and self._queue[0][0] <= end:
            at, _, event = heapq.heappop(self._queue)
            if check is not None and at >= next_check:
                self.now = max(self.now, next_check)
                if check():
                    return True
                next_check = self.now + self.config.check_every_ms
            self.now = max(self.now, at)
            self._dispatch(event)
        self.now = max(self.now, end)
        return check() if check is not None else False

    def _dispatch(self, event: Any) -> None:
        kind = event[0]
        if kind == "deliver":
            _, to, sender, out_type, body = event
            node = self.nodes[to]
            if not node.up:
                return
            if self.groups is not None and not self._reachable(sender, to):
                return
            if node.stalled_until > self.now:
                self.schedule(node.stalled_until, event)
                return
            node.agent.receive(sender, out_type, body, node.wall())
            node.settle()
        elif kind == "wake":
            _, name, generation = event
            node = self.nodes[name]
            if not node.up or generation != node.generation:
                return
            if node.stalled_until > self.now:
                self.schedule(node.stalled_until, event)
                return
            if node.wake_at is not None and node.wake_at > self.now:
                return  # superseded by an earlier wake that moved the timer
            node.wake_at = None
            node.sweep()
            node.agent.tick(node.wall())
            node.settle()
        elif kind == "call":
            event[1]()

    # -- the network -----------------------------------------------------------------------

    def _reachable(self, a: str, b: str) -> bool:
        if self.groups is None:
            return True
        for group in self.groups:
            if a in group:
                return b in group
        return False

    def network_send(self, node: SimNode, out: Any) -> None:
        self.messages += 1
        to = out.to if out.to is not None else self.by_address.get(out.address or "")
        if to is None or to == node.name:
            return
        if self.groups is not None and not self._reachable(node.name, to):
            return
        if self.rng.random() < self.loss or out.type in self.drop_types:
            return
        lo, hi = self.config.delay_ms
        at = self.now + self.rng.randint(lo, hi)
        pair = (node.name, to)
        if not self.config.reorder:
            at = max(at, self.last_delivery.get(pair, 0))
            self.last_delivery[pair] = at
        event = ("deliver", to, node.name, out.type, out.body)
        self.schedule(at, event)
        if self.rng.random() < self.duplicate:
            self.schedule(at, event)

    def on_event(self, node: SimNode, event: Any) -> None:
        self.events.append((self.now, node.name, event))

    # -- the run ----------------------------------------------------------------------------

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.up]

    def start_all(self) -> None:
        names = list(self.nodes)
        for i, name in enumerate(names):
            seeds = [self.nodes[names[0]].address] if i else []
            self.schedule(self.rng.randint(0, 500), ("call", lambda n=self.nodes[name], s=seeds: n.start(s)))

    def plan_faults(self) -> None:
        c, rng = self.config, self.rng
        span = c.safety_ms
        for _ in range(c.partitions):
            start = rng.randint(1000, max(1001, span - 1000))
            length = rng.randint(*c.partition_ms)
            self.schedule(start, ("call", self._partition))
            self.schedule(min(span, start + length), ("call", self._heal))
        for _ in range(c.crashes):
            start = rng.randint(1000, max(1001, span - 1000))
            victim = rng.choice(list(self.nodes))
            self.schedule(start, ("call", lambda v=victim: self._crash(v)))
            self.schedule(min(span, start + rng.randint(*c.down_ms)), ("call", lambda v=victim: self._restart(v)))
        for _ in range(c.stalls):
            start = rng.randint(1000, max(1001, span - 1000))
            victim = rng.choice(list(self.nodes))
            length = rng.randint(*c.stall_ms)
            self.schedule(start, ("call", lambda v=victim, d=length: self._stall(v, d)))

    def _partition(self) -> None:
        names = list(self.nodes)
        self.rng.shuffle(names)
        cut = self.rng.randint(1, len(names) - 1)
        self.groups = [set(names[:cut]), set(names[cut:])]
        self.counters["partitions"] = self.counters.get("partitions", 0) + 1

    def _heal(self) -> None:
        self.groups = None

    def _crash(self, name: str) -> None:
        node = self.nodes[name]
        if node.up:
            node.crash()
            self.counters["crashes"] = self.counters.get("crashes", 0) + 1

    def _restart(self, name: str) -> None:
        node = self.nodes[name]
        if node.up:
            return
        seeds = [n.address for n in self.up_nodes()]
        self.rng.shuffle(seeds)
        node.start(seeds[:2])

    def _stall(self, name: str, ms: int) -> None:
        node = self.nodes[name]
        node.stalled_until = max(node.stalled_until, self.now + ms)
        self.counters["stalls"] = self.counters.get("stalls", 0) + 1

    def plan_workload(self) -> None:
        c, rng = self.config, self.rng
        total = int(c.ops_per_s * c.safety_ms / 1000)
        for _ in range(total):
            at = rng.randint(600, c.safety_ms)
            self.schedule(at, ("call", self._op))

    def _op(self) -> None:
        c, rng = self.config, self.rng
        nodes = self.up_nodes()
        if not nodes:
            return
        node = rng.choice(nodes)
        if node.stalled_until > self.now:
            return
        key = b"/run/k%03d" % rng.randrange(c.keys)
        if rng.random() < c.delete_share:
            if node.delete(key):
                self.deletes += 1
            return
        ttl = rng.randint(*c.ttl_ms) if rng.random() < c.ttl_share else None
        node.write(key, rng.randbytes(c.value_bytes), ttl)
        self.writes += 1

    # -- scripted scenarios (tests drive these) ---------------------------------------------

    def boot(self, limit_ms: int = 30_000) -> bool:
        """Start every node and run until each knows all the others as alive."""
        self.start_all()
        n = len(self.nodes)
        return self.run_until(self.now + limit_ms, lambda: all(
            node.up and node.agent.membership.alive_count() == n for node in self.nodes.values()))

    def run_for(self, ms: int, until: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + ms, until)

    def write(self, name: str, key: bytes, value: bytes = b"v", ttl_ms: int | None = None) -> None:
        self.nodes[name].write(key, value, ttl_ms)
        self.writes += 1

    def delete(self, name: str, key: bytes) -> bool:
        done = self.nodes[name].delete(key)
        self.deletes += int(done)
        return done

    def value(self, name: str, key: bytes) -> bytes | None:
        """What a client of node ``name`` reads at ``key`` now."""
        node = self.nodes[name]
        entry = node.store.data.get(key)
        if entry is None or 0 < entry[4] <= node.wall():
            return None
        return entry[1]

    def partition(self, *groups: Iterable[str]) -> None:
        self.groups = [set(g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def crash(self, name: str) -> None:
        self._crash(name)

    def restart(self, name: str) -> None:
        self._restart(name)

    def stall(self, name: str, ms: int) -> None:
        self._stall(name, ms)

    def inject(self, sender: str, to: str, msg_type: int, body: Any) -> None:
        """Deliver a hand-made frame, as if ``sender`` had sent it (a hostile or broken peer)."""
        self.schedule(self.now + 1, ("deliver", to, sender, msg_type, body))

    # -- the oracle --------------------------------------------------------------------------

    def expected(self) -> dict[bytes, tuple[int, str, bool, int]]:
        """For each key, the highest record any live node ever held (see the module docstring)."""
        best: dict[bytes, tuple[int, str, bool, int]] = {}
        for node in self.up_nodes():
            for key, seen in node.history.items():
                best[key] = _later(best.get(key), seen)
        return best

    @staticmethod
    def _live_at(expected: dict[bytes, tuple[int, str, bool, int]], wall: int) -> dict[bytes, tuple[int, str]]:
        return {k: (h, o) for k, (h, o, tomb, deadline) in expected.items()
                if not tomb and not (0 < deadline <= wall)}

    def converged(self) -> bool:
        """Every live node holds exactly the expected live entries, as of its own clock."""
        nodes = self.up_nodes()
        if not nodes:
            return False
        expected = self.expected()
        return all(not self._differences(node, expected) for node in nodes)

    def _differences(self, node: SimNode, expected: dict[bytes, tuple[int, str, bool, int]]) -> list[bytes]:
        wall = node.wall()
        live = node.store.live(wall)
        want = self._live_at(expected, wall)
        out = []
        for key in set(live) | set(want):
            if live.get(key) == want.get(key):
                continue
            # A node that only ever got the expired form of an entry (from a node whose clock is
            # ahead) cannot show it before its own clock reaches the deadline: the entry, expired
            # early, and allowed — whether it still holds that tombstone or has collected it.
            if key not in live and expected[key][3] > 0 and node.tombs_seen.get(key) == want[key]:
                continue
            out.append(key)
        return out

    def diagnose(self) -> list[str]:
        out = []
        expected = self.expected()
        for node in self.up_nodes():
            live = node.store.live(node.wall())
            want = self._live_at(expected, node.wall())
            for key in sorted(self._differences(node, expected)):
                out.append(f"{node.name} holds {live.get(key)} at {key!r}, expected {want.get(key)}")
        return out

    def run(self) -> SimResult:
        c = self.config
        self.start_all()
        self.plan_faults()
        self.plan_workload()
        self.run_until(c.safety_ms)
        # Liveness: heal everything, stop losing messages, and wait for convergence.
        self.groups = None
        self.loss = 0.0
        self.duplicate = 0.0
        for node in self.nodes.values():
            if not node.up:
                self._restart(node.name)
        healed = self.now
        ok = self.run_until(healed + c.converge_ms, self.converged)
        took = self.now - healed if ok else None
        problems = list(self.problems)
        if not ok:
            problems += self.diagnose() or ["the live roots still differ"]
        nodes = self.up_nodes()
        if ok:  # the replicas agree: one root hash over their live entries
            walls = [n.wall() for n in nodes]
            roots = {n.live_root(min(walls), max(walls)) for n in nodes}
            if len(roots) != 1:
                problems.append(f"converged, yet {len(roots)} different live roots")
        for node in nodes:  # the digest every node kept incrementally is the one its state has
            problems += [f"{node.name}: {p}" for p in node.agent.replica.check()]
        counters: dict[str, int] = dict(self.counters)
        for node in self.up_nodes():
            for k, v in node.agent.stats().items():
                if k.startswith(("refused_", "resets", "tombstones_collected", "pull_timeouts", "stalls",
                                 "refutations", "restamped")):
                    counters[k] = counters.get(k, 0) + v
        bytes_sent = sum(n.agent.bytes_sent for n in self.nodes.values() if hasattr(n, "agent"))
        return SimResult(c.seed, ok, took, None if took is None else took / c.profile.gossip_interval_ms,
                         problems, self.writes, self.deletes, self.messages, bytes_sent, counters)


def run_seed(config: SimConfig, reproduce: str = "") -> SimResult:
    result = Simulation(config).run()
    result.reproduce = reproduce
    return result


def run_random(seed: int, *, nodes: tuple[int, int] = (3, 5), safety_ms: int = 4000) -> SimResult:
    """One random scenario (``random_config``), with the command that reproduces it."""
    span = f"{nodes[0]}" if nodes[0] == nodes[1] else f"{nodes[0]}-{nodes[1]}"
    return run_seed(random_config(seed, nodes=nodes, safety_ms=safety_ms),
                    f"vfsd sim gossip --seed {seed} --nodes {span} --safety-ms {safety_ms}")


def random_config(seed: int, *, nodes: tuple[int, int] = (3, 5), safety_ms: int = 4000) -> SimConfig:
    """A random scenario for ``seed``: cluster size, fault mix and rates all drawn from it."""
    rng = random.Random(seed * 7919 + 1)
    return SimConfig(
        seed=seed,
        nodes=rng.randint(*nodes),
        safety_ms=safety_ms,
        loss=rng.choice([0.0, 0.02, 0.1, 0.2]),
        duplicate=rng.choice([0.0, 0.05]),
        delay_ms=rng.choice([(1, 5), (1, 40), (5, 150)]),
        reorder=rng.random() < 0.3,
        ops_per_s=rng.choice([5.0, 20.0, 50.0]),
        partitions=rng.randint(0, 2),
        crashes=rng.randint(0, 2),
        stalls=rng.randint(0, 1),
        skewed=rng.randint(0, 2),
    )


# -- the scaling run ---------------------------------------------------------------------------

@dataclass
class ScaleResult:
    nodes: int
    what: str
    rounds: float
    ms: int
    bytes_per_node: float
    reached: float  # share of the nodes reached

    def line(self) -> str:
        return (f"{self.nodes:>6} nodes  {self.what:<22} {self.rounds:6.1f} rounds  {self.ms / 1000:7.2f} s  "
                f"{self.bytes_per_node:10.0f} bytes/node  ({self.reached:.2%} reached)")


class _SharedMembers(dict):  # type: ignore[type-arg]
    """A copy-on-write member table for the scaling run: every node starts out knowing every
    other as alive, and materializes its own row for a member the first time it deals with it.

    Simulating 10,000 full membership tables would take 10**8 rows; the protocol code is the
    real one, only the storage of rows nobody has touched yet is shared.
    """

    def __init__(self, everyone: dict[str, tuple[str, int]], me: Member, now_ms: int) -> None:
        super().__init__({me.name: me})
        self.everyone = everyone
        self.gone: set[str] = set()
        self.now_ms = now_ms

    def _make(self, name: str) -> Member | None:
        if name in self.gone or name not in self.everyone:
            return None
        address, boot = self.everyone[name]
        m = Member(name, address, boot, 0, ALIVE_STATE, self.now_ms)
        dict.__setitem__(self, name, m)
        return m

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        m = dict.get(self, name)
        return m if m is not None else (self._make(name) or default)

    def __getitem__(self, name: str) -> Member:
        m = self.get(name)
        if m is None:
            raise KeyError(name)
        return m

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or (name in self.everyone and name not in self.gone)

    def __delitem__(self, name: str) -> None:
        self.gone.add(name)
        if dict.__contains__(self, name):
            dict.__delitem__(self, name)

    def __iter__(self) -> Any:
        return iter([n for n in self.everyone if n in self])

    def __len__(self) -> int:
        return len([n for n in self.everyone if n in self])

    def items(self) -> Any:  # type: ignore[override]
        return [(n, self[n]) for n in self]

    def values(self) -> Any:  # type: ignore[override]
        return [self[n] for n in self]


class _SharedActive(ActiveSet):
    """Every member but us is active, except those this node has seen go (copy-on-write)."""

    __slots__ = ("shared", "index", "me", "out")

    def __init__(self, shared: list[str], index: dict[str, int], me: str) -> None:
        super().__init__()
        self.shared, self.index, self.me = shared, index, me
        self.out: set[str] = {me}

    def __len__(self) -> int:
        return len(self.shared) - len(self.out)

    def __contains__(self, name: object) -> bool:
        return name in self.index and name not in self.out

    def add(self, name: str) -> None:
        if name in self.index:
            self.out.discard(name)

    def discard(self, name: str) -> None:
        if name in self.index and name != self.me:
            self.out.add(name)

    def sample(self, rng: random.Random, k: int, exclude: str | None = None, extra: list[str] | None = None) -> list[str]:
        extra = extra or []
        size = len(self.shared) + len(extra)
        want = min(k, len(self) + len(extra) - (1 if exclude in self else 0))
        chosen: list[str] = []
        while len(chosen) < want:
            i = rng.randrange(size)
            name = self.shared[i] if i < len(self.shared) else extra[i - len(self.shared)]
            if name in self.out and i < len(self.shared) or name == exclude or name in chosen:
                continue
            chosen.append(name)
        return chosen

    def order(self, rng: random.Random) -> Any:
        # A random-looking permutation without a list per node: a random offset and a stride
        # coprime with the size visit every member once per round, in a node-specific order.
        n = len(self.shared)
        stride = rng.randrange(1, n) if n > 1 else 1
        while math.gcd(stride, n) != 1:
            stride += 1
        offset = rng.randrange(n)
        return (self.shared[(offset + i * stride) % n] for i in range(n) if self.shared[(offset + i * stride) % n]
                not in self.out)

    def smallest(self) -> str | None:
        return min((n for n in self.shared if n not in self.out), default=None)


def _bootstrapped(n: int, seed: int, profile: GossipProfile, aligned: bool = False) -> Simulation:
    """``n`` nodes that already know each other (a settled cluster), on a lossless network,
    with anti-entropy off so dissemination and detection are measured alone."""
    config = SimConfig(seed=seed, nodes=n, profile=profile, loss=0.0, duplicate=0.0, delay_ms=(1, 5),
                       partitions=0, crashes=0, stalls=0, skewed=0, ops_per_s=0)
    sim = Simulation(config, measure_bytes=True)
    rng = sim.rng
    wall = BASE_WALL_MS
    nodes = list(sim.nodes.values())
    everyone: dict[str, tuple[str, int]] = {}
    for node in nodes:
        node.up = True
        node.generation += 1
        node.skew_ms = 0
        node.store = MemoryStore()
        node.hlc = HLC()
        node.agent = GossipAgent(node.name, node.address, node.store, node.hlc, random.Random(rng.getrandbits(64)),
                                 wall, profile=profile, measure_bytes=True)
        everyone[node.name] = (node.address, node.agent.boot)
    names = list(everyone)
    index = {name: i for i, name in enumerate(names)}
    view = 0
    for name, (_, boot) in everyone.items():
        view ^= identity_hash(name, boot)
    for node in nodes:
        m = node.agent.membership
        m.members = _SharedMembers(everyone, m.me, wall)
        m.active = _SharedActive(names, index, node.name)
        m.view = view
        node.agent.replica.fresh = False
        node.agent.replica.next_sync_ms = 1 << 62
        if aligned:  # every node gossips at the same instant: synchronous rounds, as models assume
            node.agent.next_gossip_ms = wall + profile.gossip_interval_ms
        node.agent.ready()
        node.settle()
    return sim


def scaling(n: int, seed: int = 1, profile: GossipProfile = LAN, *, failure: bool = True,
            aligned: bool = False) -> list[ScaleResult]:
    """Rounds, time at the profile's interval, and bytes per node for one update to reach
    every node, and for one failure to be known everywhere (dead or left in every view).

    Bytes per node are everything every node sent meanwhile (probes included), over ``n``.
    ``aligned``: all nodes gossip in the same instant, as round-based models (Serf's) assume;
    otherwise each node keeps its own phase, as real nodes do, and a relay waits half a round
    on average instead of a whole one.
    """
    results: list[ScaleResult] = []
    sim = _bootstrapped(n, seed, profile, aligned)
    nodes = list(sim.nodes.values())
    sim.run_until(sim.now + 2 * profile.probe_interval_ms)  # let probing settle in
    writer = nodes[0]
    key = b"/run/scale"
    start, bytes0 = sim.now, _bytes(nodes)
    writer.write(key, b"x" * 32, None)
    target = writer.store.version(key)
    reached = 0

    def everyone_has_it() -> bool:
        nonlocal reached
        reached = sum(1 for node in nodes if node.store.version(key) == target)
        return reached == n

    done = sim.run_until(start + 60_000, everyone_has_it)
    took = sim.now - start
    results.append(ScaleResult(n, "one update", took / profile.gossip_interval_ms, took,
                               (_bytes(nodes) - bytes0) / n, reached / n))
    if not done:
        return results
    if failure:
        victim = nodes[-1]
        start, bytes0 = sim.now, _bytes(nodes)
        victim.crash()
        others = [node for node in nodes if node is not victim]
        known = 0

        def everyone_knows() -> bool:
            nonlocal known
            known = 0
            for node in others:
                m = node.agent.membership.get(victim.name)
                if m is not None and m.state >= 2:
                    known += 1
            return known == len(others)

        limit = profile.suspicion_max_ms(n) + 30 * profile.probe_interval_ms
        sim.run_until(start + limit, everyone_knows)
        took = sim.now - start
        results.append(ScaleResult(n, "failure detected", took / profile.gossip_interval_ms, took,
                                   (_bytes(nodes) - bytes0) / n, known / max(1, len(others))))
    return results


def scaling_report(n: int, seed: int = 1, profile: GossipProfile = LAN) -> list[str]:
    """The scaling run at ``n`` nodes as printable lines, beside the round-based model."""
    lines = [r.line() for r in scaling(n, seed, profile)]
    aligned = scaling(n, seed, profile, failure=False, aligned=True)[0]
    lines.append(aligned.line().replace("one update      ", "one update, rounds", 1))
    rounds, seconds = serf_model(n, profile.gossip_nodes, profile.gossip_interval_ms)
    lines.append(f"{n:>6} nodes  model: 99.99% after {rounds} rounds = {seconds:.2f} s (push gossip, fanout "
                 f"{profile.gossip_nodes}, {profile.gossip_interval_ms} ms; Serf publishes ~2.2 s for 1,000 nodes)")
    return lines


def _bytes(nodes: list[SimNode]) -> int:
    return sum(node.agent.bytes_sent for node in nodes)


def serf_model(n: int, fanout: int = 3, interval_ms: int = 200, rounds_cap: int = 200) -> tuple[int, float]:
    """The textbook push-gossip model Serf's convergence simulator plots: rounds until
    99.99% of ``n`` nodes are infected, each infected node telling ``fanout`` random ones."""
    infected = 1.0
    for r in range(1, rounds_cap + 1):
        infected = n - (n - infected) * math.exp(-fanout * infected / n)
        if infected >= 0.9999 * n:
            return r, r * interval_ms / 1000
    return rounds_cap, rounds_cap * interval_ms / 1000


