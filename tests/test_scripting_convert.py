"""The Lua <-> reply conversion rules (vfsd.scripting.convert), with plain Python stand-ins for Lua."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vfsd.resp.types import NULL_ARRAY, BigNumber, ErrorReply, SimpleString, Verbatim
from vfsd.scripting.convert import (
    MAX_REPLY_DEPTH,
    LuaOps,
    error_table_message,
    format_number,
    lua_to_reply,
    reply_to_lua,
    truncate_number,
)


class T(dict):  # type: ignore[type-arg]
    """A Lua table stand-in: keys are Lua values (bytes strings, numbers, tables by identity)."""

    __hash__ = object.__hash__  # type: ignore[assignment]


def new_table(value: Any) -> T:
    if isinstance(value, list):
        return T({i + 1: v for i, v in enumerate(value) if v is not None})
    return T({k: v for k, v in value.items() if v is not None})


OPS = LuaOps(lambda v: isinstance(v, T), lambda t, k: t.get(k), lambda t: list(t.items()))


def lua(value: Any, resp3: bool = False) -> Any:
    return lua_to_reply(value, resp3, OPS)


# -- Lua -> reply -------------------------------------------------------------------


@pytest.mark.parametrize("value, reply", [
    (b"s", b"s"), (3, 3), (3.99, 3), (-3.7, -3), (0.5, 0), (None, None), (False, None), (True, 1),
    (T(), []), (new_table([1, 2, 3]), [1, 2, 3]), (T({1: 1, 2: 2, 4: 4}), [1, 2]),  # stops at the first nil
    (T({1: b"a", b"x": b"ignored"}), [b"a"]), (T({b"x": 1}), []),
    (new_table([1, False, 3]), [1, None, 3]), (new_table([new_table([1, new_table([2])])]), [[1, [2]]]),
])
def test_plain_values_and_arrays(value: Any, reply: Any) -> None:
    assert lua(value) == reply


def test_tagged_tables() -> None:
    err = lua(T({b"err": b"MY error"}))
    assert isinstance(err, ErrorReply) and err.message == "MY error"  # no "ERR" added
    ok = lua(T({b"ok": b"a\r\nb"}))
    assert type(ok) is SimpleString and ok == "a  b"
    assert isinstance(lua(T({b"err": b"x", b"ok": b"y"})), ErrorReply)  # err wins, as in Redis
    assert lua(T({b"err": 5})) == []  # not a string: an (empty) array
    assert lua(T({b"double": 3.5})) == 3.5 and type(lua(T({b"double": 3}))) is float
    big = lua(T({b"big_number": b"123456789012345678901234567890"}))
    assert type(big) is BigNumber and big == "123456789012345678901234567890"
    verbatim = lua(T({b"verbatim_string": T({b"format": b"mkd", b"string": b"# hi"})}))
    assert isinstance(verbatim, Verbatim) and verbatim == "# hi" and verbatim.format_code == "mkd"
    assert lua(T({b"map": T({b"a": 1, b"b": T({b"ok": b"S"})})})) == {b"a": 1, b"b": "S"}
    assert lua(T({b"set": T({b"a": True, b"b": True})})) == {b"a", b"b"}
    nested = lua(new_table([1, T({b"err": b"E inner"}), 3]))
    assert nested[0] == 1 and isinstance(nested[1], ErrorReply) and nested[2] == 3


def test_booleans_follow_the_scripts_protocol() -> None:
    assert lua(True, resp3=True) is True and lua(False, resp3=True) is False
    assert lua(True) == 1 and lua(False) is None


def test_self_referencing_table_stops_at_the_depth_limit() -> None:
    t = T()
    t[1] = t
    reply = lua(t)
    depth = 0
    while isinstance(reply, list):
        reply, depth = reply[0], depth + 1
    assert depth == MAX_REPLY_DEPTH and isinstance(reply, ErrorReply)
    assert reply.message == "ERR reached lua stack limit"


def test_unhashable_map_keys_and_set_members_become_tuples() -> None:
    assert lua(T({b"map": T({new_table([1, 2]): b"v"})})) == {(1, 2): b"v"}
    assert lua(T({b"set": T({new_table([1]): True})})) == {(1,)}


def test_other_lua_types_are_null() -> None:
    assert lua(object()) is None  # a function or userdata


@pytest.mark.parametrize("n, expected", [
    (3.99, 3), (-3.99, -3), (1e30, -(1 << 63)), (float("nan"), -(1 << 63)), (float("inf"), -(1 << 63)),
    (2**62, 2**62), (9.2e18, 9200000000000000000),
])
def test_truncate_like_a_c_cast(n: float, expected: int) -> None:
    assert truncate_number(n) == expected


# -- reply -> Lua -------------------------------------------------------------------


@pytest.mark.parametrize("reply, resp2, resp3", [
    (b"v", b"v", b"v"), (5, 5, 5), (None, False, None), (NULL_ARRAY, False, None),
    (SimpleString("OK"), T({b"ok": b"OK"}), T({b"ok": b"OK"})),
    ([b"a", None, 3], T({1: b"a", 2: False, 3: 3}), T({1: b"a", 3: 3})),
    ({b"k": b"v"}, T({1: b"k", 2: b"v"}), T({b"map": T({b"k": b"v"})})),
    ({b"m"}, T({1: b"m"}), T({b"set": T({b"m": True})})),
    (True, 1, True), (False, 0, False),
    (1.5, b"1.5", T({b"double": 1.5})), (3.0, b"3", T({b"double": 3.0})),
    (Verbatim("text"), b"text", T({b"verbatim_string": T({b"format": b"txt", b"string": b"text"})})),
    (BigNumber("12345678901234567890"), b"12345678901234567890", T({b"big_number": b"12345678901234567890"})),
])
def test_reply_to_lua(reply: Any, resp2: Any, resp3: Any) -> None:
    assert reply_to_lua(reply, 2, new_table) == resp2
    assert reply_to_lua(reply, 3, new_table) == resp3


@pytest.mark.parametrize("message, field", [
    ("ERR bad thing", b"ERR bad thing"), ("WRONGTYPE Operation", b"WRONGTYPE Operation"),
    ("-CODE with dash", b"CODE with dash"), ("justone", b"ERR justone"), ("ERR trailing\r\n", b"ERR trailing"),
])
def test_error_replies_become_err_tables(message: str, field: bytes) -> None:
    assert error_table_message(message) == field
    assert reply_to_lua(ErrorReply(message), 2, new_table) == T({b"err": field})


# -- numbers as redis.call arguments --------------------------------------------------


@pytest.mark.parametrize("n, text", [
    (3, b"3"), (3.0, b"3"), (-7, b"-7"), (0.1, b"0.1"), (1.5, b"1.5"), (1e20, b"1e+20"), (1e16, b"10000000000000000"),
    (2.0**53, b"9007199254740992"), (123456789012345678.0, b"1.2345678901234568e+17"), (1.5e-7, b"1.5e-07"),
    (0.0001, b"0.0001"), (0.00001, b"1e-05"), (-0.0, b"-0"), (0.0, b"0"), (math.inf, b"inf"), (-math.inf, b"-inf"),
    (float("nan"), b"nan"), (-float("nan"), b"-nan"), (2**60, b"1.152921504606847e+18"),
])
def test_format_number(n: float, text: bytes) -> None:
    assert format_number(n) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_round_trips_and_matches_percent_g_layout(n: float) -> None:
    text = format_number(n)
    assert float(text) == n
    # The same layout %.17g chooses (fixed or exponent), with the shortest digits.
    reference = ("%.17g" % n).encode()
    assert (b"e" in text) == (b"e" in reference)
    digits = text.lstrip(b"-").split(b"e")[0].replace(b".", b"").lstrip(b"0")
    assert len(digits.rstrip(b"0")) <= len(repr(abs(n)).replace(".", "").split("e")[0].strip("0")) + 1
