"""The compat scenarios as data, so every client runs the same steps.

A ``Step`` is one command and the reply a client library hands back for it
with no reply post-processing (redis-py with its response callbacks cleared and
``decode_responses=True``): ``"OK"`` for a status, an ``int``, a ``str``,
``None`` for a nil, a ``list``, or an ``Err`` carrying the full error text. The
same reply also fixes what ``redis-cli`` prints (``render_raw``).

Keys are written with ``{k}`` for the scenario's key on one plane: a local key,
an active-plane path (``/run``) and a desired-plane path (``/ctx``) run the
same steps, because a Redis client must not be able to tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Err:
    """An error reply; ``text`` is the whole line after '-' (``ERR ...``, ``WRONGTYPE ...``)."""

    text: str


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    reply: Any

    def bind(self, key: str) -> "Step":
        return Step(tuple(a.replace("{k}", key) for a in self.args), _bind(self.reply, key))


def _bind(reply: Any, key: str) -> Any:
    if isinstance(reply, str):
        return reply.replace("{k}", key)
    if isinstance(reply, list):
        return [_bind(r, key) for r in reply]
    return reply


def steps(table: list[tuple[str, Any]], key: str) -> list[Step]:
    """A table of ``("CMD arg ...", reply)`` rows with ``{k}`` bound to ``key`` (arguments hold no spaces)."""
    return [Step(tuple(line.split()), reply).bind(key) for line, reply in table]


#: One key per plane; each scenario derives its other keys by suffix (``{k}-a``).
PLANE_KEYS = {
    "local": "compat:str",
    "active": "/run/compat/str",
    "desired": "/ctx/compat/str",
}

#: An absolute deadline far enough ahead (2100-01-01) to read back exactly.
FAR_FUTURE_S = 4_102_444_800

NOT_INTEGER = Err("ERR value is not an integer or out of range")
WRONGTYPE = Err("WRONGTYPE Operation against a key holding the wrong kind of value")

#: Scenario (a): the string family, the expiry family and the generic key commands.
STRINGS: list[tuple[str, Any]] = [
    ("SET {k} v1", "OK"),
    ("GET {k}", "v1"),
    ("SET {k} v2 NX", None),
    ("GET {k}", "v1"),
    ("SET {k} v2 XX", "OK"),
    ("SET {k}-none v XX", None),
    ("EXISTS {k}-none", 0),
    ("SET {k}-nx v NX", "OK"),
    ("SET {k} v3 GET", "v2"),
    ("SET {k}-new v GET", None),
    ("GET {k}", "v3"),
    # Relative TTLs (EX, PX, EXPIRE) read back as TTL depend on how long the round trips took, so the
    # table checks that they were set (PERSIST answers 1) and reads exact values only for absolute
    # deadlines (EXAT, PEXPIREAT -> EXPIRETIME); the client modules check TTL ranges through their APIs.
    ("SET {k} v4 EX 100", "OK"),
    ("PERSIST {k}", 1),
    ("SET {k} v5 PX 200000", "OK"),
    ("PERSIST {k}", 1),
    ("TTL {k}", -1),
    ("PERSIST {k}", 0),
    (f"SET {{k}} v5 EXAT {FAR_FUTURE_S}", "OK"),
    ("EXPIRETIME {k}", FAR_FUTURE_S),
    ("SET {k} v6 KEEPTTL", "OK"),
    ("PEXPIRETIME {k}", FAR_FUTURE_S * 1000),
    ("SET {k} v7", "OK"),
    ("TTL {k}", -1),
    ("EXPIRE {k} 50", 1),
    ("PERSIST {k}", 1),
    (f"PEXPIREAT {{k}} {FAR_FUTURE_S * 1000 + 123}", 1),
    ("PEXPIRETIME {k}", FAR_FUTURE_S * 1000 + 123),
    ("EXPIRE {k}-none 50", 0),
    ("TTL {k}-none", -2),
    ("EXPIRETIME {k}-none", -2),
    ("SET {k}-n 10", "OK"),
    ("INCR {k}-n", 11),
    ("INCRBY {k}-n 5", 16),
    ("DECR {k}-n", 15),
    ("DECRBY {k}-n 20", -5),
    ("INCR {k}-counter", 1),
    ("GET {k}-n", "-5"),
    ("INCR {k}", NOT_INTEGER),
    ("MSET {k}-a 1 {k}-b 2", "OK"),
    ("MGET {k}-a {k}-b {k}-none", ["1", "2", None]),
    ("APPEND {k}-a xyz", 4),
    ("APPEND {k}-fresh abc", 3),
    ("STRLEN {k}-a", 4),
    ("GET {k}-a", "1xyz"),
    ("STRLEN {k}-none", 0),
    ("EXISTS {k} {k}-a {k}-none", 2),
    ("TYPE {k}", "string"),
    ("TYPE {k}-none", "none"),
    ("DEL {k} {k}-a {k}-none", 2),
    ("EXISTS {k} {k}-a", 0),
    ("GET {k}", None),
    ("TTL {k}", -2),
]

#: Scenario (g): the collection types, bits and keyspace commands, one table per family. Every reply here
#: is the same in RESP2 and RESP3 (maps, sets and doubles are checked through the clients' own APIs).
HASHES: list[tuple[str, Any]] = [
    ("HSET {k}-h model H200 memory 141", 2),
    ("HSET {k}-h model H100", 0),
    ("HGET {k}-h model", "H100"),
    ("HMGET {k}-h model none memory", ["H100", None, "141"]),
    ("HSETNX {k}-h model X", 0),
    ("HSETNX {k}-h vendor nvidia", 1),
    ("HEXISTS {k}-h vendor", 1),
    ("HLEN {k}-h", 3),
    ("HSTRLEN {k}-h vendor", 6),
    ("HKEYS {k}-h", ["model", "memory", "vendor"]),
    ("HVALS {k}-h", ["H100", "141", "nvidia"]),
    ("HINCRBY {k}-h memory 2", 143),
    ("HINCRBYFLOAT {k}-h ratio 1.5", "1.5"),
    ("HINCRBYFLOAT {k}-h ratio 0.25", "1.75"),
    ("HINCRBY {k}-h model 1", Err("ERR hash value is not an integer")),
    ("HMSET {k}-h a 1 b 2", "OK"),
    ("HDEL {k}-h a b none", 2),
    ("HSCAN {k}-h 0 MATCH m*", ["0", ["model", "H100", "memory", "143"]]),
    ("HRANDFIELD {k}-none", None),
    ("HSET {k}-h odd", Err("ERR wrong number of arguments for 'hset' command")),
    ("GET {k}-h", WRONGTYPE),
    ("TYPE {k}-h", "hash"),
    ("HDEL {k}-h model memory vendor ratio", 4),
    ("EXISTS {k}-h", 0),
]

LISTS: list[tuple[str, Any]] = [
    ("RPUSH {k}-l a b c", 3),
    ("LPUSH {k}-l z", 4),
    ("LRANGE {k}-l 0 -1", ["z", "a", "b", "c"]),
    ("LINDEX {k}-l -1", "c"),
    ("LSET {k}-l 1 A", "OK"),
    ("LSET {k}-l 9 x", Err("ERR index out of range")),
    ("LINSERT {k}-l BEFORE b mid", 5),
    ("LPOS {k}-l b", 3),
    ("LREM {k}-l 0 mid", 1),
    ("LLEN {k}-l", 4),
    ("LMOVE {k}-l {k}-l2 LEFT RIGHT", "z"),
    ("RPOPLPUSH {k}-l {k}-l2", "c"),
    ("LRANGE {k}-l2 0 -1", ["c", "z"]),
    ("LMPOP 2 {k}-none {k}-l LEFT COUNT 5", ["{k}-l", ["A", "b"]]),
    ("EXISTS {k}-l", 0),
    ("LPOP {k}-l2 5", ["c", "z"]),
    ("LPOP {k}-l2", None),
    ("RPUSHX {k}-l2 x", 0),
    ("BLPOP {k}-none 0.01", None),
    ("LTRIM {k}-none 0 1", "OK"),
    ("LSET {k}-none 0 x", Err("ERR no such key")),
]

SETS: list[tuple[str, Any]] = [
    ("SADD {k}-s 3 1 2", 3),
    ("SADD {k}-s 2", 0),
    ("SCARD {k}-s", 3),
    ("SISMEMBER {k}-s 1", 1),
    ("SMISMEMBER {k}-s 1 9", [1, 0]),
    ("SADD {k}-t 2 3 4", 3),
    ("SINTERCARD 2 {k}-s {k}-t", 2),
    ("SINTERSTORE {k}-i {k}-s {k}-t", 2),
    ("SUNIONSTORE {k}-u {k}-s {k}-t", 4),
    ("SDIFFSTORE {k}-d {k}-s {k}-t", 1),
    ("SISMEMBER {k}-d 1", 1),
    ("SMOVE {k}-s {k}-d 3", 1),
    ("SREM {k}-s 1 2 9", 2),
    ("EXISTS {k}-s", 0),
    ("SCARD {k}-d", 2),
    ("DEL {k}-d {k}-t {k}-i {k}-u", 4),
    ("SPOP {k}-d", None),
    ("SRANDMEMBER {k}-none", None),
    ("SINTERCARD 0 {k}-s", Err("ERR numkeys should be greater than 0")),
]

ZSETS: list[tuple[str, Any]] = [
    ("ZADD {k}-z 1 a 2 b 3 c", 3),
    ("ZADD {k}-z XX CH 5 a 9 none", 1),
    ("ZADD {k}-z NX XX 1 a", Err("ERR XX and NX options at the same time are not compatible")),
    ("ZCARD {k}-z", 3),
    ("ZRANK {k}-z a", 2),
    ("ZREVRANK {k}-z a", 0),
    ("ZRANGE {k}-z 0 -1", ["b", "c", "a"]),
    ("ZRANGE {k}-z (2 +inf BYSCORE", ["c", "a"]),
    ("ZRANGE {k}-z +inf -inf BYSCORE REV LIMIT 0 2", ["a", "c"]),
    ("ZRANGEBYSCORE {k}-z -inf 3", ["b", "c"]),
    ("ZCOUNT {k}-z 2 5", 3),
    ("ZADD {k}-lex 0 alpha 0 beta 0 gamma", 3),
    ("ZRANGEBYLEX {k}-lex [b +", ["beta", "gamma"]),
    ("ZLEXCOUNT {k}-lex - (gamma", 2),
    ("ZREMRANGEBYLEX {k}-lex [alpha [beta", 2),
    ("ZRANGESTORE {k}-copy {k}-z 0 1", 2),
    ("ZUNIONSTORE {k}-u 2 {k}-z {k}-copy WEIGHTS 1 2", 3),
    ("ZINTERSTORE {k}-i 2 {k}-z {k}-copy AGGREGATE MAX", 2),
    ("ZDIFFSTORE {k}-d 2 {k}-z {k}-copy", 1),
    ("ZREM {k}-z a none", 1),
    ("ZREMRANGEBYRANK {k}-z 0 0", 1),
    ("ZREMRANGEBYSCORE {k}-z -inf +inf", 1),
    ("EXISTS {k}-z", 0),
    ("ZMPOP 1 {k}-none MIN", None),
    ("ZRANGE {k}-none 0 -1", []),
    ("ZRANGE {k}-u 0 1 LIMIT 0 1", Err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")),
]

BITS: list[tuple[str, Any]] = [
    ("SETBIT {k}-b 7 1", 0),
    ("SETBIT {k}-b 7 1", 1),
    ("GETBIT {k}-b 7", 1),
    ("GET {k}-b", "\x01"),
    ("BITCOUNT {k}-b", 1),
    ("BITPOS {k}-b 1", 7),
    ("SET {k}-x foobar", "OK"),
    ("BITCOUNT {k}-x 1 1", 6),
    ("BITCOUNT {k}-x 5 30 BIT", 17),
    ("BITOP AND {k}-and {k}-x {k}-b", 6),
    ("BITFIELD {k}-f INCRBY u8 0 200 INCRBY u8 0 100 OVERFLOW SAT INCRBY u8 8 300", [200, 44, 255]),
    ("BITFIELD_RO {k}-f GET u8 0 GET i8 8", [44, -1]),
    ("LCS {k}-x {k}-x LEN", 6),
    ("SUBSTR {k}-x 0 2", "foo"),
    ("SETBIT {k}-b -1 1", Err("ERR bit offset is not an integer or out of range")),
    ("SETBIT {k}-b 1 2", Err("ERR bit is not an integer or out of range")),
]

KEYSPACE: list[tuple[str, Any]] = [
    ("RPUSH {k}-src a b", 2),
    ("RENAME {k}-src {k}-dst", "OK"),
    ("RENAMENX {k}-dst {k}-dst", 0),
    ("RENAME {k}-none {k}-x", Err("ERR no such key")),
    ("COPY {k}-dst {k}-copy", 1),
    ("COPY {k}-dst {k}-copy", 0),
    ("COPY {k}-dst {k}-copy REPLACE", 1),
    ("LRANGE {k}-copy 0 -1", ["a", "b"]),
    ("OBJECT ENCODING {k}-copy", "listpack"),
    ("OBJECT ENCODING {k}-none", None),
    ("TOUCH {k}-dst {k}-copy {k}-none", 2),
    ("SORT {k}-dst DESC ALPHA", ["b", "a"]),
    ("SORT {k}-dst ALPHA STORE {k}-sorted", 2),
    ("SORT_RO {k}-sorted ALPHA LIMIT 1 1", ["b"]),
    ("MOVE {k}-dst 1", Err("ERR DB index is out of range")),
    ("MOVE {k}-dst 0", Err("ERR source and destination objects are the same")),
    ("SWAPDB 0 0", "OK"),
    ("RESTORE {k}-r 0 bogus", Err("ERR DUMP payload version or checksum are wrong")),
    ("DEL {k}-dst {k}-copy {k}-sorted", 3),
]

FAMILIES = {"hashes": HASHES, "lists": LISTS, "sets": SETS, "zsets": ZSETS, "bits": BITS, "keyspace": KEYSPACE}

#: Scenario (f): errors, with Redis's exact texts (vfsd adds its own for bad paths).
ERRORS: list[tuple[tuple[str, ...], Err]] = [
    (("GET",), Err("ERR wrong number of arguments for 'get' command")),
    (("SET", "x"), Err("ERR wrong number of arguments for 'set' command")),
    (("NOSUCHCMD", "a", "b"), Err("ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ")),
    (("SET", "/ctx//x", "1"), Err("ERR invalid path '/ctx//x': empty segment")),
    (("GET", "/ctx/x/"), Err("ERR invalid path '/ctx/x/': trailing slash (directories are implicit)")),
    (("SET", "/ctx/../x", "1"), Err("ERR invalid path '/ctx/../x': '.' and '..' segments are not allowed")),
    (("SET", "/nope/x", "1"),
     Err("ERR no plane for root '/nope' in path '/nope/x' (roots: /ctx /hw /itg /lk /mid /run /sum /sys /ztb)")),
    (("SET", "k", "v", "EX", "0"), Err("ERR invalid expire time in 'set' command")),
    (("SET", "k", "v", "NX", "XX"), Err("ERR syntax error")),
]

#: The prefix of the error a command whose keys span planes gets (the rest names the keys).
SPANS_PLANES = "spans planes"


def render_raw(reply: Any) -> str:
    """What ``redis-cli`` prints for ``reply`` when its output is not a terminal (``--raw``, the default then)."""
    if isinstance(reply, Err):
        return reply.text + "\n\n"  # redis-cli --raw follows an error with an empty line
    if reply is None:
        return "\n"
    if isinstance(reply, list):
        # an empty array prints as an empty line, as any reply whose text is empty
        return "".join(render_raw(item) if item is not None else "\n" for item in reply) if reply else "\n"
    return f"{reply}\n"
