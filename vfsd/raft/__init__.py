"""The sans-IO Raft core of the desired plane (see ``core`` for the theory of operation).

Public surface, for the shell that drives it:

* :class:`RaftCore` (``bootstrap``, ``restore``, ``step``/``step_wire``, ``tick``,
  ``propose``, ``propose_conf_change``, ``read_index``, ``transfer_leadership``,
  ``compact``, ``has_ready``/``ready``/``advance``, ``status``) and its
  :class:`RaftSettings`;
* what a :class:`Ready` carries: :class:`HardState`, :class:`Entry`,
  :class:`IncomingSnapshot`, :class:`Message` (``to_wire``; ``message_from_wire``),
  :class:`ReadState`, :class:`DroppedProposal`, :class:`DroppedRead`,
  :class:`SoftState`, :class:`MembershipConfig`;
* membership: :class:`Member`, :class:`ConfChange`;
* ``records``: how entries and snapshots map onto the write-ahead log and snapshot files.

Driving it (what the desired plane's shell does)
------------------------------------------------
* Start: ``RaftCore.restore(...)`` from the hard-state store, the newest snapshot
  (``records.decode_snapshot``; after loading it, compact the write-ahead log to it)
  and the log's records (``records.decode_entry``), or ``RaftCore.bootstrap(...)`` on
  the first start of an initial member. Member id and cluster id live in the data
  directory; ``proposal_seq_base`` must exceed every sequence number an earlier run of
  this member used (a boot counter kept there, shifted left by 32 bits).
* Inputs, each with the node's clock: a timer calls ``tick`` every tick interval; each
  peer frame goes to ``step_wire`` (a returned reason means refused and counted);
  client writes to ``propose`` (remember the ProposalId), reads to ``read_index``
  (with a context unique on this node), operator commands to
  ``propose_conf_change``/``transfer_leadership``.
* After any input, unless a Ready is being carried out: if ``has_ready()``, take
  ``ready()`` and carry out its obligations in the order the Ready docstring gives
  (send ``messages``; write snapshot, truncation, entries, hard state and fsync in the
  writer thread; send ``messages_after_persist``; install the snapshot; apply the
  committed entries, answering the clients whose ProposalId they carry; serve the
  reads; fail the drops), then ``advance(ready)``. Inputs keep flowing meanwhile;
  they land in the next Ready (that is the group commit).
* After saving a snapshot of the state machine at applied index ``i``
  (``snapshot_meta_at(i)`` with ``records.encode_snapshot``): ``compact(i)`` returns
  the point to compact the write-ahead log to.
"""

from vfsd.raft.config import ChangeOp, ConfChange, ConfChangeError, Member, MembershipConfig
from vfsd.raft.core import (
    DroppedProposal,
    DroppedRead,
    HardState,
    IncomingSnapshot,
    ProposalId,
    RaftCore,
    RaftSettings,
    ReadState,
    Ready,
    RestoreError,
    Role,
    SnapshotSource,
    SoftState,
)
from vfsd.raft.messages import Entry, EntryKind, Message, MessageType, SnapshotMeta, WireError, message_from_wire

__all__ = [
    "ChangeOp",
    "ConfChange",
    "ConfChangeError",
    "DroppedProposal",
    "DroppedRead",
    "Entry",
    "EntryKind",
    "HardState",
    "IncomingSnapshot",
    "Member",
    "MembershipConfig",
    "Message",
    "MessageType",
    "ProposalId",
    "RaftCore",
    "RaftSettings",
    "ReadState",
    "Ready",
    "RestoreError",
    "Role",
    "SnapshotMeta",
    "SnapshotSource",
    "SoftState",
    "WireError",
    "message_from_wire",
]
