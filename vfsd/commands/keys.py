"""Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, conditional deletes,
RENAME, COPY, OBJECT, DUMP/RESTORE, and MOVE/SWAPDB as a single-database server answers them.

DUMP's payload is vfsd's own (Redis's is an RDB fragment): ``msgpack [kind,
wire form] | u16 WIRE_VERSION | u64 checksum``, little-endian like Redis's
trailer, the checksum being the first 8 bytes of BLAKE2b over everything
before it. RESTORE of anything else — a Redis payload, a truncated or altered
one — gets Redis's "DUMP payload version or checksum are wrong"; a payload
whose checksum holds but whose value does not validate gets "Bad data format".
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import msgpack

from vfsd.codec import RAW
from vfsd.commands.context import Ctx
from vfsd.commands.errors import INT64_MAX, SYNTAX, WRONGTYPE, invalid_expire, parse_int
from vfsd.commands.strings import _MAX_MS
from vfsd.commands.table import command, container, parses
from vfsd.resp.types import OK, ErrorReply, SimpleString
from vfsd.store.keyspace import KIND, MTIME, VALUE, Entry
from vfsd.store.values import TYPE_NAMES, WIRE_VERSION, WireError, copy_value, from_wire, object_encoding, to_wire

SAME_OBJECT = ErrorReply("ERR source and destination objects are the same")
NO_SUCH_KEY = ErrorReply("ERR no such key")
DB_OUT_OF_RANGE = ErrorReply("ERR DB index is out of range")
BUSYKEY = ErrorReply("BUSYKEY Target key name already exists.")
BAD_PAYLOAD = ErrorReply("ERR DUMP payload version or checksum are wrong")
BAD_DATA = ErrorReply("ERR Bad data format")

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def type_name(entry: Entry | None) -> str:
    return "none" if entry is None else TYPE_NAMES[entry[KIND]]


def parse_db_index(arg: bytes, error: ErrorReply | None = None) -> int:
    """getIntFromObjectOrReply: a 32-bit integer."""
    value = parse_int(arg, error) if error is not None else parse_int(arg)
    if not INT32_MIN <= value <= INT32_MAX:
        raise error or ErrorReply("ERR value is out of range")
    return value


def _delete(ctx: Ctx, argv: list[bytes]) -> int:
    removed = 0
    for key in argv[1:]:
        if ctx.lookup(key) is not None:
            ctx.notify("g", "del", key, ctx.remove(key))
            removed += 1
    return removed


@command("del", arity=-2, flags="write", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Deletes one or more keys.", complexity="O(N)", arguments="key [key ...]")
def del_(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete(ctx, argv)


@command("unlink", arity=-2, flags="write fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Asynchronously deletes one or more keys.", complexity="O(N)", arguments="key [key ...]", since="4.0.0")
def unlink(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete(ctx, argv)


@command("exists", arity=-2, flags="readonly fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Determines whether one or more keys exist.", complexity="O(N)", arguments="key [key ...]")
def exists(ctx: Ctx, argv: list[bytes]) -> int:
    return sum(1 for key in argv[1:] if ctx.lookup(key) is not None)


@command("touch", arity=-2, flags="readonly fast", keys=(1, -1, 1), acl="@keyspace", group="generic",
         summary="Returns the number of existing keys out of those specified after updating the time they were last accessed.",
         complexity="O(N)", arguments="key [key ...]", since="3.2.1")
def touch(ctx: Ctx, argv: list[bytes]) -> int:
    return exists(ctx, argv)


@command("type", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Determines the type of value stored at a key.", arguments="key")
def type_(ctx: Ctx, argv: list[bytes]) -> SimpleString:
    return SimpleString(type_name(ctx.lookup(argv[1])))


def _expire(ctx: Ctx, argv: list[bytes], unit_ms: int, absolute: bool) -> int:
    key = argv[1]
    name = argv[0].decode().lower()
    flags = {a.upper() for a in argv[3:]}  # options first, as Redis parses them
    for flag in flags:
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            raise ErrorReply(f"ERR Unsupported option {flag.decode(errors='replace')}")
    if b"NX" in flags and len(flags) > 1:
        raise ErrorReply("ERR NX and XX, GT or LT options at the same time are not compatible")
    if b"GT" in flags and b"LT" in flags:
        raise ErrorReply("ERR GT and LT options at the same time are not compatible")
    amount = parse_int(argv[2])
    # Redis's checks: the amount must fit in ms, and so must the sum with the base time.
    if amount > _MAX_MS // unit_ms or amount < -(_MAX_MS // unit_ms):
        raise invalid_expire(name)
    at_ms = amount * unit_ms + (0 if absolute else ctx.now_ms)
    if at_ms > _MAX_MS:
        raise invalid_expire(name)
    entry = ctx.lookup(key)
    if entry is None:
        return 0
    current = ctx.db.expire_at(key)
    if b"NX" in flags and current is not None:
        return 0
    if b"XX" in flags and current is None:
        return 0
    # Redis: a key with no TTL counts as an infinite TTL for GT and LT.
    if b"GT" in flags and (current is None or at_ms <= current):
        return 0
    if b"LT" in flags and current is not None and at_ms >= current:
        return 0
    if at_ms <= ctx.now_ms:
        ctx.notify("g", "del", key, ctx.remove(key))
        return 1
    entry = ctx.write(key, entry[VALUE], entry[KIND], old=entry, keep_ttl=True)  # a TTL change is a change
    ctx.db.set_expire(key, at_ms)
    ctx.notify("g", "expire", key, entry)
    return 1


_EXPIRE_ARGS = "key {} [NX|XX|GT|LT]"


@command("expire", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key in seconds.", arguments=_EXPIRE_ARGS.format("seconds"))
def expire(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1000, absolute=False)


@command("pexpire", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key in milliseconds.", arguments=_EXPIRE_ARGS.format("milliseconds"), since="2.6.0")
def pexpire(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1, absolute=False)


@command("expireat", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key to a Unix timestamp.", arguments=_EXPIRE_ARGS.format("unix-time-seconds"), since="1.2.0")
def expireat(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1000, absolute=True)


@command("pexpireat", arity=-3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Sets the expiration time of a key to a Unix milliseconds timestamp.",
         arguments=_EXPIRE_ARGS.format("unix-time-milliseconds"), since="2.6.0")
def pexpireat(ctx: Ctx, argv: list[bytes]) -> int:
    return _expire(ctx, argv, 1, absolute=True)


def _ttl(ctx: Ctx, key: bytes, divisor: int) -> int:
    if ctx.lookup(key) is None:
        return -2
    remaining = ctx.ttl_ms(key)
    if remaining is None:
        return -1
    return (remaining + divisor // 2) // divisor if divisor > 1 else remaining


@command("ttl", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time in seconds of a key.", arguments="key")
def ttl(ctx: Ctx, argv: list[bytes]) -> int:
    return _ttl(ctx, argv[1], 1000)


@command("pttl", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time in milliseconds of a key.", arguments="key", since="2.6.0")
def pttl(ctx: Ctx, argv: list[bytes]) -> int:
    return _ttl(ctx, argv[1], 1)


def _expiretime(ctx: Ctx, key: bytes, divisor: int) -> int:
    if ctx.lookup(key) is None:
        return -2
    at = ctx.db.expire_at(key)
    return -1 if at is None else at // divisor


@command("expiretime", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time of a key as a Unix timestamp.", arguments="key", since="7.0.0")
def expiretime(ctx: Ctx, argv: list[bytes]) -> int:
    return _expiretime(ctx, argv[1], 1000)


@command("pexpiretime", arity=2, flags="readonly fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Returns the expiration time of a key as a Unix milliseconds timestamp.", arguments="key", since="7.0.0")
def pexpiretime(ctx: Ctx, argv: list[bytes]) -> int:
    return _expiretime(ctx, argv[1], 1)


@command("persist", arity=2, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Removes the expiration time of a key.", arguments="key", since="2.2.0")
def persist(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    entry = ctx.lookup(key)
    if entry is None or ctx.db.expire_at(key) is None:
        return 0
    entry = ctx.write(key, entry[VALUE], entry[KIND], old=entry)  # a new revision, and no TTL
    ctx.notify("g", "persist", key, entry)
    return 1


def _delete_if(ctx: Ctx, key: bytes, mode: bytes, value: bytes) -> int:
    entry = ctx.lookup(key)
    if entry is None:
        return 0
    if entry[KIND] != RAW:
        raise WRONGTYPE
    matches = entry[VALUE] == value
    if matches != (mode == b"IFEQ"):
        return 0
    ctx.notify("g", "del", key, ctx.remove(key))
    return 1


@command("delifeq", arity=3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Deletes a key only if its value equals the given value (releases a lock held with that token).",
         arguments="key value", since="7.2.0")
def delifeq(ctx: Ctx, argv: list[bytes]) -> int:
    return _delete_if(ctx, argv[1], b"IFEQ", argv[2])


@command("delex", arity=-2, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         summary="Conditionally removes the specified key based on value comparison.",
         arguments="key [IFEQ match-value|IFNE match-value]", since="8.4.0")
def delex(ctx: Ctx, argv: list[bytes]) -> int:
    if len(argv) == 2:
        return _delete(ctx, argv)
    if len(argv) != 4:
        raise SYNTAX
    mode = argv[2].upper()
    if mode not in (b"IFEQ", b"IFNE"):
        raise ErrorReply(f"ERR DELEX: unsupported condition '{argv[2].decode(errors='replace')}' (IFEQ or IFNE)")
    return _delete_if(ctx, argv[1], mode, argv[3])


# -- RENAME, COPY, MOVE, SWAPDB ----------------------------------------------------------


def _rename(ctx: Ctx, argv: list[bytes], nx: bool) -> Any:
    source, destination = argv[1], argv[2]
    entry = ctx.lookup(source)
    if entry is None:
        raise NO_SUCH_KEY
    if source == destination:
        return 0 if nx else OK
    if ctx.lookup(destination) is not None:
        if nx:
            return 0
        ctx.remove(destination)
    deadline = ctx.db.expire_at(source)
    ctx.remove(source)
    moved = ctx.write(destination, ctx.mutable(source, entry), entry[KIND], old=entry)  # keeps its ctime
    if deadline is not None:
        ctx.db.set_expire(destination, deadline)
    ctx.notify("g", "rename_from", source)
    ctx.notify("g", "rename_to", destination, moved)
    return 1 if nx else OK


@command("rename", arity=3, flags="write", keys=(1, 2, 1), acl="@keyspace", group="generic",
         summary="Renames a key and overwrites the destination.", arguments="key newkey")
def rename(ctx: Ctx, argv: list[bytes]) -> Any:
    return _rename(ctx, argv, False)


@command("renamenx", arity=3, flags="write fast", keys=(1, 2, 1), acl="@keyspace", group="generic",
         summary="Renames a key only when the target key name doesn't exist.", arguments="key newkey")
def renamenx(ctx: Ctx, argv: list[bytes]) -> Any:
    return _rename(ctx, argv, True)


def _copy_args(argv: list[bytes]) -> bool:
    replace = False
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"replace":
            replace = True
        elif opt == b"db" and j + 1 < len(argv):
            if parse_db_index(argv[j + 1]) != 0:
                raise DB_OUT_OF_RANGE
            j += 1
        else:
            raise SYNTAX
        j += 1
    if argv[1] == argv[2]:
        raise SAME_OBJECT
    return replace


@command("copy", arity=-3, flags="write denyoom", keys=(1, 2, 1), acl="@keyspace", group="generic", since="6.2.0",
         check=parses(_copy_args),
         summary="Copies the value of a key to a new key.", complexity="O(N)",
         arguments="source destination [DB destination-db] [REPLACE]")
def copy(ctx: Ctx, argv: list[bytes]) -> int:
    replace = _copy_args(argv)
    source, destination = argv[1], argv[2]
    entry = ctx.lookup(source)
    if entry is None:
        return 0
    old = ctx.lookup(destination)
    if old is not None:
        if not replace:
            return 0
        ctx.remove(destination)
    deadline = ctx.db.expire_at(source)
    copied = ctx.write(destination, copy_value(entry[KIND], entry[VALUE]), entry[KIND])
    if deadline is not None:
        ctx.db.set_expire(destination, deadline)
    ctx.notify("g", "copy_to", destination, copied)
    return 1


def _move_args(argv: list[bytes]) -> None:
    if parse_db_index(argv[2]) != 0:
        raise DB_OUT_OF_RANGE
    raise SAME_OBJECT  # database 0 is the only one, and the key is in it


@command("move", arity=3, flags="write fast", keys=(1, 1, 1), acl="@keyspace", group="generic",
         check=parses(_move_args),
         summary="Moves a key to another database (vfsd has one).", arguments="key db")
def move(ctx: Ctx, argv: list[bytes]) -> int:
    _move_args(argv)
    return 0  # unreachable: _move_args always raises


@command("swapdb", arity=3, flags="write fast", acl="@keyspace @dangerous", group="server", scope="node",
         since="4.0.0", summary="Swaps two Redis databases (vfsd has one: only 0 with 0).", arguments="index1 index2")
def swapdb(client: Any, argv: list[bytes]) -> Any:
    first = parse_db_index(argv[1], ErrorReply("ERR invalid first DB index"))
    second = parse_db_index(argv[2], ErrorReply("ERR invalid second DB index"))
    if first != 0 or second != 0:
        raise DB_OUT_OF_RANGE
    return OK


@command("randomkey", arity=1, flags="readonly", acl="@keyspace", group="generic", scope="node",
         summary="Returns a random key name from the database.")
def randomkey(client: Any, argv: list[bytes]) -> bytes | None:
    node = client.node
    db = node.keyspace
    keys = db.keys
    now = node.now_ms()
    rng = node.random
    for _ in range(100):  # Redis gives up on an all-expired sample the same way
        if not keys:
            return None
        key = keys[rng.randrange(len(keys))]
        if not db.is_expired(key, now):
            return key
    return None


# -- OBJECT ------------------------------------------------------------------------------

container("object", group="generic", summary="A container for object introspection commands.", acl="@keyspace",
          since="2.2.3")

OBJECT_HELP = [
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
]

#: OBJ_SHARED_REFCOUNT: what Redis reports for its shared integers 0..9999.
SHARED_REFCOUNT = INT32_MAX


@command("help", arity=2, flags="loading stale", acl="@keyspace", group="generic", scope="node", parent="object",
         summary="Returns helpful text about the different subcommands.", since="6.2.0")
def object_help(client: Any, argv: list[bytes]) -> list[SimpleString]:
    return [SimpleString(line) for line in OBJECT_HELP]


@command("encoding", arity=3, flags="readonly", keys=(2, 2, 1), acl="@keyspace", group="generic", parent="object",
         summary="Returns the internal encoding of a Redis object.", since="2.2.3", arguments="key")
def object_encoding_(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    entry = ctx.lookup(argv[2])
    return None if entry is None else object_encoding(entry[KIND], entry[VALUE]).encode()


@command("freq", arity=3, flags="readonly", keys=(2, 2, 1), acl="@keyspace", group="generic", parent="object",
         summary="Returns the logarithmic access frequency counter of a Redis object.", since="4.0.0", arguments="key")
def object_freq(ctx: Ctx, argv: list[bytes]) -> Any:
    if ctx.lookup(argv[2]) is None:
        return None
    raise ErrorReply("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that "
                     "when switching between policies at runtime LRU and LFU data will take some time to adjust.")


@command("idletime", arity=3, flags="readonly", keys=(2, 2, 1), acl="@keyspace", group="generic", parent="object",
         summary="Returns the time since the last modification of a Redis object (vfsd does not track reads).",
         since="2.2.3", arguments="key")
def object_idletime(ctx: Ctx, argv: list[bytes]) -> int | None:
    entry = ctx.lookup(argv[2])
    return None if entry is None else max(0, ctx.now_ms - entry[MTIME]) // 1000


@command("refcount", arity=3, flags="readonly", keys=(2, 2, 1), acl="@keyspace", group="generic", parent="object",
         summary="Returns the reference count of a value of a key.", since="2.2.3", arguments="key")
def object_refcount(ctx: Ctx, argv: list[bytes]) -> int | None:
    entry = ctx.lookup(argv[2])
    if entry is None:
        return None
    value = entry[VALUE]
    if entry[KIND] == RAW and object_encoding(RAW, value) == "int" and 0 <= int(value) < 10000:
        return SHARED_REFCOUNT
    return 1


# -- DUMP, RESTORE -----------------------------------------------------------------------

_TRAILER = struct.Struct("<HQ")  # wire version, checksum


def _checksum(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def dump_payload(kind: int, value: Any) -> bytes:
    body = msgpack.packb([kind, to_wire(kind, value)], use_bin_type=True) + struct.pack("<H", WIRE_VERSION)
    return body + struct.pack("<Q", _checksum(body))


def load_payload(payload: bytes) -> tuple[int, Any]:
    """(kind, value) of a DUMP payload; BAD_PAYLOAD or BAD_DATA as RESTORE answers."""
    if len(payload) < _TRAILER.size:
        raise BAD_PAYLOAD
    version, checksum = _TRAILER.unpack_from(payload, len(payload) - _TRAILER.size)
    if version != WIRE_VERSION or _checksum(payload[:-8]) != checksum:
        raise BAD_PAYLOAD
    try:
        kind, wire = msgpack.unpackb(payload[: -_TRAILER.size], raw=False)
        return kind, from_wire(kind, wire, version)
    except (WireError, ValueError, TypeError, msgpack.UnpackException):
        raise BAD_DATA from None


@command("dump", arity=2, flags="readonly", keys=(1, 1, 1), acl="@keyspace", group="generic", since="2.6.0",
         summary="Returns a serialized representation of the value stored at a key.", complexity="O(N)",
         arguments="key")
def dump(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    entry = ctx.lookup(argv[1])
    return None if entry is None else dump_payload(entry[KIND], entry[VALUE])


def _restore_options(argv: list[bytes]) -> tuple[bool, bool]:
    replace = absolute = False
    idle = freq = False
    j = 4
    while j < len(argv):
        opt = argv[j].lower()
        more = len(argv) - j - 1
        if opt == b"replace":
            replace = True
        elif opt == b"absttl":
            absolute = True
        elif opt == b"idletime" and more >= 1 and not freq:
            if parse_int(argv[j + 1]) < 0:
                raise ErrorReply("ERR Invalid IDLETIME value, must be >= 0")
            idle = True
            j += 1
        elif opt == b"freq" and more >= 1 and not idle:
            if not 0 <= parse_int(argv[j + 1]) <= 255:
                raise ErrorReply("ERR Invalid FREQ value, must be >= 0 and <= 255")
            freq = True
            j += 1
        else:
            raise SYNTAX
        j += 1
    return replace, absolute


def _restore_ttl(arg: bytes) -> int:
    ttl = parse_int(arg)
    if ttl < 0:
        raise ErrorReply("ERR Invalid TTL value, must be >= 0")
    return ttl


def _check_restore(argv: list[bytes], settings: Any) -> None:
    replace, _ = _restore_options(argv)
    if replace:  # without REPLACE, BUSYKEY (which needs the keyspace) comes before the rest
        _restore_ttl(argv[2])
        load_payload(argv[3])


@command("restore", arity=-4, flags="write denyoom", keys=(1, 1, 1), acl="@keyspace @dangerous", group="generic",
         since="2.6.0", check=_check_restore, summary="Creates a key from the serialized representation of a value.",
         complexity="O(N)", arguments="key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]")
def restore(ctx: Ctx, argv: list[bytes]) -> Any:
    replace, absolute = _restore_options(argv)
    key = argv[1]
    if not replace and ctx.lookup(key) is not None:
        raise BUSYKEY
    ttl = _restore_ttl(argv[2])
    kind, value = load_payload(argv[3])
    deleted = replace and ctx.lookup(key) is not None
    if deleted:
        ctx.remove(key)
    if ttl and not absolute:
        if ttl > INT64_MAX - ctx.now_ms:
            raise invalid_expire("restore")
        ttl += ctx.now_ms
    if ttl and ttl <= ctx.now_ms:
        if deleted:
            ctx.notify("g", "del", key)
        return OK
    entry = ctx.write(key, value, kind)
    if ttl:
        ctx.db.set_expire(key, ttl)
    ctx.notify("g", "restore", key, entry)
    return OK

