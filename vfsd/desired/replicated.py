"""The desired plane on Raft: the asyncio shell that drives ``vfsd.raft.RaftCore``.

Theory of operation
-------------------
A clustered node (``--peers`` or ``--join``) runs this plane in place of the
one-voter ``DesiredPlane``; the state machine, the entry format, the write-ahead
log, the snapshot store and the hard-state store are the same. What changes is
when an entry counts: it is applied, and its client answered, only once the Raft
core says it is committed (held durably by a majority of voters).

The core is pure; this shell feeds it and carries out its ``Ready`` batches in the
order ``vfsd.raft.core.Ready`` documents: send the early messages; persist
(snapshot, truncation, entries, hard state) on the one writer thread and fsync;
send the messages that had to wait for that; install a received snapshot; apply
the committed entries; release reads; fail what was dropped; ``advance``. Inputs
keep arriving while a Ready is being persisted and land in the next one, so every
fsync carries everything proposed meanwhile (group commit, on the leader and on
followers alike).

Inputs: a timer ticks the core every ``tick_ms``; frames of the RAFT family from
the peer transport are stepped (a refusal is counted, never raised); client writes
are proposed (``submit``); reads of desired paths wait on a read barrier
(``read_barrier``: ReadIndex, batched so that every read of one event-loop
iteration shares one round, then the local applied index must reach it).

Proposals are plain data carrying an id (this member, a sequence number), so the
node that took the client's write answers it when it applies that entry, whoever
forwarded it to the leader; the leader stamps the entry's time (non-decreasing
across leaders) and the state machine applies with that time. A write that finds
no leader waits up to ``leader_wait_ms`` for one, then gets ``-TRYAGAIN no leader
for the desired plane``; a proposal the core dropped before appending it is
proposed again within the same bound (it was never appended, so this cannot
apply it twice). A proposal appended but not committed within
``commit_timeout_ms`` (its leader died with it unreplicated, say) is answered with
an error saying the outcome is unknown; it is never silently kept. A client that
disconnects leaves nothing behind that blocks anything: its entry commits or not,
and the reply is dropped.

Starting. A data directory that holds a log restarts from it alone (hard state,
newest snapshot, log); the peers it talks to come from the committed membership,
never from flags. An empty one either bootstraps the initial cluster named by
``--peers`` or joins through ``--join``. Members are *incarnations*: the member id
is the node name plus a random suffix made once per data directory
(``vfsd.datadir``), so the initial configuration can only be agreed once every
initial member is reachable: the shell waits for every listed peer's HELLO (which
carries its member id), then bootstraps with all of them, as every other initial
member does. A joining node dials the address given, sends a JOIN request, and is
added as a learner; it retries until the leader's log reaches it. A node whose
data directory was wiped comes back as a new member: the cluster keeps addressing
the member it was, and the shell logs what an operator must do (remove the old
member, add the new one).

Expiry: only the leader proposes ``vfs.expire`` entries (``may_expire``); a
follower reads a lapsed key as missing and deletes nothing on its own.

Failure: if the writer thread fails to write or fsync, the plane stops: nothing
more is acknowledged, no message is stepped or sent, and every waiting client gets
an error (fsyncgate: a failed fsync cannot be retried into a trustworthy log).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vfsd import codec
from vfsd.commands.context import DEFAULT_MAX_BULK_BYTES, ChangeSink, Ctx
from vfsd.desired.log import LogEntry, WriteAheadLog
from vfsd.desired.machine import StateMachine, entry_body, pack_body
from vfsd.desired.plane import check_own_files, log_info
from vfsd.desired.snapshot import HardState as StoredHardState
from vfsd.desired.snapshot import HardStateStore, Snapshot, SnapshotCorruption, SnapshotStore
from vfsd.paths import Router
from vfsd.peers.frame import RAFT, WIRE
from vfsd.raft import (
    ConfChange,
    EntryKind,
    HardState,
    Member,
    MembershipConfig,
    MessageType,
    ProposalId,
    RaftCore,
    RaftSettings,
    Ready,
    Role,
)
from vfsd.raft import core as core_reasons
from vfsd.raft.records import RecordError, decode_entry, decode_snapshot, encode_snapshot
from vfsd.raft.records import encode_entry as encode_record
from vfsd.resp.types import OK, ErrorReply
from vfsd.store.keyspace import REV, Keyspace

log = logging.getLogger(__name__)

for _t in MessageType:
    WIRE.message(RAFT, int(_t), _t.name.lower())
#: Shell messages of the RAFT family (not the core's): a node asking to be added as a learner,
#: and the answer. Numbered apart from the core's types so that those can grow.
JOIN = WIRE.message(RAFT, 64, "join")
JOIN_REPLY = WIRE.message(RAFT, 65, "join_reply")
#: Before bootstrapping, a fresh initial member asks each peer whether a cluster exists already.
PROBE = WIRE.message(RAFT, 66, "probe")
PROBE_REPLY = WIRE.message(RAFT, 67, "probe_reply")

NO_LEADER = "TRYAGAIN no leader for the desired plane"
#: A Ready with at most this many entries and bytes is made durable on the event loop itself.
INLINE_PERSIST_ENTRIES = 8
INLINE_PERSIST_BYTES = 64 << 10
#: While leases exist, a leader that proposed nothing for this long commits an empty entry.
LEASE_TICK_MS = 500
#: Reasons a dropped proposal or read may be retried (it was never appended, never served).
_RETRYABLE = (core_reasons.NO_LEADER, core_reasons.NOT_LEADER, core_reasons.TRANSFERRING, core_reasons.LOST_QUORUM,
              core_reasons.LEADER_CHANGED, core_reasons.NO_ANSWER)


class ClusterStartError(Exception):
    """The plane cannot start with this data directory and these settings (one line)."""


@dataclass(slots=True)
class _Proposal:
    data: bytes
    future: asyncio.Future[Any]
    #: Until when a missing or changing leader may delay it (monotonic ms).
    leader_deadline: float
    #: Until when it may wait for its commit once appended.
    commit_deadline: float
    kind: int = EntryKind.NORMAL
    change: ConfChange | None = None
    #: The term it was handed to a leader in (0 until the core has sent or appended it).
    term: int = 0
    #: The payload ``data`` packs: applied from here when the entry commits (no unpacking).
    body: dict[str, Any] | None = None


class RaftPlane:
    name = "log"
    deferred = True
    #: Reads of desired paths wait for a ReadIndex round (``read_barrier``) unless READONLY.
    linearizable = True

    def __init__(self, db: Keyspace, node_name: str, sink: ChangeSink, data_dir: str, log_roots: list[bytes], *,
                 cluster_id: str, initial_peers: dict[str, tuple[str, int]],
                 join: tuple[str, int] | None, advertised_address: str = "", settings: RaftSettings | None = None, tick_ms: int = 50,
                 leader_wait_ms: int = 2000, commit_timeout_ms: int = 10000, max_entry_bytes: int = 15 << 20,
                 snapshot_every_entries: int = 10000, segment_max_bytes: int = 64 << 20,
                 script_max_memory_bytes: int = 256 << 20, router: Router | None = None,
                 replay_sink: ChangeSink | None = None, rng: random.Random | None = None,
                 on_snapshot_installed: Callable[[int], None] | None = None) -> None:
        self.origin = node_name
        self.node_name = node_name
        self.cluster_id = cluster_id
        #: This incarnation's member id and start count: set from the data dir's identity before open().
        self.member_id = ""
        self.boots = 0
        self.initial_peers = initial_peers
        self.join_address = join
        #: ``host:peerport`` others reach this node at (what a join request announces).
        self.advertised_address = advertised_address
        self.data_dir = os.path.join(data_dir, "desired")
        self.machine = StateMachine(db, log_roots, sink, router=router, script_max_memory_bytes=script_max_memory_bytes)
        self.ctx = Ctx(db, "log", node_name, lambda: 0, sink, lazy_delete=False)
        self.db = db
        self.log_roots = log_roots
        self.raft_settings = settings or RaftSettings()
        self.tick_ms = tick_ms
        self.leader_wait_ms = leader_wait_ms
        self.commit_timeout_ms = commit_timeout_ms
        self.max_entry_bytes = max_entry_bytes
        self.snapshot_every_entries = snapshot_every_entries
        self.segment_max_bytes = segment_max_bytes
        self._replay_sink = replay_sink
        self._rng = rng or random.Random()
        self.on_snapshot_installed = on_snapshot_installed
        #: Called after each applied entry (the node ends a busy script's polling there).
        self.after_apply: Callable[[], None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfsd-raft")
        self.wal: WriteAheadLog | None = None
        self.snapshots: SnapshotStore | None = None
        self.hard_state_store: HardStateStore | None = None
        self.core: RaftCore | None = None
        self.transport: Any = None
        self.snapshot_index = 0
        self._snapshot_failed_at = 0
        self._saved_vote: tuple[int, str | None] = (0, None)
        self._saved_commit = 0
        self._failed: str | None = None
        self._stopping = False
        self._driver: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._joiner: asyncio.Task[None] | None = None
        self._bootstrapper: asyncio.Task[None] | None = None
        self._kick_pending = False
        #: Proposals waiting for a leader, and those proposed (by id) waiting for their commit.
        self._parked: list[_Proposal] = []
        self._proposed: dict[ProposalId, _Proposal] = {}
        #: Proposed since the core last flushed its forwards: their term is set once it has.
        self._unflushed: list[_Proposal] = []
        #: The plain writes of this event-loop iteration, gathered into one entry (submit, _flush_batch).
        self._batch: list[tuple[list[list[bytes]], asyncio.Future[Any], int, int]] | None = None
        self._applied_term = 0
        #: (entry time, monotonic ms) the leader's entry clock continues from (entry_clock_ms).
        self._clock_base: tuple[int, float] | None = None
        self._last_proposed_ms = 0.0
        #: Reads: futures of this iteration's batch, batches in flight by context, and released
        #: batches waiting for the applied index to reach theirs.
        self._read_batch: list[asyncio.Future[None]] = []
        self._read_batch_deadline = 0.0
        self._reads: dict[bytes, tuple[list[asyncio.Future[None]], float]] = {}
        self._released: list[tuple[int, list[asyncio.Future[None]]]] = []
        self._read_seq = 0
        #: Member ids peers announced in their HELLO, by node name (for bootstrapping).
        self._hello_ids: dict[str, str] = {}
        #: Answers to PROBE while bootstrapping: node name -> (holds a cluster, its member ids).
        self._probe_replies: dict[str, tuple[bool, list[str]]] = {}
        self._dialled: set[str] = set()
        self._wrong_recipient_logged = False
        self.stats = {"fsyncs": 0, "proposals": 0, "proposals_retried": 0, "proposals_timed_out": 0,
                      "reads": 0, "read_rounds": 0, "messages_sent": 0, "messages_received": 0,
                      "messages_refused": 0, "snapshots_installed": 0, "snapshots_taken": 0}

    # -- start and stop ---------------------------------------------------------

    def open(self) -> None:
        """Recover from the data directory: the newest snapshot, then every committed entry after it
        (the log replay's change events go to the watch history only: nobody is connected yet)."""
        os.makedirs(self.data_dir, exist_ok=True)
        check_own_files(self.data_dir)
        self.snapshots = SnapshotStore(self.data_dir)
        self.hard_state_store = HardStateStore(self.data_dir)
        self.wal = WriteAheadLog.open(self.data_dir, segment_max_bytes=self.segment_max_bytes)
        stored = self.hard_state_store.load()
        machine = self.machine
        meta = None
        snap = self.snapshots.load_or_replay(self.wal.first_index)
        if snap is not None:
            try:
                meta, state = decode_snapshot(snap.index, snap.term, snap.data)
            except RecordError as exc:
                raise SnapshotCorruption(str(exc)) from None
            if meta is None:
                raise ClusterStartError(
                    f"{self.data_dir} holds a one-node desired log from before clustering; start this node "
                    "without --peers/--join, or give it an empty data dir and add it to the cluster")
            machine.restore_state(snap.index, codec.unpack(state))
            self.snapshot_index = snap.index
        try:
            entries = [decode_entry(e.index, e.term, e.data)
                       for e in self.wal.entries(self.wal.first_index, self.wal.last_index + 1)]
        except RecordError as exc:
            raise ClusterStartError(f"desired log in {self.data_dir}: {exc}") from None
        if entries and meta is None and not any(e.kind == EntryKind.CONFIG for e in entries):
            raise ClusterStartError(
                f"{self.data_dir} holds a one-node desired log from before clustering; start this node "
                "without --peers/--join, or give it an empty data dir and add it to the cluster")
        start = machine.applied_index + 1
        if entries and entries[0].index > start:
            raise ClusterStartError(f"desired log starts at {entries[0].index} but the snapshot ends at "
                                    f"{machine.applied_index}")
        commit = min(stored.commit, entries[-1].index if entries else machine.applied_index)
        sink = machine.ctx.notify
        if self._replay_sink is not None:
            machine.ctx.notify = self._replay_sink
        try:
            for entry in entries:
                if start <= entry.index <= commit:
                    self._apply_entry(entry)
        finally:
            machine.ctx.notify = sink
        self._log_failures()
        self._saved_vote = (stored.term, stored.voted_for)
        self._saved_commit = stored.commit
        self._recovered = (stored, meta, entries)
        log.info("desired plane (raft member %s) recovered to index %d (snapshot %d, log to %d)", self.member_id,
                 machine.applied_index, self.snapshot_index, entries[-1].index if entries else self.snapshot_index)

    @property
    def empty(self) -> bool:
        stored, meta, entries = self._recovered
        return meta is None and not entries and stored.term == 0

    def start(self, transport: Any) -> None:
        """Begin taking part: build the core (or wait to bootstrap or join), register on the peer port."""
        self.transport = transport
        transport.register(RAFT, self._on_message, on_connect=self._on_connect, on_read=self._drive_if_kicked)
        loop = asyncio.get_running_loop()
        stored, meta, entries = self._recovered
        if not self.empty:
            self._build_core(lambda **kw: RaftCore.restore(
                hard_state=HardState(stored.term, stored.voted_for, stored.commit), snapshot=meta,
                entries=entries, applied_index=self.machine.applied_index, **kw))
        elif self.initial_peers:
            if self.node_name not in self.initial_peers:
                raise ClusterStartError(f"--peers does not list this node ({self.node_name})")
            for name, (host, port) in self.initial_peers.items():
                if name != self.node_name:
                    transport.add_peer(name, host, port)
            self._bootstrapper = loop.create_task(self._bootstrap_when_all_known())
        elif self.join_address is not None:
            self._build_core(lambda **kw: RaftCore.restore(
                hard_state=HardState(), snapshot=None, entries=[], applied_index=0, **kw))
            self._joiner = loop.create_task(self._join_loop())
        else:
            raise ClusterStartError("a clustered desired plane needs --peers or --join on its first start")
        self._ticker = loop.create_task(self._tick_loop())

    def _build_core(self, make: Callable[..., RaftCore]) -> None:
        self.core = make(settings=self.raft_settings, cluster_id=self.cluster_id, member_id=self.member_id,
                         rng=self._rng, now_ms=self._now_ms(), snapshots=self,
                         proposal_seq_base=self.boots << 32)
        self._peers_from_config(self.core.config)
        self._kick()

    async def _bootstrap_when_all_known(self) -> None:
        """Wait until every initial peer's HELLO has told us its member id and every peer has said
        whether it holds a cluster already; then bootstrap with all of them, unless one does.

        A peer that holds a cluster made it with the member ids it saw, so if this member is in
        its configuration (it bootstrapped while we were probing) the leader will bring our empty
        log up to date; if it is not, this data dir is a new incarnation of a member the cluster
        still knows (a wiped dir): it must not vote as that member, and an operator replaces it."""
        waiting_since = time.monotonic()
        others = [n for n in self.initial_peers if n != self.node_name]
        while True:
            missing = [n for n in others if n not in self._hello_ids or n not in self._probe_replies]
            if not missing:
                break
            for name in missing:
                if name in self._hello_ids:
                    self.transport.send(name, RAFT, PROBE, [self.cluster_id])
            if time.monotonic() - waiting_since > 10:
                log.warning("bootstrapping the desired plane: waiting for %s", ", ".join(sorted(missing)))
                waiting_since = time.monotonic()
            await asyncio.sleep(0.1)
        existing = {n: ids for n, (has, ids) in self._probe_replies.items() if has}
        if existing:
            self._build_core(lambda **kw: RaftCore.restore(
                hard_state=HardState(), snapshot=None, entries=[], applied_index=0, **kw))
            if not any(self.member_id in ids for ids in existing.values()):
                known = sorted({i for ids in existing.values() for i in ids if _name_of(i) == self.node_name})
                log.error("this node's data dir is new, but the cluster exists without it%s: it will not vote. "
                          "Remove the old member (VFS.CLUSTER REMOVE <id>) and add this one "
                          "(VFS.CLUSTER ADD %s %s)", f" (it knows this node as {', '.join(known)})" if known else "",
                          self.node_name, self.advertised_address)
            else:
                log.info("the desired plane's cluster exists already; waiting for its leader to catch up")
            return
        members = []
        for name, (host, port) in sorted(self.initial_peers.items()):
            member_id = self.member_id if name == self.node_name else self._hello_ids[name]
            members.append(Member(member_id, name, f"{host}:{port}"))
        self._build_core(lambda **kw: RaftCore.bootstrap(members=members, **kw))
        log.info("bootstrapped the desired plane's cluster with %s", ", ".join(m.member_id for m in members))

    async def _join_loop(self) -> None:
        """Ask the member at --join to add us as a learner, until the leader's log reaches us."""
        assert self.join_address is not None
        host, port = self.join_address
        address = self.advertised_address
        while self.core is not None and self.member_id not in self.core.config.members:
            try:
                peer = await self.transport.dial(host, port, timeout_s=2.0)
                self.transport.send(peer, RAFT, JOIN, [self.cluster_id, self.member_id, self.node_name, address])
            except Exception as exc:
                log.info("joining through %s:%d: %s (retrying)", host, port, exc)
            await asyncio.sleep(1.0)
        log.info("joined the desired plane's cluster as a learner")

    async def idle(self) -> None:
        """Wait until the current Ready has been carried out."""
        while self._driver is not None and not self._driver.done():
            await asyncio.shield(self._driver)

    async def close(self) -> None:
        self._stopping = True
        for task in (self._ticker, self._joiner, self._bootstrapper):
            if task is not None:
                task.cancel()
        await self.idle()
        for p in self._parked + list(self._proposed.values()):
            if not p.future.done():
                p.future.set_result(ErrorReply("ERR the node is shutting down; the desired write may or may "
                                               "not have been applied"))
        self._fail_reads("ERR the node is shutting down")
        if self.core is not None and self.wal is not None and self._failed is None:
            hs = HardState(self.core.term, self.core.voted_for, self.core.commit_index)
            if (hs.term, hs.voted_for, hs.commit) != (*self._saved_vote, self._saved_commit):
                try:
                    await asyncio.get_running_loop().run_in_executor(self._executor, self._save_hard_state, hs)
                except Exception as exc:
                    log.error("could not save the desired plane's hard state at shutdown: %s", exc)
        self._executor.shutdown(wait=True)
        if self.wal is not None:
            self.wal.close()

    # -- what the node asks -----------------------------------------------------

    @property
    def may_expire(self) -> bool:
        """Only the leader proposes expiry of desired keys."""
        return self.core is not None and self.core.role is Role.LEADER

    @property
    def single_voter(self) -> bool:
        core = self.core
        return core is not None and core.config.voter_ids == {self.member_id} and core.role is Role.LEADER

    def snapshot_data(self, index: int) -> bytes | None:
        """SnapshotSource for the core: the state bytes of the snapshot saved at ``index``."""
        assert self.snapshots is not None
        snap = self.snapshots.read(index)
        if snap is None:
            return None
        try:
            _, state = decode_snapshot(snap.index, snap.term, snap.data)
        except RecordError:
            return None
        return state

    # -- writes -----------------------------------------------------------------

    def submit(self, ops: list[list[bytes]], now_ms: int, *, transaction: bool = False,
               watches: list[tuple[bytes, int | None]] | None = None,
               max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES) -> asyncio.Future[Any]:
        """Propose a write; the future resolves with its reply once it is committed and applied here.

        Plain writes (not transactions) submitted in one event-loop iteration, from every connection,
        go in one entry (``_flush_batch``): they commit together, in the order they came, each with
        its own reply, and the per-entry costs of replication (encoding, the log record, the append
        messages, decoding on every node) are paid once for all of them. A connection's pipelined
        writes land in one iteration, so they share an entry and no retry can reorder them."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not transaction and not watches:
            if self._batch is None:
                self._batch = []
                asyncio.get_running_loop().call_soon(self._flush_batch)
            self._batch.append((ops, future, now_ms, max_bulk_bytes))
            return future
        self._submit_entry(entry_body(ops, now_ms, self.origin, transaction=transaction, watches=watches,
                                      max_bulk_bytes=max_bulk_bytes), future)
        return future

    def _submit_entry(self, body: dict[str, Any], future: asyncio.Future[Any]) -> None:
        data = pack_body(body)
        if len(data) > self.max_entry_bytes:
            future.set_result(ErrorReply(
                f"ERR desired write of {len(data)} bytes exceeds the largest replicated entry "
                f"({self.max_entry_bytes} bytes, set by peer-max-frame-bytes)"))
            return
        self._offer(_Proposal(data, future, 0.0, 0.0, body=body))

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, None
        if not batch:
            return
        limits = {limit for _, _, _, limit in batch}
        size = sum(len(a) for ops, _, _, _ in batch for op in ops for a in op)
        if len(batch) == 1 or len(limits) > 1 or size > self.max_entry_bytes:
            for ops, future, now_ms, limit in batch:
                self._submit_entry(entry_body(ops, now_ms, self.origin, max_bulk_bytes=limit), future)
            self._drive_if_kicked()
            return
        body = entry_body([op for ops, _, _, _ in batch for op in ops], batch[-1][2], self.origin,
                          max_bulk_bytes=batch[0][3], pipeline=True)
        whole: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def split(done: asyncio.Future[Any]) -> None:
            replies = done.result()
            at = 0
            for ops, f, _, _ in batch:
                n = len(ops)
                if not f.done():
                    if type(replies) is not list:  # the entry failed as a whole (no leader, ...)
                        f.set_result(replies)
                    else:
                        f.set_result(replies[at])  # (a plain write of several ops answers with its first)
                at += n

        whole.add_done_callback(split)
        self._submit_entry(body, whole)
        self._drive_if_kicked()

    def _drive_if_kicked(self) -> None:
        """Carry out the core's output now rather than in the next event-loop iteration (each
        iteration a write waits for is a poll of every socket): for callers that run straight
        from the loop, never from inside ``_drive``."""
        if self._kick_pending:
            self._kicked()

    def change_membership(self, change: ConfChange) -> asyncio.Future[Any]:
        """Propose a membership change; resolves with OK once it is committed and applied here."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._offer(_Proposal(b"", future, 0.0, 0.0, kind=EntryKind.CONFIG, change=change))
        return future

    def transfer(self, target: str) -> str | None:
        core = self.core
        if core is None:
            return "the desired plane has not started"
        reason = core.transfer_leadership(target, self._now_ms())
        self._kick()
        return reason

    def _offer(self, p: _Proposal) -> None:
        if self._failed is not None:
            p.future.set_result(ErrorReply(f"ERR desired-state log unavailable: {self._failed}"))
            return
        now = time.monotonic() * 1000
        p.leader_deadline = now + self.leader_wait_ms
        p.commit_deadline = now + self.commit_timeout_ms
        self.stats["proposals"] += 1
        core = self.core
        if core is None or core.leader_id is None:
            self._parked.append(p)
            return
        self._propose(p)

    def _propose(self, p: _Proposal) -> None:
        core = self.core
        assert core is not None
        if p.change is not None:
            pid = core.propose_conf_change(p.change, self._now_ms())
        else:
            pid = core.propose(p.data, self._now_ms())
        p.term = 0
        self._last_proposed_ms = time.monotonic() * 1000
        self._proposed[pid] = p
        self._unflushed.append(p)
        self._kick()

    # -- reads ------------------------------------------------------------------

    def read_barrier(self) -> asyncio.Future[None] | None:
        """None if a read may run now (a lone voter that leads); else a future that resolves once a
        linearizable read may be served here (or fails with an ErrorReply)."""
        if self.single_voter:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            future.set_exception(ErrorReply(f"ERR desired-state log unavailable: {self._failed}"))
            return future
        self.stats["reads"] += 1
        if not self._read_batch:
            self._read_batch_deadline = time.monotonic() * 1000 + self.leader_wait_ms
            self._kick()
        self._read_batch.append(future)
        return future

    def read_then(self, read: Callable[[bool], Any]) -> Any:
        """Run ``read`` once a linearizable read may be served here: at once (``read(False)``, its
        reply or error returned) when no read round is needed, else as the round completes
        (``read(True)``), its reply, or the round's error, then given by the future returned."""
        barrier = self.read_barrier()
        if barrier is None:
            return read(False)
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def run(done: asyncio.Future[None]) -> None:
            if reply.done():
                return
            exc = done.exception()
            if exc is not None:
                reply.set_result(exc if isinstance(exc, ErrorReply) else ErrorReply(f"ERR {exc}"))
                return
            try:
                reply.set_result(read(True))
            except ErrorReply as err:
                reply.set_result(err)
            except Exception as exc2:  # a bug must cost one reply, never the node
                log.exception("a desired-plane read failed")
                reply.set_result(ErrorReply(f"ERR internal error in a read: {exc2}"))

        barrier.add_done_callback(run)
        return reply

    def _start_read_round(self) -> None:
        core = self.core
        batch = self._read_batch
        if not batch or core is None or core.leader_id is None:
            return
        self._read_batch = []
        self._read_seq += 1
        context = self._read_seq.to_bytes(8, "big")
        self._reads[context] = (batch, self._read_batch_deadline)
        self.stats["read_rounds"] += 1
        core.read_index(context, self._now_ms())

    def _release_reads(self) -> None:
        applied = self.machine.applied_index
        if not self._released:
            return
        keep = []
        for index, futures in self._released:
            if index <= applied:
                for f in futures:
                    if not f.done():
                        f.set_result(None)
            else:
                keep.append((index, futures))
        self._released = keep

    def _fail_reads(self, message: str) -> None:
        batches = [self._read_batch] + [b for b, _ in self._reads.values()] + [f for _, f in self._released]
        self._read_batch, self._reads, self._released = [], {}, []
        for futures in batches:
            for f in futures:
                if not f.done():
                    f.set_exception(ErrorReply(message))

    # -- the driver -------------------------------------------------------------

    def _now_ms(self) -> int:
        """The time given to the core, which a leader stamps on new entries (the desired plane's clock:
        TTL deadlines, lease expiry). See ``entry_clock_ms``."""
        return self.entry_clock_ms()

    def entry_clock_ms(self) -> int:
        """The leader's clock for entries. While leases exist it continues, at the pace of this
        node's monotonic clock, from the last entry time it found when it became leader, so a
        change of leader never shortens a lease, whatever the new leader's wall clock says (a
        clock ahead would cut every lease by its offset); it lengthens them by at most the time
        from the old leader's last entry to the new leader's election. With no lease held it is
        the wall clock (never below the last entry's time)."""
        wall = int(time.time() * 1000)
        base = self._clock_base
        if base is None:
            return wall
        since, mono = base
        continued = since + int(time.monotonic() * 1000 - mono)
        if not self.machine.leases.leases and wall >= continued:
            self._clock_base = None
            return wall
        return continued

    def _kick(self) -> None:
        """Carry out the core's output soon (once per event-loop iteration, however many inputs)."""
        if self._kick_pending or self._failed is not None:
            return
        self._kick_pending = True
        asyncio.get_running_loop().call_soon(self._kicked)

    def _kicked(self) -> None:
        self._kick_pending = False
        if self._driver is None or self._driver.done():
            self._drive()

    def _drive(self) -> None:
        """Carry out Ready batches until the core has none. A small batch is made durable right
        here, on the event loop (a write and an fsync of a few entries take a fraction of a
        millisecond, less than handing them to a thread and back); a larger one, or a snapshot,
        goes to the writer thread, and the rest continues in a task once it is done. Messages
        are written the moment they may leave (``_send``)."""
        core = self.core
        while core is not None and self._failed is None:
            self._start_read_round()
            ready = core.has_ready()  # (this also forwards what was proposed since the last call)
            if self._unflushed:
                for p in self._unflushed:
                    p.term = core.term
                self._unflushed = []
            if not ready:
                return
            rd = core.ready()
            self._send(rd.messages)
            if self._needs_persist(rd):
                if rd.snapshot is None and len(rd.entries) <= INLINE_PERSIST_ENTRIES and \
                        sum(len(e.data) for e in rd.entries) <= INLINE_PERSIST_BYTES:
                    try:
                        self._persist(rd)
                    except Exception as exc:  # a write or fsync failed: stop, never acknowledge again
                        self._fail(exc)
                        return
                else:
                    self._driver = asyncio.get_running_loop().create_task(self._persist_then_drive(rd))
                    return
            if self._finish(rd):
                return

    async def _persist_then_drive(self, rd: Ready) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._persist, rd)
        except Exception as exc:  # a write or fsync failed: stop, never acknowledge again
            self._fail(exc)
            return
        if await self._finish_async(rd):
            return
        self._driver = None
        self._drive()

    async def _finish_async(self, rd: Ready) -> bool:
        if self._finish(rd, snapshot=False):
            return True
        await self._maybe_snapshot(asyncio.get_running_loop())
        return False

    def _finish(self, rd: Ready, snapshot: bool = True) -> bool:
        """Steps 3-7 of the Ready, then ``advance``. True when a snapshot is being taken in a task
        (which drives on when it is saved)."""
        core = self.core
        assert core is not None
        self._send(rd.messages_after_persist)
        if rd.snapshot is not None:
            self._install(rd.snapshot.meta, rd.snapshot.data)
        for entry in rd.committed_entries:
            self._apply_committed(entry)
        self._log_failures()
        for rs in rd.read_states:
            batch = self._reads.pop(rs.context, None)
            if batch is not None:
                self._released.append((rs.index, batch[0]))
        self._release_reads()
        for dp in rd.dropped_proposals:
            self._dropped(dp.proposal, dp.reason)
        for dr in rd.dropped_reads:
            self._dropped_read(dr.context, dr.reason)
        if rd.config is not None:
            self._peers_from_config(rd.config)
        if rd.soft_state is not None:
            self._leadership(rd.soft_state.leader_id)
        core.advance(rd)
        if snapshot and self._snapshot_due():
            self._driver = asyncio.get_running_loop().create_task(self._snapshot_then_drive())
            return True
        return False

    async def _snapshot_then_drive(self) -> None:
        await self._maybe_snapshot(asyncio.get_running_loop())
        self._driver = None
        self._drive()

    def _needs_persist(self, rd: Ready) -> bool:
        if rd.snapshot is not None or rd.entries or rd.truncate_from is not None:
            return True
        hs = rd.hard_state
        return hs is not None and (hs.term, hs.voted_for) != self._saved_vote

    def _persist(self, rd: Ready) -> None:
        """On the writer thread, in the Ready's order; durable when it returns."""
        wal, snapshots = self.wal, self.snapshots
        assert wal is not None and snapshots is not None
        if rd.snapshot is not None:
            meta = rd.snapshot.meta
            snapshots.save(Snapshot(meta.index, meta.term, encode_snapshot(meta, rd.snapshot.data)))
            wal.compact(meta.index, meta.term)
        if rd.truncate_from is not None:
            wal.truncate_suffix(rd.truncate_from)
        if rd.entries:
            wal.append([LogEntry(e.index, e.term, encode_record(e)) for e in rd.entries])
        wal.sync()
        hs = rd.hard_state
        if hs is not None and (hs.term, hs.voted_for) != self._saved_vote:
            self._save_hard_state(hs)
        self.stats["fsyncs"] += 1

    def _save_hard_state(self, hs: HardState) -> None:
        assert self.hard_state_store is not None
        self.hard_state_store.save(StoredHardState(hs.term, hs.voted_for, hs.commit))
        self._saved_vote = (hs.term, hs.voted_for)
        self._saved_commit = hs.commit

    def _fail(self, exc: BaseException) -> None:
        log.critical("desired-state log write failed, this member stops taking part: %s", exc)
        self._failed = str(exc)
        reply = ErrorReply(f"ERR desired-state log unavailable: {exc}")
        for p in self._parked + list(self._proposed.values()):
            if not p.future.done():
                p.future.set_result(reply)
        self._parked, self._proposed = [], {}
        self._fail_reads(f"ERR desired-state log unavailable: {exc}")

    def _send(self, messages: list[Any]) -> None:
        """Write ``messages`` at once: not at the end of this event-loop iteration (a message
        waiting for the next one waits for a poll of every socket), and before the work that
        follows them in the Ready (the appends leave before this node's fsync, so followers
        fsync alongside; a commit notice and an acknowledgement before any entry is applied)."""
        if not messages or self._stopping:
            return
        transport, config = self.transport, self.core.config if self.core is not None else None
        for m in messages:
            member = config.members.get(m.recipient) if config is not None else None
            name = member.name if member is not None else _name_of(m.recipient)
            transport.send(name, RAFT, int(m.TYPE), m.to_wire())
            self.stats["messages_sent"] += 1
        transport.flush_now()

    def _apply_entry(self, entry: Any, body: dict[str, Any] | None = None) -> object:
        if entry.kind == EntryKind.NORMAL:
            reply = self.machine.apply(entry.index, entry.data, time_ms=entry.time_ms or None, body=body)
        else:
            self.machine.skip(entry.index)
            reply = None
        if self.after_apply is not None:
            self.after_apply()
        return reply

    def _apply_committed(self, entry: Any) -> None:
        if entry.index <= self.machine.applied_index:
            return  # applied at recovery
        p = self._proposed.pop(ProposalId(entry.origin, entry.seq), None) if entry.origin == self.member_id else None
        reply = self._apply_entry(entry, p.body if p is not None else None)  # (an id names one payload)
        if p is not None and not p.future.done():
            p.future.set_result(reply if entry.kind == EntryKind.NORMAL else OK)
        if entry.term > self._applied_term:
            self._applied_term = entry.term
            self._lost_in_older_terms(entry.term)

    def _lost_in_older_terms(self, term: int) -> None:
        """An entry of ``term`` committed: a proposal handed to a leader of an older term that has
        not been applied by now never will be (logs only grow in term, and a leader refuses proposals
        forwarded in another term), so it may be proposed again without risk of a duplicate."""
        now = time.monotonic() * 1000
        for pid, p in list(self._proposed.items()):
            if 0 < p.term < term:
                del self._proposed[pid]
                if p.future.done():
                    continue
                if now < p.commit_deadline:
                    self.stats["proposals_retried"] += 1
                    self._parked.append(p)
                else:
                    p.future.set_result(ErrorReply("TRYAGAIN desired write lost in a leader change (not applied)"))
        self._retry_parked()

    def _install(self, meta: Any, data: bytes) -> None:
        """A snapshot from the leader: replace the state, and raise a change event for every key it changed."""
        machine = self.machine
        before = {k: self.db.data[k][REV] for k in machine.keys()}
        machine.restore_state(meta.index, codec.unpack(data))
        self.snapshot_index = meta.index
        self.stats["snapshots_installed"] += 1
        notify = machine.ctx.notify
        after = set()
        for key in list(machine.keys()):
            after.add(key)
            entry = self.db.data[key]
            if before.get(key) != entry[REV]:
                notify("g", "restore", key, entry)
        for key in before:
            if key not in after:
                notify("g", "del", key, None)
        if self.on_snapshot_installed is not None:
            self.on_snapshot_installed(meta.index)
        self._release_reads()

    def _dropped(self, pid: ProposalId, reason: str) -> None:
        p = self._proposed.pop(pid, None)
        if p is None or p.future.done():
            return
        if reason in _RETRYABLE and time.monotonic() * 1000 < p.leader_deadline:
            self.stats["proposals_retried"] += 1
            self._parked.append(p)
            return
        text = NO_LEADER if reason == core_reasons.NO_LEADER else f"TRYAGAIN desired write not taken: {reason}"
        p.future.set_result(ErrorReply(text))

    def _dropped_read(self, context: bytes, reason: str) -> None:
        batch = self._reads.pop(context, None)
        if batch is None:
            return
        futures, deadline = batch
        if reason in _RETRYABLE and time.monotonic() * 1000 < deadline:
            if not self._read_batch:
                self._read_batch_deadline = deadline
            self._read_batch.extend(futures)
            return
        text = NO_LEADER if reason == core_reasons.NO_LEADER else f"TRYAGAIN desired read not served: {reason}"
        for f in futures:
            if not f.done():
                f.set_exception(ErrorReply(text))

    def _leadership(self, leader_id: str | None) -> None:
        if leader_id == self.member_id and self.core is not None:
            self._clock_base = (self.core.log.last_time_ms, time.monotonic() * 1000)
        elif leader_id != self.member_id:
            self._clock_base = None
        if leader_id is not None:
            self._retry_parked()

    def _retry_parked(self) -> None:
        core = self.core
        if core is None or core.leader_id is None or not self._parked:
            return
        parked, self._parked = self._parked, []
        for p in parked:
            if not p.future.done():
                self._propose(p)

    async def _tick_loop(self) -> None:
        interval = self.tick_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self._tick()
            except Exception:  # the ticker must outlive a bug in one tick
                log.exception("desired plane tick failed")

    def _tick(self) -> None:
        core = self.core
        if core is None or self._failed is not None:
            return
        core.tick(self._now_ms())
        now = time.monotonic() * 1000
        self._retry_parked()
        if self._parked:
            keep = []
            for p in self._parked:
                if p.future.done():
                    continue
                if now >= p.leader_deadline:
                    p.future.set_result(ErrorReply(NO_LEADER))
                else:
                    keep.append(p)
            self._parked = keep
        for pid, p in list(self._proposed.items()):
            if p.future.done():
                del self._proposed[pid]
            elif now >= p.commit_deadline:
                del self._proposed[pid]
                self.stats["proposals_timed_out"] += 1
                p.future.set_result(ErrorReply(
                    f"ERR desired write not committed within {self.commit_timeout_ms} ms (leader change or lost "
                    "quorum?): it may or may not be applied"))
        if (core.role is Role.LEADER and self.machine.leases.leases
                and now - self._last_proposed_ms >= LEASE_TICK_MS):
            # While leases exist the log's time must not stall: a new leader's clock continues from
            # the last entry's, so this bounds how much a leader change can lengthen a lease.
            self.submit([[b"vfs.lock", b"tick"]], self._now_ms())
        if self._read_batch and now >= self._read_batch_deadline and core.leader_id is None:
            batch, self._read_batch = self._read_batch, []
            for f in batch:
                if not f.done():
                    f.set_exception(ErrorReply(NO_LEADER))
        self._kick()

    # -- peers ------------------------------------------------------------------

    def _on_connect(self, info: Any) -> None:
        self._hello_ids[info.node_id] = info.member_id

    def _on_message(self, peer_id: str, mtype: int, body: Any) -> None:
        if self._failed is not None or self._stopping:
            return
        if mtype == JOIN:
            self._on_join(peer_id, body)
            return
        if mtype == PROBE:
            core = self.core
            ids = [] if core is None else sorted(core.config.members)
            self.transport.send(peer_id, RAFT, PROBE_REPLY, [core is not None, ids])
            return
        if mtype == PROBE_REPLY:
            if (type(body) is list and len(body) == 2 and type(body[0]) is bool and type(body[1]) is list
                    and all(type(i) is str for i in body[1])):
                self._probe_replies[peer_id] = (body[0], body[1])
            return
        if mtype == JOIN_REPLY:
            if type(body) is list and len(body) == 2 and body[0] is False:
                log.warning("joining the cluster: %s", body[1])
            return
        core = self.core
        if core is None:
            return
        self.stats["messages_received"] += 1
        reason = core.step_wire(body, self._now_ms())
        if reason is not None:
            self.stats["messages_refused"] += 1
            if reason.startswith("message for member") and not self._wrong_recipient_logged:
                self._wrong_recipient_logged = True
                log.error("the cluster addresses this node as another member (%s): was its data dir wiped? "
                          "Remove the old member (VFS.CLUSTER REMOVE) and add this node again", reason)
        self._kick()

    def _on_join(self, peer_id: str, body: Any) -> None:
        core = self.core
        if type(body) is not list or len(body) != 4 or not all(type(x) is str for x in body):
            self.transport.send(peer_id, RAFT, JOIN_REPLY, [False, "malformed join request"])
            return
        cluster_id, member_id, name, address = body
        if core is None or cluster_id != self.cluster_id:
            self.transport.send(peer_id, RAFT, JOIN_REPLY, [False, f"not a member of cluster {cluster_id}"])
            return
        config = core.config
        if member_id in config.members:
            return
        for m in config.members.values():
            if m.name == name:
                self.transport.send(peer_id, RAFT, JOIN_REPLY, [
                    False, f"node {name} is already a member as {m.member_id}; remove it first "
                           f"(VFS.CLUSTER REMOVE {m.member_id})"])
                return
        try:
            member = Member(member_id, name, address)
        except Exception as exc:
            self.transport.send(peer_id, RAFT, JOIN_REPLY, [False, f"bad join request: {exc}"])
            return
        self.change_membership(ConfChange.add_learner(member))
        self.transport.send(peer_id, RAFT, JOIN_REPLY, [True, ""])

    def _peers_from_config(self, config: MembershipConfig) -> None:
        for member in config.members.values():
            if member.member_id == self.member_id or member.name in self._dialled:
                continue
            host, _, port = member.address.rpartition(":")
            if host and port.isdigit():
                self.transport.add_peer(member.name, host, int(port))
                self._dialled.add(member.name)

    # -- snapshots --------------------------------------------------------------

    def _snapshot_due(self) -> bool:
        core = self.core
        applied = self.machine.applied_index
        last_try = max(self.snapshot_index, self._snapshot_failed_at)
        return core is not None and applied - last_try >= self.snapshot_every_entries and applied <= core.log.stable

    async def _maybe_snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        core = self.core
        assert core is not None
        if not self._snapshot_due():
            return
        applied = self.machine.applied_index
        meta = core.snapshot_meta_at(applied)
        state = self.machine.snapshot_state()
        try:
            await loop.run_in_executor(self._executor, self._save_snapshot, meta, state)
        except Exception as exc:  # the log still holds everything: keep serving, try again later
            log.error("desired-plane snapshot failed, will retry after %d more entries: %s",
                      self.snapshot_every_entries, exc)
            self._snapshot_failed_at = applied
            return
        self.snapshot_index = meta.index
        self.stats["snapshots_taken"] += 1
        core.compact(meta.index)

    def _save_snapshot(self, meta: Any, state: dict[str, Any]) -> None:
        """Save, then compact the write-ahead log to the OLDER kept snapshot (see DesiredPlane)."""
        assert self.wal is not None and self.snapshots is not None
        self.snapshots.save(Snapshot(meta.index, meta.term, encode_snapshot(meta, codec.pack_elsewhere(state))))
        kept = self.snapshots.kept_indexes()
        if len(kept) > 1:
            older = kept[1]
            term = self.wal.term_at(older)
            if term is not None:
                self.wal.compact(older, term)

    def _log_failures(self) -> None:
        failures = self.machine.failures
        for index, name, exc in failures:
            log.error("applying %r at index %d failed", name, index, exc_info=exc)
        failures.clear()

    # -- INFO and VFS.CLUSTER ---------------------------------------------------

    def status(self) -> dict[str, Any]:
        core = self.core
        if core is None:
            return {"role": "bootstrapping", "member_id": self.member_id, "cluster_id": self.cluster_id,
                    "term": 0, "leader_id": None, "commit_index": 0, "applied_index": self.machine.applied_index,
                    "last_index": 0, "snapshot_index": self.snapshot_index, "voters": [], "learners": []}
        status = core.status()
        status["applied_index"] = self.machine.applied_index
        status["snapshot_index"] = self.snapshot_index
        return status

    def hello_member_id(self, name: str) -> str | None:
        """The member id node ``name`` announced when it last connected."""
        return self._hello_ids.get(name)

    def members(self) -> list[Member]:
        core = self.core
        return [] if core is None else list(core.config.members.values())

    def role_of(self, member_id: str) -> str:
        core = self.core
        if core is None:
            return "unknown"
        if member_id == core.leader_id:
            return "leader"
        return "voter" if member_id in core.config.voter_ids else "learner"

    def info(self) -> dict[str, Any]:
        return log_info(self.machine, self.snapshot_index, self.wal, self.stats["fsyncs"],
                        len(self._parked) + len(self._proposed))


def _name_of(member_id: str) -> str:
    """The node name inside a member id (``<name>-<suffix>``)."""
    name, _, _ = member_id.rpartition("-")
    return name or member_id
