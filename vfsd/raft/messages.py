"""Raft log entries and peer messages as plain data, with a strict wire form.

Wire form
---------
``to_wire()`` turns an entry or message into nested lists of ints, strings, bytes
and bools that msgpack packs as is (``use_bin_type=True``); ``message_from_wire``
is the inverse and trusts nothing: every field's type and range is checked, and
anything malformed raises :class:`WireError` with the reason, which the core counts
and reports (a peer's garbage drops that message, never the node).

A message is ``[type, cluster_id, sender, recipient, term, *fields]``. Type numbers
(:class:`MessageType`) are append-only: a number is never reused or renumbered, so
nodes of different versions can tell an unknown type from a known one.

An entry is ``[index, term, kind, time_ms, origin, seq, data]``:

* ``kind``: NORMAL (``data`` is the state machine's opaque payload), NOOP (the
  entry a new leader appends, Raft §5.4.2 / §8) or CONFIG (a membership
  configuration, see ``config.encode_config_entry``).
* ``time_ms``: stamped by the leader that appended it, ``max(its clock, the
  previous entry's time_ms)``, so entry times never run backwards, across leaders
  too; applying an entry takes its time from here, never from a clock.
* ``origin`` and ``seq``: the proposal id, the member id of the node that took the
  proposal and its sequence number there, so that node can answer its client when
  the entry applies, whoever appended it ("" and 0 for entries nobody proposed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from vfsd.raft.config import (
    MAX_ID_CHARS,
    ConfigWireError,
    MembershipConfig,
    decode_change,
    decode_config_entry,
)

__all__ = [
    "Append",
    "AppendResponse",
    "Entry",
    "EntryKind",
    "Heartbeat",
    "HeartbeatResponse",
    "Message",
    "MessageType",
    "PreVote",
    "PreVoteResponse",
    "Propose",
    "ProposeReject",
    "Proposal",
    "ReadIndex",
    "ReadIndexResponse",
    "SnapshotChunk",
    "SnapshotChunkResponse",
    "SnapshotMeta",
    "TimeoutNow",
    "TransferLeadership",
    "Vote",
    "VoteResponse",
    "WireError",
    "entry_from_wire",
    "message_from_wire",
]

#: Largest term, index, time or sequence number accepted (msgpack int64).
MAX_INT = (1 << 63) - 1
#: Most items in one list field of a message (entries, proposals, read contexts).
MAX_ITEMS = 1 << 20
#: Longest reason text in a rejection.
MAX_REASON_CHARS = 512
#: Bytes an entry is charged beyond its data, for the byte limits of flow control.
ENTRY_OVERHEAD_BYTES = 32


class WireError(ValueError):
    """A message or entry from the wire is malformed; the reason says what is wrong."""


class EntryKind(IntEnum):
    NORMAL = 0
    NOOP = 1
    CONFIG = 2


_KINDS = frozenset(int(k) for k in EntryKind)


@dataclass(slots=True, eq=True)
class Entry:
    """One log entry. Treated as immutable once appended (replicas may share it)."""

    index: int
    term: int
    kind: int  # an EntryKind
    time_ms: int
    origin: str
    seq: int
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data) + ENTRY_OVERHEAD_BYTES

    def to_wire(self) -> list[Any]:
        return [self.index, self.term, self.kind, self.time_ms, self.origin, self.seq, self.data]


def entry_from_wire(obj: Any) -> Entry:
    if type(obj) not in (list, tuple) or len(obj) != 7:
        raise WireError("entry: expected [index, term, kind, time_ms, origin, seq, data]")
    index, term, kind, time_ms, origin, seq, data = obj
    _uint(index, "entry index", 1)
    _uint(term, "entry term", 1)
    if type(kind) is not int or kind not in _KINDS:
        raise WireError(f"entry {index}: unknown kind {_short(kind)}")
    _uint(time_ms, "entry time_ms")
    if type(origin) is not str or len(origin) > MAX_ID_CHARS:
        raise WireError(f"entry {index}: origin must be a string of at most {MAX_ID_CHARS} characters")
    _uint(seq, "entry seq")
    if type(data) is not bytes:
        raise WireError(f"entry {index}: data must be bytes, got {type(data).__name__}")
    if kind == EntryKind.CONFIG:
        try:
            decode_config_entry(data)
        except ConfigWireError as exc:
            raise WireError(f"entry {index}: {exc}") from None
    return Entry(index, term, kind, time_ms, origin, seq, data)


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot covers: the log up to ``index`` (whose entry had ``term`` and
    ``time_ms``) and the membership configuration in force there (Raft §7)."""

    index: int
    term: int
    time_ms: int
    config: MembershipConfig

    def to_wire(self) -> list[Any]:
        return [self.index, self.term, self.time_ms, self.config.to_wire()]

    @staticmethod
    def from_wire(obj: Any) -> SnapshotMeta:
        if type(obj) not in (list, tuple) or len(obj) != 4:
            raise WireError("snapshot meta: expected [index, term, time_ms, configuration]")
        index, term, time_ms, config = obj
        try:
            cfg = MembershipConfig.from_wire(config)
        except ConfigWireError as exc:
            raise WireError(f"snapshot meta: {exc}") from None
        return SnapshotMeta(_uint(index, "snapshot index"), _uint(term, "snapshot term"),
                            _uint(time_ms, "snapshot time_ms"), cfg)


EMPTY_CONFIG = MembershipConfig()
#: The compaction point of a log that was never compacted.
ZERO_SNAPSHOT = SnapshotMeta(0, 0, 0, EMPTY_CONFIG)


class MessageType(IntEnum):
    """Wire numbers of the message types: append-only, never reused."""

    PRE_VOTE = 1
    PRE_VOTE_RESPONSE = 2
    VOTE = 3
    VOTE_RESPONSE = 4
    APPEND = 5
    APPEND_RESPONSE = 6
    HEARTBEAT = 7
    HEARTBEAT_RESPONSE = 8
    SNAPSHOT_CHUNK = 9
    SNAPSHOT_CHUNK_RESPONSE = 10
    TIMEOUT_NOW = 11
    PROPOSE = 12
    PROPOSE_REJECT = 13
    READ_INDEX = 14
    READ_INDEX_RESPONSE = 15
    TRANSFER_LEADERSHIP = 16


@dataclass(slots=True)
class Message:
    """Fields every message carries. ``term`` is the sender's current term (a
    pre-vote carries the term it would campaign in)."""

    TYPE: ClassVar[MessageType]
    #: May go out before the Ready that produced it is persisted (see Ready.messages).
    EARLY: ClassVar[bool] = False

    cluster_id: str
    sender: str
    recipient: str
    term: int

    def to_wire(self) -> list[Any]:
        return [int(self.TYPE), self.cluster_id, self.sender, self.recipient, self.term, *self._body()]

    def _body(self) -> list[Any]:
        return []


@dataclass(slots=True)
class PreVote(Message):
    """Raft thesis §9.6: "would you vote for me in ``term``?" Changes no state."""

    TYPE = MessageType.PRE_VOTE
    EARLY = True
    last_index: int = 0
    last_term: int = 0

    def _body(self) -> list[Any]:
        return [self.last_index, self.last_term]


@dataclass(slots=True)
class Vote(Message):
    """RequestVote (Raft §5.2); ``transfer`` marks an election started by TimeoutNow
    (§3.10), which voters grant even while they still hear from a leader."""

    TYPE = MessageType.VOTE
    last_index: int = 0
    last_term: int = 0
    transfer: bool = False

    def _body(self) -> list[Any]:
        return [self.last_index, self.last_term, self.transfer]


@dataclass(slots=True)
class PreVoteResponse(Message):
    TYPE = MessageType.PRE_VOTE_RESPONSE
    EARLY = True
    granted: bool = False

    def _body(self) -> list[Any]:
        return [self.granted]


@dataclass(slots=True)
class VoteResponse(Message):
    TYPE = MessageType.VOTE_RESPONSE
    granted: bool = False

    def _body(self) -> list[Any]:
        return [self.granted]


@dataclass(slots=True)
class Append(Message):
    """AppendEntries (Raft §5.3): ``entries`` follow ``prev_index``/``prev_term``."""

    TYPE = MessageType.APPEND
    EARLY = True
    prev_index: int = 0
    prev_term: int = 0
    commit: int = 0
    entries: list[Entry] = field(default_factory=list)

    def _body(self) -> list[Any]:
        return [self.prev_index, self.prev_term, self.commit, [e.to_wire() for e in self.entries]]


@dataclass(slots=True)
class AppendResponse(Message):
    """Success: the follower's log matches the leader's up to ``index``.
    Reject: the entry at ``index`` (the request's prev_index) did not match; the hint
    is where the leader should look next (§5.3, fast backtracking): ``hint_term`` is
    the follower's term at ``index`` and ``hint_index`` the first index of that term
    in its log, or ``hint_term`` 0 and ``hint_index`` its last index + 1 when its log
    is shorter than ``index``."""

    TYPE = MessageType.APPEND_RESPONSE
    index: int = 0
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0

    def _body(self) -> list[Any]:
        return [self.index, self.reject, self.hint_index, self.hint_term]


@dataclass(slots=True)
class Heartbeat(Message):
    """Leader liveness, commit index (never past what the follower is known to hold)
    and the newest ReadIndex round (§6.4) the follower is asked to confirm.

    A *commit notice* (``commit_term`` above 0) only tells a follower of a new commit index
    the moment it is known, so that the node a client wrote through applies and answers at
    once. It names the term of the entry at ``commit``: a follower whose log holds that entry
    holds everything before it as the leader does (log matching, §5.3), so it may commit that
    far even before the leader has its acknowledgement (another follower's may complete the
    majority first); one whose log does not ignores it. A notice wants no response, which
    saves two messages per write: liveness, check-quorum and read rounds rest on the periodic
    heartbeats and read-round broadcasts, which are never notices. On the wire a notice has a
    third field, ``commit_term``."""

    TYPE = MessageType.HEARTBEAT
    EARLY = True
    commit: int = 0
    read_round: int = 0
    commit_term: int = 0

    def _body(self) -> list[Any]:
        if self.commit_term:
            return [self.commit, self.read_round, self.commit_term]
        return [self.commit, self.read_round]


@dataclass(slots=True)
class HeartbeatResponse(Message):
    TYPE = MessageType.HEARTBEAT_RESPONSE
    EARLY = True
    read_round: int = 0

    def _body(self) -> list[Any]:
        return [self.read_round]


@dataclass(slots=True)
class SnapshotChunk(Message):
    """InstallSnapshot (Raft §7), one chunk: bytes ``offset .. offset + len(data)`` of
    a ``total_bytes`` long snapshot described by ``meta``."""

    TYPE = MessageType.SNAPSHOT_CHUNK
    EARLY = True
    meta: SnapshotMeta = field(default=None)  # type: ignore[assignment]
    total_bytes: int = 0
    offset: int = 0
    data: bytes = b""

    def _body(self) -> list[Any]:
        return [self.meta.to_wire(), self.total_bytes, self.offset, self.data]


@dataclass(slots=True)
class SnapshotChunkResponse(Message):
    """``offset`` bytes of snapshot ``index`` have arrived, in order. The snapshot's
    installation is acknowledged by an AppendResponse once it is durable."""

    TYPE = MessageType.SNAPSHOT_CHUNK_RESPONSE
    EARLY = True
    index: int = 0
    offset: int = 0

    def _body(self) -> list[Any]:
        return [self.index, self.offset]


@dataclass(slots=True)
class TimeoutNow(Message):
    """Leadership transfer (thesis §3.10): "start an election now"."""

    TYPE = MessageType.TIMEOUT_NOW
    EARLY = True


@dataclass(slots=True)
class Proposal:
    """A proposal forwarded to the leader: the sender's sequence number, the entry
    kind (NORMAL, or CONFIG with an encoded ConfChange) and the data."""

    seq: int
    kind: int
    data: bytes

    def to_wire(self) -> list[Any]:
        return [self.seq, self.kind, self.data]


@dataclass(slots=True)
class Propose(Message):
    TYPE = MessageType.PROPOSE
    EARLY = True
    proposals: list[Proposal] = field(default_factory=list)

    def _body(self) -> list[Any]:
        return [[p.to_wire() for p in self.proposals]]


@dataclass(slots=True)
class ProposeReject(Message):
    """The recipient's proposals ``seqs`` were not appended, and never will be."""

    TYPE = MessageType.PROPOSE_REJECT
    EARLY = True
    seqs: list[int] = field(default_factory=list)
    reason: str = ""

    def _body(self) -> list[Any]:
        return [self.seqs, self.reason]


@dataclass(slots=True)
class ReadIndex(Message):
    """Read requests forwarded to the leader (§6.4), one context per request."""

    TYPE = MessageType.READ_INDEX
    EARLY = True
    contexts: list[bytes] = field(default_factory=list)

    def _body(self) -> list[Any]:
        return [self.contexts]


@dataclass(slots=True)
class ReadIndexResponse(Message):
    """The reads ``contexts`` may be served once the recipient has applied ``index``;
    or, with ``reject``, cannot be served (``reason``)."""

    TYPE = MessageType.READ_INDEX_RESPONSE
    EARLY = True
    contexts: list[bytes] = field(default_factory=list)
    index: int = 0
    reject: bool = False
    reason: str = ""

    def _body(self) -> list[Any]:
        return [self.contexts, self.index, self.reject, self.reason]


@dataclass(slots=True)
class TransferLeadership(Message):
    """A transfer request forwarded to the leader: hand leadership to ``target``."""

    TYPE = MessageType.TRANSFER_LEADERSHIP
    EARLY = True
    target: str = ""

    def _body(self) -> list[Any]:
        return [self.target]


# -- decoding ------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _uint(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_INT:
        raise WireError(f"{what}: expected an integer in {minimum}..2^63-1, got {_short(value)}")
    return value


def _bool(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise WireError(f"{what}: expected true or false, got {_short(value)}")
    return value


def _ident(value: Any, what: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_ID_CHARS:
        raise WireError(f"{what}: expected a string of 1..{MAX_ID_CHARS} characters, got {_short(value)}")
    return value


def _items(value: Any, what: str) -> list[Any] | tuple[Any, ...]:
    if type(value) not in (list, tuple) or len(value) > MAX_ITEMS:
        raise WireError(f"{what}: expected a list of at most {MAX_ITEMS} items")
    return value  # type: ignore[no-any-return]


def _bytes_list(value: Any, what: str) -> list[bytes]:
    items = _items(value, what)
    for item in items:
        if type(item) is not bytes:
            raise WireError(f"{what}: every item must be bytes")
    return list(items)


def _reason(value: Any) -> str:
    if type(value) is not str or len(value) > MAX_REASON_CHARS:
        raise WireError(f"reason: expected a string of at most {MAX_REASON_CHARS} characters")
    return value


def _decode_vote_request(head: tuple[str, str, str, int], body: list[Any], pre: bool) -> Message:
    if pre:
        last_index, last_term = _fixed(body, 2, "pre-vote")
        return PreVote(*head, _uint(last_index, "last_index"), _uint(last_term, "last_term"))
    last_index, last_term, transfer = _fixed(body, 3, "vote")
    return Vote(*head, _uint(last_index, "last_index"), _uint(last_term, "last_term"), _bool(transfer, "transfer"))


def _decode_append(head: tuple[str, str, str, int], body: list[Any]) -> Message:
    prev_index, prev_term, commit, raw_entries = _fixed(body, 4, "append")
    _uint(prev_index, "prev_index")
    _uint(prev_term, "prev_term")
    _uint(commit, "commit")
    term = head[3]
    if prev_term > term:
        raise WireError(f"append: prev_term {prev_term} is above the message term {term}")
    entries = [entry_from_wire(e) for e in _items(raw_entries, "entries")]
    expected, last_term = prev_index + 1, prev_term
    for e in entries:
        if e.index != expected:
            raise WireError(f"append: entry index {e.index}, expected {expected} (entries must follow prev_index)")
        if not last_term <= e.term <= term:
            raise WireError(f"append: entry {e.index} has term {e.term}, outside {last_term}..{term}")
        expected, last_term = expected + 1, e.term
    return Append(*head, prev_index, prev_term, commit, entries)


def _decode_snapshot_chunk(head: tuple[str, str, str, int], body: list[Any]) -> Message:
    meta, total_bytes, offset, data = _fixed(body, 4, "snapshot chunk")
    snapshot = SnapshotMeta.from_wire(meta)
    if snapshot.index < 1 or snapshot.term < 1 or snapshot.term > head[3]:
        raise WireError(f"snapshot chunk: bad snapshot point {snapshot.index}, term {snapshot.term}")
    _uint(total_bytes, "total_bytes")
    _uint(offset, "offset")
    if type(data) is not bytes:
        raise WireError("snapshot chunk: data must be bytes")
    if offset + len(data) > total_bytes:
        raise WireError(f"snapshot chunk: bytes {offset}..{offset + len(data)} lie past the total {total_bytes}")
    return SnapshotChunk(*head, snapshot, total_bytes, offset, data)


def _decode_propose(head: tuple[str, str, str, int], body: list[Any]) -> Message:
    (raw,) = _fixed(body, 1, "propose")
    proposals = []
    for item in _items(raw, "proposals"):
        if type(item) not in (list, tuple) or len(item) != 3:
            raise WireError("proposal: expected [seq, kind, data]")
        seq, kind, data = item
        _uint(seq, "proposal seq", 1)
        if kind not in (EntryKind.NORMAL, EntryKind.CONFIG) or type(kind) is not int:
            raise WireError(f"proposal {seq}: kind must be NORMAL or CONFIG, got {_short(kind)}")
        if type(data) is not bytes:
            raise WireError(f"proposal {seq}: data must be bytes")
        if kind == EntryKind.CONFIG:
            try:
                decode_change(data)
            except ConfigWireError as exc:
                raise WireError(f"proposal {seq}: {exc}") from None
        proposals.append(Proposal(seq, kind, data))
    return Propose(*head, proposals)


def _fixed(body: list[Any], n: int, what: str) -> list[Any]:
    if len(body) != n:
        raise WireError(f"{what}: expected {n} fields after the header, got {len(body)}")
    return body


def _decode_body(kind: int, head: tuple[str, str, str, int], body: list[Any]) -> Message:
    t = MessageType
    if kind == t.APPEND:
        return _decode_append(head, body)
    if kind == t.APPEND_RESPONSE:
        index, reject, hint_index, hint_term = _fixed(body, 4, "append response")
        return AppendResponse(*head, _uint(index, "index"), _bool(reject, "reject"),
                              _uint(hint_index, "hint_index"), _uint(hint_term, "hint_term"))
    if kind == t.HEARTBEAT:
        if len(body) not in (2, 3):
            raise WireError(f"heartbeat: expected 2 or 3 fields after the header, got {len(body)}")
        commit, read_round, commit_term = body if len(body) == 3 else (*body, 0)
        if len(body) == 3:
            _uint(commit_term, "commit_term", 1)  # a notice names the term of the entry it commits
        return Heartbeat(*head, _uint(commit, "commit"), _uint(read_round, "read_round"), commit_term)
    if kind == t.HEARTBEAT_RESPONSE:
        (read_round,) = _fixed(body, 1, "heartbeat response")
        return HeartbeatResponse(*head, _uint(read_round, "read_round"))
    if kind in (t.PRE_VOTE, t.VOTE):
        return _decode_vote_request(head, body, kind == t.PRE_VOTE)
    if kind in (t.PRE_VOTE_RESPONSE, t.VOTE_RESPONSE):
        (granted,) = _fixed(body, 1, "vote response")
        cls = PreVoteResponse if kind == t.PRE_VOTE_RESPONSE else VoteResponse
        return cls(*head, _bool(granted, "granted"))
    if kind == t.SNAPSHOT_CHUNK:
        return _decode_snapshot_chunk(head, body)
    if kind == t.SNAPSHOT_CHUNK_RESPONSE:
        index, offset = _fixed(body, 2, "snapshot chunk response")
        return SnapshotChunkResponse(*head, _uint(index, "index"), _uint(offset, "offset"))
    if kind == t.TIMEOUT_NOW:
        _fixed(body, 0, "timeout-now")
        return TimeoutNow(*head)
    if kind == t.PROPOSE:
        return _decode_propose(head, body)
    if kind == t.PROPOSE_REJECT:
        seqs, reason = _fixed(body, 2, "propose reject")
        return ProposeReject(*head, [_uint(s, "seq", 1) for s in _items(seqs, "seqs")], _reason(reason))
    if kind == t.READ_INDEX:
        (contexts,) = _fixed(body, 1, "read index")
        return ReadIndex(*head, _bytes_list(contexts, "contexts"))
    if kind == t.READ_INDEX_RESPONSE:
        contexts, index, reject, reason = _fixed(body, 4, "read index response")
        # Every leader has committed at least entry 1: a read released at 0 is a bug.
        _uint(index, "index", 0 if reject is True else 1)
        return ReadIndexResponse(*head, _bytes_list(contexts, "contexts"), index,
                                 _bool(reject, "reject"), _reason(reason))
    if kind == t.TRANSFER_LEADERSHIP:
        (target,) = _fixed(body, 1, "transfer leadership")
        return TransferLeadership(*head, _ident(target, "target"))
    raise WireError(f"unknown message type {kind}")  # pragma: no cover - filtered by the caller


_TYPES = frozenset(int(t) for t in MessageType)


def message_from_wire(obj: Any) -> Message:
    """Decode and validate one message; WireError (with the reason) if malformed."""
    if type(obj) not in (list, tuple) or len(obj) < 5:
        raise WireError("message: expected [type, cluster_id, sender, recipient, term, ...]")
    kind = obj[0]
    if type(kind) is not int or kind not in _TYPES:
        raise WireError(f"message: unknown type {_short(kind)}")
    head = (_ident(obj[1], "cluster_id"), _ident(obj[2], "sender"), _ident(obj[3], "recipient"),
            _uint(obj[4], "term"))
    try:
        return _decode_body(kind, head, list(obj[5:]))
    except WireError as exc:
        raise WireError(f"{MessageType(kind).name.lower()} from {head[1]}: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. unpacking a field that is not a list
        raise WireError(f"{MessageType(kind).name.lower()} from {head[1]}: malformed: {exc}") from None
