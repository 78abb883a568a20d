"""Differential testing: the same seeded random command sequences against redis-server and vfsd.

Theory of operation
-------------------
``Sequence(seed)`` draws 30-odd commands from ``COMMANDS`` (every data-type and
keyspace command this suite covers, with valid and invalid arguments) over a
handful of keys of one plane: local keys, ``/run`` paths (active plane) or
``/ctx`` paths (desired plane, through the log). redis-server has no planes:
there the paths are plain keys. Keys hold every type over a sequence, so
WRONGTYPE paths are exercised as often as the happy ones.

``Harness`` sends each command to both servers over raw sockets (RESP2, or
RESP3 after ``HELLO 3`` for some sequences) and requires **byte-identical
replies**, except where ``COMPARE`` names a documented difference (the one
place they are listed; compat/DIFFERENCES.md explains each). It also
subscribes to every keyspace notification on both servers and requires the
same events, in the same order, after every sequence.

Connection and introspection. Each sequence's connection also runs with
CLIENT TRACKING on (some sequences: default, OPTIN, OPTOUT, NOLOOP or BCAST
modes; on the desired plane BCAST only), and the invalidation pushes it gets
(set aside by ``Conn.read`` as they come) must be the same list on both
servers. A MONITOR connection on each server records the sequence's commands,
and their lines (times and addresses left out, RESTORE's payload masked) must
be the same too. ``INTROSPECTION`` steps are mixed in: CLIENT TRACKING's
errors, TRACKINGINFO, GETREDIR, CACHING, CLIENT REPLY OFF/SKIP runs (``Quiet``),
CLIENT PAUSE and NO-EVICT, CONFIG GET of settings both servers hold alike and
CONFIG SET's all-or-nothing errors, COMMAND GETKEYS/GETKEYSANDFLAGS of the
sequence's own commands, SLOWLOG (switched off on both), LATENCY, MEMORY USAGE
and INFO of an unknown section. The harness's own look-ups go through separate
``probe`` connections, so they neither track keys nor show in the compared
MONITOR lines.

A failure raises ``Mismatch`` with the seed, the command and both replies;
``python -m compat.differential --seed N`` replays one sequence and prints it.
The harness is command-agnostic: ``COMMANDS`` is a table of generators and
``COMPARE`` a table of comparison modes.
"""

from __future__ import annotations

import argparse
import random
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# -- RESP, raw -------------------------------------------------------------------------


class Reply:
    """One reply: its exact bytes and its parsed tree ``(type byte, payload)``."""

    __slots__ = ("raw", "tree")

    def __init__(self, raw: bytes, tree: tuple[str, Any]) -> None:
        self.raw = raw
        self.tree = tree

    def __repr__(self) -> str:
        return repr(self.raw[:400])


class Conn:
    """A blocking socket speaking RESP, returning replies with their raw bytes."""

    def __init__(self, port: int, timeout_s: float = 10.0, *, divert_pushes: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""
        self.pos = 0
        #: RESP3 pushes (client-side caching invalidations) set aside by ``read`` when ``divert_pushes``.
        self.divert_pushes = divert_pushes
        self.pushes: list[bytes] = []
        host, port_ = self.sock.getsockname()[:2]
        self.addr = f"{host}:{port_}".encode()

    def close(self) -> None:
        self.sock.close()

    def send(self, argv: list[bytes]) -> None:
        out = [b"*%d\r\n" % len(argv)]
        for arg in argv:
            out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        self.sock.sendall(b"".join(out))

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf = self.buf[self.pos :] + data
        self.pos = 0

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = self.buf[self.pos : end]
                self.pos = end + 2
                return line
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n + 2:
            self._fill()
        data = self.buf[self.pos : self.pos + n]
        self.pos += n + 2
        return data

    def read(self) -> Reply:
        while True:
            chunks: list[bytes] = []
            tree = self._parse(chunks)
            if tree[0] == ">" and self.divert_pushes:
                self.pushes.append(b"".join(chunks))
                continue
            return Reply(b"".join(chunks), tree)

    def _parse(self, chunks: list[bytes]) -> tuple[str, Any]:
        line = self._line()
        chunks.append(line + b"\r\n")
        kind, rest = chr(line[0]), line[1:]
        if kind in "+-:,#(_":
            return kind, rest
        if kind in "$=!":
            n = int(rest)
            if n < 0:
                return "null", None
            data = self._exact(n)
            chunks.append(data + b"\r\n")
            return kind, data
        if kind in "*~>%|":
            n = int(rest)
            if n < 0:
                return "null", None
            count = 2 * n if kind in "%|" else n
            items = [self._parse(chunks) for _ in range(count)]
            return kind, items
        raise ValueError(f"bad RESP line {line!r}")

    def call(self, *argv: bytes) -> Reply:
        self.send(list(argv))
        return self.read()


# -- comparison modes ------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


def _canon(tree: tuple[str, Any]) -> Any:
    kind, payload = tree
    if isinstance(payload, list):
        return (kind, tuple(_canon(x) for x in payload))
    return (kind, payload)


def exact(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    return r.raw == v.raw


def unordered(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    """Same type, same elements in any order (Redis's order is its hash table's)."""
    (rk, rp), (vk, vp) = r.tree, v.tree
    if not isinstance(rp, list) or not isinstance(vp, list):
        return r.raw == v.raw
    if rk != vk or len(rp) != len(vp):
        return False
    if rk in "%|":  # a map: compare pairs
        pairs = lambda items: sorted(zip(map(_canon, items[::2]), map(_canon, items[1::2])))  # noqa: E731
        return pairs(rp) == pairs(vp)
    return sorted(map(_canon, rp)) == sorted(map(_canon, vp))


def unordered_pairs(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    """HGETALL: a flat RESP2 array of field, value pairs (or a RESP3 map) in any pair order."""
    (rk, rp), (vk, vp) = r.tree, v.tree
    if rk == "%" or not isinstance(rp, list) or not isinstance(vp, list):
        return unordered(r, v, argv, h)
    if rk != vk or len(rp) != len(vp):
        return False
    pairs = lambda items: sorted(zip(map(_canon, items[::2]), map(_canon, items[1::2])))  # noqa: E731
    return pairs(rp) == pairs(vp)


def same_shape(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    """Random replies: the same type and length (errors exactly)."""
    (rk, rp), (vk, vp) = r.tree, v.tree
    if rk == "-" or vk == "-":
        return r.raw == v.raw
    if rk != vk:
        return False
    if isinstance(rp, list):
        return isinstance(vp, list) and len(rp) == len(vp) and [x[0] for x in rp] == [x[0] for x in vp]
    return True


def encoding(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    """OBJECT ENCODING: exact, except the differences of DIFFERENCES.md (7.0 vs 7.2, string history)."""
    if r.raw == v.raw:
        return True
    if r.tree[0] != "$" or v.tree[0] != "$":
        return False
    pair = (r.tree[1], v.tree[1])
    kind = h.probe["redis"].call(b"TYPE", argv[2]).tree[1]
    allowed = {
        b"list": {(b"quicklist", b"listpack")},  # 7.0 has no listpack lists
        b"set": {(b"hashtable", b"listpack")},  # 7.0 has no listpack sets
        b"string": {(b"raw", b"embstr"), (b"raw", b"int")},  # APPEND/SETRANGE/SETBIT... results are raw in Redis
    }
    return pair in allowed.get(kind, set())


def integer(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    return r.tree[0] == v.tree[0] and (r.tree[0] != "-" or r.raw == v.raw)


def ttl(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    if r.tree[0] != ":" or v.tree[0] != ":":
        return r.raw == v.raw
    a, b = int(r.tree[1]), int(v.tree[1])
    if a < 0 or b < 0:
        return a == b
    slack = 2000 if argv[0].upper() == b"PTTL" else 1
    return abs(a - b) <= slack


def dump(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    return r.tree[0] == v.tree[0]


def sort_mode(r: Reply, v: Reply, argv: list[bytes], h: "Harness") -> bool:
    """SORT: exact, but unordered where Redis's order comes from a set's hash order or a tie
    that qsort leaves (BY without '*' on a set; BY ... ALPHA)."""
    upper = [a.upper() for a in argv]
    if b"BY" in upper:
        pattern = argv[upper.index(b"BY") + 1]
        if b"*" not in pattern or b"ALPHA" in upper or b"LIMIT" in upper:
            return same_shape(r, v, argv, h) if b"LIMIT" in upper else unordered(r, v, argv, h)
    if h.probe["redis"].call(b"TYPE", argv[1]).tree[1] == b"set" and b"BY" in upper:
        return unordered(r, v, argv, h)
    return exact(r, v, argv, h)


Compare = Callable[[Reply, Reply, list[bytes], "Harness"], bool]

#: The documented differences (compat/DIFFERENCES.md), by command: how replies are compared.
#: Every other command must answer byte for byte what redis-server answers.
COMPARE: dict[bytes, Compare] = {
    b"SMEMBERS": unordered, b"SINTER": unordered, b"SUNION": unordered, b"SDIFF": unordered,
    b"HKEYS": unordered, b"HVALS": unordered, b"HGETALL": unordered_pairs,
    b"SRANDMEMBER": same_shape, b"HRANDFIELD": same_shape, b"ZRANDMEMBER": same_shape, b"RANDOMKEY": same_shape,
    b"SPOP": same_shape,
    b"DUMP": dump,
    b"OBJECT ENCODING": encoding, b"OBJECT IDLETIME": integer, b"OBJECT REFCOUNT": integer,
    b"TTL": ttl, b"PTTL": ttl,
    b"SORT": sort_mode, b"SORT_RO": sort_mode,
    b"CONFIG GET": unordered,  # a map in Redis's hash order
    b"MEMORY USAGE": integer,  # vfsd's estimate of what its own structures hold
}

# -- the generator ------------------------------------------------------------------------

FIELDS = [b"a", b"b", b"c", b"d", b"1", b"2", b"10", b"-5", b"hello", b"", b"x" * 65]
ELEMENTS = [b"a", b"b", b"c", b"1", b"2", b"3", b"10", b"-1", b"z", b"", b"y" * 65, b"7"]
INTS = [b"0", b"1", b"-1", b"2", b"3", b"5", b"-2", b"10", b"-10", b"100"]
BAD_INTS = [b"x", b"1.5", b"", b" 1", b"99999999999999999999", b"-", b"+1"]
# Dyadic scores only: their %.17g (Redis 7.0) and shortest (7.2) forms agree (DIFFERENCES.md).
SCORES = [b"0", b"1", b"-1", b"2.5", b"-0.25", b"3", b"1.5", b"inf", b"-inf", b"+inf", b"0.5", b"7", b"-3", b"1e3"]
BAD_SCORES = [b"nan", b"abc", b"", b"1x", b"1e400", b" "]
FLOATS = [b"1.5", b"-2", b"0.25", b"10", b"3e2", b"-0.5"]


class Dump:
    """A RESTORE payload placeholder, resolved per server: its own last DUMP, damaged, or the other's."""

    def __init__(self, how: str) -> None:
        self.how = how


@dataclass
class Gen:
    rng: random.Random
    keys: list[bytes]
    fresh: list[bytes] = field(default_factory=list)

    def k(self) -> bytes:
        return self.rng.choice(self.keys)

    def ks(self, lo: int = 1, hi: int = 3) -> list[bytes]:
        return [self.k() for _ in range(self.rng.randint(lo, hi))]

    def pick(self, good: list[bytes], bad: list[bytes] | None = None, p_bad: float = 0.08) -> bytes:
        if bad and self.rng.random() < p_bad:
            return self.rng.choice(bad)
        return self.rng.choice(good)

    def f(self) -> bytes:
        return self.rng.choice(FIELDS)

    def e(self) -> bytes:
        return self.rng.choice(ELEMENTS)

    def i(self) -> bytes:
        return self.pick(INTS, BAD_INTS)

    def s(self) -> bytes:
        return self.pick(SCORES, BAD_SCORES)

    def idx(self) -> bytes:
        return self.pick([b"0", b"1", b"-1", b"2", b"-2", b"5", b"-5", b"100", b"-100"], BAD_INTS)

    def maybe(self, p: float, *args: bytes) -> list[bytes]:
        return list(args) if self.rng.random() < p else []

    def score_bound(self) -> bytes:
        if self.rng.random() < 0.05:
            return self.rng.choice(BAD_SCORES[:4])
        value = self.rng.choice([b"-inf", b"+inf", b"0", b"1", b"2", b"-1", b"2.5", b"3", b"1.5"])
        return (b"(" + value) if self.rng.random() < 0.3 else value

    def lex_bound(self) -> bytes:
        if self.rng.random() < 0.05:
            return self.rng.choice([b"a", b"", b"+a"])
        return self.rng.choice([b"-", b"+", b"[a", b"(a", b"[b", b"(c", b"[", b"[1", b"(z"])

    def timeout(self) -> bytes:
        return self.pick([b"0.005", b"0.002", b"0.003"], [b"-1", b"x", b"nan"], 0.15)

    def numkeys(self, keys: list[bytes]) -> list[bytes]:
        if self.rng.random() < 0.07:
            return [self.rng.choice([b"0", b"-1", b"x", b"%d" % (len(keys) + 50)]), *keys]
        return [b"%d" % len(keys), *keys]


def _zadd(g: Gen) -> list[bytes]:
    opts: list[bytes] = []
    for opt in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
        if g.rng.random() < 0.12:
            opts.append(opt)
    pairs: list[bytes] = []
    for _ in range(1 if b"INCR" in opts else g.rng.randint(1, 4)):
        pairs += [g.s(), g.e()]
    if g.rng.random() < 0.04:
        pairs.pop()
    return [b"ZADD", g.k(), *opts, *pairs]


def _zrange(g: Gen) -> list[bytes]:
    by = g.rng.choice([None, None, b"BYSCORE", b"BYLEX"])
    if by is None:
        bounds = [g.idx(), g.idx()]
    elif by == b"BYSCORE":
        bounds = [g.score_bound(), g.score_bound()]
    else:
        bounds = [g.lex_bound(), g.lex_bound()]
    args = [b"ZRANGE", g.k(), *bounds]
    if by:
        args.append(by)
    args += g.maybe(0.3, b"REV")
    if g.rng.random() < 0.25:
        args += [b"LIMIT", g.pick([b"0", b"1", b"2"], [b"-1"]), g.pick([b"1", b"2", b"-1", b"0"])]
    args += g.maybe(0.35, b"WITHSCORES")
    return args


def _algebra(name: bytes, store: bool, weights: bool) -> Callable[[Gen], list[bytes]]:
    def make(g: Gen) -> list[bytes]:
        keys = g.ks(1, 3)
        args = [name] + ([g.k()] if store else []) + g.numkeys(keys)
        if weights and g.rng.random() < 0.3:
            args += [b"WEIGHTS"] + [g.pick([b"1", b"2", b"0.5", b"-1", b"0"], [b"x"]) for _ in keys]
        if weights and g.rng.random() < 0.3:
            args += [b"AGGREGATE", g.pick([b"SUM", b"MIN", b"MAX"], [b"AVG"])]
        if not store and name != b"ZINTERCARD" and g.rng.random() < 0.4:
            args.append(b"WITHSCORES")
        if name == b"ZINTERCARD" and g.rng.random() < 0.4:
            args += [b"LIMIT", g.pick([b"0", b"1", b"2"], [b"-1"])]
        return args

    return make


def _bitfield(g: Gen, ro: bool) -> list[bytes]:
    args = [b"BITFIELD_RO" if ro else b"BITFIELD", g.k()]
    for _ in range(g.rng.randint(1, 3)):
        kind = b"GET" if ro or g.rng.random() < 0.4 else g.rng.choice([b"SET", b"INCRBY", b"OVERFLOW"])
        if kind == b"OVERFLOW":
            args += [kind, g.pick([b"WRAP", b"SAT", b"FAIL"], [b"BAD"])]
            continue
        t = g.pick([b"u8", b"i8", b"u4", b"i16", b"u1", b"i64", b"u63"], [b"u64", b"x8", b"i0"])
        off = g.pick([b"0", b"3", b"8", b"#1", b"#2", b"13"], [b"-1", b"x"])
        args += [kind, t, off]
        if kind != b"GET":
            args.append(g.pick([b"1", b"-1", b"100", b"255", b"-128", b"300", b"9223372036854775807"], [b"z"]))
    return args


def _sort(g: Gen, ro: bool) -> list[bytes]:
    args = [b"SORT_RO" if ro else b"SORT", g.k()]
    if g.rng.random() < 0.3:
        args += [b"BY", g.rng.choice([b"nosort", g.keys[0] + b"-w-*", g.keys[1] + b"*->a"])]
    if g.rng.random() < 0.25:
        args += [b"LIMIT", g.pick([b"0", b"1"], [b"x"]), g.pick([b"2", b"-1", b"1"])]
    if g.rng.random() < 0.25:
        args += [b"GET", g.rng.choice([b"#", g.keys[0] + b"-w-*", g.keys[2] + b"*->b"])]
    args += g.maybe(0.4, b"ALPHA") + g.maybe(0.3, b"DESC")
    if not ro and g.rng.random() < 0.25:
        args += [b"STORE", g.k()]
    return args


#: (name, generator): every command the differential test sends. Weighted by repetition.
#: Every command the differential test sends, by family; a sequence favours one family so that
#: values grow (past the listpack limits too) and the family's commands meet real state.
FAMILIES: dict[str, list[Callable[[Gen], list[bytes]]]] = {
    "strings": [
        lambda g: [b"SET", g.k(), g.e()],
        lambda g: [b"GET", g.k()],
        lambda g: [b"APPEND", g.k(), g.e()],
        lambda g: [b"INCR", g.k()],
        lambda g: [b"STRLEN", g.k()],
        lambda g: [b"GETRANGE", g.k(), g.idx(), g.idx()],
        lambda g: [b"SUBSTR", g.k(), g.idx(), g.idx()],
        lambda g: [b"SETRANGE", g.k(), g.pick([b"0", b"1", b"3"], [b"-1"]), g.e()],
        lambda g: [b"MGET", *g.ks()],
        lambda g: [b"LCS", g.k(), g.k(), *g.rng.choice([[], [b"LEN"], [b"IDX"], [b"IDX", b"WITHMATCHLEN"],
                                                        [b"IDX", b"MINMATCHLEN", b"2"], [b"LEN", b"IDX"], [b"BAD"]])],
        lambda g: [b"SETBIT", g.k(), g.pick([b"0", b"7", b"9", b"15", b"30"], [b"-1", b"x", b"4294967296000"]),
                   g.pick([b"1", b"0"], [b"2", b"x"])],
        lambda g: [b"GETBIT", g.k(), g.pick([b"0", b"1", b"7", b"100"], [b"-1"])],
        lambda g: [b"BITCOUNT", g.k(), *g.rng.choice([[], [b"0", b"-1"], [b"1", b"2"], [b"0", b"5", b"BIT"],
                                                      [b"-2", b"-1", b"BYTE"], [b"0"], [b"0", b"1", b"BAD"]])],
        lambda g: [b"BITPOS", g.k(), g.pick([b"0", b"1"], [b"2"]),
                   *g.rng.choice([[], [b"0"], [b"1", b"-1"], [b"0", b"3", b"BIT"], [b"2", b"9", b"BIT"], [b"0", b"0"]])],
        lambda g: [b"BITOP", g.pick([b"AND", b"OR", b"XOR", b"NOT"], [b"NAND"]), g.k(), *g.ks(1, 2)],
        lambda g: _bitfield(g, False),
        lambda g: _bitfield(g, True),
    ],
    "hashes": [
        lambda g: [b"HSET", g.k(), *[x for _ in range(g.rng.randint(1, 3)) for x in (g.f(), g.e())]],
        lambda g: [b"HSET", g.k(), *[x for _ in range(g.rng.randint(1, 3)) for x in (g.f(), g.e())]],
        lambda g: [b"HSETNX", g.k(), g.f(), g.e()],
        lambda g: [b"HMSET", g.k(), g.f(), g.e(), *g.maybe(0.1, g.f())],
        lambda g: [b"HGET", g.k(), g.f()],
        lambda g: [b"HMGET", g.k(), g.f(), g.f()],
        lambda g: [b"HDEL", g.k(), g.f(), *g.maybe(0.5, g.f())],
        lambda g: [b"HEXISTS", g.k(), g.f()],
        lambda g: [b"HLEN", g.k()],
        lambda g: [b"HSTRLEN", g.k(), g.f()],
        lambda g: [b"HKEYS", g.k()],
        lambda g: [b"HVALS", g.k()],
        lambda g: [b"HGETALL", g.k()],
        lambda g: [b"HINCRBY", g.k(), g.f(), g.i()],
        lambda g: [b"HINCRBYFLOAT", g.k(), g.f(), g.pick(FLOATS, [b"x", b"inf", b"nan"])],
        lambda g: [b"HRANDFIELD", g.k(), *g.rng.choice([[], [b"2"], [b"-3"], [b"5", b"WITHVALUES"], [b"1", b"BAD"]])],
        lambda g: [b"HSCAN", g.k(), b"0", *g.rng.choice([[], [b"COUNT", b"2"], [b"MATCH", b"*a*"], [b"COUNT", b"0"]])],
    ],
    "lists": [
        lambda g: [b"LPUSH", g.k(), *[g.e() for _ in range(g.rng.randint(1, 3))]],
        lambda g: [b"RPUSH", g.k(), *[g.e() for _ in range(g.rng.randint(1, 3))]],
        lambda g: [b"RPUSH", g.k(), *[g.e() for _ in range(g.rng.randint(1, 3))]],
        lambda g: [b"LPUSHX", g.k(), g.e()],
        lambda g: [b"RPUSHX", g.k(), g.e()],
        lambda g: [b"LPOP", g.k(), *g.maybe(0.4, g.pick([b"0", b"1", b"2", b"5"], [b"-1"]))],
        lambda g: [b"RPOP", g.k(), *g.maybe(0.4, g.pick([b"0", b"1", b"2", b"5"], [b"-1"]))],
        lambda g: [b"LLEN", g.k()],
        lambda g: [b"LRANGE", g.k(), g.idx(), g.idx()],
        lambda g: [b"LINDEX", g.k(), g.idx()],
        lambda g: [b"LSET", g.k(), g.idx(), g.e()],
        lambda g: [b"LINSERT", g.k(), g.pick([b"BEFORE", b"AFTER"], [b"MIDDLE"]), g.e(), g.e()],
        lambda g: [b"LREM", g.k(), g.pick([b"0", b"1", b"-1", b"2"], [b"x"]), g.e()],
        lambda g: [b"LTRIM", g.k(), g.idx(), g.idx()],
        lambda g: [b"LPOS", g.k(), g.e(), *g.rng.choice([[], [b"RANK", b"2"], [b"RANK", b"-1"], [b"COUNT", b"0"],
                                                         [b"COUNT", b"2", b"MAXLEN", b"3"], [b"RANK", b"0"],
                                                         [b"COUNT", b"-1"], [b"MAXLEN"]])],
        lambda g: [b"LMOVE", g.k(), g.k(), g.pick([b"LEFT", b"RIGHT"], [b"UP"]), g.pick([b"LEFT", b"RIGHT"])],
        lambda g: [b"RPOPLPUSH", g.k(), g.k()],
        lambda g: [b"LMPOP", *g.numkeys(g.ks(1, 2)), g.pick([b"LEFT", b"RIGHT"], [b"UP"]),
                   *g.maybe(0.4, b"COUNT", g.pick([b"1", b"2", b"3"], [b"0"]))],
        lambda g: [b"BLPOP", *g.ks(1, 2), g.timeout()],
        lambda g: [b"BRPOP", *g.ks(1, 2), g.timeout()],
        lambda g: [b"BLMOVE", g.k(), g.k(), g.pick([b"LEFT", b"RIGHT"]), g.pick([b"LEFT", b"RIGHT"], [b"UP"]),
                   g.timeout()],
        lambda g: [b"BRPOPLPUSH", g.k(), g.k(), g.timeout()],
        lambda g: [b"BLMPOP", g.timeout(), *g.numkeys(g.ks(1, 2)), g.pick([b"LEFT", b"RIGHT"]),
                   *g.maybe(0.4, b"COUNT", b"2")],
    ],
    "sets": [
        lambda g: [b"SADD", g.k(), *[g.e() for _ in range(g.rng.randint(1, 4))]],
        lambda g: [b"SADD", g.k(), *[g.rng.choice(INTS) for _ in range(g.rng.randint(1, 4))]],
        lambda g: [b"SREM", g.k(), g.e(), *g.maybe(0.5, g.e())],
        lambda g: [b"SCARD", g.k()],
        lambda g: [b"SISMEMBER", g.k(), g.e()],
        lambda g: [b"SMISMEMBER", g.k(), g.e(), g.e()],
        lambda g: [b"SMEMBERS", g.k()],
        lambda g: [b"SRANDMEMBER", g.k(), *g.rng.choice([[], [b"2"], [b"-2"], [b"0"], [b"x"]])],
        lambda g: [b"SPOP", g.k(), *g.rng.choice([[], [b"1"], [b"10"], [b"0"], [b"-1"]])],
        lambda g: [b"SMOVE", g.k(), g.k(), g.e()],
        lambda g: [b"SINTER", *g.ks()],
        lambda g: [b"SINTERCARD", *g.numkeys(g.ks()), *g.maybe(0.3, b"LIMIT", g.pick([b"1", b"0"], [b"-1"]))],
        lambda g: [b"SINTERSTORE", g.k(), *g.ks()],
        lambda g: [b"SUNION", *g.ks()],
        lambda g: [b"SUNIONSTORE", g.k(), *g.ks()],
        lambda g: [b"SDIFF", *g.ks()],
        lambda g: [b"SDIFFSTORE", g.k(), *g.ks()],
        lambda g: [b"SSCAN", g.k(), b"0", *g.rng.choice([[], [b"COUNT", b"3"], [b"MATCH", b"[a-c]"]])],
    ],
    "sorted": [
        _zadd,
        _zadd,
        lambda g: [b"ZINCRBY", g.k(), g.s(), g.e()],
        lambda g: [b"ZREM", g.k(), g.e(), *g.maybe(0.5, g.e())],
        lambda g: [b"ZCARD", g.k()],
        lambda g: [b"ZSCORE", g.k(), g.e()],
        lambda g: [b"ZMSCORE", g.k(), g.e(), g.e()],
        lambda g: [b"ZRANK", g.k(), g.e()],
        lambda g: [b"ZREVRANK", g.k(), g.e()],
        lambda g: [b"ZCOUNT", g.k(), g.score_bound(), g.score_bound()],
        lambda g: [b"ZLEXCOUNT", g.k(), g.lex_bound(), g.lex_bound()],
        _zrange,
        _zrange,
        lambda g: [b"ZRANGESTORE", g.k(), g.k(), g.idx(), g.idx(), *g.maybe(0.3, b"REV")],
        lambda g: [b"ZRANGESTORE", g.k(), g.k(), g.score_bound(), g.score_bound(), b"BYSCORE",
                   *g.maybe(0.3, b"LIMIT", b"0", b"2")],
        lambda g: [b"ZREVRANGE", g.k(), g.idx(), g.idx(), *g.maybe(0.4, b"WITHSCORES")],
        lambda g: [b"ZRANGEBYSCORE", g.k(), g.score_bound(), g.score_bound(), *g.maybe(0.4, b"WITHSCORES"),
                   *g.maybe(0.3, b"LIMIT", b"1", b"2")],
        lambda g: [b"ZREVRANGEBYSCORE", g.k(), g.score_bound(), g.score_bound(), *g.maybe(0.4, b"WITHSCORES")],
        lambda g: [b"ZRANGEBYLEX", g.k(), g.lex_bound(), g.lex_bound(), *g.maybe(0.3, b"LIMIT", b"0", b"2")],
        lambda g: [b"ZREVRANGEBYLEX", g.k(), g.lex_bound(), g.lex_bound()],
        lambda g: [b"ZREMRANGEBYRANK", g.k(), g.idx(), g.idx()],
        lambda g: [b"ZREMRANGEBYSCORE", g.k(), g.score_bound(), g.score_bound()],
        lambda g: [b"ZREMRANGEBYLEX", g.k(), g.lex_bound(), g.lex_bound()],
        lambda g: [b"ZPOPMIN", g.k(), *g.maybe(0.5, g.pick([b"1", b"2", b"0"], [b"-1"]))],
        lambda g: [b"ZPOPMAX", g.k(), *g.maybe(0.5, g.pick([b"1", b"3"], [b"x"]))],
        lambda g: [b"ZMPOP", *g.numkeys(g.ks(1, 2)), g.pick([b"MIN", b"MAX"], [b"MID"]),
                   *g.maybe(0.4, b"COUNT", g.pick([b"2", b"1"], [b"0"]))],
        lambda g: [b"BZPOPMIN", *g.ks(1, 2), g.timeout()],
        lambda g: [b"BZPOPMAX", *g.ks(1, 2), g.timeout()],
        lambda g: [b"BZMPOP", g.timeout(), *g.numkeys(g.ks(1, 2)), g.pick([b"MIN", b"MAX"]),
                   *g.maybe(0.3, b"COUNT", b"2")],
        lambda g: [b"ZRANDMEMBER", g.k(), *g.rng.choice([[], [b"2"], [b"-2"], [b"3", b"WITHSCORES"]])],
        _algebra(b"ZUNION", False, True),
        _algebra(b"ZINTER", False, True),
        _algebra(b"ZDIFF", False, False),
        _algebra(b"ZUNIONSTORE", True, True),
        _algebra(b"ZINTERSTORE", True, True),
        _algebra(b"ZDIFFSTORE", True, False),
        _algebra(b"ZINTERCARD", False, False),
        lambda g: [b"ZSCAN", g.k(), b"0", *g.rng.choice([[], [b"COUNT", b"2"], [b"MATCH", b"a*"]])],
    ],
    "keyspace": [
        lambda g: [b"DEL", *g.ks(1, 2)],
        lambda g: [b"EXISTS", *g.ks()],
        lambda g: [b"TYPE", g.k()],
        lambda g: [b"RENAME", g.k(), g.k()],
        lambda g: [b"RENAMENX", g.k(), g.k()],
        lambda g: [b"COPY", g.k(), g.k(), *g.rng.choice([[], [b"REPLACE"], [b"DB", b"0"], [b"DB", b"1"], [b"BAD"]])],
        lambda g: [b"TOUCH", *g.ks()],
        lambda g: [b"OBJECT", b"ENCODING", g.k()],
        lambda g: [b"OBJECT", b"ENCODING", g.k()],
        lambda g: [b"OBJECT", g.rng.choice([b"REFCOUNT", b"FREQ", b"IDLETIME", b"HELP", b"NOPE"]), g.k()],
        lambda g: [b"DUMP", g.k()],
        lambda g: [b"RESTORE", g.k(), g.pick([b"0", b"0", b"100000"], [b"-1", b"x"]),
                   Dump(g.rng.choice(["own", "own", "damaged", "foreign"])),  # type: ignore[list-item]
                   *g.rng.choice([[], [b"REPLACE"], [b"REPLACE", b"ABSTTL"], [b"IDLETIME", b"5"], [b"FREQ", b"300"],
                                  [b"BAD"]])],
        lambda g: [b"MOVE", g.k(), g.pick([b"0", b"1"], [b"x"])],
        lambda g: [b"SWAPDB", g.pick([b"0", b"1"], [b"x"]), g.pick([b"0", b"1"])],
        lambda g: [b"EXPIRE", g.k(), g.pick([b"1000", b"5000"], [b"-1"])],
        lambda g: [b"TTL", g.k()],
        lambda g: [b"PERSIST", g.k()],
        lambda g: _sort(g, False),
        lambda g: _sort(g, True),
        lambda g: [b"SET", g.keys[0] + b"-w-" + g.e(), g.pick([b"1", b"2", b"-1", b"3.5"], [b"x"])],
    ],
}
COMMANDS = [make for family in FAMILIES.values() for make in family]


def _bulk(g: Gen) -> list[bytes]:
    """A command that adds past Redis's listpack/intset limits (128 entries, 64-byte values, 512 integers)."""
    n = g.rng.choice([60, 129, 140, 520])
    key = g.k()
    kind = g.rng.choice(["hash", "list", "set", "intset", "zset"])
    if kind == "hash":
        return [b"HSET", key, *[x for i in range(n) for x in (b"f%d" % i, b"v%d" % i)]]
    if kind == "list":
        return [b"RPUSH", key, *[b"e%d" % (i % 50) for i in range(n)]]
    if kind == "set":
        return [b"SADD", key, *[b"m%d" % i for i in range(n)]]
    if kind == "intset":
        return [b"SADD", key, *[b"%d" % i for i in range(n)]]
    return [b"ZADD", key, *[x for i in range(n) for x in (b"%d" % (i % 7), b"m%d" % i)]]


class Tx:
    """MULTI, these commands, EXEC: a push inside wakes nobody until EXEC, a blocking pop answers nil."""

    def __init__(self, commands: list[list[bytes]]) -> None:
        self.commands = commands


def _transaction(g: Gen, family: list[Callable[[Gen], list[bytes]]]) -> Tx:
    commands: list[list[bytes]] = []
    while len(commands) < g.rng.randint(2, 5):
        argv = g.rng.choice(family)(g)
        if _exact_reply(argv):
            commands.append(argv)
    return Tx(commands)


def _lex(argv: list[Any]) -> bool:
    return argv[0] in LEX_COMMANDS or b"BYLEX" in [a.upper() for a in argv if isinstance(a, bytes)]


def _compare_name(argv: list[bytes]) -> bytes:
    name = argv[0].upper()
    if name in (b"OBJECT", b"CONFIG", b"MEMORY") and len(argv) > 1:
        return name + b" " + argv[1].upper()
    return name


# -- connection and introspection commands --------------------------------------------------


class Quiet:
    """Commands sent back to back with CLIENT REPLY switched off or skipping, then a PING: the replies that do
    come (only the PING's, unless the mode was refused) must be the same."""

    def __init__(self, commands: list[list[bytes]]) -> None:
        self.commands = commands


def _tracking_options(rng: random.Random, plane: str, prefix: bytes) -> list[bytes]:
    """CLIENT TRACKING options for a sequence's connection, or [] (off). On the desired plane only BCAST: there
    vfsd remembers a transaction's reads when EXEC hands it to the log, so a key it writes and then reads is
    invalidated by its own write too, and a NOLOOP client is told of its own writes (DIFFERENCES.md)."""
    if rng.random() < 0.4:
        return []
    bcast = [[b"on", b"BCAST", b"PREFIX", prefix], [b"on", b"BCAST"]]
    if plane == "desired":
        return rng.choice(bcast)
    return rng.choice([[b"on"], [b"on"], [b"on", b"OPTIN"], [b"on", b"OPTOUT"], [b"on", b"NOLOOP"],
                       [b"on", b"BCAST", b"NOLOOP"], *bcast])


#: CONFIG names whose values are the same on both servers (as the test starts them).
SAME_CONFIG = [b"slowlog-max-len", b"latency-monitor-threshold", b"tracking-table-max-keys", b"lua-time-limit",
               b"busy-reply-threshold", b"proto-max-bulk-len", b"client-query-buffer-limit", b"databases",
               b"slowlog-log-slower-than", b"SLOWLOG-MAX-LEN", b"nosuch", b"slowlog*", b"tracking*", b"lua*"]


def _getkeys(g: Gen) -> list[bytes]:
    while True:
        argv = g.rng.choice(COMMANDS)(g)
        if not any(isinstance(a, Dump) for a in argv):
            return [b"COMMAND", g.rng.choice([b"GETKEYS", b"GETKEYSANDFLAGS"]), *argv]


def _exact_reply(argv: list[Any]) -> bool:
    """A command whose reply must match byte for byte (not one of COMPARE's documented differences)."""
    return (_compare_name(argv) not in COMPARE and not any(isinstance(a, Dump) for a in argv)
            and argv[0] not in (b"HSCAN", b"SSCAN", b"ZSCAN") and not _lex(argv))


def _quiet(g: Gen) -> Quiet:
    body = [argv for argv in (g.rng.choice(COMMANDS)(g) for _ in range(g.rng.randint(1, 2))) if _exact_reply(argv)]
    body = body or [[b"GET", g.k()]]
    mode = g.rng.choice([b"SKIP", b"SKIP", b"OFF", b"maybe"])
    if mode == b"OFF":
        return Quiet([[b"CLIENT", b"REPLY", b"OFF"], *body, [b"CLIENT", b"REPLY", b"ON"]])
    return Quiet([[b"CLIENT", b"REPLY", mode], *body])


#: Connection and introspection commands whose replies are deterministic on both servers (the harness
#: switches SLOWLOG off on both; LATENCY is off by default on both).
INTROSPECTION: list[Callable[[Gen], Any]] = [
    lambda g: [b"CLIENT", b"TRACKINGINFO"],
    lambda g: [b"CLIENT", b"GETREDIR"],
    lambda g: [b"CLIENT", b"CACHING", g.pick([b"yes", b"no"], [b"maybe"], 0.2)],
    lambda g: [b"CLIENT", b"TRACKING", *g.rng.choice([
        [b"maybe"], [b"on", b"BOGUS"], [b"on", b"REDIRECT"], [b"on", b"REDIRECT", b"x"],
        [b"on", b"REDIRECT", b"999999"], [b"on", b"PREFIX", b"a"], [b"on", b"BCAST", b"OPTIN"],
        [b"on", b"OPTIN", b"OPTOUT"], [b"on", b"BCAST", b"PREFIX", b"ab", b"PREFIX", b"a"],
        [b"off", b"BOGUS"]])],
    lambda g: [b"CLIENT", b"NO-EVICT", g.pick([b"on", b"off"], [b"maybe"], 0.3)],
    lambda g: [b"CLIENT", b"PAUSE", *g.rng.choice([[b"x"], [b"-1"], [b"10", b"foo"], [b"0"], [b"0", b"WRITE"],
                                                   [b"10", b"write", b"x"]])],
    lambda g: [b"CLIENT", b"UNPAUSE"],
    _quiet,
    lambda g: [b"CONFIG", b"GET", *[g.rng.choice(SAME_CONFIG) for _ in range(g.rng.randint(1, 3))]],
    lambda g: [b"CONFIG", b"SET", *g.rng.choice([
        [b"slowlog-max-len", b"128"], [b"slowlog-max-len"], [b"slowlog-max-len", b"x"], [b"nosuch", b"1"],
        [b"databases", b"3"], [b"slowlog-max-len", b"128", b"SLOWLOG-MAX-LEN", b"128"],
        [b"slowlog-max-len", b"128", b"nosuch", b"1"], [b"slowlog-max-len", b"-5"],
        [b"slowlog-log-slower-than", b"-2"], [b"lua-time-limit", b"x"], [b"slowlog-max-len", b"128",
                                                                        b"databases", b"2"]])],
    _getkeys,
    _getkeys,
    lambda g: [b"COMMAND", b"GETKEYS", *g.rng.choice([[b"NOSUCH", b"a"], [b"SPUBLISH", b"c", b"m"],
                                                      [b"EVAL", b"return 1", b"0"], [b"SET", g.k()]])],
    lambda g: [b"SLOWLOG", *g.rng.choice([[b"LEN"], [b"GET"], [b"GET", b"-1"], [b"GET", b"x"], [b"GET", b"-2"],
                                          [b"RESET"], [b"GET", b"1", b"2"], [b"NOPE"]])],
    lambda g: [b"LATENCY", *g.rng.choice([[b"LATEST"], [b"RESET"], [b"RESET", b"command"], [b"HISTORY", b"command"],
                                          [b"DOCTOR"], [b"GRAPH", b"command"], [b"NOPE"]])],
    lambda g: [b"MEMORY", b"USAGE", g.k(), *g.rng.choice([[], [], [b"SAMPLES", b"0"], [b"SAMPLES", b"x"],
                                                         [b"SAMPLES", b"-1"], [b"FOO"]])],
    lambda g: [b"INFO", g.rng.choice([b"nosuch", b"NOSUCH"])],
]


# -- the harness -------------------------------------------------------------------------

LEX_COMMANDS = {b"ZLEXCOUNT", b"ZRANGEBYLEX", b"ZREVRANGEBYLEX", b"ZREMRANGEBYLEX"}
PLANES = {"local": b"dt:{seed}:", "active": b"/run/dt/{seed}/", "desired": b"/ctx/dt/{seed}/"}


@dataclass
class Sequence:
    seed: int
    length: int = 48

    def build(self) -> tuple[str, int, list[list[Any]]]:
        plane, proto, _, commands = self.build_all()
        return plane, proto, commands

    def build_all(self) -> tuple[str, int, list[bytes], list[list[Any]]]:
        """The plane, the protocol, the CLIENT TRACKING options of the sequence's connection (empty: off) and
        the commands. (Tracking options and introspection steps are drawn from a generator of their own, so
        the commands of a seed are the ones it always had.)"""
        rng = random.Random(self.seed)
        plane = rng.choice(["local", "local", "active", "desired"])
        proto = 3 if rng.random() < 0.3 else 2
        prefix = PLANES[plane].replace(b"{seed}", b"%d" % self.seed)
        gen = Gen(rng, [prefix + name for name in (b"k1", b"k2", b"k3", b"k4")])
        family = FAMILIES[rng.choice(list(FAMILIES))]
        commands = []
        for _ in range(self.length):
            r = rng.random()
            if r < 0.04:
                commands.append(_bulk(gen))
            elif r < 0.08:
                commands.append(_transaction(gen, family))  # type: ignore[arg-type]
            else:
                commands.append(rng.choice(family if r < 0.75 else COMMANDS)(gen))
        extra = random.Random(self.seed * 7919 + 1)
        tracking = _tracking_options(extra, plane, prefix)
        intro = Gen(extra, gen.keys)
        for i in range(len(commands), 0, -1):  # introspection steps, inserted between the others
            if extra.random() < 0.12:
                commands.insert(i, extra.choice(INTROSPECTION)(intro))
        return plane, proto, tracking, commands


class Harness:
    """Connections to both servers, a keyspace-event subscriber on each, and the comparison loop."""

    def __init__(self, redis_port: int, vfsd_port: int) -> None:
        self.redis_port, self.vfsd_port = redis_port, vfsd_port
        self.redis = Conn(redis_port, divert_pushes=True)
        self.vfsd = Conn(vfsd_port, divert_pushes=True)
        self.main = {"redis": self.redis, "vfsd": self.vfsd}
        self.dumps: dict[str, bytes | None] = {"redis": None, "vfsd": None}
        self.proto = 2
        self.prefix = b"dt"
        self.tracking: list[bytes] = []
        self.commands_sent = 0
        self.skipped = 0
        for conn in (self.redis, self.vfsd):
            assert conn.call(b"CONFIG", b"SET", b"notify-keyspace-events", b"KEA").raw == b"+OK\r\n"
            # SLOWLOG off on both, so that its replies are deterministic (what it logs is timing).
            assert conn.call(b"CONFIG", b"SET", b"slowlog-log-slower-than", b"-1").raw == b"+OK\r\n"
        self.subs = {"redis": Conn(redis_port), "vfsd": Conn(vfsd_port)}
        for conn in self.subs.values():
            conn.send([b"PSUBSCRIBE", b"__keyspace@0__:*dt*", b"__keyevent@0__:*"])
            conn.read()
            conn.read()
        #: The harness's own look-ups (TYPE, OBJECT ENCODING, SMEMBERS, a scan's next pages, SPOP's resync)
        #: go through these, so that the sequence's connection reads and writes only what the sequence does:
        #: what it tracks and what MONITOR shows of it are then the same on both servers.
        self.probe = {"redis": Conn(redis_port), "vfsd": Conn(vfsd_port)}
        self.monitors = {"redis": Conn(redis_port), "vfsd": Conn(vfsd_port)}
        for conn in self.monitors.values():
            assert conn.call(b"MONITOR").raw == b"+OK\r\n"
        self.markers = 0

    def close(self) -> None:
        for conn in (self.redis, self.vfsd, *self.subs.values(), *self.probe.values(), *self.monitors.values()):
            conn.close()

    def _barrier(self, name: str) -> None:
        """Every push the sequence's connection was sent so far is in its ``pushes`` (a PING round trip)."""
        conn = self.main[name]
        conn.send([b"PING"])
        conn.read()

    @staticmethod
    def _masked(args: bytes) -> bytes:
        """A MONITOR line's arguments, with RESTORE's payload (each server's own DUMP format) masked."""
        if not args.startswith(b'"RESTORE" '):
            return args
        words = re.findall(rb'"(?:[^"\\]|\\.)*"', args)
        if len(words) > 3:
            words[3] = b'"<payload>"'
        return b" ".join(words)

    def _monitor_lines(self) -> dict[str, list[bytes]]:
        """The MONITOR lines of the sequence's connection since the last call (an ECHO on it is the marker),
        without their times and addresses."""
        self.markers += 1
        marker = b"diff-marker-%d" % self.markers
        out: dict[str, list[bytes]] = {}
        for name, main in self.main.items():
            main.call(b"ECHO", marker)
            lines: list[bytes] = []
            while True:
                reply = self.monitors[name].read()
                text = reply.tree[1]
                head, _, args = text.partition(b"] ")
                source = head.partition(b"[0 ")[2]
                if source == main.addr:
                    if args == b'"ECHO" "%b"' % marker:
                        break
                    lines.append(self._masked(args))
            out[name] = lines
        return out

    def _set_tracking(self, seq: Sequence, options: list[bytes]) -> None:
        for argv in ([b"CLIENT", b"TRACKING", b"off"], [b"CLIENT", b"TRACKING", *options] if options else None):
            if argv is None:
                continue
            r, v = self.redis.call(*argv), self.vfsd.call(*argv)
            if r.raw != v.raw:
                raise Mismatch(f"seed {seq.seed}: {b' '.join(argv)!r}\n  redis: {r.raw!r}\n  vfsd:  {v.raw!r}\n"
                               f"reproduce: python -m compat.differential --seed {seq.seed}")
        self.tracking = options

    def set_proto(self, proto: int) -> None:
        if proto != self.proto:
            for conn in (self.redis, self.vfsd):
                conn.call(b"HELLO", b"%d" % proto)
            self.proto = proto

    def _events(self, name: str) -> list[bytes]:
        """Keyspace events of the current sequence's keys since the last call (a PING on the
        subscriber is the barrier; keys of earlier sequences may expire meanwhile)."""
        conn = self.subs[name]
        conn.send([b"PING"])
        out: list[bytes] = []
        while True:
            reply = conn.read()
            kind, items = reply.tree
            if items and items[0][1] == b"pong":
                return out
            channel, message = items[2][1], items[3][1]
            key = message if channel.startswith(b"__keyevent@0__:") else channel.partition(b":")[2]
            if key.startswith(self.prefix):
                out.append(channel + b" " + message)

    def _resolve(self, argv: list[Any], name: str) -> list[bytes]:
        out = []
        for arg in argv:
            if isinstance(arg, Dump):
                own = self.dumps[name]
                other = self.dumps["vfsd" if name == "redis" else "redis"]
                if arg.how == "own":
                    arg = own if own is not None else b"\x01" * 12
                elif arg.how == "damaged":
                    arg = (own[:-3] + bytes([own[-3] ^ 1]) + own[-2:]) if own else b"garbage"
                else:
                    arg = other if other is not None else b"\x07" * 11
            out.append(arg)
        return out

    def run(self, seq: Sequence) -> int:
        plane, proto, tracking, commands = seq.build_all()
        self.prefix = PLANES[plane].replace(b"{seed}", b"%d" % seq.seed)
        self.set_proto(proto)
        self._set_tracking(seq, tracking)
        self._events("redis")
        self._events("vfsd")
        self._monitor_lines()
        for conn in self.main.values():
            conn.pushes.clear()
        for step, argv in enumerate(commands):
            self._step(seq, step, argv)
        where = f"seed {seq.seed} ({plane}, RESP{proto}, tracking {b' '.join(tracking).decode() or 'off'})"
        reproduce = f"reproduce: python -m compat.differential --seed {seq.seed}"
        expected, got = self._events("redis"), self._events("vfsd")
        if expected != got:
            raise Mismatch(f"{where}: keyspace events differ\n  redis: {expected}\n  vfsd:  {got}\n{reproduce}")
        self._barrier("redis")
        self._barrier("vfsd")
        if self.redis.pushes != self.vfsd.pushes:
            raise Mismatch(f"{where}: invalidation pushes differ\n  redis: {self.redis.pushes}\n"
                           f"  vfsd:  {self.vfsd.pushes}\n{reproduce}")
        lines = self._monitor_lines()
        if lines["redis"] != lines["vfsd"]:
            first = next(i for i, (a, b) in enumerate(zip(lines["redis"] + [b""], lines["vfsd"] + [b""])) if a != b)
            raise Mismatch(f"{where}: MONITOR lines differ from line {first}\n"
                           f"  redis: {lines['redis'][first:first + 5]}\n  vfsd:  {lines['vfsd'][first:first + 5]}\n"
                           f"{reproduce}")
        return len(commands)

    def _undefined(self, argv: list[bytes]) -> bool:
        """A lexicographic range over a skiplist-encoded sorted set whose scores differ: Redis's
        answer depends on its skiplist's random node levels (DIFFERENCES.md), so it is not sent."""
        name = argv[0].upper()
        upper = [a.upper() for a in argv]
        if name not in LEX_COMMANDS and not (name in (b"ZRANGE", b"ZRANGESTORE") and b"BYLEX" in upper):
            return False
        key = argv[2] if name == b"ZRANGESTORE" else argv[1]
        probe = self.probe["redis"]
        if probe.call(b"OBJECT", b"ENCODING", key).tree != ("$", b"skiplist"):
            return False
        lowest = probe.call(b"ZRANGE", key, b"0", b"0", b"WITHSCORES").tree[1]
        highest = probe.call(b"ZRANGE", key, b"-1", b"-1", b"WITHSCORES").tree[1]
        return _canon(lowest[-1]) != _canon(highest[-1])

    def _transaction(self, seq: Sequence, step: int, tx: Tx) -> None:
        for argv in [[b"MULTI"], *tx.commands, [b"EXEC"]]:
            self.redis.send(argv)
            self.vfsd.send(argv)
            r, v = self.redis.read(), self.vfsd.read()
            self.commands_sent += 1
            if r.raw != v.raw:
                raise Mismatch(f"seed {seq.seed} step {step} (in MULTI): {b' '.join(argv)[:300]!r}\n"
                               f"  redis: {r.raw[:600]!r}\n  vfsd:  {v.raw[:600]!r}\n"
                               f"reproduce: python -m compat.differential --seed {seq.seed}")

    def _quiet(self, seq: Sequence, step: int, quiet: Quiet) -> None:
        replies: dict[str, list[bytes]] = {}
        for name, conn in self.main.items():
            for argv in quiet.commands:
                conn.send(argv)
            conn.send([b"PING"])
            got: list[bytes] = []
            while True:
                reply = conn.read()
                got.append(reply.raw)
                if reply.tree in (("+", b"PONG"),):
                    break
            replies[name] = got
        self.commands_sent += len(quiet.commands) + 1
        if replies["redis"] != replies["vfsd"]:
            raise Mismatch(f"seed {seq.seed} step {step}: {[b' '.join(c) for c in quiet.commands]!r}\n"
                           f"  redis: {replies['redis']!r}\n  vfsd:  {replies['vfsd']!r}\n"
                           f"reproduce: python -m compat.differential --seed {seq.seed}")

    def _step(self, seq: Sequence, step: int, argv: Any) -> None:
        if isinstance(argv, Tx):
            self._transaction(seq, step, argv)
            return
        if isinstance(argv, Quiet):
            self._quiet(seq, step, argv)
            return
        r_argv, v_argv = self._resolve(argv, "redis"), self._resolve(argv, "vfsd")
        name = _compare_name(r_argv)
        if self._undefined(r_argv):
            self.skipped += 1
            return
        if name == b"SPOP":
            before = self.probe["redis"].call(b"SMEMBERS", r_argv[1])
        self.redis.send(r_argv)
        self.vfsd.send(v_argv)
        r, v = self.redis.read(), self.vfsd.read()
        self.commands_sent += 1
        if name in (b"HSCAN", b"SSCAN", b"ZSCAN"):
            ok = self._scan_equal(r_argv, v_argv, r, v)
        else:
            ok = COMPARE.get(name, exact)(r, v, r_argv, self)
        if not ok:
            raise Mismatch(f"seed {seq.seed} step {step}: {b' '.join(r_argv)[:300]!r}\n"
                           f"  redis: {r.raw[:600]!r}\n  vfsd:  {v.raw[:600]!r}\n"
                           f"reproduce: python -m compat.differential --seed {seq.seed}")
        if name == b"DUMP":
            self.dumps["redis"] = r.tree[1] if r.tree[0] == "$" else None
            self.dumps["vfsd"] = v.tree[1] if v.tree[0] == "$" else None
        if name == b"SPOP" and r.tree[0] != "-":
            self._resync_set(r_argv[1], before)

    def _resync_set(self, key: bytes, before: Reply) -> None:
        """SPOP took different members on each server: give vfsd redis's set back, quietly (its
        keyspace events and, for a BCAST connection, its invalidations are dropped)."""
        self._events("redis")
        self._events("vfsd")
        self._barrier("redis")
        self._barrier("vfsd")
        pushes = len(self.vfsd.pushes)
        probe = self.probe["vfsd"]
        want = {x[1] for x in self.probe["redis"].call(b"SMEMBERS", key).tree[1] or []}
        have = {x[1] for x in probe.call(b"SMEMBERS", key).tree[1] or []}
        if want - have:
            probe.call(b"SADD", key, *sorted(want - have))
        if have - want:
            probe.call(b"SREM", key, *sorted(have - want))
        self._events("vfsd")
        self._barrier("redis")  # (on both: MONITOR shows the barrier's PING)
        self._barrier("vfsd")
        del self.vfsd.pushes[pushes:]

    def _scan_all(self, conn: Conn, argv: list[bytes], first: Reply) -> list[Any] | None:
        reply = first
        seen: list[Any] = []
        for _ in range(10000):
            kind, items = reply.tree
            if kind != "*" or len(items) != 2:
                return None
            cursor, elements = items[0][1], items[1][1]
            seen += [_canon(x) for x in elements]
            if cursor == b"0":
                return seen
            reply = conn.call(argv[0], argv[1], cursor, *argv[3:])
        return None

    def _scan_equal(self, r_argv: list[bytes], v_argv: list[bytes], r: Reply, v: Reply) -> bool:
        if r.tree[0] == "-" or v.tree[0] == "-":
            return r.raw == v.raw
        a, b = self._scan_all(self.probe["redis"], r_argv, r), self._scan_all(self.probe["vfsd"], v_argv, v)
        if a is None or b is None:
            return False
        if r_argv[0].upper() == b"SSCAN":
            return sorted(set(a)) == sorted(set(b))
        pairs = lambda items: sorted(set(zip(items[::2], items[1::2])))  # noqa: E731
        return pairs(a) == pairs(b)


def describe(seed: int) -> str:
    plane, proto, tracking, commands = Sequence(seed).build_all()
    lines = [f"seed {seed}: {plane} plane, RESP{proto}, tracking {b' '.join(tracking).decode() or 'off'}"]
    def show(argv: list[Any]) -> str:
        return " ".join(a.decode(errors="replace") if isinstance(a, bytes) else f"<DUMP:{a.how}>" for a in argv)

    for argv in commands:
        if isinstance(argv, Tx):
            lines.append("  MULTI; " + "; ".join(show(c) for c in argv.commands) + "; EXEC")
        elif isinstance(argv, Quiet):
            lines.append("  " + "; ".join(show(c) for c in argv.commands) + "; PING")
        else:
            lines.append("  " + show(argv))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Replay sequences against servers started here (``--seed N`` for one, ``--count N`` for many)."""
    from compat.support import RedisServerProcess
    from tests.conftest import VfsdProcess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="replay this one sequence (and print it)")
    parser.add_argument("--count", type=int, default=300, help="sequences to run from --first")
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args(argv)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="vfsd-diff-") as tmp:
        redis = RedisServerProcess(Path(tmp) / "redis", extra=["--databases", "1", "--hz", "500"]).start()
        (Path(tmp) / "vfsd").mkdir()
        vfsd = VfsdProcess(Path(tmp) / "vfsd" / "data").start()
        try:
            harness = Harness(redis.port, vfsd.port)
            seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.count)
            started = time.monotonic()
            failures = 0
            for seed in seeds:
                if args.seed is not None:
                    print(describe(seed))
                try:
                    harness.run(Sequence(seed))
                except Mismatch as exc:
                    failures += 1
                    print(exc, file=sys.stderr)
                    harness.close()
                    harness = Harness(redis.port, vfsd.port)
            print(f"{len(seeds)} sequences, {harness.commands_sent} commands, {failures} failing, "
                  f"{time.monotonic() - started:.1f} s")
            harness.close()
            return 1 if failures else 0
        finally:
            vfsd.stop()
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
