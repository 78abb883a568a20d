"""A lockstep network of RaftCores for scripted scenarios (as etcd's raft tests use).

Messages are delivered only when a test says so (``deliver``, ``stabilize``), each
node's Ready is carried out at once and in full (persist, send, apply, advance), and
each node keeps a durable store so that ``crash``/``restart`` lose exactly what was
not persisted. Member ids are the node names ("n1", "n2", ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vfsd.raft import (
    ConfChange,
    DroppedProposal,
    DroppedRead,
    Entry,
    EntryKind,
    HardState,
    Member,
    Message,
    RaftCore,
    RaftSettings,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
)

CLUSTER = "test-cluster"
SETTINGS = RaftSettings(election_ticks=10, heartbeat_ticks=1)


def member(name: str) -> Member:
    return Member(name, name.split("-")[0], f"{name}.test:17000")


@dataclass
class Disk:
    """What survives a crash."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""
    entries: list[Entry] = field(default_factory=list)

    def snapshot_bytes(self, index: int) -> bytes | None:
        return self.snapshot_data if self.snapshot is not None and self.snapshot.index == index else None

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.index if self.snapshot else 0


class Node:
    def __init__(self, net: Network, member_id: str, core: RaftCore, disk: Disk) -> None:
        self.net = net
        self.id = member_id
        self.core = core
        self.disk = disk
        self.up = True
        self.applied: list[Entry] = []  # every entry applied since the last (re)start, in order
        self.state: dict[int, bytes] = {}  # index -> data of applied NORMAL entries (the "state machine")
        self.applied_index = core.applied_index
        self.read_states: list[ReadState] = []
        self.dropped_proposals: list[DroppedProposal] = []
        self.dropped_reads: list[DroppedRead] = []
        self.readies: list[Ready] = []
        self.persist_hook: Callable[[Node, Ready], bool] | None = None  # return False to crash before fsync
        self.alias: str | None = None  # the member id whose address this process took over (wiped data dir)

    def handle_ready(self) -> bool:
        core = self.core
        if not self.up or not core.has_ready():
            return False
        rd = core.ready()
        self.readies.append(rd)
        self.net.outbox.extend(rd.messages)
        if self.persist_hook is not None and not self.persist_hook(self, rd):
            return True
        disk = self.disk
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            disk.snapshot, disk.snapshot_data = meta, rd.snapshot.data
            # As WriteAheadLog.compact: keep what follows only if the log holds (index, term).
            held = [e for e in disk.entries if e.index == meta.index and e.term == meta.term]
            disk.entries = [e for e in disk.entries if e.index > meta.index] if held else []
        if rd.truncate_from is not None:
            disk.entries = [e for e in disk.entries if e.index < rd.truncate_from]
        disk.entries.extend(rd.entries)
        if rd.hard_state is not None:
            disk.hard_state = rd.hard_state
        self.net.outbox.extend(rd.messages_after_persist)
        if rd.snapshot is not None:
            self.applied_index = rd.snapshot.meta.index
            self.state = {int(k): v for k, v in _decode_state(rd.snapshot.data).items()}
        for e in rd.committed_entries:
            assert e.index == self.applied_index + 1, (self.id, e.index, self.applied_index)
            self.applied_index = e.index
            self.applied.append(e)
            if e.kind == EntryKind.NORMAL:
                self.state[e.index] = e.data
        self.read_states.extend(rd.read_states)
        self.dropped_proposals.extend(rd.dropped_proposals)
        self.dropped_reads.extend(rd.dropped_reads)
        core.advance(rd)
        return True

    def take_snapshot(self) -> None:
        """Snapshot the state machine at its applied index and compact (as the shell would)."""
        index = self.applied_index
        meta = self.core.snapshot_meta_at(index)
        self.disk.snapshot, self.disk.snapshot_data = meta, _encode_state(self.state)
        self.core.compact(index)
        self.disk.entries = [e for e in self.disk.entries if e.index > index]


def _encode_state(state: dict[int, bytes]) -> bytes:
    import msgpack

    return msgpack.packb({str(k): v for k, v in state.items()}, use_bin_type=True)


def _decode_state(data: bytes) -> dict[str, bytes]:
    import msgpack

    return msgpack.unpackb(data, raw=False) if data else {}


class Network:
    def __init__(self, voters: int = 3, learners: int = 0, settings: RaftSettings = SETTINGS, seed: int = 0,
                 names: Iterable[str] | None = None) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.now_ms = 1_000
        self.outbox: list[Message] = []
        self.blocked: set[tuple[str, str]] = set()  # (from, to) pairs that drop messages
        self.drop: Callable[[Message], bool] | None = None
        self.refusals: list[tuple[str, str]] = []
        names = list(names) if names is not None else [f"n{i}" for i in range(1, voters + learners + 1)]
        voter_members = [member(n) for n in names[:voters]]
        learner_members = [member(n) for n in names[voters:]]
        self.nodes: dict[str, Node] = {}
        for name in names:
            disk = Disk()
            core = RaftCore.bootstrap(settings, cluster_id=CLUSTER, member_id=name, members=voter_members,
                                      learners=learner_members, rng=random.Random(self.rng.random()),
                                      now_ms=self.now_ms, snapshots=_Source(disk))
            self.nodes[name] = Node(self, name, core, disk)
        self.process()

    # -- driving ------------------------------------------------------------------

    def core(self, name: str) -> RaftCore:
        return self.nodes[name].core

    def process(self) -> None:
        """Carry out every node's Ready until none has one."""
        busy = True
        while busy:
            busy = False
            for node in self.nodes.values():
                while node.handle_ready():
                    busy = True

    def deliver(self, select: Callable[[Message], bool] | None = None) -> list[Message]:
        """Deliver the messages in flight (those ``select`` picks, or all), once each."""
        self.process()
        taken = [m for m in self.outbox if select is None or select(m)]
        self.outbox = [m for m in self.outbox if not (select is None or select(m))]
        for m in taken:
            self._deliver(m)
        self.process()
        return taken

    def _deliver(self, m: Message) -> None:
        # Delivery goes by address: a process that took over a wiped member's address
        # receives what is still sent to that member's id.
        target = self.nodes.get(m.recipient) or next(
            (n for n in self.nodes.values() if n.alias == m.recipient), None)
        if target is None or not target.up or (m.sender, m.recipient) in self.blocked:
            return
        if self.drop is not None and self.drop(m):
            return
        reason = target.core.step(m, self.now_ms)
        if reason is not None:
            self.refusals.append((m.recipient, reason))

    def stabilize(self, max_rounds: int = 200) -> None:
        for _ in range(max_rounds):
            self.process()
            if not self.outbox:
                return
            self.deliver()
        raise AssertionError("network did not settle")

    def tick(self, name: str, n: int = 1) -> None:
        node = self.nodes[name]
        for _ in range(n):
            self.now_ms += 1
            node.core.tick(self.now_ms)
        self.process()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            self.now_ms += 10
            for node in self.nodes.values():
                if node.up:
                    node.core.tick(self.now_ms)
            self.stabilize()

    def fire_election_timer(self, name: str) -> None:
        """Tick ``name`` until its election timer fires (nobody else ticks)."""
        core = self.core(name)
        self.tick(name, core.randomized_election_ticks - core.election_elapsed)

    def elect(self, name: str) -> None:
        self.fire_election_timer(name)
        self.stabilize()
        assert self.core(name).role is Role.LEADER, f"{name} is {self.core(name).role}"

    def heartbeat(self, leader: str) -> None:
        self.tick(leader, self.settings.heartbeat_ticks)
        self.stabilize()

    def propose(self, name: str, data: bytes) -> None:
        self.core(name).propose(data, self.now_ms)
        self.stabilize()

    def conf_change(self, name: str, change: ConfChange) -> None:
        self.core(name).propose_conf_change(change, self.now_ms)
        self.stabilize()

    # -- faults -------------------------------------------------------------------

    def isolate(self, name: str) -> None:
        for other in self.nodes:
            if other != name:
                self.blocked.add((name, other))
                self.blocked.add((other, name))

    def cut(self, a: str, b: str) -> None:
        self.blocked.add((a, b))
        self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    def crash(self, name: str) -> None:
        node = self.nodes[name]
        node.up = False
        self.outbox = [m for m in self.outbox if m.recipient != name]

    def crash_during_next_write(self, name: str) -> None:
        """Power loss while ``name`` writes its next Ready: nothing of it reaches the disk
        (the messages that could leave before the write did leave)."""

        def hook(node: Node, rd: Ready) -> bool:
            node.persist_hook = None
            self.crash(node.id)
            return False

        self.nodes[name].persist_hook = hook

    def restart(self, name: str, *, wiped_as: str | None = None) -> Node:
        """Start ``name`` again from its disk (or, with ``wiped_as``, from an empty disk
        under that new member id)."""
        old = self.nodes[name]
        if wiped_as is not None:
            disk = Disk()
            core = RaftCore.restore(self.settings, cluster_id=CLUSTER, member_id=wiped_as, hard_state=HardState(),
                                    snapshot=None, entries=[], applied_index=0, rng=random.Random(self.rng.random()),
                                    now_ms=self.now_ms, snapshots=_Source(disk))
            node = Node(self, wiped_as, core, disk)
            node.alias = name if wiped_as != name else None
            del self.nodes[name]
            self.nodes[wiped_as] = node
            self.process()
            return node
        disk = old.disk
        applied = disk.snapshot.index if disk.snapshot else 0
        core = RaftCore.restore(self.settings, cluster_id=CLUSTER, member_id=name, hard_state=disk.hard_state,
                                snapshot=disk.snapshot, entries=list(disk.entries), applied_index=applied,
                                rng=random.Random(self.rng.random()), now_ms=self.now_ms, snapshots=_Source(disk))
        node = Node(self, name, core, disk)
        if disk.snapshot is not None:
            node.state = {int(k): v for k, v in _decode_state(disk.snapshot_data).items()}
        self.nodes[name] = node
        self.process()
        return node

    def add_node(self, name: str) -> Node:
        """A fresh node that knows nothing yet (it waits to be added)."""
        disk = Disk()
        core = RaftCore.restore(self.settings, cluster_id=CLUSTER, member_id=name, hard_state=HardState(),
                                snapshot=None, entries=[], applied_index=0, rng=random.Random(self.rng.random()),
                                now_ms=self.now_ms, snapshots=_Source(disk))
        node = Node(self, name, core, disk)
        self.nodes[name] = node
        self.process()
        return node

    # -- looking ------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.up and node.core.role is Role.LEADER]

    def leader(self) -> str:
        leaders = self.leaders()
        assert len(leaders) == 1, f"leaders: {leaders}"
        return leaders[0]

    def applied_data(self, name: str) -> list[bytes]:
        node = self.nodes[name]
        return [node.state[i] for i in sorted(node.state)]


class _Source:
    def __init__(self, disk: Disk) -> None:
        self.disk = disk

    def snapshot_data(self, index: int) -> bytes | None:
        return self.disk.snapshot_bytes(index)
