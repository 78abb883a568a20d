"""Scripts and functions on a real node: planes, persistence, busy scripts, limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis

from tests.conftest import VfsdProcess, wait_for

LOOP = "local i = 0 while true do i = i + 1 end"
LIB = "#!lua name=lib\nredis.register_function('getter', function(keys) return redis.call('get', keys[1]) end)\n"


@pytest.fixture
def node(node_factory: Callable[..., VfsdProcess]) -> VfsdProcess:
    return node_factory()


@pytest.fixture
def r(node: VfsdProcess) -> Iterator[redis.Redis]:
    client = node.client()
    yield client
    client.close()


def stat(r: redis.Redis, path: str) -> dict[str, Any]:
    reply = r.execute_command("VFS.STAT", path)
    return {reply[i].decode(): reply[i + 1] for i in range(0, len(reply), 2)}


# -- planes --------------------------------------------------------------------------


def test_desired_script_is_one_log_entry(r: redis.Redis) -> None:
    body = "redis.call('set', KEYS[1], ARGV[1]) redis.call('set', KEYS[2], ARGV[1]) return redis.call('get', KEYS[1])"
    assert r.eval(body, 2, "/ctx/a", "/lk/b", "v") == b"v"
    assert r.get("/ctx/a") == b"v" and r.get("/lk/b") == b"v"
    assert stat(r, "/ctx/a")["revision"] == stat(r, "/lk/b")["revision"]  # both writes: one entry's index


def test_undeclared_and_mixed_keys_are_refused(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="not in its KEYS"):
        r.eval("return redis.call('set', '/ctx/other', 'x')", 1, "/ctx/declared")
    with pytest.raises(redis.ResponseError, match="without declaring it"):
        r.eval("return redis.call('set', '/ctx/other', 'x')", 0)
    with pytest.raises(redis.ResponseError, match=r"span planes: '/ctx/a' \(consensus\) and '/run/a' \(eventual\)"):
        r.eval("return 1", 2, "/ctx/a", "/run/a")
    assert r.exists("/ctx/other") == 0
    # Undeclared local and active keys are fine in an immediate script, as in Redis.
    assert r.eval("redis.call('set', 'loc', '1') return redis.call('set', '/run/x', '2')", 0) == b"OK"


def test_desired_scripts_refuse_nondeterministic_commands(r: redis.Redis) -> None:
    for command in ("time", "dbsize", "info", "keys"):
        args = ", '*'" if command == "keys" else ""
        with pytest.raises(redis.ResponseError, match="not allowed in a script on the desired plane"):
            r.eval(f"return redis.call('{command}'{args})", 1, "/ctx/t")
    assert r.eval("return redis.call('ping')", 1, "/ctx/t") == b"PONG"
    assert isinstance(r.eval("return redis.call('time')", 0), list)  # fine on the local plane


def test_evalsha_on_the_desired_plane_carries_the_body(r: redis.Redis) -> None:
    sha = r.script_load("return redis.call('set', KEYS[1], ARGV[1])")
    assert r.evalsha(sha, 1, "/ctx/sha", "x") == b"OK"
    assert r.get("/ctx/sha") == b"x"


def test_read_only_scripts(r: redis.Redis) -> None:
    r.set("/ctx/ro", "v")
    assert r.eval_ro("return redis.call('get', KEYS[1])", 1, "/ctx/ro") == b"v"
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed from read-only scripts"):
        r.eval_ro("return redis.call('set', KEYS[1], 'x')", 1, "/ctx/ro")
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed from read-only scripts"):
        r.eval("#!lua flags=no-writes\nreturn redis.call('del', KEYS[1])", 1, "ro-local")
    r.function_load("#!lua name=w\nredis.register_function('setter', function(k, a) "
                    "return redis.call('set', k[1], a[1]) end)")
    with pytest.raises(redis.ResponseError, match=r"write flag using \*_ro command"):
        r.fcall_ro("setter", 1, "/ctx/ro", "x")
    assert r.fcall("setter", 1, "/ctx/ro", "y") == b"OK" and r.get("/ctx/ro") == b"y"


# -- persistence ---------------------------------------------------------------------


def test_random_in_a_desired_script_replays_identically(node: VfsdProcess) -> None:
    r = node.client()
    body = "return redis.call('set', KEYS[1], tostring(math.random()) .. ':' .. math.random(1000000))"
    for i in range(5):
        r.eval(body, 1, f"/ctx/rand/{i}")
    before = [r.get(f"/ctx/rand/{i}") for i in range(5)]
    assert len(set(before)) == 5
    r.close()
    node.kill9()
    node.restart()  # the log is replayed: every script runs again, with the same seed
    r = node.client()
    assert [r.get(f"/ctx/rand/{i}") for i in range(5)] == before
    r.close()


@pytest.mark.parametrize("snapshot", [False, True])
def test_functions_survive_restart_and_the_script_cache_does_not(node_factory: Callable[..., VfsdProcess],
                                                                 snapshot: bool) -> None:
    node = node_factory(*(["--config", ""] if False else []))
    r = node.client()
    if snapshot:
        r.config_set("snapshot-every-entries", 3)
    assert r.function_load(LIB) == b"lib"
    r.set("/ctx/f", "fv")
    r.set("local-f", "lv")
    sha = r.script_load("return 'cached'")
    for i in range(4):  # enough entries for a snapshot (when asked for) after the library
        r.set(f"/ctx/pad/{i}", i)
    r.close()
    node.kill9()
    node.restart()
    r = node.client()
    assert r.fcall("getter", 1, "/ctx/f") == b"fv"
    assert [lib[b"library_name"] if isinstance(lib, dict) else lib[1] for lib in r.function_list()] == [b"lib"]
    assert r.script_exists(sha) == [False]
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(sha, 0)
    if snapshot:
        assert int(r.info("vfsd")["desired_snapshot_index"]) > 0
    r.function_delete("lib")
    r.close()
    node.stop()
    node.restart()
    r = node.client()
    assert r.function_list() == []
    r.close()


def test_function_dump_and_restore(r: redis.Redis) -> None:
    r.function_load(LIB)
    payload = r.function_dump()
    r.function_flush()
    with pytest.raises(redis.ResponseError, match="Function not found"):
        r.fcall("getter", 1, "x")
    assert r.function_restore(payload) is True
    r.set("x", "1")
    assert r.fcall("getter", 1, "x") == b"1"
    with pytest.raises(redis.ResponseError, match="Library lib already exists"):
        r.function_restore(payload)
    assert r.function_restore(payload, "REPLACE") is True
    with pytest.raises(redis.ResponseError, match="payload version or checksum are wrong"):
        r.function_restore(payload[:-1] + bytes([payload[-1] ^ 1]))


# -- busy scripts ----------------------------------------------------------------------


class Background:
    """A command sent on its own connection and thread; ``result`` once it returns."""

    def __init__(self, node: VfsdProcess, *args: Any) -> None:
        self.client = node.client()
        self.result: Any = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: Any) -> None:
        try:
            self.result = self.client.execute_command(*args)
        except Exception as exc:  # the reply under test is often an error
            self.result = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 10.0) -> Any:
        assert self.done.wait(timeout), "the background command did not return"
        self.client.close()
        return self.result


def busy_reply(node: VfsdProcess) -> str:
    """What a fresh connection gets for GET while a script is busy (polls until it is BUSY)."""

    def attempt() -> str | None:
        client = node.client()
        try:
            client.get("probe")
            return None
        except redis.ResponseError as exc:
            return str(exc) if str(exc).startswith("BUSY") else None
        finally:
            client.close()

    return wait_for(attempt, timeout=10, what="a BUSY reply")


@pytest.fixture
def busy_node(node_factory: Callable[..., VfsdProcess]) -> VfsdProcess:
    node = node_factory()
    client = node.client()
    client.config_set("busy-reply-threshold", 100)
    client.close()
    return node


def test_busy_script_then_script_kill(busy_node: VfsdProcess) -> None:
    watcher = busy_node.client()  # connected before the script starts: it is answered too
    watcher.ping()
    started = time.monotonic()
    script = Background(busy_node, "EVAL", LOOP, 0)
    assert busy_reply(busy_node) == "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    assert time.monotonic() - started >= 0.1
    with pytest.raises(redis.ResponseError, match="^BUSY"):
        watcher.get("x")
    with pytest.raises(redis.ResponseError, match="^BUSY.*FUNCTION KILL|^BUSY.*SCRIPT KILL"):
        watcher.execute_command("FUNCTION", "KILL")
    assert watcher.execute_command("SCRIPT", "KILL") == b"OK"
    result = script.wait()
    assert isinstance(result, redis.ResponseError)
    assert str(result).startswith("Script killed by user with SCRIPT KILL...")
    assert watcher.set("after", "1") is True  # the node serves again
    with pytest.raises(redis.ResponseError, match="NOTBUSY"):
        watcher.execute_command("SCRIPT", "KILL")
    watcher.close()


def test_pcall_cannot_swallow_the_kill(busy_node: VfsdProcess) -> None:
    body = "while true do pcall(function() local i = 0 while true do i = i + 1 end end) end"
    script = Background(busy_node, "EVAL", body, 0)
    busy_reply(busy_node)
    killer = busy_node.client()
    assert killer.execute_command("SCRIPT", "KILL") == b"OK"
    assert "Script killed" in str(script.wait())
    killer.close()


def test_busy_function_and_function_kill(busy_node: VfsdProcess) -> None:
    client = busy_node.client()
    client.function_load(f"#!lua name=spin\nredis.register_function('spin', function() {LOOP} end)")
    call = Background(busy_node, "FCALL", "spin", 0)
    assert busy_reply(busy_node).endswith("You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
    killer = busy_node.client()
    with pytest.raises(redis.ResponseError, match="FUNCTION KILL"):
        killer.execute_command("SCRIPT", "KILL")
    stats = killer.execute_command("FUNCTION", "STATS")
    assert b"spin" in stats[1]
    assert killer.execute_command("FUNCTION", "KILL") == b"OK"
    assert "Script killed" in str(call.wait())
    killer.close()
    client.close()


def test_a_script_that_wrote_is_unkillable_but_shutdown_nosave_works(busy_node: VfsdProcess) -> None:
    Background(busy_node, "EVAL", "redis.call('set', 'w', '1') " + LOOP, 0)
    busy_reply(busy_node)
    client = busy_node.client()
    with pytest.raises(redis.ResponseError, match="^UNKILLABLE Sorry the script already executed write commands"):
        client.execute_command("SCRIPT", "KILL")
    with pytest.raises(redis.ConnectionError):
        client.execute_command("SHUTDOWN", "NOSAVE")
    assert busy_node.proc is not None
    wait_for(lambda: busy_node.proc.poll() is not None, timeout=10, what="the node to exit")
    assert busy_node.proc.returncode == 0


def test_a_busy_desired_script_is_bounded_and_unkillable(busy_node: VfsdProcess) -> None:
    client = busy_node.client()
    client.config_set("script-max-instructions", 300_000_000)
    script = Background(busy_node, "EVAL", LOOP, 1, "/ctx/spin")
    busy_reply(busy_node)
    with pytest.raises(redis.ResponseError, match="^UNKILLABLE The busy script runs on the desired plane"):
        client.execute_command("SCRIPT", "KILL")
    result = script.wait(timeout=60)
    assert "exceeded its budget of 300000000 instructions" in str(result)
    assert client.set("/ctx/after", "1") is True
    client.close()


# One library call on a big ARGV, seconds of work (the script's own instructions never reach a hook
# period): without the libraries reporting their work, nobody would hear from the node until it ends.
LONG_LIBRARY_CALLS = [
    ("return #cjson.decode(ARGV[1])", b"[" + b"1," * 2_000_000 + b"1]"),
    ("return #cjson.encode(ARGV[1])", b"\x01" * 8_000_000),
    ("return #cmsgpack.unpack(ARGV[1])", msgpack.packb([7] * 2_000_000)),
    ("return #cmsgpack.pack(cmsgpack.unpack(ARGV[1]))", msgpack.packb([7] * 1_000_000)),
    ("return #struct.pack(ARGV[1])", b"x" * 6_000_000),
]
#: How much later than busy-reply-threshold the first -BUSY may come (a loaded machine, the ARGV's transfer).
BUSY_MARGIN_S = 2.0


@pytest.mark.parametrize("body, arg", LONG_LIBRARY_CALLS, ids=[body for body, _ in LONG_LIBRARY_CALLS])
def test_a_long_library_call_answers_busy_and_can_be_killed(busy_node: VfsdProcess, body: str, arg: bytes) -> None:
    started = time.monotonic()
    script = Background(busy_node, "EVAL", body, 0, arg)
    assert busy_reply(busy_node).startswith("BUSY Redis is busy running a script.")
    assert time.monotonic() - started < 0.1 + BUSY_MARGIN_S
    killer = busy_node.client()
    with pytest.raises(redis.ResponseError, match="^BUSY"):  # as in Redis; the point is that it is answered
        killer.ping()
    assert killer.execute_command("SCRIPT", "KILL") == b"OK"
    killed = time.monotonic()
    result = script.wait(timeout=30)
    assert str(result).startswith("Script killed by user with SCRIPT KILL..."), result
    assert time.monotonic() - killed < 2.0
    assert killer.set("after", "1") is True  # the node serves again
    killer.close()


def test_long_library_work_counts_against_a_desired_script_budget(node: VfsdProcess) -> None:
    client = node.client()
    client.config_set("script-max-instructions", 10_000_000)  # 100 hook periods
    started = time.monotonic()
    with pytest.raises(redis.ResponseError, match="exceeded its budget of 10000000 instructions"):
        client.eval("return #cjson.decode(ARGV[1])", 1, "/ctx/budget", b"[" + b"1," * 1_000_000 + b"1]")
    assert time.monotonic() - started < 20
    assert client.eval("return #cjson.decode(ARGV[1])", 1, "/ctx/budget", b"[1, 2, 3]") == 3
    client.close()


def test_limits_keep_the_node_alive(node_factory: Callable[..., VfsdProcess]) -> None:
    node = node_factory(env={"VFSD_SCRIPT_MAX_MEMORY_BYTES": str(32 << 20)})
    r = node.client()
    r.set("big", b"x" * (4 << 20))
    bombs = [
        "local s = 'x' while true do s = s .. s end",  # a string that doubles
        "local t = {} for i = 1, 1e9 do t[i] = {i} end",  # a table that grows
        # Nearly full, then a command whose reply would not fit: refused, not a crash.
        "local t = {} for i = 1, 1e9 do t[i] = {i} if collectgarbage('count') > 26 * 1024 then "
        "return #redis.call('get', 'big') + #redis.call('get', 'big') end end",
        "local t = {} for i = 1, 1e9 do t[i] = {i} if collectgarbage('count') > 26 * 1024 then "
        "return cjson.decode('[' .. string.rep('1,', 1000000) .. '1]') end end",
    ]
    for body in bombs:
        with pytest.raises(redis.ResponseError, match="not enough memory"):
            r.eval(body, 0)
    with pytest.raises(redis.ResponseError, match="stack overflow"):
        r.eval("local function f(n) return 1 + f(n + 1) end return f(1)", 0)
    assert r.eval("local function f() return pcall(f) end return f()", 0) == 1  # C stack overflow, caught
    reply = r.eval("local t = {} t[1] = t return t", 0)
    depth = 0
    while isinstance(reply, list):
        reply, depth = reply[0], depth + 1
    assert isinstance(reply, redis.ResponseError) and "reached lua stack limit" in str(reply)
    assert r.eval("return 'still here'", 0) == b"still here"
    assert len(r.get("big")) == 4 << 20
    r.close()
