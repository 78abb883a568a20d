"""The Lua sandbox (vfsd.scripting.sandbox) and its libraries, in-process."""

from __future__ import annotations

import json
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.resp.types import ErrorReply
from vfsd.scripting.sandbox import HOOK_STEPS, Run, Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(max_memory_bytes=64 << 20)


def run(sandbox: Sandbox, body: str, keys: list[bytes] | None = None, argv: list[bytes] | None = None,
        command: Any = None, **kwargs: Any) -> Any:
    fn = sandbox.compile_eval(body.encode())
    return sandbox.execute_eval(fn, keys or [], argv or [], Run("sha", command or (lambda a: b"reply"), **kwargs))


def error(sandbox: Sandbox, body: str) -> str:
    reply = run(sandbox, body)
    assert isinstance(reply, ErrorReply), reply
    return reply.message


# -- the globals ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["os", "io", "debug", "require", "loadfile", "dofile", "print", "module",
                                  "package", "python"])
def test_dangerous_globals_are_absent(sandbox: Sandbox, name: str) -> None:
    assert error(sandbox, f"return {name}") == (
        f"ERR user_script:1: Script attempted to access nonexistent global variable '{name}' script: sha, "
        "on @user_script:1.")


@pytest.mark.parametrize("body", ["x = 1", "_G.x = 1", "string.x = 1", "redis.call = nil", "cjson.null = 1",
                                  "math.random = nil"])
def test_globals_and_libraries_are_read_only(sandbox: Sandbox, body: str) -> None:
    assert "Attempt to modify a readonly table" in error(sandbox, body)


@pytest.mark.parametrize("body", ["rawset(_G, 'x', 1)", "rawset(string, 'x', 1)", "setmetatable(_G, {})"])
def test_raw_writes_to_protected_tables_are_refused(sandbox: Sandbox, body: str) -> None:
    assert error(sandbox, body).startswith("ERR Attempt to modify a readonly table")


def test_no_way_back_to_the_pristine_globals(sandbox: Sandbox) -> None:
    assert run(sandbox, "return getfenv(0) == _G and getfenv(tostring) == _G and getfenv(1) == _G") == 1
    # The sandbox's own functions stand in for Redis's C functions: their environment is the script's.
    assert run(sandbox, "local e = getfenv(redis.error_reply) return e == _G and getfenv(pcall) == _G and "
                        "not pcall(function() return e.os end) and getmetatable('').__index == string") == 1
    assert "cannot change the environment of the running thread" in error(sandbox, "setfenv(0, {})")
    # A script may give its own functions an environment: they are its own.
    assert run(sandbox, "local f = function() return y end setfenv(f, {y = 5}) return f()") == 5


def test_python_objects_are_unreachable(sandbox: Sandbox) -> None:
    assert run(sandbox, "return type(redis.call)") == b"function"  # as in Redis, though it is a Python callable
    assert run(sandbox, "return tostring(redis.call):sub(1, 12)") == b"function: 0x"  # no Python repr
    for attr in ("__class__", "__globals__", "__self__"):
        assert error(sandbox, f"return redis.call.{attr}").startswith("ERR")
    assert run(sandbox, "local ok = pcall(function() return redis.call.__globals__ end) return tostring(ok)") == b"false"


def test_bytecode_is_refused(sandbox: Sandbox) -> None:
    assert run(sandbox, "local f, e = loadstring(string.dump(function() return 1 end)) return e") == (
        b"attempt to load a binary chunk")
    assert run(sandbox, "return loadstring('return KEYS[1]')()", keys=[b"k"]) == b"k"  # source chunks are fine


def test_keys_and_argv_do_not_leak_between_runs(sandbox: Sandbox) -> None:
    assert run(sandbox, "return {KEYS[1], ARGV[1]}", [b"k"], [b"a"]) == [b"k", b"a"]
    assert run(sandbox, "return #KEYS + #ARGV") == 0


# -- redis.* ------------------------------------------------------------------------


def test_redis_call_arguments_and_errors(sandbox: Sandbox) -> None:
    seen: list[list[bytes]] = []

    def command(argv: list[bytes]) -> Any:
        seen.append(argv)
        return ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")

    assert isinstance(run(sandbox, "return redis.call('set', 'k', 1.5, 7, '')", command=command), ErrorReply)
    assert seen[-1] == [b"set", b"k", b"1.5", b"7", b""]
    reply = run(sandbox, "return redis.pcall('get', 'k')", command=command)
    assert reply.message == "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert run(sandbox, "local ok, e = pcall(redis.call, 'get', 'k') return e", command=command) == (
        b"WRONGTYPE Operation against a key holding the wrong kind of value")
    assert error(sandbox, "return redis.call('get', {})").startswith(
        "ERR Lua redis lib command arguments must be strings or integers script: sha, on @user_script:1.")
    assert error(sandbox, "\n\nreturn redis.call()").endswith("on @user_script:3.")


def test_a_command_bug_costs_the_script_not_the_node(sandbox: Sandbox) -> None:
    def broken(argv: list[bytes]) -> Any:
        raise RuntimeError("handler bug")

    assert "internal error in 'get': handler bug" in run(sandbox, "return redis.call('get', 'k')",
                                                          command=broken).message


# -- the hook: kill, budget, coroutines --------------------------------------------------


def test_a_verdict_stops_the_script_even_inside_pcall(sandbox: Sandbox) -> None:
    ticks = []

    def on_tick(run_: Run | None) -> bytes | None:
        if run_ is None:
            return None
        ticks.append(1)
        return b"ERR stop now" if len(ticks) > 3 else None

    sandbox.on_tick = on_tick
    try:
        reply = run(sandbox, "while true do pcall(function() while true do end end) end")
        assert reply.message.startswith("ERR stop now script: sha, on @user_script:1")
        ticks.clear()
        reply = run(sandbox, "local f = coroutine.wrap(function() while true do end end) f()")
        assert reply.message.startswith("ERR stop now")
    finally:
        sandbox.on_tick = None
    assert run(sandbox, "return 'afterwards'") == b"afterwards"


def test_the_instruction_budget_is_deterministic() -> None:
    body = "local n = 0 for i = 1, 1e12 do n = n + i end"
    steps = []
    for history in (0, 3):
        fresh = Sandbox()
        for _ in range(history):  # a different past must not change where the budget stops
            run(fresh, "local s = 0 for i = 1, 12345 do s = s + i end return s")
        r = Run("sha", lambda a: None, max_steps=20)
        reply = fresh.execute_eval(fresh.compile_eval(body.encode()), [], [], r)
        assert "exceeded its budget of %d instructions" % (20 * HOOK_STEPS) in reply.message
        steps.append(r.steps)
    assert steps == [21, 21]


def test_random_is_redis_rand48_and_seedable(sandbox: Sandbox) -> None:
    sandbox.seed(42)
    first = run(sandbox, "return {math.random(100), math.random(1, 6), tostring(math.random())}")
    sandbox.seed(42)
    assert run(sandbox, "return {math.random(100), math.random(1, 6), tostring(math.random())}") == first
    assert run(sandbox, "math.randomseed(1) local a = math.random(1000) math.randomseed(1) "
                        "return a == math.random(1000)") == 1
    assert "interval is empty" in error(sandbox, "return math.random(0)")


def test_memory_limit_then_recovery() -> None:
    small = Sandbox(max_memory_bytes=16 << 20)
    for _ in range(3):
        assert "not enough memory" in error(small, "local t = {} for i = 1, 1e9 do t[i] = {i} end")
        assert run(small, "return 'ok'") == b"ok"
    assert small.runtime.get_memory_used() < 8 << 20


# -- libraries ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=8),
    lambda children: st.lists(children, min_size=1, max_size=4)
    | st.dictionaries(st.text(min_size=1, max_size=4), children, min_size=1, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_cjson_round_trips_like_json(sandbox: Sandbox, value: Any) -> None:
    text = json.dumps(value)
    encoded = run(sandbox, "return cjson.encode(cjson.decode(ARGV[1]))", argv=[text.encode()])
    assert json.loads(encoded) == value


def test_cjson_formats(sandbox: Sandbox) -> None:
    assert run(sandbox, "return cjson.encode({})") == b"{}"
    assert run(sandbox, "return cjson.encode({1, 2, 'a/b'})") == b'[1,2,"a\\/b"]'
    assert run(sandbox, "return cjson.encode(1/3)") == b"0.33333333333333"
    assert run(sandbox, "return cjson.encode({[1] = 1, [3] = 3})") == b"[1,null,3]"
    assert "excessively sparse array" in error(sandbox, "return cjson.encode({[1] = 1, [30] = 3})")


scalars = st.integers(-2**62, 2**62) | st.binary(max_size=300) | st.booleans()


@settings(max_examples=60, deadline=None)
@given(st.lists(scalars, min_size=1, max_size=5))
def test_cmsgpack_packs_what_msgpack_reads(sandbox: Sandbox, values: list[Any]) -> None:
    packed = run(sandbox, "return cmsgpack.pack(ARGV)", argv=[v if isinstance(v, bytes) else b"%d" % v
                                                             for v in values])
    assert msgpack.unpackb(packed, raw=True) == [v if isinstance(v, bytes) else b"%d" % v for v in values]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53]
    if ints:
        table = "{" + ",".join(str(i) for i in ints) + "}"
        assert msgpack.unpackb(run(sandbox, f"return cmsgpack.pack({table})")) == ints


@settings(max_examples=100, deadline=None)
@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 31))
def test_bit_matches_32_bit_arithmetic(sandbox: Sandbox, a: int, b: int, n: int) -> None:
    def s32(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - (1 << 32) if x >= 1 << 31 else x

    got = run(sandbox, f"return {{bit.band({a}, {b}), bit.bor({a}, {b}), bit.bxor({a}, {b}), bit.bnot({a}), "
                       f"bit.lshift({a}, {n}), bit.rshift({a}, {n}), bit.arshift({a}, {n})}}")
    assert got == [s32(a & b), s32(a | b), s32(a ^ b), s32(~a), s32(a << n), s32((a & 0xFFFFFFFF) >> n), s32(a) >> n]


@pytest.mark.parametrize("fmt, values, py", [(">I2", [258], ">H"), ("<i4", [-2], "<i"), (">d", [1.5], ">d"),
                                             ("<h", [-300], "<h"), (">B", [255], ">B"), ("<I8", [2**40], "<Q")])
def test_struct_matches_python_struct(sandbox: Sandbox, fmt: str, values: list[Any], py: str) -> None:
    args = ", ".join(map(str, values))
    assert run(sandbox, f"return struct.pack('{fmt}', {args})") == struct.pack(py, *values)
    unpacked = run(sandbox, f"return {{struct.unpack('{fmt}', struct.pack('{fmt}', {args}))}}")
    assert unpacked[:-1] == [int(v) for v in values] and unpacked[-1] == struct.calcsize(py) + 1


# -- long library calls: they report their work, so the hook's decisions reach inside them --------

BIG_JSON_ARRAY = b"[" + b"1," * 300_000 + b"1]"
LONG_CALLS = [  # one library call on its ARGV: the script itself runs only a handful of VM instructions
    ("return #cjson.decode(ARGV[1])", BIG_JSON_ARRAY),
    ("return #cjson.encode(ARGV[1])", b"\x01" * 2_000_000),
    ("return #cmsgpack.unpack(ARGV[1])", msgpack.packb([7] * 300_000)),
    ("return #cmsgpack.pack(cmsgpack.unpack(ARGV[1]))", msgpack.packb([7] * 150_000)),
    ("return #cjson.encode(cjson.decode(ARGV[1]))", BIG_JSON_ARRAY),
    ("return #struct.pack(ARGV[1])", b"x" * 300_000),
    ("return struct.size(ARGV[1])", b"i" * 300_000),
    ("return #table.concat(cjson.decode(ARGV[1]), ',')", BIG_JSON_ARRAY),
    ("return #string.rep(ARGV[1], 2^22)", b"abcdefgh"),
]


@pytest.mark.parametrize("body, arg", LONG_CALLS, ids=[body for body, _ in LONG_CALLS])
def test_long_library_calls_reach_the_hook(body: str, arg: bytes) -> None:
    fresh = Sandbox()
    periods: list[int] = []

    def on_tick(run_: Run | None) -> bytes | None:
        periods.append(run_.steps if run_ is not None else 0)
        return None

    fresh.on_tick = on_tick
    assert isinstance(run(fresh, body, argv=[arg]), int)
    assert periods and periods[-1] >= 5  # the script's own few instructions never reach a hook period

    def stop(run_: Run | None) -> bytes | None:
        return b"ERR stopped inside the library" if run_ is not None and run_.steps >= 2 else None

    fresh.on_tick = stop
    # Stopped inside the call: its pcall cannot keep the script going (the next line raises again).
    reply = run(fresh, f"local ok, e = pcall(function() {body} end)\nreturn 'finished'", argv=[arg])
    assert isinstance(reply, ErrorReply), reply
    assert reply.message == "ERR stopped inside the library script: sha, on @user_script:2."
    fresh.on_tick = None
    assert run(fresh, "return 'afterwards'") == b"afterwards"


def test_library_work_counts_against_the_budget_deterministically() -> None:
    body = "return #cjson.encode(cjson.decode(ARGV[1]))"
    steps = []
    for history in (0, 2):
        fresh = Sandbox()
        for _ in range(history):  # a different past must not change where the budget stops
            run(fresh, body, argv=[b"[" + b"2," * 5000 + b"2]"])
        r = Run("sha", lambda a: None, max_steps=30)
        reply = fresh.execute_eval(fresh.compile_eval(body.encode()), [], [BIG_JSON_ARRAY], r)
        assert "exceeded its budget of %d instructions" % (30 * HOOK_STEPS) in reply.message
        steps.append((r.steps, r.work))
    assert steps[0] == steps[1]


def test_big_results_fail_cleanly_before_they_are_built() -> None:
    small = Sandbox(max_memory_bytes=32 << 20)
    assert "not enough memory" in error(small, "return #string.rep('x', 2^30)")
    assert "not enough memory" in error(small, "return ('ab'):rep(2^31 - 1)")
    assert "not enough memory" in error(
        small, "local t = {} for i = 1, 1e6 do t[i] = 'item' end return #table.concat(t, string.rep('-', 100))")
    assert "not enough memory" in error(small, "return #cjson.encode({string.rep('\\1', 3e6)})")
    assert run(small, "return #string.rep('x', 2^20)") == 1 << 20
    assert small.runtime.get_memory_used() < 16 << 20


def test_lua_tonumber_reads_numbers_as_lua_does() -> None:
    from vfsd.scripting.libs import lua_tonumber

    for text, number in [(b"10", 10), (b" 2 ", 2), (b"0x10", 16), (b"-0x10", -16), (b"1e2", 100), (b".5", 0.5),
                         (b"5.", 5), (b"5\0junk", 5), (b"\t\n3\v", 3), (b"inf", float("inf"))]:
        assert lua_tonumber(text) == number, text
    for text in (b"", b" ", b"1_0", b"0x", b"1e", b"abc", b"1 2", b"--1"):
        assert lua_tonumber(text) is None, text
