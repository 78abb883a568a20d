"""Deterministic simulation of the Raft core under faults (FoundationDB/TigerBeetle style).

Theory of operation
-------------------
One seed drives everything: a ``random.Random(seed)`` picks the cluster (3-5 voters,
0-2 learners unless fixed), every message delay, every fault and every client
operation, and seeds each core's own generator. Simulated time is an integer count
of milliseconds and the run is a queue of timed events, so a seed always replays
the same run, step for step. Nothing here reads a clock or touches a file.

A simulated *process* runs one incarnation of a member: its core, a disk and a
tiny key-value state machine (set / cas / get on a few keys). Its shell obligations
are carried out as the real shell's will be (see ``Ready``): messages go out when
the Ready is taken, the disk write completes after a random latency, then come the
messages that had to wait for it, the snapshot, the committed entries and the reads.

Faults (the *nemesis*): messages dropped, delayed (hence reordered) and duplicated;
partitions, symmetric and one-way, and isolating the leader; crashes (the disk keeps
only what was written: a crash during a write keeps a random prefix of it, in the
order the shell writes: snapshot, truncation, entries, hard state), crashes injected
right after a vote is granted durably, restarts, every
process crashing at once, wiped data directories (the process comes back under a new
member id and an *operator* replaces the old member); clock skew jumps (for entry
time stamps); membership changes; leadership transfers; snapshots and compaction.

After every step the touched process is checked, incrementally:

* election safety: at most one leader per term;
* log matching: an (index, term) names one entry everywhere, with the same previous
  term (so, by induction, the same log prefix);
* leader completeness: a new leader holds every entry committed so far;
* state-machine safety: no two processes commit or apply different entries at one
  index, and the state at an index is the same wherever it is reached (snapshots too);
* a process's commit index never moves back, nor across a restart below what its disk
  holds; entry times never decrease along a log;
* a read released by ReadIndex has an index at or past everything committed anywhere
  when it was requested (§6.4), and the core refused no message for a reason that
  only a protocol bug can cause.

Every few hundred steps (and at the end) whole logs are compared against the record.
Then the client history is checked for linearizability (``linearizability``), and a
liveness phase heals everything and requires a leader, and every member applying a
new proposal from every member, within a bound. A failure raises :class:`SimFailure`,
whose message ends with ``reproduce: python -m vfsd sim raft --seed N``.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from vfsd.raft import (
    ConfChange,
    ConfChangeError,
    Entry,
    EntryKind,
    HardState,
    Member,
    Message,
    ProposalId,
    RaftCore,
    RaftSettings,
    Ready,
    Role,
    SnapshotMeta,
    message_from_wire,
)
from vfsd.raft.messages import VoteResponse
from vfsd.sim.linearizability import History, check_history

__all__ = ["DEFAULT_STEPS", "SimConfig", "SimFailure", "SimReport", "RaftSimulation", "run_seed", "measure_failover"]

DEFAULT_STEPS = 3000
TICK_MS = 10
CLUSTER_ID = "sim-cluster"
KEYS = ("k0", "k1", "k2")

#: Core settings for the simulation: default timing, small byte limits so that
#: batching, flow control and chunked snapshots are exercised by small logs.
SIM_RAFT_SETTINGS = RaftSettings(
    max_append_bytes=300,
    max_inflight_appends=4,
    max_inflight_bytes=2048,
    snapshot_chunk_bytes=128,
    snapshot_chunks_in_flight=2,
    max_apply_bytes=512,
)

# Reasons a core refuses a message that an honest cluster never produces.
_BUG_REFUSALS = ("refused: conflicts with committed entry", "refused: second leader in term",
                 "refused: acknowledges unknown entries", "refused: unknown read round", "refused: malformed")


@dataclass(frozen=True)
class SimConfig:
    seed: int
    voters: int | None = None  # None: 3..5, chosen by the seed
    learners: int | None = None  # None: 0..2, chosen by the seed
    steps: int = DEFAULT_STEPS  # events in the fault phase
    #: None: SIM_RAFT_SETTINGS with pre-vote and check-quorum each off in one seed of
    #: five (safety must not depend on them; they only keep leaders stable).
    raft: RaftSettings | None = None
    liveness_ticks: int = 400  # bound for the liveness phase
    #: Share of messages passed through msgpack and message_from_wire on the way
    #: (strict decoding of everything the cores send; sampled because it costs a
    #: quarter of the run time when done for every message).
    wire_share: float = 0.2

    def reproduce(self) -> str:
        extra = ""
        if self.voters is not None:
            extra += f" --nodes {self.voters}"
        if self.steps != DEFAULT_STEPS:
            extra += f" --steps {self.steps}"
        return f"reproduce: python -m vfsd sim raft --seed {self.seed}{extra}"


class SimFailure(AssertionError):
    """An invariant broke (or liveness failed); the message ends with the repro line."""

    def __init__(self, config: SimConfig, what: str, trace: list[str]) -> None:
        self.config = config
        self.what = what
        self.trace = trace
        tail = "\n".join(trace[-40:])
        super().__init__(f"seed {config.seed}: {what}\nlast events:\n{tail}\n{config.reproduce()}")


@dataclass
class SimReport:
    seed: int
    voters: int
    learners: int
    steps: int = 0
    sim_ms: int = 0
    terms_led: int = 0
    committed: int = 0
    client_ops: int = 0
    reads_served: int = 0
    crashes: int = 0
    wipes: int = 0
    snapshots_installed: int = 0
    conf_changes: int = 0
    transfers: int = 0
    messages: int = 0
    history_ops: int = 0
    liveness_ms: int = 0


class _Disk:
    """What a process's data directory holds durably."""

    __slots__ = ("hard_state", "snapshot", "snapshot_data", "entries")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""
        self.entries: list[Entry] = []

    def snapshot_bytes(self, index: int) -> bytes | None:
        if self.snapshot is not None and self.snapshot.index == index:
            return self.snapshot_data
        return None

    def compact_to(self, index: int, term: int) -> None:
        """WriteAheadLog.compact: keep what follows if the log holds (index, term)."""
        held = [e for e in self.entries if e.index == index]
        if held and held[0].term == term:
            self.entries = [e for e in self.entries if e.index > index]
        else:
            self.entries = []


class _Source:
    __slots__ = ("disk",)

    def __init__(self, disk: _Disk) -> None:
        self.disk = disk

    def snapshot_data(self, index: int) -> bytes | None:
        return self.disk.snapshot_bytes(index)


class _Process:
    """One incarnation of a member: core, disk, state machine, pending client work."""

    def __init__(self, name: str, member_id: str, incarnation: int, core: RaftCore, disk: _Disk) -> None:
        self.name = name
        self.member_id = member_id
        self.incarnation = incarnation
        self.core = core
        self.disk = disk
        self.up = True
        self.in_flight: Ready | None = None
        self.kv: dict[str, str] = {}
        self.applied_index = core.applied_index
        self.seen_commit = core.commit_index
        self.led_term = 0
        self.skew_ms = 0
        self.compact_every = 0
        self.proposals: dict[int, tuple[int, str]] = {}  # seq -> (history handle, kind)
        self.reads: dict[bytes, tuple[int, str, int]] = {}  # context -> (handle, key, committed when asked)
        self.waiting_reads: list[tuple[int, int, str]] = []  # (index, handle, key)
        self.conf_proposals: dict[int, ConfChange] = {}
        self.dropped: set[int] = set()  # seqs of proposals the core dropped


# Event kinds.
_TICK, _DELIVER, _PERSIST, _CLIENT, _NEMESIS, _RESTART, _HEAL = range(7)


class RaftSimulation:
    def __init__(self, config: SimConfig, trace_len: int = 200) -> None:
        self.config = config
        rng = self.rng = random.Random(config.seed)
        self.voters = config.voters if config.voters is not None else rng.randint(3, 5)
        self.learners = config.learners if config.learners is not None else rng.choice((0, 0, 1, 2))
        self.settings = config.raft if config.raft is not None else replace(
            SIM_RAFT_SETTINGS, pre_vote=rng.random() >= 0.2, check_quorum=rng.random() >= 0.2)
        self.report = SimReport(config.seed, self.voters, self.learners)
        self.now = 0
        self._queue: list[tuple[int, int, int, Any, Any]] = []
        self._seq = 0
        self._trace: deque[tuple[int, str, Any]] = deque(maxlen=trace_len)
        self.procs: dict[str, _Process] = {}  # member id -> its newest incarnation
        self._names = 0
        self.history = History()
        # Network state.
        self.group: dict[str, int] = {}  # member id -> partition group
        self.one_way: set[tuple[str, str]] = set()  # blocked (sender, recipient)
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.max_delay_ms = 5
        self.faults_on = True
        self.clients_on = True
        # Operator.
        self.plan: list[Callable[[], ConfChange | None]] = []
        self.conf_in_flight: tuple[str, int, int] | None = None  # (member id, seq, deadline)
        self.wiped: dict[str, str] = {}  # old member id -> new member id awaiting replacement
        self.removed: set[str] = set()
        # The record the checks compare against.
        self.leader_of_term: dict[int, str] = {}
        self.entry_at: dict[tuple[int, int], tuple[Any, ...]] = {}
        self.committed_term: dict[int, int] = {}
        self.max_committed = 0
        self.applied_at: dict[int, tuple[Any, ...]] = {}
        #: Leases as the committed log grants them, path -> (owner, token, deadline by entry time,
        #: released): the check that no two holders overlap (_check_lease).
        self.lease_log: dict[str, tuple[str, int, int, bool]] = {}
        self.state_at: dict[int, int] = {}
        # Omniscience for the history: which proposal each write is, and when (and with
        # what result) its entry was first applied anywhere.
        self.handle_of: dict[tuple[str, int], int] = {}
        self.first_applied: dict[tuple[str, int], tuple[int, Any]] = {}
        self._ctx = 0
        self._bootstrap()

    # -- setup ---------------------------------------------------------------------

    def _new_member(self) -> Member:
        self._names += 1
        name = f"n{self._names}"
        return Member(f"{name}-{self.rng.getrandbits(24):06x}", name, f"{name}.sim:17000")

    def _bootstrap(self) -> None:
        members = [self._new_member() for _ in range(self.voters)]
        learners = [self._new_member() for _ in range(self.learners)]
        for m in members + learners:
            disk = _Disk()
            core = RaftCore.bootstrap(self.settings, cluster_id=CLUSTER_ID, member_id=m.member_id,
                                      members=members, learners=learners, rng=random.Random(self.rng.random()),
                                      now_ms=0, snapshots=_Source(disk))
            self._start(m.name, m.member_id, 0, core, disk)
        self._push(self.rng.randint(5, 20), _CLIENT)
        self._push(self.rng.randint(50, 150), _NEMESIS)

    def _start(self, name: str, member_id: str, incarnation: int, core: RaftCore, disk: _Disk) -> _Process:
        proc = _Process(name, member_id, incarnation, core, disk)
        proc.compact_every = self.rng.randint(15, 60)
        proc.skew_ms = self.rng.choice((0, 0, self.rng.randint(-3000, 3000)))
        if disk.snapshot is not None:
            proc.kv = _decode_kv(disk.snapshot_data)
            self._check_state(proc, disk.snapshot.index, "restart from snapshot")
        self.procs[member_id] = proc
        self.group.setdefault(member_id, 0)
        self._push(self.now + self.rng.randint(1, TICK_MS), _TICK, proc, incarnation)
        self._after_input(proc)
        return proc

    # -- the event loop ------------------------------------------------------------

    def _push(self, at: int, kind: int, a: Any = None, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, a, b))

    def run(self) -> SimReport:
        try:
            self._run_steps(self.config.steps)
            self._full_check()
            self._liveness()
            self._full_check()
            self._check_history()
        except SimFailure:
            raise
        except Exception as exc:  # a crash inside a core or the sim is a failure of the seed too
            raise self._fail(f"{type(exc).__name__}: {exc}") from exc
        self.report.sim_ms = self.now
        return self.report

    def _run_steps(self, steps: int, until: Callable[[], bool] | None = None, deadline: int | None = None) -> bool:
        queue = self._queue
        for _ in range(steps):
            if until is not None and until():
                return True
            if not queue or (deadline is not None and queue[0][0] > deadline):
                return until is not None and until()
            at, _, kind, a, b = heapq.heappop(queue)
            self.now = at
            self.report.steps += 1
            if kind == _DELIVER:
                self._deliver(a, b)
            elif kind == _TICK:
                self._tick(a, b)
            elif kind == _PERSIST:
                self._persist(a, b)
            elif kind == _CLIENT:
                self._client()
            elif kind == _NEMESIS:
                self._nemesis()
            elif kind == _RESTART:
                self._restart(a)
            elif kind == _HEAL:
                self._heal()
            if self.report.steps % 500 == 0:
                self._full_check()
        return until is not None and until()

    def _tick(self, proc: _Process, incarnation: int) -> None:
        if not proc.up or proc.incarnation != incarnation or self.procs.get(proc.member_id) is not proc:
            return
        self._push(self.now + TICK_MS, _TICK, proc, incarnation)
        proc.core.tick(self.now + proc.skew_ms)
        self._after_input(proc)
        self._operator_tick()

    def _after_input(self, proc: _Process) -> None:
        self._observe(proc)
        if proc.in_flight is None and proc.up and proc.core.has_ready():
            rd = proc.core.ready()
            self._check_ready(proc, rd)
            for m in rd.messages:
                self._send(proc, m)
            proc.in_flight = rd
            latency = self.rng.choice((0, 0, 1, 1, 2, 3))
            if latency == 0:
                self._persist(proc, proc.incarnation)
            else:
                self._push(self.now + latency, _PERSIST, proc, proc.incarnation)

    # -- network -------------------------------------------------------------------

    def _blocked(self, sender: str, recipient: str) -> bool:
        return self.group.get(sender, 0) != self.group.get(recipient, 0) or (sender, recipient) in self.one_way

    def _send(self, proc: _Process, m: Message) -> None:
        self.report.messages += 1
        rng = self.rng
        if rng.random() < self.config.wire_share:
            wire = msgpack.unpackb(msgpack.packb(m.to_wire(), use_bin_type=True), raw=False)
            m = message_from_wire(wire)
        target = self.procs.get(m.recipient)
        if target is None or not target.up:
            return  # no connection to a process that is down
        copies = 2 if rng.random() < self.dup_rate else 1
        for _ in range(copies):
            if rng.random() < self.drop_rate:
                continue
            self._push(self.now + rng.randint(0, self.max_delay_ms), _DELIVER, m, target.incarnation)

    def _deliver(self, m: Message, incarnation: int) -> None:
        target = self.procs.get(m.recipient)
        # A message sent to one incarnation never reaches the next (its connection died).
        if target is None or not target.up or target.incarnation != incarnation:
            return
        if self._blocked(m.sender, m.recipient):
            return
        self._trace.append((self.now, "deliver", m))
        reason = target.core.step(m, self.now + target.skew_ms)
        if reason is not None:
            self._trace.append((self.now, "refused", (target.member_id, reason)))
        self._after_input(target)

    # -- the shell's obligations -----------------------------------------------------

    def _persist(self, proc: _Process, incarnation: int) -> None:
        if not proc.up or proc.incarnation != incarnation or proc.in_flight is None:
            return
        rd, proc.in_flight = proc.in_flight, None
        disk = proc.disk
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            disk.snapshot, disk.snapshot_data = meta, rd.snapshot.data
            disk.compact_to(meta.index, meta.term)
        if rd.truncate_from is not None:
            disk.entries = [e for e in disk.entries if e.index < rd.truncate_from]
        self._disk_append(proc, rd.entries)
        if rd.hard_state is not None:
            if rd.hard_state.commit < disk.hard_state.commit:
                raise self._fail(f"{proc.member_id}: persisted commit goes back from {disk.hard_state.commit} "
                                 f"to {rd.hard_state.commit}")
            disk.hard_state = rd.hard_state
        for m in rd.messages_after_persist:
            self._send(proc, m)
        if self.faults_on and self._buggify_crash(rd):
            # Power loss right after the write: nothing of this Ready is applied.
            self._crash(proc, downtime_ms=self.rng.randint(0, 60))
            return
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            proc.kv = _decode_kv(rd.snapshot.data)
            proc.applied_index = meta.index
            self.report.snapshots_installed += 1
            self._check_state(proc, meta.index, "snapshot install")
        for e in rd.committed_entries:
            self._apply(proc, e)
        for rs in rd.read_states:
            pending = proc.reads.pop(rs.context, None)
            if pending is None:
                continue
            handle, key, committed_when_asked = pending
            if rs.index < committed_when_asked:
                raise self._fail(f"{proc.member_id}: read released at index {rs.index}, but index "
                                 f"{committed_when_asked} was committed before it was requested (§6.4)")
            proc.waiting_reads.append((rs.index, handle, key))
        for dropped in rd.dropped_reads:
            pending = proc.reads.pop(dropped.context, None)
            if pending is not None and self.history.is_open(pending[0]):
                self.history.fail(pending[0])
        for dp in rd.dropped_proposals:
            proc.dropped.add(dp.proposal.seq)
            op = proc.proposals.pop(dp.proposal.seq, None)
            if op is not None and self.history.is_open(op[0]):
                self.history.fail(op[0])  # certainly not appended: it never takes effect
            change = proc.conf_proposals.pop(dp.proposal.seq, None)
            if change is not None:
                self._conf_done(proc.member_id, dp.proposal.seq)
        self._serve_reads(proc)
        proc.core.advance(rd)
        self._maybe_compact(proc)
        self._after_input(proc)

    def _buggify_crash(self, rd: Ready) -> bool:
        """Crash at the moments that matter most (as FoundationDB's "buggify"): right
        after a vote was granted durably (PySyncObj #84: is the vote remembered?), and,
        rarely, right after any write."""
        rng = self.rng
        if any(isinstance(m, VoteResponse) and m.granted for m in rd.messages_after_persist):
            return rng.random() < 0.25
        return rng.random() < 0.003

    def _disk_append(self, proc: _Process, entries: list[Entry]) -> None:
        disk = proc.disk
        if entries:
            last = disk.entries[-1].index if disk.entries else (disk.snapshot.index if disk.snapshot else 0)
            if entries[0].index != last + 1:
                raise self._fail(f"{proc.member_id}: Ready appends index {entries[0].index} after disk index {last}")
            disk.entries.extend(entries)

    def _apply(self, proc: _Process, e: Entry) -> None:
        if e.index != proc.applied_index + 1:
            raise self._fail(f"{proc.member_id}: applies {e.index} after {proc.applied_index}")
        identity = (e.term, e.kind, e.origin, e.seq, e.data)
        known = self.applied_at.setdefault(e.index, identity)
        if known != identity:
            raise self._fail(f"state-machine safety: {proc.member_id} applies {identity} at {e.index}, "
                             f"another node applied {known}")
        proc.applied_index = e.index
        result: Any = None
        if e.kind == EntryKind.NORMAL:
            op = msgpack.unpackb(e.data, raw=False)
            if op[0] == "set":
                proc.kv[op[1]] = op[2]
            elif op[0] == "cas":
                result = proc.kv.get(op[1]) == op[2]
                if result:
                    proc.kv[op[1]] = op[3]
            elif op[0] in ("lock", "unlock"):
                result = self._apply_lease(proc, e, op, first=known is identity)
        self._check_state(proc, e.index, "apply")
        self.first_applied.setdefault((e.origin, e.seq), (self.now, result))
        if e.origin == proc.member_id:
            pending = proc.proposals.pop(e.seq, None)
            if pending is not None and self.history.is_open(pending[0]):
                self.history.ok(pending[0], result, time=self.now)
            if e.seq in proc.conf_proposals:
                del proc.conf_proposals[e.seq]
                self.report.conf_changes += 1
                self._conf_done(proc.member_id, e.seq)

    def _apply_lease(self, proc: _Process, e: Entry, op: list[Any], first: bool) -> Any:
        """A lease, as vfsd.desired.leases grants them: measured on the entry's (leader-stamped)
        time, its fencing token the granting entry's index, kept by the holder's extensions."""
        path, owner = op[1], op[2]
        slot = "lease:" + path
        held = proc.kv.get(slot)
        cur_owner, cur_token, deadline = (held.split("|") if held else ("", "0", "0"))
        live = held is not None and int(deadline) > e.time_ms
        if op[0] == "unlock":
            if live and cur_owner == owner:
                del proc.kv[slot]
                if first:
                    self.lease_log[path] = (owner, int(cur_token), int(deadline), True)
                return True
            return False
        if live and cur_owner != owner:
            return None
        token = int(cur_token) if live else e.index
        proc.kv[slot] = f"{owner}|{token}|{e.time_ms + op[3]}"
        if first:
            self._check_lease(path, owner, token, e)
        return token

    def _check_lease(self, path: str, owner: str, token: int, e: Entry) -> None:
        prev = self.lease_log.get(path)
        if prev is not None:
            p_owner, p_token, p_deadline, released = prev
            if p_owner != owner and not released and e.time_ms < p_deadline:
                raise self._fail(f"lease safety: {owner} granted {path} at {e.time_ms} (index {e.index}) while "
                                 f"{p_owner} holds it until {p_deadline}")
            extended = p_owner == owner and not released and e.time_ms < p_deadline
            if extended and token != p_token:
                raise self._fail(f"lease safety: {owner}'s extension of {path} changed its token")
            if not extended and token <= p_token:
                raise self._fail(f"lease safety: fencing token {token} for {path} is not above {p_token}")
        self.lease_log[path] = (owner, token, self._lease_deadline(e), False)

    def _lease_deadline(self, e: Entry) -> int:
        op = msgpack.unpackb(e.data, raw=False)
        return e.time_ms + op[3]

    def _check_state(self, proc: _Process, index: int, what: str) -> None:
        digest = hash(tuple(sorted(proc.kv.items())))
        known = self.state_at.setdefault(index, digest)
        if known != digest:
            raise self._fail(f"state-machine safety: {proc.member_id} state at {index} after {what} "
                             f"differs from another node's: {sorted(proc.kv.items())}")

    def _serve_reads(self, proc: _Process) -> None:
        if not proc.waiting_reads:
            return
        still = []
        for index, handle, key in proc.waiting_reads:
            if proc.applied_index >= index:
                if self.history.is_open(handle):
                    self.history.ok(handle, proc.kv.get(key), time=self.now)
                    self.report.reads_served += 1
            else:
                still.append((index, handle, key))
        proc.waiting_reads = still

    def _maybe_compact(self, proc: _Process) -> None:
        core = proc.core
        if proc.applied_index - core.log.snapshot.index >= proc.compact_every:
            self._compact(proc)

    def _compact(self, proc: _Process) -> None:
        core = proc.core
        index = min(proc.applied_index, core.log.stable)
        if index <= core.log.snapshot.index:
            return
        # Snapshot at the applied index; a Ready in flight may hold later entries only.
        meta = core.snapshot_meta_at(proc.applied_index)
        disk = proc.disk
        disk.snapshot, disk.snapshot_data = meta, _encode_kv(proc.kv)
        point = core.compact(meta.index)
        disk.compact_to(*point)

    # -- checks --------------------------------------------------------------------

    def _check_ready(self, proc: _Process, rd: Ready) -> None:
        log = proc.core.log
        for e in rd.entries:
            prev = e.index - 1
            prev_term = log.term_at(prev)
            identity = (e.kind, e.time_ms, e.origin, e.seq, e.data, prev_term)
            known = self.entry_at.setdefault((e.index, e.term), identity)
            if known != identity:
                raise self._fail(f"log matching: {proc.member_id} holds ({e.index}, {e.term}) as {identity}, "
                                 f"another log as {known}")
            prev_time = log.entry(prev).time_ms if prev > log.snapshot.index else log.snapshot.time_ms
            if prev >= log.snapshot.index and e.time_ms < prev_time:
                raise self._fail(f"{proc.member_id}: entry {e.index} time {e.time_ms} is before the previous "
                                 f"entry's {prev_time}")

    def _observe(self, proc: _Process) -> None:
        core = proc.core
        if core.role is Role.LEADER and proc.led_term != core.term:
            proc.led_term = core.term
            other = self.leader_of_term.setdefault(core.term, proc.member_id)
            if other != proc.member_id:
                raise self._fail(f"election safety: {proc.member_id} and {other} both lead term {core.term}")
            self.report.terms_led += 1
            self._trace.append((self.now, "leader", (proc.member_id, core.term)))
            log = core.log
            for i in range(log.snapshot.index + 1, self.max_committed + 1):
                term = self.committed_term.get(i)
                if term is not None and log.term_at(i) != term:
                    raise self._fail(f"leader completeness: new leader {proc.member_id} (term {core.term}) holds "
                                     f"term {log.term_at(i)} at committed index {i} (term {term})")
        commit = core.commit_index
        if commit < proc.seen_commit:
            raise self._fail(f"{proc.member_id}: commit index moved back from {proc.seen_commit} to {commit}")
        if commit > proc.seen_commit:
            log = core.log
            for i in range(max(proc.seen_commit + 1, log.snapshot.index), commit + 1):
                term = log.term_at(i)
                if term is None:
                    continue
                known = self.committed_term.setdefault(i, term)
                if known != term:
                    raise self._fail(f"state-machine safety: {proc.member_id} commits term {term} at {i}, "
                                     f"another node committed term {known}")
            proc.seen_commit = commit
            if commit > self.max_committed:
                self.report.committed += commit - self.max_committed
                self.max_committed = commit
        stats = core.stats
        if stats:
            for bad in _BUG_REFUSALS:
                if bad in stats:
                    raise self._fail(f"{proc.member_id}: core {bad} ({stats[bad]} times)")

    def _full_check(self) -> None:
        for proc in self.procs.values():
            if not proc.up:
                continue
            log = proc.core.log
            prev_term = log.snapshot.term
            for e in log.entries:
                known = self.entry_at.get((e.index, e.term))
                identity = (e.kind, e.time_ms, e.origin, e.seq, e.data, prev_term)
                if known is not None and known != identity:
                    raise self._fail(f"log matching (full scan): {proc.member_id} ({e.index}, {e.term})")
                prev_term = e.term

    def _check_history(self) -> None:
        # A write whose client never heard back is not "unknown" to the simulation: it
        # either committed, and then took effect no later than its first apply anywhere
        # (with the result the state machine computed), or it never did. Checking with
        # that truth is stricter than with "may or may not have happened", and keeps the
        # search from branching over every unanswered write.
        history = self.history
        for pid, handle in self.handle_of.items():
            if history.is_open(handle):
                applied = self.first_applied.get(pid)
                if applied is None:
                    history.fail(handle)
                else:
                    history.ok(handle, applied[1], time=applied[0])
        ops = history.operations()
        self.report.history_ops = len(ops)
        result = check_history(ops, max_steps_per_key=2_000_000)
        if result.ok is False:
            raise self._fail("client history is not linearizable:\n" + result.explain())

    def _fail(self, what: str) -> SimFailure:
        return SimFailure(self.config, what, [_describe(t, kind, obj) for t, kind, obj in self._trace])

    # -- clients -------------------------------------------------------------------

    def _client(self) -> None:
        rng = self.rng
        if self.clients_on:
            self._push(self.now + rng.randint(2, 15), _CLIENT)
        up = [p for p in self.procs.values() if p.up and p.member_id not in self.removed]
        if up:
            proc = rng.choice(up)
            key = rng.choice(KEYS)
            core = proc.core
            now = self.now + proc.skew_ms
            self.report.client_ops += 1
            kind = rng.random()
            client = f"{proc.name}:{self.report.client_ops}"
            if kind < 0.4:
                value = f"v{self.report.client_ops}"
                handle = self.history.invoke(client, key, "set", value, time=self.now)
                pid = core.propose(msgpack.packb(["set", key, value]), now)
                proc.proposals[pid.seq] = (handle, "set")
                self.handle_of[pid] = handle
            elif kind < 0.45:
                # Leases on two paths, for the lease-safety check (not part of the register history).
                path = rng.choice(("L0", "L1"))
                owner = f"{proc.name}.{rng.randint(0, 1)}"
                op = ["lock", path, owner, rng.choice((50, 200, 1000))] if rng.random() < 0.7 else \
                    ["unlock", path, owner]
                core.propose(msgpack.packb(op), now)
            elif kind < 0.6:
                expected = proc.kv.get(key)
                value = f"v{self.report.client_ops}"
                handle = self.history.invoke(client, key, "cas", expected, value, time=self.now)
                pid = core.propose(msgpack.packb(["cas", key, expected, value]), now)
                proc.proposals[pid.seq] = (handle, "cas")
                self.handle_of[pid] = handle
            else:
                self._ctx += 1
                context = b"r%d" % self._ctx
                handle = self.history.invoke(client, key, "get", time=self.now)
                proc.reads[context] = (handle, key, self.max_committed)
                core.read_index(context, now)
            self._after_input(proc)
        # Clients give up after a while: the outcome of a write is then unknown.
        if self.report.client_ops % 50 == 0:
            self._expire_client_ops()

    def _expire_client_ops(self) -> None:
        """Clients stop waiting for their oldest writes beyond 40 per process: their
        outcome is unknown to the client (see _check_history for how it is settled)."""
        for proc in self.procs.values():
            while len(proc.proposals) > 40:
                del proc.proposals[next(iter(proc.proposals))]

    # -- faults ----------------------------------------------------------------------

    def _nemesis(self) -> None:
        rng = self.rng
        if not self.faults_on:
            return
        self._push(self.now + rng.randint(20, 250), _NEMESIS)
        up = [p for p in self.procs.values() if p.up and p.member_id not in self.removed]
        leader = self._leader()
        roll = rng.random()
        self._trace.append((self.now, "nemesis", round(roll, 3)))
        if roll < 0.12:
            self._partition(up)
        elif roll < 0.17:
            if up:
                a, b = rng.choice(up), rng.choice(up)
                if a is not b:
                    self.one_way.add((a.member_id, b.member_id))
                    self._push(self.now + rng.randint(100, 2000), _HEAL)
        elif roll < 0.22:
            if leader is not None:
                for p in up:
                    self.group[p.member_id] = 0
                self.group[leader.member_id] = 1
                self._push(self.now + rng.randint(200, 2500), _HEAL)
        elif roll < 0.34:
            if up:
                self._crash(rng.choice(up), downtime_ms=rng.randint(0, 800))
        elif roll < 0.36:
            if rng.random() < 0.3:
                for p in list(up):
                    self._crash(p, downtime_ms=rng.randint(0, 300))
        elif roll < 0.40:
            self._wipe()
        elif roll < 0.48:
            self.drop_rate = rng.choice((0.0, 0.0, 0.02, 0.1, 0.3))
            self.dup_rate = rng.choice((0.0, 0.02, 0.1))
            self.max_delay_ms = rng.choice((2, 5, 5, 15, 40))
        elif roll < 0.54:
            if up:
                p = rng.choice(up)
                p.skew_ms += rng.randint(-5000, 5000)  # clocks jump, backwards too
        elif roll < 0.62:
            if leader is not None:
                voters = [m.member_id for m in leader.core.config.voters]
                target = rng.choice(voters)
                self.report.transfers += 1
                leader.core.transfer_leadership(target, self.now + leader.skew_ms)
                self._after_input(leader)
        elif roll < 0.72:
            if up:
                self._compact(rng.choice(up))
        elif roll < 0.86:
            self._plan_membership(leader)
        else:
            self._heal()

    def _partition(self, up: list[_Process]) -> None:
        rng = self.rng
        for p in up:
            self.group[p.member_id] = rng.randint(0, 1)
        self._push(self.now + rng.randint(100, 2000), _HEAL)

    def _heal(self) -> None:
        for mid in self.group:
            self.group[mid] = 0
        self.one_way.clear()

    def _crash(self, proc: _Process, downtime_ms: int, restart: bool = True) -> None:
        if not proc.up:
            return
        self.report.crashes += 1
        self._trace.append((self.now, "crash", proc.member_id))
        rd = proc.in_flight
        if rd is not None:
            # Power loss mid-write: a random prefix of the write survives, in the
            # order the shell writes (snapshot, truncation, entries, hard state).
            steps: list[tuple[str, Any]] = []
            if rd.snapshot is not None:
                steps.append(("snapshot", rd.snapshot))
            if rd.truncate_from is not None:
                steps.append(("truncate", rd.truncate_from))
            steps.extend(("entry", e) for e in rd.entries)
            if rd.hard_state is not None:
                steps.append(("hard state", rd.hard_state))
            disk = proc.disk
            for what, obj in steps[: self.rng.randint(0, len(steps))]:
                if what == "snapshot":
                    disk.snapshot, disk.snapshot_data = obj.meta, obj.data
                    disk.compact_to(obj.meta.index, obj.meta.term)
                elif what == "truncate":
                    disk.entries = [e for e in disk.entries if e.index < obj]
                elif what == "entry":
                    self._disk_append(proc, [obj])
                else:
                    disk.hard_state = obj
        proc.up = False
        proc.in_flight = None
        proc.proposals.clear()  # outcome unknown to the clients: settled in _check_history
        for handle, _, _ in proc.reads.values():
            if self.history.is_open(handle):
                self.history.fail(handle)
        for _, handle, _ in proc.waiting_reads:
            if self.history.is_open(handle):
                self.history.fail(handle)
        for seq in proc.conf_proposals:
            self._conf_done(proc.member_id, seq)
        if restart:
            self._push(self.now + downtime_ms, _RESTART, proc)

    def _restart(self, old: _Process) -> None:
        if self.procs.get(old.member_id) is not old or old.up:
            return
        disk = old.disk
        applied = disk.snapshot.index if disk.snapshot is not None else 0
        core = RaftCore.restore(self.settings, cluster_id=CLUSTER_ID, member_id=old.member_id,
                                hard_state=disk.hard_state, snapshot=disk.snapshot, entries=list(disk.entries),
                                applied_index=applied, rng=random.Random(self.rng.random()),
                                now_ms=self.now + old.skew_ms, snapshots=_Source(disk),
                                proposal_seq_base=(old.incarnation + 1) << 32)
        if core.commit_index < disk.hard_state.commit:
            raise self._fail(f"{old.member_id}: restarted with commit {core.commit_index}, below the "
                             f"{disk.hard_state.commit} on its disk")
        self._trace.append((self.now, "restart", old.member_id))
        proc = self._start(old.name, old.member_id, old.incarnation + 1, core, disk)
        proc.seen_commit = core.commit_index
        proc.skew_ms = old.skew_ms

    def _wipe(self) -> None:
        """A voter's data directory is lost: it comes back empty, under a new member id."""
        leader = self._leader()
        if leader is None or self.wiped or self.plan or self.conf_in_flight:
            return
        config = leader.core.config
        if any(m.member_id in self.removed for m in config.voters):
            return  # a dead member still votes: another wipe could cost the quorum for good
        voters = [m for m in config.voters if m.member_id in self.procs and self.procs[m.member_id].up]
        if len(config.voters) < 3 or not voters:
            return
        victim = self.rng.choice(voters)
        proc = self.procs[victim.member_id]
        self.report.wipes += 1
        self._crash(proc, 0, restart=False)
        self.removed.add(victim.member_id)
        new = Member(f"{victim.name}-{self.rng.getrandbits(24):06x}", victim.name, victim.address)
        disk = _Disk()
        core = RaftCore.restore(self.settings, cluster_id=CLUSTER_ID, member_id=new.member_id,
                                hard_state=HardState(), snapshot=None, entries=[], applied_index=0,
                                rng=random.Random(self.rng.random()), now_ms=self.now, snapshots=_Source(disk))
        self._trace.append((self.now, "wiped", (victim.member_id, new.member_id)))
        self._start(victim.name, new.member_id, 0, core, disk)
        self.wiped[victim.member_id] = new.member_id
        was_voter = True
        self.plan = [
            lambda: ConfChange.remove_voter(victim.member_id) if was_voter else None,
            lambda: ConfChange.add_learner(new),
            lambda: ConfChange.promote(new.member_id),
        ]

    # -- the operator: membership changes --------------------------------------------

    def _plan_membership(self, leader: _Process | None) -> None:
        if leader is None or self.plan or self.conf_in_flight or self.wiped:
            return
        rng = self.rng
        config = leader.core.config
        voters = [m.member_id for m in config.voters]
        learners = [m.member_id for m in config.learners]
        roll = rng.random()
        if roll < 0.4 and len(config.members) < 8:
            member = self._new_member()
            disk = _Disk()
            core = RaftCore.restore(self.settings, cluster_id=CLUSTER_ID, member_id=member.member_id,
                                    hard_state=HardState(), snapshot=None, entries=[], applied_index=0,
                                    rng=random.Random(self.rng.random()), now_ms=self.now, snapshots=_Source(disk))
            self._start(member.name, member.member_id, 0, core, disk)
            if roll < 0.1 and len(voters) < 5:  # straight in as a voter, empty log and all
                self.plan = [lambda: ConfChange.add_voter(member)]
            else:
                self.plan = [lambda: ConfChange.add_learner(member)]
        elif roll < 0.55 and learners and len(voters) < 5:
            target = rng.choice(learners)
            self.plan = [lambda: ConfChange.promote(target)]
        elif roll < 0.75 and len(voters) > 3:
            target = rng.choice(voters)
            self.plan = [lambda: ConfChange.remove_voter(target)]
        elif learners:
            target = rng.choice(learners)
            self.plan = [lambda: ConfChange.remove_learner(target)]

    def _operator_tick(self) -> None:
        if self.conf_in_flight is not None:
            if self.now > self.conf_in_flight[2]:
                self.conf_in_flight = None  # gave up waiting; the plan step is retried
            return
        if not self.plan:
            return
        up = [p for p in self.procs.values() if p.up and p.member_id not in self.removed
              and p.core.config.members]
        if not up:
            return
        change = self.plan[0]()
        if change is None:
            self.plan.pop(0)
            return
        leader = self._leader()
        if leader is not None:
            # Like an operator reading the member list before each step: skip a step
            # that already happened, give up a plan that no longer fits.
            config = leader.core.config
            if _change_done(change, config):
                self._step_done(change)
                return
            try:
                config.apply(change)
            except ConfChangeError:
                self.plan = []
                self.wiped.clear()
                return
        proc = self.rng.choice(up)
        pid = proc.core.propose_conf_change(change, self.now + proc.skew_ms)
        proc.conf_proposals[pid.seq] = change
        self.conf_in_flight = (proc.member_id, pid.seq, self.now + 1500)
        self._trace.append((self.now, "conf change", (proc.member_id, change)))
        self._after_input(proc)

    def _conf_done(self, member_id: str, seq: int) -> None:
        in_flight = self.conf_in_flight
        if in_flight is None or in_flight[:2] != (member_id, seq):
            return
        self.conf_in_flight = None
        leader = self._leader()
        if leader is None or not self.plan:
            return
        change = self.plan[0]()
        if change is None or _change_done(change, leader.core.config):
            self._step_done(change)

    def _step_done(self, change: ConfChange | None) -> None:
        self.plan.pop(0)
        if change is not None and change.op.name.startswith("REMOVE"):
            self.removed.add(change.member_id)
        if not self.plan:
            self.wiped.clear()

    def _leader(self) -> _Process | None:
        best = None
        for p in self.procs.values():
            if p.up and p.core.role is Role.LEADER and (best is None or p.core.term > best.core.term):
                best = p
        return best

    # -- liveness ------------------------------------------------------------------

    def _liveness(self) -> None:
        self.faults_on = False
        self.clients_on = False
        self._heal()
        self.drop_rate = self.dup_rate = 0.0
        self.max_delay_ms = 3
        for proc in list(self.procs.values()):
            if not proc.up and proc.member_id not in self.removed:
                self._restart(proc)
        start = self.now
        deadline = start + self.config.liveness_ticks * TICK_MS
        budget = 2_000_000

        def settled() -> bool:
            leader = self._leader()
            if leader is None or self.plan or self.conf_in_flight is not None:
                return False
            log = leader.core.log
            return log.term_at(log.commit) == leader.core.term

        if not self._run_steps(budget, settled, deadline):
            states = {p.member_id: (p.core.role_name, p.core.term, p.core.commit_index, p.up)
                      for p in self.procs.values()}
            raise self._fail(f"liveness: no settled leader within {self.config.liveness_ticks} ticks of healing "
                             f"(plan pending: {bool(self.plan)}; nodes: {states})")
        leader = self._leader()
        assert leader is not None
        members = [self.procs[mid] for mid in leader.core.config.members if mid in self.procs]
        members = [p for p in members if p.up]
        probes: dict[str, ProposalId] = {}
        proposed_at: dict[str, int] = {}
        retry_ms = 3 * self.settings.election_ticks * TICK_MS
        applied_ids: set[tuple[str, int]] = set()

        def probe(proc: _Process) -> None:
            probes[proc.member_id] = proc.core.propose(msgpack.packb(["probe", proc.member_id]), self.now)
            proposed_at[proc.member_id] = self.now
            self._after_input(proc)

        for proc in members:
            probe(proc)

        def applied_everywhere() -> bool:
            if len(applied_ids) != len(self.applied_at):
                applied_ids.update((ident[2], ident[3]) for ident in self.applied_at.values())
            missing = False
            for proc in members:
                pid = probes[proc.member_id]
                if (pid.origin, pid.seq) in applied_ids:
                    continue
                missing = True
                # Certainly not appended ("no leader" yet), or lost with a deposed
                # leader's log: like a client after a timeout, propose again.
                if pid.seq in proc.dropped or self.now - proposed_at[proc.member_id] > retry_ms:
                    probe(proc)
            if missing:
                return False
            target = max(self.applied_at, default=0)
            return all(p.applied_index >= target for p in members if p.up)

        if not self._run_steps(budget, applied_everywhere, deadline):
            lag = {p.member_id: (p.applied_index, p.core.role_name) for p in members}
            raise self._fail(f"liveness: proposals made after healing did not apply on every member within "
                             f"{self.config.liveness_ticks} ticks (applied: {lag}, newest "
                             f"{max(self.applied_at, default=0)})")
        self.report.liveness_ms = self.now - start


def _change_done(change: ConfChange, config: Any) -> bool:
    name = change.op.name
    if name == "ADD_LEARNER":
        return change.member_id in config.learner_ids or change.member_id in config.voter_ids
    if name in ("ADD_VOTER", "PROMOTE_LEARNER"):
        return change.member_id in config.voter_ids
    return change.member_id not in config.members


def _encode_kv(kv: dict[str, str]) -> bytes:
    return msgpack.packb(kv, use_bin_type=True)


def _decode_kv(data: bytes) -> dict[str, str]:
    return msgpack.unpackb(data, raw=False) if data else {}


def _describe(at: int, kind: str, obj: Any) -> str:
    if isinstance(obj, Message):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.name != "cluster_id"}
        if "entries" in fields:
            fields["entries"] = [(e.index, e.term) for e in obj.entries]  # type: ignore[attr-defined]
        if "data" in fields:
            fields["data"] = f"<{len(obj.data)} bytes>"  # type: ignore[attr-defined]
        return f"{at:>7} ms {kind} {type(obj).__name__} {fields}"
    return f"{at:>7} ms {kind} {obj}"


def run_seed(seed: int, *, voters: int | None = None, steps: int = DEFAULT_STEPS, **overrides: Any) -> SimReport:
    """Run one seed; raises SimFailure (with its repro line) when a check fails."""
    config = SimConfig(seed, voters=voters, steps=steps)
    if overrides:
        config = replace(config, **overrides)
    return RaftSimulation(config).run()


@dataclass
class FailoverMeasure:
    first_leader_ticks: int
    failover_ticks: int  # leader crash -> a new leader
    failover_commit_ticks: int  # leader crash -> a new write committed


def measure_failover(seed: int, voters: int = 3, settings: RaftSettings | None = None) -> FailoverMeasure:
    """Election and failover times in ticks on a healthy network (delays 0-2 ms on 10 ms
    ticks): ticks from start to the first leader, then from crashing it to a new
    leader, and to the first write committed after the crash."""
    config = SimConfig(seed, voters=voters, learners=0, steps=0,
                       raft=settings if settings is not None else RaftSettings())
    sim = RaftSimulation(config)
    sim.faults_on = sim.clients_on = False
    sim.max_delay_ms = 2
    if not sim._run_steps(1_000_000, lambda: sim._leader() is not None, deadline=600_000):
        raise sim._fail("no first leader")
    first = sim.now
    old = sim._leader()
    assert old is not None
    sim._run_steps(1_000_000, deadline=sim.now + 200)  # let the first term settle
    crashed_at = sim.now
    sim._crash(old, 0, restart=False)
    sim.removed.add(old.member_id)
    if not sim._run_steps(1_000_000, lambda: sim._leader() is not None, deadline=crashed_at + 600_000):
        raise sim._fail("no leader after failover")
    elected = sim.now
    leader = sim._leader()
    assert leader is not None
    pid = leader.core.propose(b"\x91\xa5probe", sim.now)
    sim._after_input(leader)
    sim._run_steps(1_000_000, lambda: (pid.origin, pid.seq) in {(i[2], i[3]) for i in sim.applied_at.values()},
                   deadline=elected + 600_000)
    committed = sim.now
    return FailoverMeasure(first // TICK_MS, (elected - crashed_at) // TICK_MS, (committed - crashed_at) // TICK_MS)


def failover_summary(measures: list[FailoverMeasure]) -> str:
    """One line per measure: median, 90th percentile and maximum, in ticks."""

    def stats(values: list[int]) -> str:
        v = sorted(values)
        return f"median {v[len(v) // 2]}, p90 {v[(len(v) * 9) // 10]}, max {v[-1]}"

    n = len(measures)
    return "\n".join([
        f"elections on a healthy network, {n} seeds, default timing (ticks):",
        f"  first leader after start:          {stats([m.first_leader_ticks for m in measures])}",
        f"  leader crash -> new leader:        {stats([m.failover_ticks for m in measures])}",
        f"  leader crash -> next write commits: {stats([m.failover_commit_ticks for m in measures])}",
    ])
