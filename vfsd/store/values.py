"""Value kinds: the one place that knows what each kind of file holds.

Theory of operation
-------------------
A keyspace entry's VALUE slot holds one in-memory representation per kind:

    RAW   bytes                         a string (what SET stores)
    DOC   bytes: msgpack of a JSON value a structured document (JSON.SET, collectors)
    HASH  dict field -> value            ``HashTable`` (a dict subclass) once Redis would use a hashtable
    LIST  bytes (packed) or deque        a short list is one msgpack blob, a long one a deque
    SET   set                            ``ListpackSet``/``HashSet`` subclasses record Redis's encoding
    ZSET  vfsd.store.zset.ZSet            member -> score dict plus a SortedList in Redis's order

Collections are mutated in place (an HSET on a 1M-field hash must not copy it);
every write still makes a new entry tuple with a fresh revision, so WATCH,
notifications and VFS.STAT see every change. That is safe because nothing
outside the event loop ever holds a live collection: replies are built as new
lists, notifications serialise at once, and whatever leaves the loop (a
desired-plane snapshot packed on the writer thread, a DUMP payload, later a
gossip or Raft message) goes through ``to_wire``, which returns plain lists of
bytes (a copy) or the immutable packed blob.

Short lists are packed (one msgpack ``bytes`` blob, like Redis's listpack)
because a Python object per element costs ~50 bytes: 100k ten-element lists
take 3.3x redis-server's memory as lists of bytes, 1.7x packed. A command opens
a packed list into a deque, changes it and packs it back (O(n) for n at most
``PACKED_LIST_MAX_ITEMS``, as Redis's listpack edits are); past the limits the
deque itself is the value and is changed in place.

``OBJECT ENCODING`` answers what Redis 7.2 would with its default thresholds.
Redis converts hashes, sets and sorted sets one way only (a hash that once held
a 65-byte value stays a hashtable), so the conversion is recorded in the value's
type (``HashTable``, ``ListpackSet``, ``HashSet``) or flag (``ZSet.skiplist``)
as it happens. Lists and strings are judged by their current contents: Redis's
quicklist-to-listpack hysteresis depends on quicklist node layout, and its
``raw`` strings on which command wrote them (see compat/DIFFERENCES.md).

Wire form
---------
``to_wire(kind, value)`` gives a msgpack-able object, ``from_wire(kind, obj)``
validates one and builds the value (``WireError`` on anything malformed: a
peer's or a file's bytes are never trusted). ``WIRE_VERSION`` is recorded once
by whatever carries values (the snapshot header, the DUMP trailer), so a future
format can still read this one::

    RAW, DOC  bytes
    HASH      [field, value, field, value, ...]    insertion order
    LIST      [element, ...]                        head first
    SET       [member, ...]                         no particular order
    ZSET      [member, score, member, score, ...]   ascending, scores float64
"""

from __future__ import annotations

import base64
import math
from collections import deque
from itertools import chain
from typing import Any

import msgpack

from vfsd.codec import DOC, RAW, unpack
from vfsd.store.zset import ZSet

HASH = 2
LIST = 3
SET = 4
ZSET = 5
KINDS = (RAW, DOC, HASH, LIST, SET, ZSET)

#: What TYPE, SCAN ... TYPE and VFS.STAT call each kind.
TYPE_NAMES = {RAW: "string", DOC: "ReJSON-RL", HASH: "hash", LIST: "list", SET: "set", ZSET: "zset"}

WIRE_VERSION = 1

# Redis 7.2's built-in defaults (config.c; the sample redis.conf says 128 for hashes, the server
# itself starts with 512): the thresholds OBJECT ENCODING reports against.
HASH_MAX_LISTPACK_ENTRIES = 512
HASH_MAX_LISTPACK_VALUE = 64
SET_MAX_INTSET_ENTRIES = 512
SET_MAX_LISTPACK_ENTRIES = 128
SET_MAX_LISTPACK_VALUE = 64
ZSET_MAX_LISTPACK_ENTRIES = 128
ZSET_MAX_LISTPACK_VALUE = 64
#: list-max-listpack-size -2: one listpack of at most 8 KiB.
LIST_MAX_LISTPACK_BYTES = 8192
#: Strings of at most this many bytes are "embstr" (OBJ_ENCODING_EMBSTR_SIZE_LIMIT).
EMBSTR_MAX_BYTES = 44

#: A list stays packed while it has at most this many elements and its blob this many bytes;
#: an unpacked list is packed again once it is half as small (hysteresis, so a list at the
#: limit does not convert on every push and pop).
PACKED_LIST_MAX_ITEMS = 128
PACKED_LIST_MAX_BYTES = 4096

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class HashTable(dict):  # type: ignore[type-arg]
    """A hash Redis would have converted to a hashtable (it never converts back)."""

    __slots__ = ()


class ListpackSet(set):  # type: ignore[type-arg]
    """A set that left intset encoding for listpack (Redis 7.2)."""

    __slots__ = ()


class HashSet(set):  # type: ignore[type-arg]
    """A set Redis would hold as a hashtable.

    ``pool`` makes SPOP and SRANDMEMBER O(1) on a large set, which Python's set cannot
    index: a list of the members, built on the first random pick, appended to by every
    add (``set_add``), and cleaned lazily: a pick that lands on a member no longer in
    the set drops it and picks again. It is rebuilt once stale entries outnumber live ones.
    """

    __slots__ = ("pool",)

    def __init__(self, members: Any = ()) -> None:
        super().__init__(members)
        self.pool: list[bytes] | None = None


class WireError(ValueError):
    """A wire-form value that does not validate."""


def string2ll(data: bytes) -> int | None:
    """The integer ``data`` spells in Redis's strict form (string2ll), or None."""
    if not 0 < len(data) < 21:
        return None
    first = data[0]
    if not (48 <= first <= 57 or first == 45):  # a digit or '-': the common non-number fails here
        return None
    try:
        value = int(data)
    except ValueError:
        return None
    if b"%d" % value != data or not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


# -- packed lists ------------------------------------------------------------------

_packer = msgpack.Packer(use_bin_type=True)


def pack_list(items: Any) -> bytes:
    return _packer.pack(items if type(items) is list else list(items))


def unpack_list(blob: bytes) -> list[bytes]:
    return msgpack.unpackb(blob, raw=False)


def packed_len(blob: bytes) -> int:
    """Element count of a packed list, from the msgpack array header (O(1))."""
    head = blob[0]
    if head & 0xF0 == 0x90:
        return head & 0x0F
    if head == 0xDC:
        return int.from_bytes(blob[1:3], "big")
    return int.from_bytes(blob[1:5], "big")


def open_list(value: bytes | deque[bytes]) -> deque[bytes]:
    """A deque to change: a new one for a packed list, the live one otherwise."""
    return deque(unpack_list(value)) if type(value) is bytes else value  # type: ignore[arg-type]


def close_list(items: deque[bytes], was_packed: bool) -> bytes | deque[bytes]:
    """The value to store for ``items`` after a change (packed when small enough)."""
    n = len(items)
    if was_packed:
        if n <= PACKED_LIST_MAX_ITEMS:
            blob = pack_list(items)
            if len(blob) <= PACKED_LIST_MAX_BYTES:
                return blob
        return items
    if n <= PACKED_LIST_MAX_ITEMS // 2:
        blob = pack_list(items)
        if len(blob) <= PACKED_LIST_MAX_BYTES // 2:
            return blob
    return items


def list_items(value: bytes | deque[bytes]) -> list[bytes] | deque[bytes]:
    """The elements of a list value for reading (a fresh list for a packed one)."""
    return unpack_list(value) if type(value) is bytes else value  # type: ignore[arg-type]


def list_value(items: list[bytes] | deque[bytes]) -> bytes | deque[bytes]:
    """The value to store for a list built from scratch."""
    if len(items) <= PACKED_LIST_MAX_ITEMS:
        blob = pack_list(items)
        if len(blob) <= PACKED_LIST_MAX_BYTES:
            return blob
    return items if type(items) is deque else deque(items)


# -- sizes and encodings -----------------------------------------------------------


def length(kind: int, value: Any) -> int:
    """Elements of a collection; bytes of a string or document (its stored form)."""
    if kind == LIST and type(value) is bytes:
        return packed_len(value)
    return len(value)


def _listpack_entry_bytes(element: bytes) -> int:
    """Bytes one element takes in a listpack (encoding, data and back-length)."""
    number = string2ll(element)
    if number is not None:
        if 0 <= number <= 127:
            size = 1
        elif -4096 <= number <= 4095:
            size = 2
        elif -(1 << 15) <= number < 1 << 15:
            size = 3
        elif -(1 << 23) <= number < 1 << 23:
            size = 4
        elif -(1 << 31) <= number < 1 << 31:
            size = 5
        else:
            size = 9
    else:
        n = len(element)
        size = n + (1 if n < 64 else 2 if n < 4096 else 5)
    return size + (1 if size <= 127 else 2 if size < 16383 else 3 if size < 2097151 else 4 if size < 268435455 else 5)


def list_fits_listpack(items: Any) -> bool:
    total = 7  # listpack header (6) and end byte
    for element in items:
        total += _listpack_entry_bytes(element)
        if total > LIST_MAX_LISTPACK_BYTES:
            return False
    return True


def string_encoding(data: bytes) -> str:
    if len(data) <= 20 and string2ll(data) is not None:
        return "int"
    return "embstr" if len(data) <= EMBSTR_MAX_BYTES else "raw"


def object_encoding(kind: int, value: Any) -> str:
    """What Redis 7.2's OBJECT ENCODING would say (see the module docstring)."""
    if kind == RAW:
        return string_encoding(value)
    if kind == HASH:
        return "hashtable" if type(value) is HashTable else "listpack"
    if kind == LIST:
        return "listpack" if type(value) is bytes or list_fits_listpack(value) else "quicklist"
    if kind == SET:
        kind_of = type(value)
        return "hashtable" if kind_of is HashSet else "listpack" if kind_of is ListpackSet else "intset"
    if kind == ZSET:
        return "skiplist" if value.skiplist else "listpack"
    return "raw"  # a document: a module type, as RedisJSON's keys report


# -- encoding upkeep (called by the command families as collections grow) ------------


def hash_after_args(value: dict[bytes, bytes], args: list[bytes], pairs: int) -> dict[bytes, bytes]:
    """Redis's hashTypeTryConversion before an HSET of ``pairs`` pairs from ``args``."""
    if type(value) is HashTable:
        return value
    if pairs > HASH_MAX_LISTPACK_ENTRIES or any(len(a) > HASH_MAX_LISTPACK_VALUE for a in args):
        return HashTable(value)
    return value


def hash_after_growth(value: dict[bytes, bytes]) -> dict[bytes, bytes]:
    if type(value) is not HashTable and len(value) > HASH_MAX_LISTPACK_ENTRIES:
        return HashTable(value)
    return value


def new_set(first: bytes, size_hint: int) -> set[bytes]:
    """An empty set in the encoding Redis's setTypeCreate picks for ``first`` and the hint."""
    if string2ll(first) is not None and size_hint <= SET_MAX_INTSET_ENTRIES:
        return set()
    if size_hint <= SET_MAX_LISTPACK_ENTRIES:
        return ListpackSet()
    return HashSet()


def set_before_adds(value: set[bytes], size_hint: int) -> set[bytes]:
    """setTypeMaybeConvert: a bulk add that will pass a limit converts first."""
    kind_of = type(value)
    if (kind_of is ListpackSet and size_hint > SET_MAX_LISTPACK_ENTRIES) or (
            kind_of is set and size_hint > SET_MAX_INTSET_ENTRIES):
        return HashSet(value)
    return value


def set_add(value: set[bytes], member: bytes) -> tuple[set[bytes], bool]:
    """Add ``member`` with Redis 7.2's encoding conversions; (the set, possibly converted; added?)."""
    if member in value:
        return value, False
    kind_of = type(value)
    if kind_of is HashSet:
        value.add(member)
        pool = value.pool  # type: ignore[attr-defined]
        if pool is not None:
            pool.append(member)
        return value, True
    if kind_of is ListpackSet:
        if len(value) < SET_MAX_LISTPACK_ENTRIES and len(member) <= SET_MAX_LISTPACK_VALUE:
            value.add(member)
            return value, True
        value = HashSet(value)
        value.add(member)
        return value, True
    # intset
    if string2ll(member) is not None:
        value.add(member)
        if len(value) > SET_MAX_INTSET_ENTRIES:
            value = HashSet(value)
        return value, True
    longest = max((len(m) for m in value), default=0)
    if len(value) < SET_MAX_LISTPACK_ENTRIES and len(member) <= SET_MAX_LISTPACK_VALUE and longest <= SET_MAX_LISTPACK_VALUE:
        value = ListpackSet(value)
    else:
        value = HashSet(value)
    value.add(member)
    return value, True


def set_from_members(members: Any) -> set[bytes]:
    """A set built by a *STORE command, encoded as Redis builds it (adds one by one)."""
    out: set[bytes] = set()
    for member in members:
        out, _ = set_add(out, member)
    return out


def zset_note_member(zs: ZSet, member: bytes) -> None:
    """zsetAdd's conversion: past 128 members or a member longer than 64 bytes, a skiplist."""
    if not zs.skiplist and (len(member) > ZSET_MAX_LISTPACK_VALUE or len(zs) > ZSET_MAX_LISTPACK_ENTRIES):
        zs.skiplist = True


def zset_fit_encoding(zs: ZSet) -> None:
    """zsetConvertToListpackIfNeeded, for a sorted set a *STORE command built."""
    if zs.skiplist and len(zs) <= ZSET_MAX_LISTPACK_ENTRIES and all(
            len(m) <= ZSET_MAX_LISTPACK_VALUE for m in zs.scores):
        zs.skiplist = False
        for member, score in list(zs.scores.items()):
            if score == 0 and math.copysign(1.0, score) < 0:  # -0 becomes 0 in a listpack (zzlInsertAt)
                zs.scores[member] = 0.0  # (the order key is the same for both zeros)


# -- copies, wire form, JSON view ----------------------------------------------------


def copy_value(kind: int, value: Any) -> Any:
    """An independent copy (COPY), keeping the encoding Redis would keep."""
    if kind in (RAW, DOC):
        return value
    if kind == LIST:
        return value if type(value) is bytes else deque(value)
    if kind == ZSET:
        return value.copy()
    return type(value)(value)  # a HashSet copy starts without a pool


def to_wire(kind: int, value: Any) -> Any:
    """The value's wire form (see the module docstring); immutable or a fresh copy."""
    if kind in (RAW, DOC):
        return value
    if kind == HASH:
        return list(chain.from_iterable(value.items()))
    if kind == LIST:
        return unpack_list(value) if type(value) is bytes else list(value)
    if kind == SET:
        return list(value)
    if kind == ZSET:
        return value.flat()
    raise WireError(f"unknown kind {kind!r}")


def _bytes_list(obj: Any, what: str) -> list[bytes]:
    if type(obj) is not list or any(type(x) is not bytes for x in obj):
        raise WireError(f"{what}: expected a list of byte strings")
    return obj


def from_wire(kind: int, obj: Any, version: int = WIRE_VERSION) -> Any:
    """Validate a wire form and build the value; WireError when it is malformed or empty."""
    if version != WIRE_VERSION:
        raise WireError(f"unsupported value wire version {version}")
    if kind in (RAW, DOC):
        if type(obj) is not bytes:
            raise WireError("string: expected bytes")
        if kind == DOC:
            try:
                unpack(obj)
            except Exception as exc:
                raise WireError(f"document: not msgpack ({exc})") from None
        return obj
    if kind == HASH:
        flat = _bytes_list(obj, "hash")
        if not flat or len(flat) % 2:
            raise WireError("hash: expected a non-empty even number of strings")
        value: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2]))
        if len(value) * 2 != len(flat):
            raise WireError("hash: duplicate field")
        if len(value) > HASH_MAX_LISTPACK_ENTRIES or any(len(x) > HASH_MAX_LISTPACK_VALUE for x in flat):
            value = HashTable(value)
        return value
    if kind == LIST:
        items = _bytes_list(obj, "list")
        if not items:
            raise WireError("list: empty")
        return list_value(items)
    if kind == SET:
        members = _bytes_list(obj, "set")
        if not members:
            raise WireError("set: empty")
        built = set_from_members(members)
        if len(built) != len(members):
            raise WireError("set: duplicate member")
        return built
    if kind == ZSET:
        if type(obj) is not list or not obj or len(obj) % 2:
            raise WireError("zset: expected a non-empty list of member, score pairs")
        zs = ZSet()
        for member, score in zip(obj[::2], obj[1::2]):
            if type(member) is not bytes or type(score) is not float or math.isnan(score):
                raise WireError("zset: members are byte strings, scores non-NaN floats")
            if member in zs.scores:
                raise WireError("zset: duplicate member")
            zs.add(member, score)
            zset_note_member(zs, member)
        return zs
    raise WireError(f"unknown kind {kind!r}")


def _text(data: bytes) -> str:
    return data.decode("utf-8")


def json_view(kind: int, value: Any) -> tuple[str, Any]:
    """(name, JSON value) for the ``__vfs__`` payload: ``("value", ...)`` when every string is
    UTF-8, else ``("value_base64", ...)`` holding the base64 of the msgpack wire form."""
    try:
        if kind == HASH:
            return "value", {_text(f): _text(v) for f, v in value.items()}
        if kind == LIST:
            return "value", [_text(x) for x in list_items(value)]
        if kind == SET:
            return "value", sorted(_text(x) for x in value)
        if kind == ZSET:
            return "value", [[_text(m), s if math.isfinite(s) else str(s)] for m, s in value.items()]
    except UnicodeDecodeError:
        return "value_base64", base64.b64encode(_packer.pack(to_wire(kind, value))).decode()
    raise ValueError(f"no JSON view for kind {kind!r}")
