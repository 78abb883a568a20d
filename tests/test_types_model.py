"""The collection and bit commands, run through a Ctx, against naive references (hypothesis).

Each test replays random commands on a fresh keyspace and, after every one,
checks the whole value against a plain Python model: a dict for hashes, a list
for lists, a set for sets, a dict sorted on demand for sorted sets, a Python
int for bitmaps. Exact reply texts are the differential test's job
(compat/test_differential.py); these check the semantics over many more states,
including the representation changes (packed and unpacked lists, encodings).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import vfsd.commands.families  # noqa: F401  (fills the command table)
from vfsd.commands.context import Ctx
from vfsd.commands.table import TABLE
from vfsd.resp.types import NULL_ARRAY, ErrorReply, Pairs
from vfsd.store.keyspace import KIND, Keyspace
from vfsd.store.values import HASH, LIST, SET, ZSET


def new_ctx() -> Ctx:
    return Ctx(Keyspace(), "local", "n1", itertools.count(1).__next__, now_ms=1_000_000)


def call(ctx: Ctx, *args: bytes | str | int) -> Any:
    argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    spec = TABLE[argv[0].decode().lower()]
    if spec.subcommands:
        spec = spec.subcommands[argv[1].decode().lower()]
    assert spec.arity_ok(len(argv)), argv
    try:
        return spec.handler(ctx, argv)
    except ErrorReply as err:
        return ("error", err.message)


K = b"k"
OTHER = b"o"


# -- hashes ------------------------------------------------------------------------------

field = st.sampled_from([b"a", b"b", b"c", b"n", b"x" * 70])
hash_ops = st.lists(st.one_of(
    st.tuples(st.just("HSET"), st.lists(st.tuples(field, st.sampled_from([b"1", b"v", b"-2", b"y" * 70])),
                                        min_size=1, max_size=3)),
    st.tuples(st.just("HDEL"), st.lists(field, min_size=1, max_size=3)),
    st.tuples(st.just("HINCRBY"), st.tuples(field, st.integers(-5, 5))),
    st.tuples(st.just("HSETNX"), st.tuples(field, st.just(b"nx"))),
), max_size=50)


@settings(max_examples=200, deadline=None)
@given(hash_ops)
def test_hashes_match_a_dict(steps: list[Any]) -> None:
    ctx, model = new_ctx(), {}
    for op, arg in steps:
        if op == "HSET":
            before = len(model)
            reply = call(ctx, "HSET", K, *[x for pair in arg for x in pair])
            model.update(dict(arg))
            assert reply == len(model) - before
        elif op == "HDEL":
            reply = call(ctx, "HDEL", K, *arg)
            gone = {f for f in arg if f in model}
            for f in gone:
                del model[f]
            assert reply == len(gone)
        elif op == "HINCRBY":
            f, delta = arg
            reply = call(ctx, "HINCRBY", K, f, delta)
            current = model.get(f, b"0")
            if current.lstrip(b"-").isdigit():
                model[f] = b"%d" % (int(current) + delta)
                assert reply == int(model[f])
            else:
                assert reply == ("error", "ERR hash value is not an integer")
        else:
            f, v = arg
            assert call(ctx, "HSETNX", K, f, v) == int(f not in model)
            model.setdefault(f, v)
        assert call(ctx, "HGETALL", K) == model
        assert call(ctx, "HLEN", K) == len(model)
        assert (K in ctx.db.data) == bool(model)  # an emptied hash is deleted


# -- lists ---------------------------------------------------------------------------------

item = st.sampled_from([b"a", b"b", b"c", b"1", b"z" * 90])
list_ops = st.lists(st.one_of(
    st.tuples(st.sampled_from(["LPUSH", "RPUSH"]), st.lists(item, min_size=1, max_size=40)),
    st.tuples(st.sampled_from(["LPOP", "RPOP"]), st.integers(0, 30)),
    st.tuples(st.just("LREM"), st.tuples(st.integers(-3, 3), item)),
    st.tuples(st.just("LTRIM"), st.tuples(st.integers(-60, 60), st.integers(-60, 60))),
    st.tuples(st.just("LSET"), st.tuples(st.integers(-60, 60), item)),
    st.tuples(st.just("LINSERT"), st.tuples(st.booleans(), item, item)),
    st.tuples(st.just("LMOVE"), st.tuples(st.booleans(), st.booleans())),
), max_size=60)


def span(start: int, end: int, n: int) -> tuple[int, int]:
    start, end = start + n if start < 0 else start, end + n if end < 0 else end
    start = max(start, 0)
    if start > end or start >= n:
        return 0, 0
    return start, min(end, n - 1) + 1


@settings(max_examples=200, deadline=None)
@given(list_ops, st.integers(-60, 60), st.integers(-60, 60))
def test_lists_match_a_python_list(steps: list[Any], lo: int, hi: int) -> None:
    ctx, model = new_ctx(), []
    for op, arg in steps:
        if op in ("LPUSH", "RPUSH"):
            assert call(ctx, op, K, *arg) == len(model) + len(arg)
            model = list(reversed(arg)) + model if op == "LPUSH" else model + arg
        elif op in ("LPOP", "RPOP"):
            reply = call(ctx, op, K, arg)
            if not model:
                assert reply is NULL_ARRAY
                continue
            n = min(arg, len(model))
            taken = model[:n] if op == "LPOP" else model[::-1][:n]
            model = model[n:] if op == "LPOP" else model[: len(model) - n]
            assert reply == taken
        elif op == "LREM":
            count, value = arg
            reply = call(ctx, "LREM", K, count, value)
            walk = list(range(len(model))) if count >= 0 else list(range(len(model) - 1, -1, -1))
            drop = [i for i in walk if model[i] == value][: abs(count) or None]
            model = [x for i, x in enumerate(model) if i not in set(drop)]
            assert reply == len(drop)
        elif op == "LTRIM":
            a, b = span(arg[0], arg[1], len(model))
            call(ctx, "LTRIM", K, arg[0], arg[1])
            model = model[a:b]
        elif op == "LSET":
            index, value = arg
            reply = call(ctx, "LSET", K, index, value)
            if not model:
                assert reply == ("error", "ERR no such key")
            elif -len(model) <= index < len(model):
                model[index] = value
            else:
                assert reply == ("error", "ERR index out of range")
        elif op == "LINSERT":
            after, pivot, value = arg
            reply = call(ctx, "LINSERT", K, "AFTER" if after else "BEFORE", pivot, value)
            if pivot in model:
                i = model.index(pivot) + after
                model.insert(i, value)
                assert reply == len(model)
            else:
                assert reply == (-1 if model else 0)
        else:
            src_left, dst_left = arg
            reply = call(ctx, "LMOVE", K, K, "LEFT" if src_left else "RIGHT", "LEFT" if dst_left else "RIGHT")
            if model:
                element = model.pop(0 if src_left else -1)
                model.insert(0, element) if dst_left else model.append(element)
                assert reply == element
            else:
                assert reply is None
        assert call(ctx, "LRANGE", K, 0, -1) == model
        assert call(ctx, "LLEN", K) == len(model)
        assert (K in ctx.db.data) == bool(model)
    a, b = span(lo, hi, len(model))
    assert call(ctx, "LRANGE", K, lo, hi) == model[a:b]
    assert call(ctx, "LINDEX", K, lo) == (model[lo] if -len(model) <= lo < len(model) else None)


# -- sets ---------------------------------------------------------------------------------------

member = st.sampled_from([b"1", b"2", b"30", b"a", b"b", b"m" * 70, b"-4"])
set_ops = st.lists(st.one_of(
    st.tuples(st.just("SADD"), st.sampled_from([K, OTHER]), st.lists(member, min_size=1, max_size=8)),
    st.tuples(st.just("SREM"), st.sampled_from([K, OTHER]), st.lists(member, min_size=1, max_size=3)),
    st.tuples(st.just("SPOP"), st.sampled_from([K, OTHER]), st.integers(0, 4)),
    st.tuples(st.just("SMOVE"), st.sampled_from([K, OTHER]), st.lists(member, min_size=1, max_size=1)),
    st.tuples(st.sampled_from(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), st.sampled_from([K, OTHER]),
              st.just([])),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(set_ops)
def test_sets_match_python_sets(steps: list[Any]) -> None:
    ctx = new_ctx()
    model: dict[bytes, set[bytes]] = {K: set(), OTHER: set()}
    other = {K: OTHER, OTHER: K}
    for op, key, arg in steps:
        if op == "SADD":
            assert call(ctx, "SADD", key, *arg) == len(set(arg) - model[key])
            model[key] |= set(arg)
        elif op == "SREM":
            assert call(ctx, "SREM", key, *arg) == len(set(arg) & model[key])
            model[key] -= set(arg)
        elif op == "SPOP":
            popped = call(ctx, "SPOP", key, arg)
            assert isinstance(popped, set) and popped <= model[key] and len(popped) == min(arg, len(model[key]))
            model[key] -= popped
        elif op == "SMOVE":
            m = arg[0]
            assert call(ctx, "SMOVE", key, other[key], m) == int(m in model[key])
            if m in model[key]:
                model[key].discard(m)
                model[other[key]].add(m)
        else:
            sources = [model[K], model[OTHER]]
            result = {"SINTERSTORE": set.intersection, "SUNIONSTORE": set.union,
                      "SDIFFSTORE": set.difference}[op](*sources)
            assert call(ctx, op, key, K, OTHER) == len(result)
            model[key] = set(result)
        for k in (K, OTHER):
            assert call(ctx, "SMEMBERS", k) == model[k]
            assert (k in ctx.db.data) == bool(model[k])


def test_spop_on_the_desired_plane_is_the_same_on_every_replica() -> None:
    """Two machines with differently-ordered sets (hash seeds differ between processes) pop alike."""
    popped = []
    for order in (range(300), reversed(range(300))):
        ctx = Ctx(Keyspace(), "log", "n1", itertools.count(1).__next__, deterministic=True)
        for i in order:
            call(ctx, "SADD", K, b"m%d" % i)
        ctx.random.seed(7)
        popped.append([call(ctx, "SPOP", K) for _ in range(20)] + [sorted(call(ctx, "SPOP", K, 5))])
    assert popped[0] == popped[1]


# -- sorted sets ---------------------------------------------------------------------------------

zmember = st.sampled_from([b"a", b"b", b"c", b"d", b"e" * 70])
zscore = st.sampled_from([b"-inf", b"-1", b"0", b"0.5", b"1", b"2", b"+inf"])
zset_ops = st.lists(st.one_of(
    st.tuples(st.just("ZADD"), st.lists(st.sampled_from([b"NX", b"XX", b"GT", b"LT", b"CH"]), max_size=2),
              st.lists(st.tuples(zscore, zmember), min_size=1, max_size=4)),
    st.tuples(st.just("ZINCRBY"), st.just([]), st.lists(st.tuples(zscore, zmember), min_size=1, max_size=1)),
    st.tuples(st.just("ZREM"), st.just([]), st.lists(st.tuples(zscore, zmember), min_size=1, max_size=2)),
    st.tuples(st.sampled_from(["ZPOPMIN", "ZPOPMAX"]), st.just([]), st.just([])),
    st.tuples(st.just("ZREMRANGEBYRANK"), st.just([]), st.just([])),
), max_size=50)


def zadd_model(model: dict[bytes, float], flags: list[bytes], pairs: list[tuple[bytes, bytes]]) -> int | None:
    if b"NX" in flags and (b"XX" in flags or b"GT" in flags or b"LT" in flags):
        return None
    if b"GT" in flags and b"LT" in flags:
        return None
    changed = 0
    for raw, m in pairs:
        s = float(raw)
        if m in model:
            if b"NX" in flags or (b"GT" in flags and s <= model[m]) or (b"LT" in flags and s >= model[m]):
                continue
            if s != model[m]:
                model[m] = s
                changed += b"CH" in flags
        elif b"XX" not in flags:
            model[m] = s
            changed += 1
    return changed


@settings(max_examples=250, deadline=None)
@given(zset_ops, st.sampled_from([(b"-inf", b"+inf"), (b"(0", b"2"), (b"0.5", b"(1"), (b"1", b"-1")]))
def test_sorted_sets_match_a_sorted_dict(steps: list[Any], bounds: tuple[bytes, bytes]) -> None:
    ctx, model = new_ctx(), {}
    for op, flags, pairs in steps:
        if op == "ZADD":
            expected = zadd_model(dict(model), flags, pairs)
            reply = call(ctx, "ZADD", K, *flags, *[x for p in pairs for x in p])
            if expected is None:
                assert isinstance(reply, tuple) and reply[0] == "error"
                continue
            zadd_model(model, flags, pairs)
            assert reply == expected
        elif op == "ZINCRBY":
            raw, m = pairs[0]
            new = model.get(m, 0.0) + float(raw)
            reply = call(ctx, "ZINCRBY", K, raw, m)
            if math.isnan(new):
                assert reply == ("error", "ERR resulting score is not a number (NaN)")
                continue
            model[m] = new
            assert reply == new
        elif op == "ZREM":
            ms = {m for _, m in pairs}
            assert call(ctx, "ZREM", K, *ms) == len(ms & set(model))
            for m in ms:
                model.pop(m, None)
        elif op in ("ZPOPMIN", "ZPOPMAX"):
            order = sorted((s, m) for m, s in model.items())
            reply = call(ctx, op, K)
            if not order:
                assert reply == []
                continue
            s, m = order[0] if op == "ZPOPMIN" else order[-1]
            assert reply == [m, s]
            del model[m]
        else:
            order = sorted((s, m) for m, s in model.items())
            removed = call(ctx, "ZREMRANGEBYRANK", K, 0, 1)
            assert removed == min(2, len(order))
            for _, m in order[:2]:
                del model[m]
        order = sorted((s, m) for m, s in model.items())
        assert call(ctx, "ZRANGE", K, 0, -1, "WITHSCORES") == Pairs([[m, s] for s, m in order])
        assert call(ctx, "ZCARD", K) == len(model)
        assert (K in ctx.db.data) == bool(model)
        for rank, (_, m) in enumerate(order):
            assert call(ctx, "ZRANK", K, m) == rank
    low, high = bounds
    lo, lo_ex = (float(low[1:]), True) if low[:1] == b"(" else (float(low), False)
    hi, hi_ex = (float(high[1:]), True) if high[:1] == b"(" else (float(high), False)
    expected = [m for s, m in sorted((s, m) for m, s in model.items())
                if (s > lo if lo_ex else s >= lo) and (s < hi if hi_ex else s <= hi)]
    assert call(ctx, "ZRANGEBYSCORE", K, low, high) == expected
    assert call(ctx, "ZCOUNT", K, low, high) == len(expected)
    assert call(ctx, "ZREVRANGEBYSCORE", K, high, low) == expected[::-1]


# -- bits ------------------------------------------------------------------------------------------

bit_ops = st.lists(st.one_of(
    st.tuples(st.just("SETBIT"), st.integers(0, 70), st.integers(0, 1)),
    st.tuples(st.just("BITFIELD"), st.tuples(st.sampled_from(["i", "u"]), st.integers(1, 16)), st.integers(0, 60),
              st.integers(-70000, 70000), st.sampled_from(["WRAP", "SAT", "FAIL"])),
), max_size=40)


def naive_get(bits: list[int], offset: int, width: int, signed: bool) -> int:
    value = 0
    for i in range(width):
        value = value << 1 | (bits[offset + i] if offset + i < len(bits) else 0)
    return value - (1 << width) if signed and value >> (width - 1) else value


@settings(max_examples=200, deadline=None)
@given(bit_ops, st.integers(0, 1), st.integers(-12, 12), st.integers(-12, 12))
def test_bits_match_a_list_of_bits(steps: list[Any], bit: int, start: int, end: int) -> None:
    ctx, bits = new_ctx(), []

    def grow(upto: int) -> None:
        while len(bits) % 8 or len(bits) <= upto:
            bits.append(0)

    for step in steps:
        if step[0] == "SETBIT":
            _, offset, on = step
            old = bits[offset] if offset < len(bits) else 0
            assert call(ctx, "SETBIT", K, offset, on) == old
            grow(offset)
            bits[offset] = on
        else:
            _, (sign, width), offset, value, overflow = step
            signed = sign == "i"
            low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            old = naive_get(bits, offset, width, signed)
            reply = call(ctx, "BITFIELD", K, "OVERFLOW", overflow, "INCRBY", f"{sign}{width}", offset, value)
            grow(offset + width - 1)
            new: int | None = old + value
            if not low <= new <= high:  # type: ignore[operator]
                new = None if overflow == "FAIL" else (
                    (high if new > high else low) if overflow == "SAT" else (new - low) % (1 << width) + low)  # type: ignore[operator]
            assert reply == [new]
            if new is not None:
                pattern = new & ((1 << width) - 1)
                for i in range(width):
                    bits[offset + i] = (pattern >> (width - 1 - i)) & 1
        data = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
        assert call(ctx, "GET", K) == data
    if not bits:
        return
    assert call(ctx, "BITCOUNT", K) == sum(bits)
    n = len(bits)
    # BITCOUNT/BITPOS clip as bitops.c does: unlike LRANGE, a negative end past the start becomes 0.
    a, b = start + n if start < 0 else start, end + n if end < 0 else end
    a, b = max(a, 0), min(max(b, 0), n - 1) + 1
    if a >= b:
        a = b = 0
    assert call(ctx, "BITCOUNT", K, start, end, "BIT") == (sum(bits[a:b]) if not (start < 0 and end < 0
                                                                                      and start > end) else 0)
    found = [i for i in range(a, b) if bits[i] == bit]
    reply = call(ctx, "BITPOS", K, bit, start, end, "BIT")
    assert reply == (found[0] if found else -1)


def test_types_and_wrongtype() -> None:
    ctx = new_ctx()
    call(ctx, "HSET", b"h", b"f", b"v")
    call(ctx, "RPUSH", b"l", b"x")
    call(ctx, "SADD", b"s", b"x")
    call(ctx, "ZADD", b"z", b"1", b"x")
    assert [ctx.db.data[k][KIND] for k in (b"h", b"l", b"s", b"z")] == [HASH, LIST, SET, ZSET]
    wrongtype = ("error", "WRONGTYPE Operation against a key holding the wrong kind of value")
    for key in (b"h", b"l", b"s", b"z"):
        assert call(ctx, "GET", key) == wrongtype
        assert call(ctx, "TYPE", key) == {b"h": "hash", b"l": "list", b"s": "set", b"z": "zset"}[key]
    assert call(ctx, "MGET", b"h", b"l") == [None, None]
    assert call(ctx, "LPUSH", b"h", b"x") == wrongtype
    assert call(ctx, "HGET", b"z", b"x") == wrongtype
    assert call(ctx, "SET", b"z", b"now a string") is not None and call(ctx, "TYPE", b"z") == "string"


class _WalkingKeyspace(Keyspace):
    """A keyspace with a point-in-time walk hooked in, as a dump running alongside writes has."""

    __slots__ = ("saving",)


class _Walk:
    """The walk's side of the protocol: told before a key changes, it keeps the entry it must still emit."""

    def __init__(self, db: Keyspace) -> None:
        self.db = db
        self.remembered: dict[bytes, tuple[Any, Any]] = {}

    def before_change(self, key: bytes) -> None:
        if key not in self.remembered:
            self.remembered[key] = (self.db.data.get(key), None)


def test_a_collection_changed_during_a_point_in_time_walk_is_copied_once() -> None:
    db = _WalkingKeyspace()
    db.saving = None
    ctx = Ctx(db, "local", "n1", itertools.count(1).__next__)
    for fill in (("HSET", b"h", b"f", b"1"), ("RPUSH", b"l", *[b"x"] * 200), ("SADD", b"s", b"a"),
                 ("ZADD", b"z", b"1", b"a")):
        call(ctx, *fill)
    before = {b"h": dict(call(ctx, "HGETALL", b"h"))}
    walk = _Walk(db)
    db.saving = walk
    live = {k: db.data[k][0] for k in (b"h", b"l", b"s", b"z")}
    call(ctx, "HSET", b"h", b"g", b"2")
    call(ctx, "RPUSH", b"l", b"y")
    call(ctx, "SADD", b"s", b"b")
    call(ctx, "ZADD", b"z", b"2", b"b")
    for key, value in live.items():
        held = walk.remembered[key][0][0]
        assert held is value  # the walk still holds the value as it was...
        assert db.data[key][0] is not value  # ...and the key now holds a copy
    assert walk.remembered[b"h"][0][0] == before[b"h"]
    assert len(walk.remembered[b"l"][0][0]) == 200 and walk.remembered[b"s"][0][0] == {b"a"}
    copies = {k: db.data[k][0] for k in live}
    call(ctx, "HSET", b"h", b"k", b"3")
    call(ctx, "SADD", b"s", b"c")
    assert db.data[b"h"][0] is copies[b"h"] and db.data[b"s"][0] is copies[b"s"]  # once per key and walk
