"""Gossip messages: plain data, their msgpack-able wire form, and strict validation.

Every message travels as one peer frame of the gossip family (``vfsd.peers``): the
frame carries the message type (``MsgType``, an append-only registry: a number is
never reused or renumbered) and a body, a list ``[*HEADER, *payload]``. The header,
on every message: ``boot`` (the sender's identity: its HLC when its process
started), ``seq`` (a counter the sender increments per message: a message overtaken
by a later one from the same sender is dropped), ``hlc`` (the sender's clock, merged
into ours), ``seen`` (how far the sender dominates our state: the tombstone
acknowledgement, ``vfsd.active.lww``) and ``view`` (the hash of the sender's
membership view; an acknowledgement counts only between equal views).

``decode`` checks everything a peer could get wrong or forge before anything is
applied: exact types (a bool is not an int, a str is not bytes), every integer's
range, every string's and list's length, every path against the path grammar and
the replicated roots, every kind against the kinds this node can store, indices
into the origins table. Anything off raises ``WireError`` naming the field; the
caller counts it by ``reason`` and drops the whole message: nothing from it is
applied and nothing is gossiped on (the lesson of Fly.io's Corrosion incident, where
one bad update reached every node in seconds). Timestamps too far in the future are
refused one layer up, where the wall clock is known (``GossipAgent``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import compress
from operator import not_
from typing import Any

from vfsd.active.digest import DEPTH, FANOUT_BITS, LEAVES
from vfsd.active.lww import TOMBSTONE, Record
from vfsd.paths import DEFAULT_ROOTS, EVENTUAL, MAX_PATH_BYTES, PATH_SUSPECT, PathError, all_paths, check_path
from vfsd.peers.frame import GOSSIP, WIRE

U63 = (1 << 63) - 1
U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
#: Deadlines and deletion times are epoch milliseconds; 2**53 is far beyond any real one.
MAX_MS = 1 << 53
MAX_NAME_BYTES = 255
MAX_ADDRESS_BYTES = 255


class MsgType(IntEnum):
    """Gossip message types. Append only: never reuse or renumber."""

    PING = 1
    ACK = 2
    PING_REQ = 3
    NACK = 4
    GOSSIP = 5
    SYNC_OPEN = 6
    SYNC_REPLY = 7
    SYNC_DESCEND = 8
    SYNC_TREE = 9
    SYNC_VERSIONS = 10
    SYNC_RECORDS = 11
    RECORDS = 12
    SPLIT = 13


# The gossip family's message types on the peer wire (vfsd.peers.frame): these same numbers.
for _type in MsgType:
    WIRE.message(GOSSIP, int(_type), _type.name.lower())
del _type

#: Member update operations (memberlist's alive / suspect / dead messages).
ALIVE_OP, SUSPECT_OP, DEAD_OP = 0, 1, 2
#: Member states, as rows carry them. REAPED rows announce identities forgotten for good.
ALIVE, SUSPECT, DEAD, LEFT, REAPED = 0, 1, 2, 3, 4
STATE_NAMES = ("alive", "suspect", "dead", "left", "reaped")

#: ``(op, name, boot, incarnation, text)``: text is the member's address for ALIVE_OP,
#: the accusing member for SUSPECT_OP and DEAD_OP (the member itself: it left).
Update = tuple[int, str, int, int, str]
#: ``(name, address, boot, incarnation, state, seen)``: one membership row of a pull reply;
#: ``seen`` is how far the replying member dominates that member's state.
Row = tuple[str, str, int, int, int, int]
#: ``(key, hlc, origin, tombstone)``: one version in a bucket listing.
Version = tuple[bytes, int, str, bool]
#: ``(index, hash, count)``: one node of the digest tree.
Node = tuple[int, int, int]

HEADER_FIELDS = 5


class WireError(ValueError):
    """A message that is not what the protocol allows; ``reason`` is the counter to bump."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RootFilter:
    """A key filter: whether a path lies under a root the roots table gives the eventual plane.

    ``prefixes`` are those roots with their trailing slash: ``key.startswith(prefixes)`` is the
    filter's answer for every path below a root (``_records`` checks a whole batch against them
    at once: ``vfsd.paths.all_paths``; a root itself, ``/hw``, takes the call)."""

    __slots__ = ("eventual", "prefixes")

    def __init__(self, roots: Mapping[str, str]) -> None:
        self.eventual = frozenset(root.encode() for root, plane in roots.items() if plane == EVENTUAL)
        self.prefixes = tuple(sorted(root + b"/" for root in self.eventual))

    def __call__(self, key: bytes) -> bool:
        end = key.find(b"/", 1)
        return (key if end < 0 else key[:end]) in self.eventual


def on_roots(roots: Mapping[str, str]) -> RootFilter:
    """The key filter of a roots table's eventual roots (``RootFilter``)."""
    return RootFilter(roots)


@dataclass(frozen=True)
class Limits:
    """What this node accepts from peers.

    ``kinds``: value kinds it can store (default {0, 1}: raw bytes, documents; the types that
    come later add theirs). ``accepts_key``: whether a path belongs to a replicated (eventual)
    root; the shell passes ``on_roots(config.roots)`` (default: the default roots table).
    ``max_value_bytes`` (default 1 MiB - 4 KiB; the agent uses ``max_message_bytes`` - 4 KiB):
    the largest value a record may carry. The list caps (records 65536, versions 262144,
    updates 4096, rows 100000, origins 65536, tree nodes 65536) bound what one message may
    make us allocate, far above what a correct peer sends.
    """

    kinds: frozenset[int] = frozenset({0, 1})
    accepts_key: Callable[[bytes], bool] = field(default_factory=lambda: on_roots(DEFAULT_ROOTS))
    #: ``check_value(kind, value) -> bool``: whether a wire value decodes for its kind (the
    #: store's ``install`` must never fail on what passed). None: values are not looked into.
    check_value: Callable[[int, bytes], bool] | None = None
    max_value_bytes: int = (1 << 20) - 4096
    max_records: int = 65_536
    max_versions: int = 262_144
    max_updates: int = 4096
    max_rows: int = 100_000
    max_origins: int = 65_536
    max_nodes: int = 65_536


@dataclass(frozen=True, slots=True)
class Header:
    boot: int
    seq: int
    hlc: int
    seen: int
    view: int

    def to_wire(self) -> list[Any]:
        return [self.boot, self.seq, self.hlc, self.seen, self.view]


# -- messages ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ping:
    probe: int
    target: str
    updates: Sequence[Update] = ()
    TYPE = MsgType.PING

    def to_wire(self) -> list[Any]:
        return [self.probe, self.target, [list(u) for u in self.updates]]


@dataclass(frozen=True, slots=True)
class Ack:
    probe: int
    updates: Sequence[Update] = ()
    TYPE = MsgType.ACK

    def to_wire(self) -> list[Any]:
        return [self.probe, [list(u) for u in self.updates]]


@dataclass(frozen=True, slots=True)
class PingReq:
    probe: int
    target: str
    address: str
    TYPE = MsgType.PING_REQ

    def to_wire(self) -> list[Any]:
        return [self.probe, self.target, self.address]


@dataclass(frozen=True, slots=True)
class Nack:
    probe: int
    TYPE = MsgType.NACK

    def to_wire(self) -> list[Any]:
        return [self.probe]


@dataclass(frozen=True, slots=True)
class Gossip:
    updates: Sequence[Update]
    records: Sequence[Record]
    TYPE = MsgType.GOSSIP

    def to_wire(self) -> list[Any]:
        return gossip_payload(self.updates, *records_out(self.records))


@dataclass(frozen=True, slots=True)
class SyncOpen:
    sid: int
    root: int
    count: int
    row: Row
    want_rows: bool
    TYPE = MsgType.SYNC_OPEN

    def to_wire(self) -> list[Any]:
        return [self.sid, self.root, self.count, list(self.row), self.want_rows]


@dataclass(frozen=True, slots=True)
class SyncReply:
    """The first answer to a pull: the responder's clock ``t`` (the time the pull, once
    complete, dominates it as of), its rows, and its root's children (None: roots equal)."""

    sid: int
    t: int
    rows: Sequence[Row]
    nodes: Sequence[Node] | None
    TYPE = MsgType.SYNC_REPLY

    def to_wire(self) -> list[Any]:
        return [self.sid, self.t, [list(r) for r in self.rows],
                None if self.nodes is None else [list(n) for n in self.nodes]]


@dataclass(frozen=True, slots=True)
class SyncDescend:
    sid: int
    level: int
    idxs: Sequence[int]
    TYPE = MsgType.SYNC_DESCEND

    def to_wire(self) -> list[Any]:
        return [self.sid, self.level, list(self.idxs)]


@dataclass(frozen=True, slots=True)
class SyncTree:
    """The children (at ``level``) of the nodes a SyncDescend asked for; ``parents`` repeats the request."""

    sid: int
    level: int
    parents: Sequence[int]
    nodes: Sequence[Node]
    TYPE = MsgType.SYNC_TREE

    def to_wire(self) -> list[Any]:
        return [self.sid, self.level, list(self.parents), [list(n) for n in self.nodes]]


@dataclass(frozen=True, slots=True)
class SyncVersions:
    """The puller's versions in subtree ``(level, idx)`` from bucket ``from_leaf`` (after key
    ``after`` in it, in byte order): "send me whatever you hold that is newer"."""

    sid: int
    level: int
    idx: int
    from_leaf: int
    after: bytes
    versions: Sequence[Version]
    TYPE = MsgType.SYNC_VERSIONS

    def to_wire(self) -> list[Any]:
        origins: dict[str, int] = {}
        out = [[k, h, origins.setdefault(o, len(origins)), t] for k, h, o, t in self.versions]
        return [self.sid, self.level, self.idx, self.from_leaf, self.after, list(origins), out]


@dataclass(frozen=True, slots=True)
class SyncRecords:
    """The answer to one SyncVersions: the responder's newer records, the keys it wants
    back, and, when the answer was cut to fit, where to ask again: ``(level, idx, leaf,
    after)``, the same subtree from bucket ``leaf`` after key ``after`` (None: done)."""

    sid: int
    records: Sequence[Record]
    want: Sequence[bytes]
    resume: tuple[int, int, int, bytes] | None
    TYPE = MsgType.SYNC_RECORDS

    def to_wire(self) -> list[Any]:
        origins, records = records_out(self.records)
        return [self.sid, origins, records, list(self.want), None if self.resume is None else list(self.resume)]


@dataclass(frozen=True, slots=True)
class Records:
    records: Sequence[Record]
    TYPE = MsgType.RECORDS

    def to_wire(self) -> list[Any]:
        origins, records = records_out(self.records)
        return [origins, records]


@dataclass(frozen=True, slots=True)
class Split:
    """Two sides that each reaped the other (or one reaped the other) meet again.

    ``reaped_you``: the boot of the receiver's identity the sender reaped (0: none), so a
    receiver that has reset since, and is someone new, knows the news is not about it.
    """

    alive: int
    min_name: str
    collected_max: int
    reaped_you: int
    TYPE = MsgType.SPLIT

    def to_wire(self) -> list[Any]:
        return [self.alive, self.min_name, self.collected_max, self.reaped_you]


Message = (Ping | Ack | PingReq | Nack | Gossip | SyncOpen | SyncReply | SyncDescend | SyncTree
           | SyncVersions | SyncRecords | Records | Split)
#: Messages that carry records (subject to the overtaken-message rule).
DATA_TYPES = frozenset({MsgType.GOSSIP, MsgType.SYNC_RECORDS, MsgType.RECORDS})


#: The columns a message carries its records in, in order (``records_out``).
COLUMNS = ("keys", "hlcs", "origins", "kinds", "values", "deadlines")


def records_out(records: Sequence[Record]) -> tuple[list[str], list[list[Any]]]:
    """Records as messages carry them: the table of their origins, and the records in six
    columns of equal length (``COLUMNS``: keys, hlcs, each origin's index in the table, kinds,
    values, deadlines).

    Columns, not one row per record: a receiver checks a whole column in a few C calls
    (``_records``: the types of all the keys in one ``set(map(type, ...))``, the range of all
    the clocks in one ``min`` and one ``max``), where rows cost it a Python loop per record,
    and msgpack decodes six lists faster than as many small lists as there are records."""
    origins: dict[str, int] = {}
    rows = [(k, h, origins.setdefault(o, len(origins)), kind, v, at) for k, h, o, kind, v, at in records]
    return list(origins), columns_of(rows)


def columns_of(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows ``(key, hlc, origin index, kind, value, deadline)`` as the six columns a message
    carries (lists, as msgpack decodes them: a message delivered in process reads the same)."""
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in COLUMNS]


def gossip_payload(updates: Sequence[Update], origins: list[str], columns: list[list[Any]]) -> list[Any]:
    """The fields of a GOSSIP message after its header (``Gossip.to_wire``), from records
    already in wire form (``records_out``)."""
    return [[list(u) for u in updates], origins, columns]


# -- validation helpers -------------------------------------------------------------

def _int(x: Any, where: str, lo: int = 0, hi: int = U63) -> int:
    if type(x) is not int:
        raise WireError("malformed", f"{where}: expected an integer, got {type(x).__name__}")
    if not lo <= x <= hi:
        raise WireError("out_of_range", f"{where}: {x} is outside [{lo}, {hi}]")
    return x


def _bool(x: Any, where: str) -> bool:
    if type(x) is not bool:
        raise WireError("malformed", f"{where}: expected a boolean, got {type(x).__name__}")
    return x


def _list(x: Any, where: str, max_len: int, exact: int | None = None) -> list[Any]:
    if type(x) is not list:
        raise WireError("malformed", f"{where}: expected a list, got {type(x).__name__}")
    if exact is not None and len(x) != exact:
        raise WireError("malformed", f"{where}: expected {exact} fields, got {len(x)}")
    if len(x) > max_len:
        raise WireError("too_large", f"{where}: {len(x)} items, at most {max_len} allowed")
    return x


def _name(x: Any, where: str, max_bytes: int = MAX_NAME_BYTES, empty: bool = False) -> str:
    if type(x) is not str:
        raise WireError("malformed", f"{where}: expected a string, got {type(x).__name__}")
    if (not x and not empty) or (len(x) * 4 > max_bytes and len(x.encode("utf-8", "surrogatepass")) > max_bytes):
        raise WireError("malformed", f"{where}: must be 1 to {max_bytes} bytes")
    if not x.isprintable():
        raise WireError("malformed", f"{where}: control and other unprintable characters are not allowed")
    return x


def _key(x: Any, where: str, limits: Limits) -> bytes:
    if type(x) is not bytes:
        raise WireError("malformed", f"{where}: expected bytes, got {type(x).__name__}")
    if x[:1] != b"/":
        raise WireError("bad_key", f"{where}: not a path")
    try:
        check_path(x)
    except PathError as exc:
        raise WireError("bad_key", f"{where}: {exc}") from None
    if not limits.accepts_key(x):
        raise WireError("bad_key", f"{where}: {x[:80]!r} is not on a replicated root")
    return x


def _update(x: Any, where: str) -> Update:
    u = _list(x, where, 5, exact=5)
    op = _int(u[0], where + ".op", 0, 2)
    name = _name(u[1], where + ".name")
    boot = _int(u[2], where + ".boot")
    inc = _int(u[3], where + ".incarnation", 0, U32)
    text = _name(u[4], where + (".address" if op == ALIVE_OP else ".by"), MAX_ADDRESS_BYTES, empty=op == ALIVE_OP)
    return (op, name, boot, inc, text)


def _updates(x: Any, where: str, limits: Limits) -> list[Update]:
    return [_update(u, f"{where}[{i}]") for i, u in enumerate(_list(x, where, limits.max_updates))]


def _row(x: Any, where: str) -> Row:
    r = _list(x, where, 6, exact=6)
    return (_name(r[0], where + ".name"), _name(r[1], where + ".address", MAX_ADDRESS_BYTES, empty=True),
            _int(r[2], where + ".boot"), _int(r[3], where + ".incarnation", 0, U32),
            _int(r[4], where + ".state", 0, REAPED), _int(r[5], where + ".seen"))


def _origins(x: Any, where: str, limits: Limits) -> list[str]:
    return [_name(o, f"{where}[{i}]") for i, o in enumerate(_list(x, where, limits.max_origins))]


def _records(origins_x: Any, columns_x: Any, where: str, limits: Limits) -> list[Record]:
    """The records of a message (``records_out``'s columns), every field of every one checked.

    Each check first runs over a whole column at once, in C (``_columns_pass``); when every
    one passes, so would every record. Otherwise the records are checked one by one
    (``_rows``), which names the first fault, or passes what the column checks leave to it
    (a key not seen before, a non-ASCII path)."""
    origins = _origins(origins_x, where + ".origins", limits)
    columns = _list(columns_x, where, len(COLUMNS), exact=len(COLUMNS))
    n = len(_list(columns[0], f"{where}.keys", limits.max_records))
    for name, column in zip(COLUMNS[1:], columns[1:]):
        if type(column) is not list or len(column) != n:
            raise WireError("malformed", f"{where}.{name}: expected a list of {n} (one per key)")
    if not n:
        return []
    keys, hlcs, indices, kinds, values, deadlines = columns
    if _columns_pass(columns, len(origins), limits):
        return list(zip(keys, hlcs, map(origins.__getitem__, indices), kinds, values, deadlines))
    return _rows(origins, zip(*columns), where, limits)


_INT = {int}
_BYTES = {bytes}


def _columns_pass(columns: list[list[Any]], n_origins: int, limits: Limits) -> bool:
    """Whether every record passes ``_rows``'s checks, each check made over a whole column in
    a few C calls (False: some record may not, and ``_rows`` tells which). Exact types first
    (``set(map(type, ...))``: a bool is not an int), then ranges, kinds, values, keys."""
    keys, hlcs, indices, kinds, values, deadlines = columns
    if not (set(map(type, hlcs)) == set(map(type, indices)) == set(map(type, kinds)) == set(map(type, deadlines))
            == _INT and set(map(type, keys)) == set(map(type, values)) == _BYTES):
        return False
    if (min(hlcs) < 0 or max(hlcs) > U63 or min(indices) < 0 or max(indices) >= n_origins or min(deadlines) < 0
            or max(deadlines) > MAX_MS or max(map(len, values)) > limits.max_value_bytes):
        return False
    present = set(kinds)
    live: list[bool] | None = None
    if TOMBSTONE in present:
        present.discard(TOMBSTONE)
        live = list(map(TOMBSTONE.__ne__, kinds))
        if any(compress(values, map(not_, live))):  # a tombstone carries no value
            return False
    if not present <= limits.kinds:
        return False
    check = limits.check_value
    if check is not None and present:
        if live is None:
            if not all(map(check, kinds, values)):
                return False
        elif not all(map(check, compress(kinds, live), compress(values, live))):
            return False
    return _keys_pass(keys, limits)


def _keys_pass(keys: list[bytes], limits: Limits) -> bool:
    """``_columns_pass`` for the keys: paths (``vfsd.paths.all_paths``) under a replicated root."""
    accepts = limits.accepts_key
    prefixes = getattr(accepts, "prefixes", None)
    if prefixes is not None:  # a RootFilter: its roots' prefixes are its answer below a root
        return all_paths(keys, prefixes)
    return all_paths(keys) and all(map(accepts, keys))


def _rows(origins: list[str], rows: Iterable[tuple[Any, ...]], where: str, limits: Limits) -> list[Record]:
    """``_records`` one record at a time, naming the first field that is off (``where[i].field``)."""
    out: list[Record] = []
    append = out.append
    n_origins = len(origins)
    kinds = limits.kinds
    max_value = limits.max_value_bytes
    check_value = limits.check_value
    accepts = limits.accepts_key
    # The checks of _key and _int, inlined for a valid record (the records _columns_pass could not
    # pass whole are mostly valid: a non-ASCII path among them, say); anything off goes the long
    # way, which names the fault.
    for i, (key, hlc, o, kind, value, at_ms) in enumerate(rows):
        if (type(key) is not bytes or key[:1] != b"/" or len(key) > MAX_PATH_BYTES
                or PATH_SUSPECT.search(key) is not None or not key.isascii() or not accepts(key)):
            _key(key, f"{where}[{i}].key", limits)  # raises, unless only non-ASCII (UTF-8 checked there)
        if type(hlc) is not int or not 0 <= hlc <= U63:
            _int(hlc, f"{where}[{i}].hlc")
        if type(o) is not int or not 0 <= o < n_origins:
            if not origins and type(o) is int and o == 0:
                raise WireError("malformed", f"{where}[{i}].origin: no origins table")
            _int(o, f"{where}[{i}].origin", 0, max(0, n_origins - 1))
        if type(kind) is not int:
            raise WireError("malformed", f"{where}[{i}].kind: expected an integer")
        if type(value) is not bytes:
            raise WireError("malformed", f"{where}[{i}].value: expected bytes, got {type(value).__name__}")
        if kind == TOMBSTONE:
            if value:
                raise WireError("malformed", f"{where}[{i}].value: a tombstone carries no value")
        elif kind not in kinds:
            raise WireError("unknown_kind", f"{where}[{i}].kind: {kind} is not a kind this node stores")
        if len(value) > max_value:
            raise WireError("too_large", f"{where}[{i}].value: {len(value)} bytes, at most {max_value}")
        if check_value is not None and kind != TOMBSTONE and not check_value(kind, value):
            raise WireError("bad_value", f"{where}[{i}].value: not a valid value of kind {kind}")
        if type(at_ms) is not int or not 0 <= at_ms <= MAX_MS:
            _int(at_ms, f"{where}[{i}].at_ms", 0, MAX_MS)
        append((key, hlc, origins[o], kind, value, at_ms))
    return out


def _nodes(x: Any, where: str, level: int, limits: Limits) -> list[Node]:
    top = (1 << (FANOUT_BITS * level)) - 1
    out = []
    for i, n in enumerate(_list(x, where, limits.max_nodes)):
        node = _list(n, f"{where}[{i}]", 3, exact=3)
        out.append((_int(node[0], f"{where}[{i}].index", 0, top), _int(node[1], f"{where}[{i}].hash", 0, U64),
                    _int(node[2], f"{where}[{i}].count", 0, U63)))
    return out


# -- decoding -------------------------------------------------------------------------

def decode_header(body: Any) -> tuple[Header, list[Any]]:
    if type(body) is not list or len(body) < HEADER_FIELDS:
        raise WireError("malformed", "body: expected a list starting with the 5 header fields")
    header = Header(_int(body[0], "header.boot"), _int(body[1], "header.seq"), _int(body[2], "header.hlc"),
                    _int(body[3], "header.seen"), _int(body[4], "header.view", 0, U64))
    return header, body[HEADER_FIELDS:]


def decode(msg_type: int, payload: list[Any], limits: Limits) -> Message:
    """The message of type ``msg_type`` from its payload (the body after the header)."""
    try:
        if type(msg_type) is not int and not isinstance(msg_type, MsgType):
            raise TypeError
        kind = MsgType(msg_type)
    except (ValueError, TypeError):
        raise WireError("unknown_type", f"message type {msg_type!r} is not a gossip message") from None
    decoder = _DECODERS[kind]
    return decoder(payload, limits)


def _fields(payload: list[Any], n: int, name: str) -> list[Any]:
    if len(payload) != n:
        raise WireError("malformed", f"{name}: expected {n} payload fields, got {len(payload)}")
    return payload


def _d_ping(p: list[Any], limits: Limits) -> Ping:
    p = _fields(p, 3, "ping")
    return Ping(_int(p[0], "ping.probe"), _name(p[1], "ping.target"), _updates(p[2], "ping.updates", limits))


def _d_ack(p: list[Any], limits: Limits) -> Ack:
    p = _fields(p, 2, "ack")
    return Ack(_int(p[0], "ack.probe"), _updates(p[1], "ack.updates", limits))


def _d_ping_req(p: list[Any], limits: Limits) -> PingReq:
    p = _fields(p, 3, "ping_req")
    return PingReq(_int(p[0], "ping_req.probe"), _name(p[1], "ping_req.target"),
                   _name(p[2], "ping_req.address", MAX_ADDRESS_BYTES, empty=True))


def _d_nack(p: list[Any], limits: Limits) -> Nack:
    p = _fields(p, 1, "nack")
    return Nack(_int(p[0], "nack.probe"))


def _d_gossip(p: list[Any], limits: Limits) -> Gossip:
    p = _fields(p, 3, "gossip")
    return Gossip(_updates(p[0], "gossip.updates", limits), _records(p[1], p[2], "gossip.records", limits))


def _d_sync_open(p: list[Any], limits: Limits) -> SyncOpen:
    p = _fields(p, 5, "sync_open")
    return SyncOpen(_int(p[0], "sync_open.sid"), _int(p[1], "sync_open.root", 0, U64),
                    _int(p[2], "sync_open.count"), _row(p[3], "sync_open.row"), _bool(p[4], "sync_open.want_rows"))


def _d_sync_reply(p: list[Any], limits: Limits) -> SyncReply:
    p = _fields(p, 4, "sync_reply")
    rows = [_row(r, f"sync_reply.rows[{i}]") for i, r in enumerate(_list(p[2], "sync_reply.rows", limits.max_rows))]
    nodes = None if p[3] is None else _nodes(p[3], "sync_reply.nodes", 1, limits)
    return SyncReply(_int(p[0], "sync_reply.sid"), _int(p[1], "sync_reply.t"), rows, nodes)


def _d_sync_descend(p: list[Any], limits: Limits) -> SyncDescend:
    p = _fields(p, 3, "sync_descend")
    level = _int(p[1], "sync_descend.level", 1, DEPTH - 1)
    top = (1 << (FANOUT_BITS * level)) - 1
    idxs = [_int(i, "sync_descend.idxs[]", 0, top) for i in _list(p[2], "sync_descend.idxs", limits.max_nodes)]
    return SyncDescend(_int(p[0], "sync_descend.sid"), level, idxs)


def _d_sync_tree(p: list[Any], limits: Limits) -> SyncTree:
    p = _fields(p, 4, "sync_tree")
    level = _int(p[1], "sync_tree.level", 2, DEPTH)
    top = (1 << (FANOUT_BITS * (level - 1))) - 1
    parents = [_int(i, "sync_tree.parents[]", 0, top) for i in _list(p[2], "sync_tree.parents", limits.max_nodes)]
    return SyncTree(_int(p[0], "sync_tree.sid"), level, parents, _nodes(p[3], "sync_tree.nodes", level, limits))


def _d_sync_versions(p: list[Any], limits: Limits) -> SyncVersions:
    p = _fields(p, 7, "sync_versions")
    level = _int(p[1], "sync_versions.level", 0, DEPTH)
    idx = _int(p[2], "sync_versions.idx", 0, (1 << (FANOUT_BITS * level)) - 1)
    from_leaf = _int(p[3], "sync_versions.from_leaf", 0, LEAVES - 1)
    after = p[4]
    if type(after) is not bytes or len(after) > 1024:
        raise WireError("malformed", "sync_versions.after: expected bytes of at most 1024")
    origins = _origins(p[5], "sync_versions.origins", limits)
    versions: list[Version] = []
    for i, x in enumerate(_list(p[6], "sync_versions.versions", limits.max_versions)):
        at = f"sync_versions.versions[{i}]"
        v = _list(x, at, 4, exact=4)
        o = _int(v[2], at + ".origin", 0, max(0, len(origins) - 1))
        if not origins:
            raise WireError("malformed", f"{at}.origin: no origins table")
        versions.append((_key(v[0], at + ".key", limits), _int(v[1], at + ".hlc"), origins[o], _bool(v[3], at + ".tomb")))
    return SyncVersions(_int(p[0], "sync_versions.sid"), level, idx, from_leaf, after, versions)


def _d_sync_records(p: list[Any], limits: Limits) -> SyncRecords:
    p = _fields(p, 5, "sync_records")
    records = _records(p[1], p[2], "sync_records.records", limits)
    want = [_key(k, f"sync_records.want[{i}]", limits)
            for i, k in enumerate(_list(p[3], "sync_records.want", limits.max_versions))]
    resume = None
    if p[4] is not None:
        r = _list(p[4], "sync_records.resume", 4, exact=4)
        level = _int(r[0], "sync_records.resume.level", 0, DEPTH)
        idx = _int(r[1], "sync_records.resume.idx", 0, (1 << (FANOUT_BITS * level)) - 1)
        leaf = _int(r[2], "sync_records.resume.leaf", 0, LEAVES - 1)
        shift = FANOUT_BITS * (DEPTH - level)
        if leaf >> shift != idx:
            raise WireError("out_of_range", "sync_records.resume.leaf: not under the resumed subtree")
        after = r[3]
        if type(after) is not bytes or len(after) > 1024:
            raise WireError("malformed", "sync_records.resume.after: expected bytes of at most 1024")
        resume = (level, idx, leaf, after)
    return SyncRecords(_int(p[0], "sync_records.sid"), records, want, resume)


def _d_records(p: list[Any], limits: Limits) -> Records:
    p = _fields(p, 2, "records")
    return Records(_records(p[0], p[1], "records", limits))


def _d_split(p: list[Any], limits: Limits) -> Split:
    p = _fields(p, 4, "split")
    return Split(_int(p[0], "split.alive", 0, U32), _name(p[1], "split.min_name"),
                 _int(p[2], "split.collected_max"), _int(p[3], "split.reaped_you"))


_DECODERS: dict[MsgType, Callable[[list[Any], Limits], Message]] = {
    MsgType.PING: _d_ping,
    MsgType.ACK: _d_ack,
    MsgType.PING_REQ: _d_ping_req,
    MsgType.NACK: _d_nack,
    MsgType.GOSSIP: _d_gossip,
    MsgType.SYNC_OPEN: _d_sync_open,
    MsgType.SYNC_REPLY: _d_sync_reply,
    MsgType.SYNC_DESCEND: _d_sync_descend,
    MsgType.SYNC_TREE: _d_sync_tree,
    MsgType.SYNC_VERSIONS: _d_sync_versions,
    MsgType.SYNC_RECORDS: _d_sync_records,
    MsgType.RECORDS: _d_records,
    MsgType.SPLIT: _d_split,
}


def _from_wire(cls: Any, payload: list[Any], limits: Limits | None = None) -> Any:
    """``Cls.from_wire(payload)``: the message from its payload, validated (``WireError`` if not)."""
    return _DECODERS[cls.TYPE](payload, limits if limits is not None else _DEFAULT_LIMITS)


for _cls in (Ping, Ack, PingReq, Nack, Gossip, SyncOpen, SyncReply, SyncDescend, SyncTree, SyncVersions,
             SyncRecords, Records, Split):
    _cls.from_wire = classmethod(_from_wire)  # type: ignore[attr-defined]
_DEFAULT_LIMITS = Limits()


def encode(header: Header, message: Message) -> list[Any]:
    """The frame body of ``message``: the header fields, then its payload."""
    return [*header.to_wire(), *message.to_wire()]
