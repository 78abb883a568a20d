"""Value kinds (vfsd.store.values): wire forms, packed lists, encodings; and Redis 7.2's double format."""

from __future__ import annotations

import math
import struct
from collections import deque
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.codec import DOC, RAW, pack
from vfsd.resp.encoder import encode
from vfsd.store.values import (
    HASH,
    LIST,
    PACKED_LIST_MAX_ITEMS,
    SET,
    ZSET,
    HashSet,
    HashTable,
    ListpackSet,
    WireError,
    close_list,
    copy_value,
    from_wire,
    json_view,
    length,
    list_items,
    list_value,
    object_encoding,
    open_list,
    packed_len,
    set_add,
    set_from_members,
    string2ll,
    to_wire,
)
from vfsd.store.zset import ZSet

members = st.binary(max_size=80)
small = st.sampled_from([b"a", b"b", b"1", b"22", b"-3", b"", b"x" * 70, b"\x00\xff"])
element = st.one_of(small, members)
score = st.floats(allow_nan=False)


def zset_of(pairs: dict[bytes, float]) -> ZSet:
    zs = ZSet()
    for member, value in pairs.items():
        zs.add(member, value)
    return zs


values = st.one_of(
    st.tuples(st.just(RAW), st.binary(max_size=100)),
    st.tuples(st.just(HASH), st.dictionaries(element, element, min_size=1, max_size=20)),
    st.tuples(st.just(LIST), st.lists(element, min_size=1, max_size=300).map(list_value)),
    st.tuples(st.just(SET), st.sets(element, min_size=1, max_size=40).map(set_from_members)),
    st.tuples(st.just(ZSET), st.dictionaries(element, score, min_size=1, max_size=40).map(zset_of)),
)


def plain(kind: int, value: Any) -> Any:
    """The value as plain Python data, for comparison."""
    if kind == LIST:
        return list(list_items(value))
    if kind == ZSET:
        return sorted((s, m) for m, s in value.scores.items())
    if kind == HASH:
        return list(value.items())
    if kind == SET:
        return set(value)
    return value


@settings(max_examples=300, deadline=None)
@given(values)
def test_wire_round_trip_through_msgpack(kv: tuple[int, Any]) -> None:
    kind, value = kv
    wire = msgpack.unpackb(msgpack.packb(to_wire(kind, value), use_bin_type=True), raw=False)
    back = from_wire(kind, wire)
    assert plain(kind, back) == plain(kind, value)
    assert object_encoding(kind, back) == object_encoding(kind, from_wire(kind, to_wire(kind, back)))


@settings(max_examples=200, deadline=None)
@given(values)
def test_to_wire_is_a_copy_later_writes_cannot_touch(kv: tuple[int, Any]) -> None:
    kind, value = kv
    wire = to_wire(kind, value)
    frozen = msgpack.packb(wire, use_bin_type=True)
    if kind == HASH:
        value[b"new-field"] = b"v"
    elif kind == SET:
        value.add(b"new-member")
    elif kind == ZSET:
        value.add(b"new-member", 1.0)
    elif kind == LIST and type(value) is deque:
        value.append(b"new")
    assert msgpack.packb(wire, use_bin_type=True) == frozen


garbage = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=8),
                                 st.text(max_size=8)),
                       lambda inner: st.lists(inner, max_size=6), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([RAW, DOC, HASH, LIST, SET, ZSET]), garbage)
def test_from_wire_refuses_garbage_with_wire_error_only(kind: int, obj: Any) -> None:
    try:
        value = from_wire(kind, obj)
    except WireError:
        return
    assert plain(kind, from_wire(kind, to_wire(kind, value))) == plain(kind, value)


@pytest.mark.parametrize("kind, obj", [
    (HASH, [b"f", b"v", b"f", b"w"]),  # duplicate field
    (HASH, []),
    (LIST, []),
    (SET, [b"a", b"a"]),
    (ZSET, [b"m", 1.0, b"m", 2.0]),
    (ZSET, [b"m", float("nan")]),
    (ZSET, [b"m", 1]),  # an int is not a float64 score
    (DOC, b"\xc1"),  # not msgpack
])
def test_from_wire_refuses_malformed_values(kind: int, obj: Any) -> None:
    with pytest.raises(WireError):
        from_wire(kind, obj)


def test_unknown_wire_version_is_refused() -> None:
    with pytest.raises(WireError, match="version"):
        from_wire(RAW, b"x", version=2)


# -- packed lists -------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(element, max_size=200), st.lists(st.sampled_from(["push", "pop"]), max_size=200))
def test_open_close_keeps_the_elements_whatever_the_representation(start: list[bytes], ops: list[str]) -> None:
    model = list(start)
    value: Any = list_value(start) if start else list_value([b"seed"])
    if not start:
        model = [b"seed"]
    for op in ops:
        packed = type(value) is bytes
        items = open_list(value)
        if op == "push":
            items.append(b"e")
            model.append(b"e")
        elif items:
            items.popleft()
            model.pop(0)
        if not items:
            break
        value = close_list(items, packed)
        assert list(list_items(value)) == model
        assert length(LIST, value) == len(model)
        if type(value) is bytes:
            assert packed_len(value) == len(model) <= PACKED_LIST_MAX_ITEMS


def test_a_long_list_is_a_deque_and_packs_again_once_half_as_small() -> None:
    value = list_value([b"x"] * 200)
    assert type(value) is deque
    items = open_list(value)
    while len(items) > PACKED_LIST_MAX_ITEMS // 2 + 1:
        items.pop()
        assert close_list(items, False) is items
    items.pop()
    assert type(close_list(items, False)) is bytes


# -- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize("data, expected", [
    (b"123", "int"), (b"-9223372036854775808", "int"), (b"9223372036854775808", "embstr"), (b"0123", "embstr"),
    (b"x" * 44, "embstr"), (b"x" * 45, "raw"), (b"", "embstr"), (b"+1", "embstr"),
])
def test_string_encodings(data: bytes, expected: str) -> None:
    assert object_encoding(RAW, data) == expected


def test_hash_encoding_converts_one_way() -> None:
    assert object_encoding(HASH, {b"f": b"v"}) == "listpack"
    assert object_encoding(HASH, HashTable({b"f": b"v"})) == "hashtable"
    assert object_encoding(HASH, from_wire(HASH, [b"f", b"v" * 65])) == "hashtable"
    assert object_encoding(HASH, from_wire(HASH, [x for i in range(513) for x in (b"%d" % i, b"v")])) == "hashtable"
    assert object_encoding(HASH, from_wire(HASH, [x for i in range(512) for x in (b"%d" % i, b"v")])) == "listpack"


def test_set_encodings_follow_redis_7_2() -> None:
    s: set[bytes] = set()
    for i in range(512):
        s, _ = set_add(s, b"%d" % i)
    assert object_encoding(SET, s) == "intset"
    s, _ = set_add(s, b"512")
    assert type(s) is HashSet and object_encoding(SET, s) == "hashtable"
    t: set[bytes] = set()
    t, _ = set_add(t, b"1")
    t, _ = set_add(t, b"a")
    assert type(t) is ListpackSet
    t.discard(b"a")
    assert object_encoding(SET, t) == "listpack"  # one way: Redis never goes back to intset
    for i in range(127):
        t, _ = set_add(t, b"m%d" % i)
    assert object_encoding(SET, t) == "listpack" and len(t) == 128
    t, _ = set_add(t, b"one more")
    assert object_encoding(SET, t) == "hashtable"


def test_list_encoding_is_judged_by_listpack_size() -> None:
    assert object_encoding(LIST, list_value([b"a"] * 10)) == "listpack"
    assert object_encoding(LIST, list_value([b"x" * 100] * 81)) == "quicklist"  # > 8 KiB of listpack
    assert object_encoding(LIST, list_value([b"1"] * 4000)) == "listpack"  # small integers take 2 bytes each


def test_copies_are_independent_and_keep_the_encoding() -> None:
    h = HashTable({b"f": b"v"})
    c = copy_value(HASH, h)
    c[b"g"] = b"w"
    assert b"g" not in h and type(c) is HashTable
    zs = zset_of({b"a": 1.0})
    zs.skiplist = True
    zc = copy_value(ZSET, zs)
    zc.add(b"b", 2.0)
    assert len(zs) == 1 and zc.skiplist


def test_json_view_falls_back_to_base64_for_binary() -> None:
    assert json_view(HASH, {b"a": b"1"}) == ("value", {"a": "1"})
    assert json_view(ZSET, zset_of({b"a": math.inf}))[1] == [["a", "inf"]]
    name, text = json_view(LIST, list_value([b"\xff"]))
    assert name == "value_base64" and isinstance(text, str)


def test_string2ll_is_redis_strict() -> None:
    assert string2ll(b"-12") == -12 and string2ll(b"0") == 0
    for bad in (b"", b"-", b"01", b"+1", b" 1", b"1 ", b"-0", b"9223372036854775808", b"1.0"):
        assert string2ll(bad) is None


# -- doubles as Redis 7.2 prints them (util.c d2string, deps/fpconv) ------------------------


@pytest.mark.parametrize("number, text", [
    (1.5, b"1.5"), (0.1, b"0.1"), (1.1, b"1.1"), (1e-7, b"1e-7"), (2 ** -10, b"9.765625e-4"),
    (1e16, b"10000000000000000"), (1e20, b"1e+20"), (123456.789, b"123456.789"), (-0.0, b"-0"),
    (3.0, b"3"), (math.inf, b"inf"), (-math.inf, b"-inf"), (0.00001, b"0.00001"), (1.23e-8, b"1.23e-8"),
    (5e-324, b"5e-324"), (1.7976931348623157e308, b"1.7976931348623157e+308"), (4.611686018427388e18, b"4611686018427387904"),
])
def test_doubles_print_like_redis_7_2(number: float, text: bytes) -> None:
    assert encode(number, 3) == b"," + text + b"\r\n"
    assert encode(number, 2) == b"$%d\r\n%b\r\n" % (len(text), text)


@settings(max_examples=500)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_printed_doubles_read_back_exactly(number: float) -> None:
    text = encode(number, 3)[1:-2]
    assert float(text) == number and (number != 0 or text.startswith(b"-") == (math.copysign(1, number) < 0))


def test_dump_trailer_layout() -> None:
    from vfsd.commands.keys import dump_payload, load_payload

    payload = dump_payload(RAW, b"v")
    version, _ = struct.unpack_from("<HQ", payload, len(payload) - 10)
    assert version == 1
    assert load_payload(payload) == (RAW, b"v")
    assert load_payload(dump_payload(DOC, pack({"a": 1}))) == (DOC, pack({"a": 1}))
