"""The Raft core: a deterministic, sans-IO state machine (Ongaro & Ousterhout 2014,
and Ongaro's thesis, cited below as §n for the paper and thesis §n.n).

Theory of operation
-------------------
A :class:`RaftCore` is driven by inputs and produces output in batches:

* inputs: ``step(message)`` (a peer's message), ``tick()`` (one logical clock tick),
  ``propose(data)``, ``propose_conf_change(change)``, ``read_index(context)``,
  ``transfer_leadership(target)``, ``compact(index)``; every input carries the
  node's clock (``now_ms``), used only to stamp the time of new entries;
* output: :meth:`ready` returns a :class:`Ready` (hard state and entries to persist,
  a snapshot to install, messages to send, committed entries to apply, reads to
  release, proposals and reads to fail, leadership and membership changes). The
  shell carries out its obligations, in the order its docstring gives, then calls
  :meth:`advance`. Inputs may keep arriving between ``ready`` and ``advance``.

The core never reads a clock, a file or a socket, and draws randomness (election
jitter) only from the ``random.Random`` it is given, so a seed reproduces a run.

Roles are behaviour swapped as functions (``self._step_role``, ``self._tick_role``),
as in etcd's raft: a follower counts ticks towards an election, a leader towards
heartbeats; each role reads the messages that concern it.

Timing, in ticks (the shell chooses the tick length; 50 ms is suggested):

* ``heartbeat_ticks`` (default 1): a leader sends heartbeats this often.
* ``election_ticks`` (default 10): a follower that hears no leader for a randomised
  ``election_ticks + randrange(election_ticks)`` ticks (so in ``[E, 2E)``, §5.2)
  starts an election; a leader that has not heard from a majority of voters for
  ``election_ticks`` steps down (check-quorum); a node that heard from a leader
  less than ``election_ticks`` ago ignores vote requests (thesis §4.2.3); a
  leadership transfer that has not finished after ``election_ticks`` is abandoned.

Decisions worth knowing (each is argued where it is implemented):

* Pre-vote and check-quorum (thesis §9.6) are on by default: a node cut off from the
  others cannot raise its term, so when it returns it does not depose a healthy leader.
* A leader counts itself towards a commit only for entries it has persisted
  (its own ``match`` moves at ``advance``), and commits only entries of its own term
  (§5.4.2); it appends a no-op when elected so that earlier entries commit (§8).
* Membership (thesis §4.1): a configuration is in force on a node as soon as its entry
  is in the node's log, committed or not, and reverts if the entry is truncated. A
  leader appends a configuration entry only when the previous one is committed and
  it has committed an entry of its own term (the fix to single-server changes that
  Ongaro published on raft-dev in 2015). A leader that removes itself keeps leading,
  without counting itself, until the removal commits, then hands over (TimeoutNow to
  the most up-to-date voter) and steps down.
* Proposals and reads on a follower are forwarded to the leader; a proposal the
  leader cannot take is rejected back, so the proposing node can fail it with a
  reason. Each proposal id is taken at most once per node lifetime (duplicated
  messages cannot append an entry twice).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, Protocol

from vfsd.raft.config import (
    ConfChange,
    ConfChangeError,
    ConfigWireError,
    Member,
    MembershipConfig,
    check_id,
    decode_change,
    encode_change,
    encode_config_entry,
)
from vfsd.raft.memlog import RaftLog
from vfsd.raft.messages import (
    ENTRY_OVERHEAD_BYTES,
    ZERO_SNAPSHOT,
    Append,
    AppendResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    Message,
    PreVote,
    PreVoteResponse,
    Proposal,
    Propose,
    ProposeReject,
    ReadIndex,
    ReadIndexResponse,
    SnapshotChunk,
    SnapshotChunkResponse,
    SnapshotMeta,
    TimeoutNow,
    TransferLeadership,
    Vote,
    VoteResponse,
    WireError,
    message_from_wire,
)
from vfsd.raft.progress import FlowState, Progress
from vfsd.raft.quorum import VoteOutcome, has_quorum, quorum_value, vote_outcome
from vfsd.raft.readonly import PendingRead, ReadQueue

__all__ = [
    "DroppedProposal",
    "DroppedRead",
    "HardState",
    "IncomingSnapshot",
    "ProposalId",
    "RaftCore",
    "RaftSettings",
    "ReadState",
    "Ready",
    "RestoreError",
    "Role",
    "SnapshotSource",
    "SoftState",
]

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """Every knob of the core, with its default. Ticks are logical: the shell decides
    how long one is (``tick_interval_ms``, 50 ms suggested, gives heartbeats every
    50 ms and elections after 500-950 ms of silence)."""

    #: Ticks without hearing a leader before a follower campaigns, randomised per
    #: election to ``election_ticks + randrange(election_ticks)``; also the
    #: check-quorum period, the vote-ignoring lease and the transfer deadline.
    election_ticks: int = 10
    #: Ticks between a leader's heartbeats; must be below ``election_ticks``.
    heartbeat_ticks: int = 1
    #: Ask for pre-votes before raising the term (thesis §9.6).
    pre_vote: bool = True
    #: A leader steps down after ``election_ticks`` without hearing from a majority.
    check_quorum: bool = True
    #: Most entry bytes in one append message (one entry always fits, whatever its size).
    max_append_bytes: int = 1 * MiB
    #: Most append messages in flight to one follower while replicating.
    max_inflight_appends: int = 256
    #: Most entry bytes in flight to one follower (at least one message goes).
    max_inflight_bytes: int = 32 * MiB
    #: A leader refuses new proposals while its uncommitted entries hold this many bytes.
    max_uncommitted_bytes: int = 64 * MiB
    #: Most committed entry bytes one Ready hands out for applying (at least one entry).
    max_apply_bytes: int = 32 * MiB
    #: Size of one InstallSnapshot chunk.
    snapshot_chunk_bytes: int = 1 * MiB
    #: Chunks sent ahead of the follower's acknowledgement.
    snapshot_chunks_in_flight: int = 4
    #: Largest snapshot a follower accepts (it buffers the chunks in memory).
    max_snapshot_bytes: int = 4096 * MiB
    #: Most reads pending on a leader, and forwarded reads pending on a follower.
    max_pending_reads: int = 65536
    #: A read forwarded to the leader and not answered after this many ticks fails
    #: ("no answer from the leader"), so a lost answer cannot hold it forever.
    forwarded_read_timeout_ticks: int = 20
    #: Proposal ids remembered to drop duplicated forwards.
    proposal_dedup_window: int = 65536

    def __post_init__(self) -> None:
        positive = ("election_ticks", "heartbeat_ticks", "max_append_bytes", "max_inflight_appends",
                    "max_inflight_bytes", "max_uncommitted_bytes", "max_apply_bytes", "snapshot_chunk_bytes",
                    "snapshot_chunks_in_flight", "max_snapshot_bytes", "max_pending_reads", "proposal_dedup_window",
                    "forwarded_read_timeout_ticks")
        for name in positive:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"raft setting {name} must be a positive integer, got {value!r}")
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError(f"raft setting heartbeat_ticks ({self.heartbeat_ticks}) must be below "
                             f"election_ticks ({self.election_ticks})")


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash (§5.2: term and vote before answering anyone).
    Field for field the hard state the desired plane's HardStateStore keeps."""

    term: int = 0
    voted_for: str | None = None
    commit: int = 0


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Who leads, as this node knows it; in a Ready whenever it changed."""

    leader_id: str | None
    role: Role
    term: int


class ProposalId(NamedTuple):
    """Names a proposal on every node: the proposing member and its sequence number.
    A committed entry carries it (``Entry.origin``, ``Entry.seq``)."""

    origin: str
    seq: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """The read ``context`` may be served once this node has applied ``index``."""

    context: bytes
    index: int


@dataclass(frozen=True, slots=True)
class DroppedProposal:
    """The proposal was not appended and never will be: fail it (``-TRYAGAIN``)."""

    proposal: ProposalId
    reason: str


@dataclass(frozen=True, slots=True)
class DroppedRead:
    """The read cannot be served linearizably now: fail it (``-TRYAGAIN``)."""

    context: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class IncomingSnapshot:
    """A snapshot received from the leader, to make durable and install."""

    meta: SnapshotMeta
    data: bytes


class SnapshotSource(Protocol):
    """Where a leader gets the bytes of the snapshot it streams to a lagging follower:
    the snapshot the shell saved at ``index`` (the one it announced with ``compact``),
    or None when that snapshot is gone (a newer one replaced it)."""

    def snapshot_data(self, index: int) -> bytes | None: ...


class RestoreError(ValueError):
    """The persisted state handed to ``restore`` is inconsistent."""


@dataclass(slots=True)
class Ready:
    """One batch of work for the shell. Carry it out in this order, then call
    ``advance(ready)``; do not ask for another Ready before that.

    1. ``messages``: may be sent at once, even before anything below is durable (a
       leader's appends go out while it writes the same entries to its own disk,
       thesis §10.2.1). Sending them after step 3 is also correct, only slower.
    2. Persist, in this order, fsyncing before step 3:
       ``snapshot`` (save it, then compact the write-ahead log to its index and term,
       which discards the log when it does not hold that entry), ``truncate_from``
       (drop write-ahead log entries at and after it), ``entries`` (append),
       ``hard_state`` (save). ``must_sync`` says whether any of that must be durable
       before step 3; when only ``hard_state.commit`` changed it is False, and saving
       that commit index may be deferred (it is rebuilt from the log on restart).
    3. ``messages_after_persist``: send only once step 2 is durable (votes granted,
       entries acknowledged, anything that depends on the new term).
    4. ``snapshot``: install it in the state machine (its index becomes the applied
       index), before applying anything below.
    5. ``committed_entries``: apply in order, each exactly once. NOOP and CONFIG
       entries change no state-machine data but do move the applied index; a
       committed entry whose ``(origin, seq)`` is a proposal this node made answers
       that proposal's client.
    6. ``read_states``: serve each read once the applied index reaches its ``index``.
    7. ``dropped_proposals`` / ``dropped_reads``: fail them with their reason.
    ``soft_state`` (leadership) and ``config`` (membership, with every member's
    address) are news, present only when changed.
    """

    #: Step 2, last: save (HardStateStore) when not None; durable before step 3 if the
    #: term or vote changed (Raft §5.2), optional when only ``commit`` moved.
    hard_state: HardState | None = None
    #: Whether step 2 must be fsynced before step 3 (False: nothing there must be).
    must_sync: bool = False
    #: Step 2, first: a snapshot from the leader, to save, compact the log to, then
    #: install in the state machine (step 4). Its ``meta.config`` is the membership.
    snapshot: IncomingSnapshot | None = None
    #: Step 2: drop write-ahead log entries with index >= this before appending.
    truncate_from: int | None = None
    #: Step 2: append to the write-ahead log (contiguous, after the truncation point).
    entries: list[Entry] = field(default_factory=list)
    #: Step 5: apply in order, only after step 2 is durable.
    committed_entries: list[Entry] = field(default_factory=list)
    #: Step 1: send now (the shell may also send them later, with step 3).
    messages: list[Message] = field(default_factory=list)
    #: Step 3: send only once step 2 is durable.
    messages_after_persist: list[Message] = field(default_factory=list)
    #: Step 6: serve each read once the applied index reaches its index.
    read_states: list[ReadState] = field(default_factory=list)
    #: Step 7: answer these proposals' clients with the reason (-TRYAGAIN ...).
    dropped_proposals: list[DroppedProposal] = field(default_factory=list)
    #: Step 7: answer these reads' clients with the reason.
    dropped_reads: list[DroppedRead] = field(default_factory=list)
    #: News: leader, role and term, when any changed since the last Ready.
    soft_state: SoftState | None = None
    #: News: the configuration in force (member ids, names, addresses) when it changed.
    config: MembershipConfig | None = None
    #: Last log index this Ready makes durable (entries or snapshot); used by advance.
    persisted_index: int = 0


# Message classes grouped by how term rules treat them (Raft §5.1 and thesis §9.6).
_FORWARDED = (Propose, ProposeReject, ReadIndex, ReadIndexResponse, TransferLeadership)
_FROM_LEADER = (Append, Heartbeat, SnapshotChunk)

# Reasons a proposal or read fails, as the shell reports them.
NO_LEADER = "no leader"
TRANSFERRING = "leadership transfer in progress"
LOST_QUORUM = "leader lost contact with a majority of voters"
NOT_LEADER = "not the leader"
LEADER_CHANGED = "leader changed before the read was confirmed"
NO_ANSWER = "no answer from the leader in time"
TOO_MANY_READS = "too many reads pending"
TOO_MANY_UNCOMMITTED = "too many uncommitted entries"


class RaftCore:
    """One member of a Raft group. Build it with :meth:`bootstrap` (first start of a
    member of a new cluster) or :meth:`restore` (every other start, including a node
    that joins an existing cluster with an empty log); see the module docstring."""

    def __init__(
        self,
        settings: RaftSettings,
        *,
        cluster_id: str,
        member_id: str,
        rng: random.Random,
        now_ms: int,
        snapshots: SnapshotSource,
        hard_state: HardState,
        snapshot: SnapshotMeta,
        entries: Sequence[Entry],
        applied_index: int,
        durable: bool,
        proposal_seq_base: int,
        persisted_hard_state: HardState | None = None,
    ) -> None:
        self.settings = settings
        self.cluster_id = check_id(cluster_id, "cluster id")
        self.member_id = check_id(member_id, "member id")
        self._rng = rng
        self._now_ms = now_ms
        self._snapshots = snapshots
        self.term = hard_state.term
        self.voted_for = hard_state.voted_for
        self.leader_id: str | None = None
        self.role = Role.FOLLOWER
        self.log = RaftLog(snapshot, entries, hard_state.commit, applied_index)
        if not durable:  # bootstrap: the first Ready persists the initial entries
            self.log.stable = self.log.handed_out = snapshot.index
        self._step_role = self._step_follower
        self._tick_role = self._tick_election
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = settings.election_ticks
        self._reset_election_timer()
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.reads = ReadQueue(settings.max_pending_reads)
        self.transfer_target: str | None = None
        self._transfer_elapsed = 0
        self._uncommitted_bytes = 0
        self._next_seq = proposal_seq_base + 1
        self._seen_proposals: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._forwarded_reads: OrderedDict[bytes, int] = OrderedDict()  # context -> tick it was forwarded
        self._ticks = 0
        self._incoming: _IncomingSnapshot | None = None
        self._snapshot_cache: tuple[SnapshotMeta, bytes] | None = None
        self._commit_told_to: dict[str, int] = {}  # leader: commit index each follower was last told
        self._commit_flushed = -1  # leader: commit index when commit notices were last considered
        self._match_moved = False  # leader: a follower's match index moved since then
        # Output accumulated for the next Ready.
        self._outbox: list[Message] = []
        self._forward_proposals: list[Proposal] = []
        self._forward_reads: list[bytes] = []
        self._broadcast_pending = False
        self._read_states: list[ReadState] = []
        self._dropped_proposals: list[DroppedProposal] = []
        self._dropped_reads: list[DroppedRead] = []
        self._config_changed = True  # the first Ready tells the shell who the members are
        if not durable:
            self._prev_hard_state = HardState()
        else:
            self._prev_hard_state = hard_state if persisted_hard_state is None else persisted_hard_state
        self._prev_soft_state: SoftState | None = None
        # The same two, as plain tuples: has_ready() compares these, cheaply.
        self._soft_key: tuple[Any, ...] = ()
        p = self._prev_hard_state
        self._hard_key: tuple[Any, ...] = (p.term, p.voted_for, p.commit)
        self._in_flight: Ready | None = None
        #: Counters for INFO and tests: refused messages by kind, elections, ...
        self.stats: dict[str, int] = {}

    # -- construction --------------------------------------------------------------

    @classmethod
    def bootstrap(
        cls,
        settings: RaftSettings,
        *,
        cluster_id: str,
        member_id: str,
        members: Sequence[Member],
        learners: Sequence[Member] = (),
        rng: random.Random,
        now_ms: int,
        snapshots: SnapshotSource,
        proposal_seq_base: int = 0,
    ) -> RaftCore:
        """The first start of a member of a new cluster. Every initial member must be
        bootstrapped with the same members: each then holds the same entry 1 (term 1,
        the initial configuration), committed by construction as in etcd. The first
        Ready persists it. ``proposal_seq_base``: see ``restore``."""
        config = MembershipConfig(members, learners)
        if member_id not in config:
            raise RestoreError(f"member {member_id} bootstraps a cluster it is not a member of")
        first = Entry(1, 1, EntryKind.CONFIG, 0, "", 0, encode_config_entry(None, config))
        return cls(settings, cluster_id=cluster_id, member_id=member_id, rng=rng, now_ms=now_ms,
                   snapshots=snapshots, hard_state=HardState(1, None, 1), snapshot=ZERO_SNAPSHOT,
                   entries=[first], applied_index=0, durable=False, proposal_seq_base=proposal_seq_base)

    @classmethod
    def restore(
        cls,
        settings: RaftSettings,
        *,
        cluster_id: str,
        member_id: str,
        hard_state: HardState,
        snapshot: SnapshotMeta | None,
        entries: Sequence[Entry],
        applied_index: int,
        rng: random.Random,
        now_ms: int,
        snapshots: SnapshotSource,
        proposal_seq_base: int = 0,
    ) -> RaftCore:
        """Restart from durable state: the hard state, the newest snapshot's meta (None
        if none) and the write-ahead log's entries; ``applied_index`` is what the
        state machine holds (the snapshot's index after loading it). A node that joins
        an existing cluster passes an empty state: it knows no members, never
        campaigns, and learns everything from the leader once it has been added.

        Repairs that are always safe are made, never refused: entries at or before the
        snapshot point are skipped (a compaction that crashed midway); entries that
        contradict the snapshot are discarded (a snapshot installed from a leader whose
        log compaction did not finish); a commit index past the end of the log (torn
        tail after the hard state was saved, PySyncObj #197) is lowered to the log's
        end; a term below the last entry's is raised to it, with no vote. Anything else
        inconsistent raises RestoreError.

        ``proposal_seq_base``: this run's proposals are numbered from it + 1. It must
        exceed every number an earlier run of this member used, or an entry proposed
        before the restart could be taken for a new proposal's (a boot counter kept in
        the data directory, shifted left by 32 bits, does)."""
        meta = snapshot if snapshot is not None else ZERO_SNAPSHOT
        kept = _entries_after_snapshot(meta, entries)
        last_index = meta.index + len(kept)
        last_term = kept[-1].term if kept else meta.term
        if applied_index > last_index:
            raise RestoreError(f"the state machine applied index {applied_index}, past the log's end {last_index}")
        if applied_index < meta.index:
            raise RestoreError(f"the state machine applied index {applied_index}, below the snapshot {meta.index}")
        term, voted_for = hard_state.term, hard_state.voted_for
        if last_term > term:
            term, voted_for = last_term, None
        commit = min(max(hard_state.commit, applied_index, meta.index), last_index)
        return cls(settings, cluster_id=cluster_id, member_id=member_id, rng=rng, now_ms=now_ms,
                   snapshots=snapshots, hard_state=HardState(term, voted_for, commit), snapshot=meta,
                   entries=kept, applied_index=applied_index, durable=True, proposal_seq_base=proposal_seq_base,
                   persisted_hard_state=hard_state)

    # -- what the shell reads ------------------------------------------------------

    @property
    def config(self) -> MembershipConfig:
        return self.log.config

    @property
    def is_voter(self) -> bool:
        return self.member_id in self.log.config.voter_ids

    @property
    def commit_index(self) -> int:
        return self.log.commit

    @property
    def applied_index(self) -> int:
        return self.log.applied

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def role_name(self) -> str:
        """leader, candidate, pre-candidate, follower, learner, or none (not a member)."""
        if self.role is not Role.FOLLOWER:
            return self.role.value
        config = self.log.config
        if self.member_id in config.voter_ids:
            return "follower"
        return "learner" if self.member_id in config.learner_ids else "none"

    def snapshot_meta_at(self, index: int) -> SnapshotMeta:
        """What a snapshot of the state machine at applied ``index`` covers: the shell
        stores this with the snapshot's data, then calls ``compact(index)``."""
        log = self.log
        if index == log.snapshot.index:
            return log.snapshot
        if not log.snapshot.index < index <= log.applied:
            raise ValueError(f"no snapshot at {index}: applied entries are {log.snapshot.index}..{log.applied}")
        entry = log.entry(index)
        return SnapshotMeta(index, entry.term, entry.time_ms, log.config_at(index))

    def status(self) -> dict[str, Any]:
        """Everything INFO raft shows, as plain data."""
        log = self.log
        status: dict[str, Any] = {
            "member_id": self.member_id,
            "cluster_id": self.cluster_id,
            "role": self.role_name,
            "term": self.term,
            "leader_id": self.leader_id,
            "commit_index": log.commit,
            "applied_index": log.applied,
            "last_index": log.last_index,
            "snapshot_index": log.snapshot.index,
            "voters": [m.member_id for m in log.config.voters],
            "learners": [m.member_id for m in log.config.learners],
            "transfer_target": self.transfer_target,
        }
        if self.role is Role.LEADER:
            status["progress"] = {
                pid: {"state": pr.state.value, "match": pr.match, "next": pr.next, "lag": log.last_index - pr.match}
                for pid, pr in sorted(self.progress.items()) if pid != self.member_id
            }
        return status

    # -- inputs ----------------------------------------------------------------------

    def step_wire(self, obj: Any, now_ms: int) -> str | None:
        """Decode a message from the wire and step it; the refusal reason, if refused."""
        try:
            message = message_from_wire(obj)
        except WireError as exc:
            return self._refuse("malformed", str(exc))
        return self.step(message, now_ms)

    def step(self, m: Message, now_ms: int) -> str | None:
        """Take one message from a peer. Returns None, or why the message was refused
        (it is then counted in ``stats`` and has changed nothing)."""
        self._now_ms = now_ms
        if m.cluster_id != self.cluster_id:
            return self._refuse("wrong cluster", f"message for cluster {m.cluster_id}, this is {self.cluster_id}")
        if m.recipient != self.member_id:
            # A wiped node came back under a new member id: what the cluster says to
            # the member it was is not for it (and it must not answer as that member).
            return self._refuse("wrong recipient", f"message for member {m.recipient}, this is {self.member_id}")
        if m.sender == self.member_id:
            return self._refuse("from self", "message claims to come from this member")
        if isinstance(m, _FORWARDED):
            return self._step_forwarded(m)
        if m.term > self.term:
            if isinstance(m, (PreVote, Vote)):
                transfer = isinstance(m, Vote) and m.transfer
                if not transfer and self._in_lease():
                    # Thesis §4.2.3: while a leader is heard from, a vote request is
                    # disregarded, term and all, so a removed or partitioned node cannot
                    # disrupt. A pre-vote still gets an answer: "no".
                    if isinstance(m, PreVote):
                        self._send(PreVoteResponse(self.cluster_id, self.member_id, m.sender, self.term, False))
                    self._count("vote ignored in lease")
                    return None
            if isinstance(m, PreVote) or (isinstance(m, PreVoteResponse) and m.granted):
                pass  # a pre-vote round changes no term (thesis §9.6)
            else:
                leader = m.sender if isinstance(m, _FROM_LEADER) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, (Append, Heartbeat)):
                # A leader of an older term (it was cut off, or its term was lost to a
                # pre-vote that never raised ours): tell it our term so it steps down.
                self._send(AppendResponse(self.cluster_id, self.member_id, m.sender, self.term,
                                          index=self.log.last_index, reject=True,
                                          hint_index=self.log.last_index + 1))
            elif isinstance(m, PreVote):
                self._send(PreVoteResponse(self.cluster_id, self.member_id, m.sender, self.term, False))
            elif isinstance(m, Vote):
                self._send(VoteResponse(self.cluster_id, self.member_id, m.sender, self.term, False))
            self._count("stale term")
            return None
        if isinstance(m, PreVote):
            return self._handle_pre_vote(m)
        if isinstance(m, Vote):
            return self._handle_vote(m)
        return self._step_role(m)

    def tick(self, now_ms: int) -> None:
        """One logical tick (see the module docstring for what counts ticks)."""
        self._now_ms = now_ms
        self._ticks += 1
        forwarded = self._forwarded_reads
        if forwarded:
            oldest = self._ticks - self.settings.forwarded_read_timeout_ticks
            while forwarded and next(iter(forwarded.values())) <= oldest:
                context, _ = forwarded.popitem(last=False)
                self._dropped_reads.append(DroppedRead(context, NO_ANSWER))
        self._tick_role()

    def propose(self, data: bytes, now_ms: int) -> ProposalId:
        """Propose an entry; the id names it in committed entries or in a drop."""
        self._now_ms = now_ms
        pid = ProposalId(self.member_id, self._take_seq())
        self._propose(Proposal(pid.seq, EntryKind.NORMAL, bytes(data)))
        return pid

    def propose_conf_change(self, change: ConfChange, now_ms: int) -> ProposalId:
        """Propose a single-server membership change (it takes effect on each node
        when appended there; it is done once its entry commits)."""
        self._now_ms = now_ms
        pid = ProposalId(self.member_id, self._take_seq())
        self._propose(Proposal(pid.seq, EntryKind.CONFIG, encode_change(change)))
        return pid

    def read_index(self, context: bytes, now_ms: int) -> None:
        """Ask for a linearizable read (§6.4). ``context`` names it (unique on this
        node); it comes back in ``read_states`` or ``dropped_reads``."""
        self._now_ms = now_ms
        context = bytes(context)
        if self.role is Role.LEADER:
            self._leader_read(context, self.member_id)
        elif self.leader_id is not None:
            if len(self._forwarded_reads) >= self.settings.max_pending_reads:
                self._dropped_reads.append(DroppedRead(context, TOO_MANY_READS))
                return
            self._forwarded_reads[context] = self._ticks
            self._forward_reads.append(context)
        else:
            self._dropped_reads.append(DroppedRead(context, NO_LEADER))

    def transfer_leadership(self, target: str, now_ms: int) -> str | None:
        """Hand leadership to voter ``target`` (thesis §3.10). Returns why not, or
        None when the transfer started (or was forwarded to the leader)."""
        self._now_ms = now_ms
        if self.role is not Role.LEADER:
            if self.leader_id is None:
                return NO_LEADER
            self._send(TransferLeadership(self.cluster_id, self.member_id, self.leader_id, self.term, target))
            return None
        return self._start_transfer(target)

    def compact(self, index: int) -> tuple[int, int]:
        """The shell saved a snapshot of the state machine at applied ``index``
        (described by ``snapshot_meta_at(index)``): drop the entries it covers.
        Returns the compaction point ``(index, term)`` to compact the write-ahead log
        to. Leaders stream this snapshot to followers that need compacted entries."""
        log = self.log
        if index <= log.snapshot.index:
            return log.snapshot.index, log.snapshot.term
        if index > log.applied or index > log.stable:
            raise ValueError(f"cannot compact to {index}: applied {log.applied}, durable {log.stable}")
        log.compact(index)
        self._snapshot_cache = None
        return log.snapshot.index, log.snapshot.term

    # -- output ----------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._in_flight is not None:
            return False
        self._flush()
        log = self.log
        return bool(
            self._outbox or log.handed_out < log.last_index or log.pending_snapshot is not None
            or log.truncate_from is not None or log.applied < log.commit or self._read_states
            or self._dropped_proposals or self._dropped_reads or self._config_changed
            or self._soft_key != (self.leader_id, self.role, self.term)
            or self._hard_key != (self.term, self.voted_for, log.commit)
        )

    def ready(self) -> Ready:
        """The next batch of work; see :class:`Ready` for the obligations."""
        if self._in_flight is not None:
            raise AssertionError("ready() called again before advance()")
        self._flush()
        log = self.log
        rd = Ready()
        prev = self._prev_hard_state
        hard_key = (self.term, self.voted_for, log.commit)
        hard = prev if hard_key == self._hard_key else HardState(*hard_key)
        if hard is not prev:
            rd.hard_state = hard
        vote_changed = hard.term != prev.term or hard.voted_for != prev.voted_for
        rd.entries = log.unstable()
        rd.truncate_from = log.truncate_from
        if log.pending_snapshot is not None:
            meta, data = log.pending_snapshot
            rd.snapshot = IncomingSnapshot(meta, data)
        rd.must_sync = vote_changed or bool(rd.entries) or rd.snapshot is not None or rd.truncate_from is not None
        rd.persisted_index = log.last_index
        rd.committed_entries = log.committed_to_apply(self.settings.max_apply_bytes)
        if rd.committed_entries:
            log.applied = rd.committed_entries[-1].index
        if vote_changed:
            rd.messages_after_persist = self._outbox  # nothing may leave before the new term is durable
        else:
            for m in self._outbox:
                (rd.messages if m.EARLY else rd.messages_after_persist).append(m)
        rd.read_states, rd.dropped_proposals, rd.dropped_reads = (
            self._read_states, self._dropped_proposals, self._dropped_reads)
        soft_key = (self.leader_id, self.role, self.term)
        if soft_key != self._soft_key:
            rd.soft_state = self._prev_soft_state = SoftState(*soft_key)
            self._soft_key = soft_key
        self._hard_key = hard_key
        if self._config_changed:
            rd.config = log.config
            self._config_changed = False
        self._outbox, self._read_states, self._dropped_proposals, self._dropped_reads = [], [], [], []
        log.handed_out = log.last_index
        log.truncate_from = None
        log.pending_snapshot = None
        self._prev_hard_state = hard
        self._in_flight = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The shell carried out ``rd`` (its entries, snapshot and hard state are durable)."""
        if rd is not self._in_flight:
            raise AssertionError("advance() with a Ready that is not the one in flight")
        self._in_flight = None
        log = self.log
        log.stable = max(log.stable, min(rd.persisted_index, log.handed_out))
        if self.role is Role.LEADER:
            own = self.progress.get(self.member_id)
            if own is not None and own.acknowledge(log.stable):
                self._maybe_commit()

    # -- roles: transitions --------------------------------------------------------

    def _become_follower(self, term: int, leader: str | None, reason: str = NOT_LEADER) -> None:
        was_leader = self.role is Role.LEADER
        if term != self.term:
            self.term = term
            self.voted_for = None
        self.role = Role.FOLLOWER
        self._step_role = self._step_follower
        self._tick_role = self._tick_election
        self._reset_election_timer()
        if was_leader:
            self._end_leadership(reason)
        self._set_leader(leader)

    def _set_leader(self, leader: str | None) -> None:
        if leader != self.leader_id:
            self.leader_id = leader
            self._forward_reads = []
            if self._forwarded_reads:
                # The old leader may never answer now; failing a read is always safe.
                for context in self._forwarded_reads:
                    self._dropped_reads.append(DroppedRead(context, LEADER_CHANGED))
                self._forwarded_reads.clear()

    def _end_leadership(self, reason: str) -> None:
        for read in self.reads.drain():
            self._fail_read(read, reason)
        self.progress = {}
        self.transfer_target = None
        self._broadcast_pending = False

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        """Start a (pre-)election (§5.2, thesis §9.6); only voters campaign."""
        if not self.is_voter:
            return
        self._reset_election_timer()
        self.votes = {self.member_id: True}
        self._set_leader(None)
        if pre:
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
            self._count("pre-votes started")
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.voted_for = self.member_id
            term = self.term
            self._count("elections started")
        self._step_role = self._step_candidate
        self._tick_role = self._tick_election
        log = self.log
        for voter in sorted(log.config.voter_ids):
            if voter == self.member_id:
                continue
            if pre:
                self._send(PreVote(self.cluster_id, self.member_id, voter, term, log.last_index, log.last_term))
            else:
                self._send(Vote(self.cluster_id, self.member_id, voter, term, log.last_index, log.last_term,
                                transfer))
        self._tally()

    def _tally(self) -> None:
        outcome = vote_outcome(self.log.config.voter_ids, self.votes)
        if outcome is VoteOutcome.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
        elif outcome is VoteOutcome.LOST:
            self._become_follower(self.term, None)

    def _become_leader(self) -> None:
        log = self.log
        self.role = Role.LEADER
        self._step_role = self._step_leader
        self._tick_role = self._tick_heartbeat
        self._set_leader(self.member_id)
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        self.transfer_target = None
        self._count("terms led")
        s = self.settings
        self.progress = {
            mid: Progress(mid, log.last_index + 1, s.max_inflight_appends, s.max_inflight_bytes)
            for mid in log.config.members
        }
        own = self.progress.setdefault(
            self.member_id, Progress(self.member_id, log.last_index + 1, s.max_inflight_appends, s.max_inflight_bytes))
        own.acknowledge(log.stable)
        own.become_replicate()
        self._uncommitted_bytes = sum(e.size_bytes for e in log.entries[log.commit - log.snapshot.index:])
        self._commit_told_to = {}
        self._commit_flushed = -1
        # §8 / §5.4.2: entries of earlier terms commit only with one of our own.
        self._append([(("", 0), EntryKind.NOOP, b"")])

    # -- roles: ticks --------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        self.election_elapsed = 0
        e = self.settings.election_ticks
        self.randomized_election_ticks = e + self._rng.randrange(e)

    def _in_lease(self) -> bool:
        """Heard from a leader (or, as leader, confirmed a majority) within the last
        election timeout: vote requests are ignored (thesis §4.2.3)."""
        return (self.settings.check_quorum and self.leader_id is not None
                and self.election_elapsed < self.settings.election_ticks)

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_ticks and self.is_voter:
            self._campaign(pre=self.settings.pre_vote)

    def _tick_heartbeat(self) -> None:
        s = self.settings
        self.election_elapsed += 1
        self.heartbeat_elapsed += 1
        if self.election_elapsed >= s.election_ticks:
            self.election_elapsed = 0
            if s.check_quorum:
                active = {pid for pid, pr in self.progress.items() if pr.recent_active}
                active.add(self.member_id)
                for pr in self.progress.values():
                    pr.recent_active = False
                if not has_quorum(self.log.config.voter_ids, active):
                    self._count("check-quorum step-downs")
                    self._become_follower(self.term, None, LOST_QUORUM)
                    return
        if self.transfer_target is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= s.election_ticks:
                self._count("transfers abandoned")
                self.transfer_target = None
        if self.heartbeat_elapsed >= s.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._heartbeat_tick()

    # -- all roles: votes ----------------------------------------------------------

    def _handle_pre_vote(self, m: PreVote) -> None:
        log = self.log
        # Grant if the candidate's term would be new to us (or is ours and we are free
        # to vote in it) and its log is at least as up to date (§5.4.1).
        free = m.term > self.term or (self.voted_for in (None, m.sender) and self.leader_id is None)
        granted = free and log.is_up_to_date(m.last_index, m.last_term)
        term = m.term if granted else self.term
        self._send(PreVoteResponse(self.cluster_id, self.member_id, m.sender, term, granted))

    def _handle_vote(self, m: Vote) -> None:
        log = self.log
        free = self.voted_for in (None, m.sender) and (self.leader_id is None or self.leader_id == m.sender)
        granted = free and log.is_up_to_date(m.last_index, m.last_term)
        if granted:
            self.voted_for = m.sender  # persisted before the answer leaves (Ready.messages_after_persist)
            self._reset_election_timer()  # §5.2: granting a vote restarts the election timer
        self._send(VoteResponse(self.cluster_id, self.member_id, m.sender, self.term, granted))

    # -- follower ------------------------------------------------------------------

    def _step_follower(self, m: Message) -> str | None:
        if isinstance(m, _FROM_LEADER):
            self.election_elapsed = 0
            self._set_leader(m.sender)
            if isinstance(m, Append):
                return self._handle_append(m)
            if isinstance(m, Heartbeat):
                return self._handle_heartbeat(m)
            return self._handle_snapshot_chunk(m)  # type: ignore[arg-type]
        if isinstance(m, TimeoutNow):
            if m.sender == self.leader_id and self.is_voter:
                self._count("transfers received")
                self._campaign(pre=False, transfer=True)
            return None
        self._count("ignored by follower")
        return None

    def _handle_append(self, m: Append) -> str | None:
        log = self.log
        if m.prev_index < log.commit:
            # Everything up to our commit index is committed, hence matches any current
            # leader's log; acknowledge that much and let the leader go on from there.
            self._reply_append(m.sender, log.commit)
            return None
        if not log.matches(m.prev_index, m.prev_term):
            if m.prev_index > log.last_index:
                hint_index, hint_term = log.last_index + 1, 0
            else:
                hint_term = log.term_at(m.prev_index) or 0
                hint_index = max(log.first_index_of_term_at(m.prev_index), log.commit + 1)
            self._send(AppendResponse(self.cluster_id, self.member_id, m.sender, self.term, index=m.prev_index,
                                      reject=True, hint_index=hint_index, hint_term=hint_term))
            return None
        entries = m.entries
        if entries:
            conflict = log.find_conflict(entries)
            if conflict:
                if conflict <= log.commit:
                    return self._refuse("conflicts with committed entry",
                                        f"append from {m.sender} would replace committed entry {conflict}")
                config_before = log.config_index
                if conflict <= log.last_index:
                    log.truncate(conflict)
                log.append(entries[conflict - m.prev_index - 1:])
                if log.config_index != config_before:
                    self._on_config_change()
        last_new = m.prev_index + len(entries)
        # §5.3: commit no further than the last entry this message vouches for.
        log.commit_to(min(m.commit, last_new))
        self._reply_append(m.sender, last_new)
        return None

    def _reply_append(self, to: str, index: int) -> None:
        self._send(AppendResponse(self.cluster_id, self.member_id, to, self.term, index=index))

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        # The leader sends min(its commit, what it knows we hold), so this never
        # commits an entry we might hold in a version the leader does not.
        log = self.log
        if m.commit_term:  # a commit notice: commit only through the entry it names, if held
            if m.commit > log.commit and log.term_at(m.commit) == m.commit_term:
                log.commit_to(m.commit)
            return
        log.commit_to(min(m.commit, log.last_index))
        self._send(HeartbeatResponse(self.cluster_id, self.member_id, m.sender, self.term, m.read_round))

    def _handle_snapshot_chunk(self, m: SnapshotChunk) -> str | None:
        log = self.log
        meta = m.meta
        if meta.index <= log.commit:
            self._incoming = None
            self._reply_append(m.sender, log.commit)
            return None
        if log.matches(meta.index, meta.term):
            # §7: we already hold the snapshot's last entry; keep the log, commit to it.
            self._incoming = None
            log.commit_to(meta.index)
            self._reply_append(m.sender, meta.index)
            return None
        if m.total_bytes > self.settings.max_snapshot_bytes:
            return self._refuse("snapshot too large", f"snapshot of {m.total_bytes} bytes is above "
                                f"max_snapshot_bytes {self.settings.max_snapshot_bytes}")
        inc = self._incoming
        if inc is None or inc.meta != meta or inc.total_bytes != m.total_bytes:
            if m.offset != 0:
                self._send(SnapshotChunkResponse(self.cluster_id, self.member_id, m.sender, self.term, meta.index, 0))
                return None
            inc = self._incoming = _IncomingSnapshot(meta, m.total_bytes)
        if m.offset == len(inc.buffer):
            inc.buffer += m.data
        if len(inc.buffer) < inc.total_bytes:
            self._send(SnapshotChunkResponse(self.cluster_id, self.member_id, m.sender, self.term, meta.index,
                                             len(inc.buffer)))
            return None
        self._incoming = None
        log.install(meta, bytes(inc.buffer))
        self._count("snapshots installed")
        self._on_config_change()
        self._reply_append(m.sender, meta.index)
        return None

    # -- candidate -----------------------------------------------------------------

    def _step_candidate(self, m: Message) -> str | None:
        if isinstance(m, _FROM_LEADER):
            # A leader of our term exists (§5.2): stand down and follow it.
            self._become_follower(self.term, m.sender)
            return self._step_follower(m)
        if isinstance(m, PreVoteResponse):
            if self.role is Role.PRE_CANDIDATE:
                self.votes[m.sender] = m.granted
                self._tally()
            return None
        if isinstance(m, VoteResponse):
            if self.role is Role.CANDIDATE:
                self.votes[m.sender] = m.granted
                self._tally()
            return None
        self._count("ignored by candidate")
        return None

    # -- leader --------------------------------------------------------------------

    def _step_leader(self, m: Message) -> str | None:
        pr = self.progress.get(m.sender)
        if isinstance(m, AppendResponse):
            if pr is None:
                return self._refuse("not a member", f"append response from non-member {m.sender}")
            return self._handle_append_response(pr, m)
        if isinstance(m, HeartbeatResponse):
            if pr is None:
                return self._refuse("not a member", f"heartbeat response from non-member {m.sender}")
            return self._handle_heartbeat_response(pr, m)
        if isinstance(m, SnapshotChunkResponse):
            if pr is None:
                return self._refuse("not a member", f"snapshot response from non-member {m.sender}")
            return self._handle_snapshot_response(pr, m)
        if isinstance(m, _FROM_LEADER):
            # Two leaders in one term would break election safety (§5.2): refuse loudly.
            return self._refuse("second leader in term", f"{m.sender} claims to lead term {m.term} too")
        self._count("ignored by leader")
        return None

    def _handle_append_response(self, pr: Progress, m: AppendResponse) -> str | None:
        log = self.log
        pr.recent_active = True
        if m.index > log.last_index:
            return self._refuse("acknowledges unknown entries",
                                f"{m.sender} answers for index {m.index}, past the leader's last {log.last_index}")
        if m.reject:
            if m.hint_term == 0:
                retry = m.hint_index
            else:
                # Skip the follower's whole conflicting term at once (§5.3 optimisation):
                # if we hold that term, resume after our last entry of it.
                ours = log.last_index_of_term(m.hint_term, m.index)
                retry = ours + 1 if ours is not None else m.hint_index
            if pr.reject(m.index, max(1, min(retry, m.index))):
                self._send_append(pr)
            return None
        if not pr.acknowledge(m.index):
            return None  # old news: a duplicate, or overtaken by a later answer
        self._match_moved = True
        if pr.state is FlowState.PROBE:
            pr.become_replicate()
        elif pr.state is FlowState.SNAPSHOT and pr.match >= pr.snapshot_index:
            pr.become_replicate()
        self._maybe_commit()
        if self.role is not Role.LEADER:
            return None
        if self.transfer_target == pr.member_id and pr.match == log.last_index:
            self._send_timeout_now(pr.member_id)
        self._send_appends_while_possible(pr)
        return None

    def _handle_heartbeat_response(self, pr: Progress, m: HeartbeatResponse) -> str | None:
        pr.recent_active = True
        reads = self.reads
        if m.read_round > reads.sent_round:
            return self._refuse("unknown read round", f"{m.sender} confirms read round {m.read_round}, "
                                f"newest sent is {reads.sent_round}")
        if pr.state is FlowState.PROBE:
            pr.paused = False
            if pr.match < self.log.last_index:
                self._send_append(pr)
        if m.read_round > pr.read_round:
            pr.read_round = m.read_round
            if reads.pending:
                self._release_reads()
        return None

    def _handle_snapshot_response(self, pr: Progress, m: SnapshotChunkResponse) -> str | None:
        pr.recent_active = True
        if pr.state is not FlowState.SNAPSHOT or m.index != pr.snapshot_index:
            return None
        pr.snapshot_stalled = False
        if m.offset < pr.snapshot_acked:  # the follower lost what it had: start over from there
            pr.snapshot_acked = pr.snapshot_sent = m.offset
            pr.paused = False
        elif m.offset > pr.snapshot_acked:
            pr.snapshot_acked = m.offset
            pr.snapshot_sent = max(pr.snapshot_sent, m.offset)
        self._send_snapshot_chunks(pr)
        return None

    def _maybe_commit(self) -> None:
        log = self.log
        progress = self.progress
        voters = log.config.voter_ids
        index = quorum_value(voters, lambda v: progress[v].match if v in progress else 0)
        # §5.4.2: only an entry of the current term commits by counting replicas.
        if index <= log.commit or log.term_at(index) != self.term:
            return
        first_new = log.commit + 1
        log.commit_to(index)
        for i in range(first_new, index + 1):
            self._uncommitted_bytes -= log.entry(i).size_bytes
        self._uncommitted_bytes = max(0, self._uncommitted_bytes)
        if self.reads.waiting:
            self.reads.start_waiting(log.commit)
            self._broadcast_pending = True
        if log.config_index <= log.commit:
            # The configuration is committed: stop replicating to members it removed
            # (until now they kept receiving the log, so they learn of their removal).
            for mid in [mid for mid in self.progress if mid not in log.config.members and mid != self.member_id]:
                del self.progress[mid]
            if self.member_id not in voters:
                self._step_down_removed()

    def _step_down_removed(self) -> None:
        """Thesis §4.2.2: our removal committed; hand over to the most up-to-date voter
        (TimeoutNow, so nobody waits for an election timeout), then stand down."""
        log = self.log
        best = max((pr for pid, pr in self.progress.items() if pid in log.config.voter_ids),
                   key=lambda pr: (pr.match, pr.member_id), default=None)
        if best is not None and best.match == log.last_index:
            self._send_timeout_now(best.member_id)
        self._count("removed leader stepped down")
        self._become_follower(self.term, None, "this member was removed from the cluster")

    def _heartbeat_tick(self) -> None:
        log = self.log
        reads = self.reads
        round_number = reads.next_round() if reads.round_wanted else reads.sent_round
        for pid, pr in self.progress.items():
            if pid == self.member_id:
                continue
            self._send(Heartbeat(self.cluster_id, self.member_id, pid, self.term,
                                 min(log.commit, pr.match), round_number))
            if pr.state is FlowState.REPLICATE and pr.match < log.last_index and not pr.acked_recently:
                # Behind, and no acknowledgement for a whole interval: an append or its
                # answer was probably lost. An empty append at next - 1 finds out at no
                # flow-control cost (success moves match; a gap is rejected: probe).
                self._send_empty_append(pr)
            elif pr.state is FlowState.SNAPSHOT:
                if pr.snapshot_stalled:
                    pr.snapshot_sent = pr.snapshot_acked
                    pr.paused = False
                    self._send_snapshot_chunks(pr)
                pr.snapshot_stalled = True
            pr.acked_recently = False
        if self._single_voter():
            self._release_reads()

    def _single_voter(self) -> bool:
        return self.log.config.voter_ids == {self.member_id}

    # -- leader: replication -------------------------------------------------------

    def _send_appends_while_possible(self, pr: Progress) -> None:
        last = self.log.last_index
        while pr.can_send() and pr.next <= last:
            before = pr.next
            self._send_append(pr)
            if pr.state is not FlowState.REPLICATE or pr.next == before:
                break

    def _send_append(self, pr: Progress) -> None:
        """Send what ``pr`` needs next: entries from ``next`` (or a snapshot when those
        were compacted away)."""
        if pr.member_id == self.member_id or not pr.can_send():
            return
        log = self.log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        if prev_term is None:
            self._start_snapshot(pr)
            return
        entries = log.slice(pr.next, log.last_index + 1, self.settings.max_append_bytes)
        if not entries and pr.state is FlowState.REPLICATE:
            return
        size = sum(e.size_bytes for e in entries)
        self._send(Append(self.cluster_id, self.member_id, pr.member_id, self.term, prev, prev_term,
                          log.commit, entries))
        pr.sent(prev + len(entries), size)

    def _send_empty_append(self, pr: Progress) -> None:
        log = self.log
        prev = pr.next - 1
        prev_term = log.term_at(prev)
        if prev_term is None:
            # What we sent was compacted away since: probe again from what matched,
            # which sends the snapshot if that is compacted too.
            pr.become_probe()
            self._send_append(pr)
            return
        self._send(Append(self.cluster_id, self.member_id, pr.member_id, self.term, prev, prev_term,
                          min(log.commit, prev), []))

    def _send_timeout_now(self, target: str) -> None:
        self._send(TimeoutNow(self.cluster_id, self.member_id, target, self.term))

    def _start_snapshot(self, pr: Progress) -> None:
        """§7: the follower needs entries we compacted; stream our newest snapshot."""
        snapshot = self._snapshot()
        if snapshot is None:
            self._count("snapshot unavailable")
            return
        pr.become_snapshot(snapshot[0].index)
        self._count("snapshots sent")
        self._send_snapshot_chunks(pr)

    def _snapshot(self) -> tuple[SnapshotMeta, bytes] | None:
        meta = self.log.snapshot
        cache = self._snapshot_cache
        if cache is not None and cache[0].index == meta.index:
            return cache
        if meta.index == 0:
            return None
        data = self._snapshots.snapshot_data(meta.index)
        if data is None:
            return None
        self._snapshot_cache = (meta, data)
        return self._snapshot_cache

    def _send_snapshot_chunks(self, pr: Progress) -> None:
        snapshot = self._snapshot()
        if snapshot is None or snapshot[0].index != pr.snapshot_index:
            # Compacted again meanwhile (or the shell lost it): start over with the newest.
            pr.become_probe_at(pr.next)
            self._start_snapshot(pr)
            return
        meta, data = snapshot
        chunk = self.settings.snapshot_chunk_bytes
        window = chunk * self.settings.snapshot_chunks_in_flight
        total = len(data)
        while not pr.paused and pr.snapshot_sent - pr.snapshot_acked < window:
            offset = pr.snapshot_sent
            piece = data[offset:offset + chunk]
            self._send(SnapshotChunk(self.cluster_id, self.member_id, pr.member_id, self.term, meta, total,
                                     offset, piece))
            pr.snapshot_sent = offset + len(piece)
            if pr.snapshot_sent >= total:
                pr.paused = True  # every chunk is out; wait for the follower
        if pr.snapshot_sent >= total:
            pr.paused = True

    # -- leader: proposals and reads -----------------------------------------------

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _propose(self, proposal: Proposal) -> None:
        pid = ProposalId(self.member_id, proposal.seq)
        if self.role is Role.LEADER:
            refused = self._accept_proposals(self.member_id, [proposal])
            for seq, reason in refused:
                self._dropped_proposals.append(DroppedProposal(ProposalId(self.member_id, seq), reason))
        elif self.leader_id is not None:
            self._forward_proposals.append(proposal)
        else:
            self._dropped_proposals.append(DroppedProposal(pid, NO_LEADER))

    def _accept_proposals(self, origin: str, proposals: list[Proposal]) -> list[tuple[int, str]]:
        """Append what can be appended; the (seq, reason) of what cannot."""
        refused: list[tuple[int, str]] = []
        batch: list[tuple[tuple[str, int], int, bytes]] = []
        config_pending = False
        pending_bytes = 0
        for p in proposals:
            key = (origin, p.seq)
            if origin != self.member_id:
                if key in self._seen_proposals:
                    self._count("duplicate proposals dropped")
                    continue
                self._remember_proposal(key)
            reason = TRANSFERRING if self.transfer_target is not None else None
            size = len(p.data) + ENTRY_OVERHEAD_BYTES
            if reason is None and self._uncommitted_bytes + pending_bytes + size > self.settings.max_uncommitted_bytes:
                reason = TOO_MANY_UNCOMMITTED
            data = p.data
            if reason is None and p.kind == EntryKind.CONFIG:
                reason = None if not config_pending else "a membership change is already in progress"
                if reason is None:
                    reason, data = self._config_entry_data(p.data)
                if reason is None:
                    config_pending = True
            if reason is not None:
                refused.append((p.seq, reason))
                continue
            batch.append((key, p.kind, data))
            pending_bytes += size
        if batch:
            self._append(batch)
        return refused

    def _config_entry_data(self, change_data: bytes) -> tuple[str | None, bytes]:
        log = self.log
        if log.config_index > log.commit:
            return "a membership change is already in progress", b""
        if log.term_at(log.commit) != self.term:
            # Ongaro (raft-dev, 2015): a single-server change is safe only once the
            # leader has committed an entry of its own term.
            return "the leader has not committed an entry of its term yet; retry", b""
        try:
            change = decode_change(change_data)
            new_config = log.config.apply(change)
        except (ConfChangeError, ConfigWireError) as exc:
            return str(exc), b""
        return None, encode_config_entry(change, new_config)

    def _remember_proposal(self, key: tuple[str, int]) -> None:
        seen = self._seen_proposals
        seen[key] = None
        if len(seen) > self.settings.proposal_dedup_window:
            seen.popitem(last=False)

    def _append(self, batch: list[tuple[tuple[str, int], int, bytes]]) -> None:
        """Append new entries as leader, stamping each with a time that never runs
        backwards (max of our clock and the previous entry's time)."""
        log = self.log
        index, term = log.last_index, self.term
        time_ms = max(self._now_ms, log.last_time_ms)
        config_before = log.config_index
        entries = []
        for (origin, seq), kind, data in batch:
            index += 1
            entries.append(Entry(index, term, kind, time_ms, origin, seq, data))
        log.append(entries)
        self._uncommitted_bytes += sum(e.size_bytes for e in entries)
        if log.config_index != config_before:
            self._on_config_change()
        self._broadcast_pending = True
        if self._single_voter():
            self._maybe_commit()

    def _leader_read(self, context: bytes, origin: str) -> None:
        reads = self.reads
        if reads.full():
            self._fail_read(PendingRead(context, origin, 0, 0), TOO_MANY_READS)
            return
        log = self.log
        if log.term_at(log.commit) != self.term:
            reads.wait_for_commit(context, origin)  # §6.4 step 1: wait for our no-op
            return
        if self._single_voter():
            self._release(PendingRead(context, origin, log.commit, 0))
            return
        reads.add(context, origin, log.commit)

    def _release_reads(self) -> None:
        reads = self.reads
        progress = self.progress
        me = self.member_id
        confirmed = quorum_value(
            self.log.config.voter_ids,
            lambda v: reads.sent_round if v == me else (progress[v].read_round if v in progress else 0),
        )
        grouped: dict[tuple[str, int], list[bytes]] = {}
        for read in reads.confirm(confirmed):
            if read.origin == me:
                self._read_states.append(ReadState(read.context, read.index))
            else:
                grouped.setdefault((read.origin, read.index), []).append(read.context)
        for (origin, index), contexts in grouped.items():
            self._send(ReadIndexResponse(self.cluster_id, me, origin, self.term, contexts, index))

    def _release(self, read: PendingRead) -> None:
        if read.origin == self.member_id:
            self._read_states.append(ReadState(read.context, read.index))
        else:
            self._send(ReadIndexResponse(self.cluster_id, self.member_id, read.origin, self.term,
                                         [read.context], read.index))

    def _fail_read(self, read: PendingRead, reason: str) -> None:
        if read.origin == self.member_id:
            self._dropped_reads.append(DroppedRead(read.context, reason))
        else:
            self._send(ReadIndexResponse(self.cluster_id, self.member_id, read.origin, self.term,
                                         [read.context], 0, True, reason))

    def _start_transfer(self, target: str) -> str | None:
        if target == self.member_id:
            return None  # already leading
        if target not in self.log.config.voter_ids:
            return f"{target} is not a voter"
        if self.transfer_target == target:
            return None
        self.transfer_target = target
        self._transfer_elapsed = 0
        self._count("transfers started")
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self._send_timeout_now(target)
        elif pr.state is not FlowState.SNAPSHOT:
            # Catch the target up now rather than at the next heartbeat (thesis §3.10).
            pr.paused = False
            if pr.next <= self.log.last_index:
                self._send_appends_while_possible(pr)
            else:
                self._send_empty_append(pr)
        return None

    # -- messages that are not part of the term protocol ---------------------------

    def _step_forwarded(self, m: Message) -> str | None:
        if isinstance(m, Propose):
            if self.role is Role.LEADER and m.term == self.term:
                refused = self._accept_proposals(m.sender, m.proposals)
            else:
                # Only the leader of the term it was forwarded in may append a proposal: one that
                # reaches a later leader (delayed across a reconnection) is refused, so once an
                # entry of a later term commits, the proposer knows the proposal never will, and
                # may propose it again without risking a duplicate.
                reason = NOT_LEADER if self.leader_id is not None else NO_LEADER
                refused = []
                for p in m.proposals:
                    key = (m.sender, p.seq)
                    if key in self._seen_proposals:
                        continue
                    self._remember_proposal(key)
                    refused.append((p.seq, reason))
            by_reason: dict[str, list[int]] = {}
            for seq, reason in refused:
                by_reason.setdefault(reason, []).append(seq)
            for reason, seqs in by_reason.items():
                self._send(ProposeReject(self.cluster_id, self.member_id, m.sender, self.term, seqs, reason))
            return None
        if isinstance(m, ProposeReject):
            for seq in m.seqs:
                self._dropped_proposals.append(DroppedProposal(ProposalId(self.member_id, seq), m.reason))
            return None
        if isinstance(m, ReadIndex):
            if self.role is Role.LEADER:
                for context in m.contexts:
                    self._leader_read(context, m.sender)
            else:
                self._send(ReadIndexResponse(self.cluster_id, self.member_id, m.sender, self.term, m.contexts, 0,
                                             True, NOT_LEADER if self.leader_id is not None else NO_LEADER))
            return None
        if isinstance(m, ReadIndexResponse):
            for context in m.contexts:
                if context in self._forwarded_reads:
                    del self._forwarded_reads[context]
                    if m.reject:
                        self._dropped_reads.append(DroppedRead(context, m.reason))
                    else:
                        self._read_states.append(ReadState(context, m.index))
            return None
        if isinstance(m, TransferLeadership):
            if self.role is Role.LEADER:
                self._start_transfer(m.target)
            else:
                self._count("transfer requests for another leader")
            return None
        raise AssertionError(f"unhandled forwarded message {type(m).__name__}")  # pragma: no cover

    # -- membership ------------------------------------------------------------------

    def _on_config_change(self) -> None:
        """The configuration in force changed (appended, truncated away, or installed
        with a snapshot): reshape what depends on who the members are."""
        self._config_changed = True
        config = self.log.config
        if self.role is Role.LEADER:
            s = self.settings
            for mid in config.members:
                if mid not in self.progress:
                    # Start with the configuration entry itself: a new member learns
                    # of its membership from the first append it accepts.
                    self.progress[mid] = Progress(mid, self.log.last_index, s.max_inflight_appends,
                                                  s.max_inflight_bytes)
            if self.transfer_target is not None and self.transfer_target not in config.voter_ids:
                self.transfer_target = None
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and self.member_id not in config.voter_ids:
            self._become_follower(self.term, None)

    # -- plumbing --------------------------------------------------------------------

    def _flush(self) -> None:
        """Turn what accumulated since the last Ready into messages: batched appends,
        forwarded proposals and reads, a ReadIndex round, commit notices."""
        proposals, self._forward_proposals = self._forward_proposals, []
        contexts, self._forward_reads = self._forward_reads, []
        if self.role is Role.LEADER:
            # Buffered while following, and we lead now: take them ourselves.
            for seq, reason in self._accept_proposals(self.member_id, proposals) if proposals else ():
                self._dropped_proposals.append(DroppedProposal(ProposalId(self.member_id, seq), reason))
            for context in contexts:
                self._forwarded_reads.pop(context, None)
                self._leader_read(context, self.member_id)
            self._flush_leader()
        elif self.leader_id is not None:
            if proposals:
                self._send(Propose(self.cluster_id, self.member_id, self.leader_id, self.term, proposals))
            if contexts:
                self._send(ReadIndex(self.cluster_id, self.member_id, self.leader_id, self.term, contexts))
        else:
            for p in proposals:
                self._dropped_proposals.append(DroppedProposal(ProposalId(self.member_id, p.seq), NO_LEADER))
            for context in contexts:
                if context in self._forwarded_reads:
                    del self._forwarded_reads[context]
                    self._dropped_reads.append(DroppedRead(context, NO_LEADER))

    def _flush_leader(self) -> None:
        log = self.log
        if self._broadcast_pending:
            self._broadcast_pending = False
            for pr in self.progress.values():
                if pr.member_id != self.member_id:
                    self._send_appends_while_possible(pr)
        if self.reads.round_wanted:
            self._broadcast_read_round()
        if log.commit == self._commit_flushed and not self._match_moved:
            return
        self._commit_flushed = log.commit
        self._match_moved = False
        # A follower's acknowledgement may arrive after the commit it completes (another one made
        # the majority): it is told then, not at the next heartbeat.
        told = self._commit_told_to
        commit = log.commit
        for pr in self.progress.values():
            if pr.member_id == self.member_id:
                continue
            # Tell followers of a new commit index at once: the node a client wrote through
            # applies the entry before it answers (read-your-writes there). A follower sent the
            # entries up to the commit is told even before it acknowledges them (the notice names
            # the entry, and it commits only if it holds it): when another follower's
            # acknowledgement made the majority, it applies as soon as its own write is durable.
            known = commit if pr.next > commit else min(commit, pr.match)
            if known > told.get(pr.member_id, 0):
                term = log.term_at(known)
                if term is not None:
                    self._send(Heartbeat(self.cluster_id, self.member_id, pr.member_id, self.term, known,
                                         self.reads.sent_round, term))

    def _broadcast_read_round(self) -> None:
        round_number = self.reads.next_round()
        log = self.log
        for voter in log.config.voters:  # a tuple: iteration order must not depend on hashing
            pid = voter.member_id
            pr = self.progress.get(pid)
            if pid == self.member_id or pr is None:
                continue
            self._send(Heartbeat(self.cluster_id, self.member_id, pid, self.term, min(log.commit, pr.match),
                                 round_number))
        if self._single_voter():
            self._release_reads()

    def _send(self, m: Message) -> None:
        if isinstance(m, Append):
            told = self._commit_told_to
            known = min(m.commit, m.prev_index + len(m.entries))
            if known > told.get(m.recipient, 0):
                told[m.recipient] = known
        elif isinstance(m, Heartbeat):
            told = self._commit_told_to
            if m.commit > told.get(m.recipient, 0):
                told[m.recipient] = m.commit
        self._outbox.append(m)

    def _count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1

    def _refuse(self, kind: str, reason: str) -> str:
        self._count("refused: " + kind)
        return reason


class _IncomingSnapshot:
    """Chunks of a snapshot arriving from the leader, in order."""

    __slots__ = ("meta", "total_bytes", "buffer")

    def __init__(self, meta: SnapshotMeta, total_bytes: int) -> None:
        self.meta = meta
        self.total_bytes = total_bytes
        self.buffer = bytearray()


def _entries_after_snapshot(meta: SnapshotMeta, entries: Sequence[Entry]) -> list[Entry]:
    """The restored entries that follow the snapshot point, checked for shape."""
    entries = list(entries)
    if entries and meta.index > 0:
        first = entries[0].index
        if first > meta.index + 1:
            raise RestoreError(f"the log starts at index {first}, after a gap from the snapshot at {meta.index}")
        held = [e for e in entries if e.index == meta.index]
        if held and held[0].term != meta.term:
            entries = []  # the log contradicts the snapshot: the snapshot wins (§7)
        elif not held and first <= meta.index:
            entries = [e for e in entries if e.index > meta.index]
            if entries:
                raise RestoreError(f"the log skips the snapshot point {meta.index}")
        else:
            entries = [e for e in entries if e.index > meta.index]
    expected, prev_term = meta.index + 1, meta.term
    for e in entries:
        if e.index != expected:
            raise RestoreError(f"log entry {e.index} found where {expected} was expected")
        if e.term < prev_term:
            raise RestoreError(f"log entry {e.index} has term {e.term}, below the previous {prev_term}")
        expected, prev_term = expected + 1, e.term
    return entries
