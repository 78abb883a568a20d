"""Cluster membership: who replicates the log, who votes, and how that changes.

A member is one *incarnation* of a node: ``member_id`` is the node name plus a
random suffix that the shell generates once and keeps in the data directory. A
node whose data directory is wiped comes back with a new member id, so it cannot
vote or count as the member it was (Raft thesis §4, "a server that restarts
without its disk must rejoin as a new server"): the others address messages to,
and count votes from, member ids only.

A configuration lists voters (they vote and form quorums) and learners (they
receive the log and never vote, never count). Each member carries its node name
and peer address, so a restarted node finds its peers in the committed
configuration alone, never in flags (PySyncObj #133).

Changes are single-server (thesis §4.1): one member added, removed or promoted
per configuration entry, so any majority of the old voters and any majority of
the new ones intersect. When a change takes effect is decided in ``core``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

__all__ = [
    "ChangeOp",
    "ConfChange",
    "ConfChangeError",
    "ConfigWireError",
    "Member",
    "MembershipConfig",
    "MAX_ID_CHARS",
    "MAX_ADDRESS_CHARS",
]

#: Longest member id, cluster id or node name accepted (from the wire or an operator).
MAX_ID_CHARS = 256
#: Longest peer address (``host:port``) accepted.
MAX_ADDRESS_CHARS = 1024
#: Most members a configuration may list (voters and learners together).
MAX_MEMBERS = 1024


class ConfigWireError(ValueError):
    """A configuration or change from the wire (or a file) is malformed."""


class ConfChangeError(ValueError):
    """A membership change that does not fit the configuration it would change."""


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str  # one incarnation of a node: name plus a random suffix
    name: str  # the node name operators use (``--node-id``)
    address: str  # peer address, ``host:port``

    def to_wire(self) -> list[Any]:
        return [self.member_id, self.name, self.address]

    @staticmethod
    def from_wire(obj: Any) -> Member:
        if type(obj) not in (list, tuple) or len(obj) != 3:
            raise ConfigWireError(f"member: expected [member_id, name, address], got {_short(obj)}")
        member_id, name, address = obj
        return Member(
            check_id(member_id, "member id", ConfigWireError),
            _check_text(name, "member name", MAX_ID_CHARS),
            _check_text(address, "member address", MAX_ADDRESS_CHARS),
        )


def check_id(value: Any, what: str, error: type[ValueError] = ValueError) -> str:
    """A non-empty printable string of at most MAX_ID_CHARS characters."""
    if type(value) is not str or not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise error(f"{what}: expected a printable string of 1..{MAX_ID_CHARS} characters, got {_short(value)}")
    return value


def _check_text(value: Any, what: str, max_chars: int) -> str:
    if type(value) is not str or len(value) > max_chars:
        raise ConfigWireError(f"{what}: expected a string of at most {max_chars} characters, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class MembershipConfig:
    """Voters and learners, each sorted by member id; immutable and comparable."""

    __slots__ = ("voters", "learners", "voter_ids", "learner_ids", "members", "_key")

    voters: tuple[Member, ...]
    learners: tuple[Member, ...]
    voter_ids: frozenset[str]
    learner_ids: frozenset[str]
    members: dict[str, Member]

    def __init__(self, voters: Iterable[Member] = (), learners: Iterable[Member] = ()) -> None:
        v = tuple(sorted(voters, key=lambda m: m.member_id))
        lrn = tuple(sorted(learners, key=lambda m: m.member_id))
        members: dict[str, Member] = {}
        for member in v + lrn:
            if member.member_id in members:
                raise ConfChangeError(f"member {member.member_id} is listed twice")
            members[member.member_id] = member
        if len(members) > MAX_MEMBERS:
            raise ConfChangeError(f"a configuration holds at most {MAX_MEMBERS} members")
        self.voters = v
        self.learners = lrn
        self.voter_ids = frozenset(m.member_id for m in v)
        self.learner_ids = frozenset(m.member_id for m in lrn)
        self.members = members
        self._key = (v, lrn)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MembershipConfig) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        voters = ",".join(m.member_id for m in self.voters)
        learners = ",".join(m.member_id for m in self.learners)
        return f"MembershipConfig(voters=[{voters}], learners=[{learners}])"

    def __contains__(self, member_id: object) -> bool:
        return member_id in self.members

    def apply(self, change: ConfChange) -> MembershipConfig:
        """The configuration after ``change``; ConfChangeError if it does not fit."""
        mid = change.member_id
        voters = {m.member_id: m for m in self.voters}
        learners = {m.member_id: m for m in self.learners}
        op = change.op
        if op in (ChangeOp.ADD_VOTER, ChangeOp.ADD_LEARNER):
            if mid in self.members:
                role = "voter" if mid in voters else "learner"
                raise ConfChangeError(f"member {mid} is already a {role}")
            (voters if op is ChangeOp.ADD_VOTER else learners)[mid] = change.member()
        elif op is ChangeOp.PROMOTE_LEARNER:
            if mid not in learners:
                raise ConfChangeError(f"member {mid} is not a learner")
            voters[mid] = learners.pop(mid)
        elif op is ChangeOp.REMOVE_VOTER:
            if mid not in voters:
                raise ConfChangeError(f"member {mid} is not a voter")
            if len(voters) == 1:
                raise ConfChangeError(f"member {mid} is the last voter; add another voter first")
            del voters[mid]
        elif op is ChangeOp.REMOVE_LEARNER:
            if mid not in learners:
                raise ConfChangeError(f"member {mid} is not a learner")
            del learners[mid]
        else:  # pragma: no cover - ChangeOp is closed
            raise ConfChangeError(f"unknown change {op!r}")
        return MembershipConfig(voters.values(), learners.values())

    def to_wire(self) -> list[Any]:
        return [[m.to_wire() for m in self.voters], [m.to_wire() for m in self.learners]]

    @staticmethod
    def from_wire(obj: Any) -> MembershipConfig:
        if type(obj) not in (list, tuple) or len(obj) != 2:
            raise ConfigWireError(f"configuration: expected [voters, learners], got {_short(obj)}")
        voters, learners = obj
        for what, group in (("voters", voters), ("learners", learners)):
            if type(group) not in (list, tuple) or len(group) > MAX_MEMBERS:
                raise ConfigWireError(f"configuration {what}: expected a list of at most {MAX_MEMBERS} members")
        try:
            return MembershipConfig(
                [Member.from_wire(m) for m in voters], [Member.from_wire(m) for m in learners]
            )
        except ConfChangeError as exc:
            raise ConfigWireError(f"configuration: {exc}") from None


class ChangeOp(IntEnum):
    """Single-server membership changes (wire numbers are append-only)."""

    ADD_VOTER = 1
    ADD_LEARNER = 2
    PROMOTE_LEARNER = 3
    REMOVE_VOTER = 4
    REMOVE_LEARNER = 5


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; ``name`` and ``address`` matter only when adding."""

    op: ChangeOp
    member_id: str
    name: str = ""
    address: str = ""

    def member(self) -> Member:
        return Member(self.member_id, self.name, self.address)

    @staticmethod
    def add_voter(member: Member) -> ConfChange:
        return ConfChange(ChangeOp.ADD_VOTER, member.member_id, member.name, member.address)

    @staticmethod
    def add_learner(member: Member) -> ConfChange:
        return ConfChange(ChangeOp.ADD_LEARNER, member.member_id, member.name, member.address)

    @staticmethod
    def promote(member_id: str) -> ConfChange:
        return ConfChange(ChangeOp.PROMOTE_LEARNER, member_id)

    @staticmethod
    def remove_voter(member_id: str) -> ConfChange:
        return ConfChange(ChangeOp.REMOVE_VOTER, member_id)

    @staticmethod
    def remove_learner(member_id: str) -> ConfChange:
        return ConfChange(ChangeOp.REMOVE_LEARNER, member_id)

    def to_wire(self) -> list[Any]:
        return [int(self.op), self.member_id, self.name, self.address]

    @staticmethod
    def from_wire(obj: Any) -> ConfChange:
        if type(obj) not in (list, tuple) or len(obj) != 4:
            raise ConfigWireError(f"membership change: expected [op, member_id, name, address], got {_short(obj)}")
        op, member_id, name, address = obj
        if type(op) is not int or op not in _OPS:
            raise ConfigWireError(f"membership change: unknown operation {_short(op)}")
        return ConfChange(
            ChangeOp(op),
            check_id(member_id, "member id", ConfigWireError),
            _check_text(name, "member name", MAX_ID_CHARS),
            _check_text(address, "member address", MAX_ADDRESS_CHARS),
        )


_OPS = frozenset(int(op) for op in ChangeOp)


# -- configuration entries in the log -------------------------------------------------
# A CONFIG entry's data is msgpack [change or nil, the whole new configuration]: the
# full configuration, so a replica never needs the previous one to know the current
# one (nil change: the configuration a cluster was bootstrapped with).


def encode_config_entry(change: ConfChange | None, config: MembershipConfig) -> bytes:
    return msgpack.packb([None if change is None else change.to_wire(), config.to_wire()], use_bin_type=True)


def decode_config_entry(data: bytes) -> tuple[ConfChange | None, MembershipConfig]:
    """Inverse of ``encode_config_entry``; ConfigWireError for anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ConfigWireError(f"configuration entry is not msgpack: {exc}") from None
    if type(obj) is not list or len(obj) != 2:
        raise ConfigWireError("configuration entry: expected [change, configuration]")
    change = None if obj[0] is None else ConfChange.from_wire(obj[0])
    return change, MembershipConfig.from_wire(obj[1])


def encode_change(change: ConfChange) -> bytes:
    """A membership change as forwarded to the leader, before it becomes an entry."""
    return msgpack.packb(change.to_wire(), use_bin_type=True)


def decode_change(data: bytes) -> ConfChange:
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ConfigWireError(f"membership change is not msgpack: {exc}") from None
    return ConfChange.from_wire(obj)
