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
