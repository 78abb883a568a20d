"""Connection modes and introspection end to end: MONITOR (raw, redis-py, redis-cli), CLIENT REPLY, CLIENT PAUSE,
NO-TOUCH, NO-EVICT and CLIENT LIST / CLIENT INFO."""

from __future__ import annotations

import asyncio
import re
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from compat.rawresp import RawConnection
from tests.conftest import VfsdProcess, wait_for

LINE = re.compile(rb"^\+(\d+)\.(\d{6}) \[0 ([^\]]+)\] (.*)\r\n$")


Raw = RawConnection  # reads what arrives unasked too (pushes, MONITOR lines): read(), quiet()


@pytest.fixture
def monitor(server: VfsdProcess, r: redis.Redis) -> Iterator[Raw]:
    conn = Raw(server.port)
    assert conn.call(["MONITOR"]) == b"+OK\r\n"
    yield conn
    conn.close()


def lines(conn: Raw, n: int) -> list[tuple[bytes, bytes]]:
    """The next ``n`` MONITOR lines as (source, arguments), checking each line's format and time."""
    out = []
    for _ in range(n):
        frame = conn.read()
        match = LINE.match(frame)
        assert match, frame
        assert abs(int(match.group(1)) - time.time()) < 60
        out.append((match.group(3), match.group(4)))
    return out


# -- MONITOR ------------------------------------------------------------------------------------------


def test_monitor_shows_every_command_as_redis_does(server: VfsdProcess, r: redis.Redis, monitor: Raw) -> None:
    conn = Raw(server.port)
    host, port = conn.sock.getsockname()[:2]
    conn.call(["SET", "k", b'a"\n\x01\xff\\'])
    conn.call(["GET", "/ctx/none"])
    conn.call(["SET", "/ctx/d", "1"])  # desired plane: shown when it is proposed
    for cmd in (["MULTI"], ["SET", "a", "1"], ["GET", "a"], ["EXEC"]):
        conn.call(cmd)
    conn.call(["EVAL", "redis.call('set', 'x', 'y') return redis.call('get', 'x')", "0"])
    conn.call(["NOSUCH"])  # refused before it runs: not shown
    conn.call(["GET"])
    conn.call(["CLIENT", "LIST"])  # admin: not shown
    conn.call(["CONFIG", "GET", "port"])
    conn.call(["MULTI"])
    conn.call(["SET", "a"])
    conn.call(["EXEC"])  # an aborted transaction: MULTI and EXEC only
    conn.call(["BLPOP", "nolist", "0.05"])
    conn.call(["PING"])
    got = lines(monitor, 14)
    me = f"{host}:{port}".encode()
    assert [source for source, _ in got] == [me] * 8 + [b"lua", b"lua"] + [me] * 4
    assert [args for _, args in got] == [
        b'"SET" "k" "a\\"\\n\\x01\\xff\\\\"',
        b'"GET" "/ctx/none"',
        b'"SET" "/ctx/d" "1"',
        b'"MULTI"', b'"SET" "a" "1"', b'"GET" "a"', b'"EXEC"',
        b'"EVAL" "redis.call(\'set\', \'x\', \'y\') return redis.call(\'get\', \'x\')" "0"',
        b'"set" "x" "y"', b'"get" "x"',
        b'"MULTI"', b'"EXEC"',
        b'"BLPOP" "nolist" "0.05"',
        b'"PING"',
    ]
    assert monitor.quiet()
    conn.close()


def test_monitor_redacts_credentials(server: VfsdProcess, monitor: Raw) -> None:
    conn = Raw(server.port)
    for cmd in (["AUTH", "secret"], ["AUTH", "user", "secret"], ["AUTH", "a", "b", "c"],
                ["HELLO", "3", "AUTH", "default", "secret", "SETNAME", "x"], ["HELLO", "2"]):
        conn.call(cmd)
    assert [args for _, args in lines(monitor, 5)] == [
        b'"AUTH" "(redacted)"', b'"AUTH" "(redacted)" "(redacted)"', b'"AUTH" "a" "b" "c"',
        b'"HELLO" "3" "AUTH" "(redacted)" "(redacted)" "SETNAME" "x"', b'"HELLO" "2"']
    conn.close()


def test_monitor_shows_desired_plane_transactions_and_reaches_every_monitor(server: VfsdProcess,
                                                                            monitor: Raw) -> None:
    second = Raw(server.port)
    assert second.call(["MONITOR"]) == b"+OK\r\n"
    conn = Raw(server.port)
    for cmd in (["MULTI"], ["SET", "/ctx/m1", "1"], ["INCR", "/ctx/m2"], ["EXEC"]):
        conn.call(cmd)
    expected = [b'"MULTI"', b'"SET" "/ctx/m1" "1"', b'"INCR" "/ctx/m2"', b'"EXEC"']
    assert [args for _, args in lines(monitor, 4)] == expected
    assert [args for _, args in lines(second, 4)] == expected
    conn.close()
    second.close()


def test_a_monitor_cannot_touch_keys_and_sees_its_own_commands_after_their_replies(server: VfsdProcess,
                                                                                   monitor: Raw) -> None:
    assert monitor.call(["GET", "k"]) == b"-ERR Replica can't interact with the keyspace\r\n"
    monitor.send("PING")
    assert monitor.read() == b"+PONG\r\n"
    assert [args for _, args in lines(monitor, 1)] == [b'"PING"']
    assert "flags=O" in monitor.call(["CLIENT", "INFO"]).decode()
    assert [args for _, args in lines(monitor, 1)] == [b'"CLIENT" "INFO"']
    assert monitor.call(["RESET"]) == b"+RESET\r\n"  # RESET ends MONITOR
    assert monitor.call(["GET", "k"]) == b"$-1\r\n" and monitor.quiet()


def test_monitor_inside_a_transaction_is_refused(server: VfsdProcess) -> None:
    conn = Raw(server.port)
    conn.call(["MULTI"])
    assert conn.call(["MONITOR"]) == b"+QUEUED\r\n"
    assert conn.call(["EXEC"]) == b"*1\r\n-ERR MONITOR isn't allowed for DENY BLOCKING client\r\n"
    conn.close()


def test_redis_cli_monitor_prints_redis_lines(server: VfsdProcess, r: redis.Redis) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    proc = subprocess.Popen([cli, "-p", str(server.port), "monitor"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        out = b""

        def read_until(token: bytes, timeout: float = 10) -> None:
            nonlocal out
            deadline = time.monotonic() + timeout
            while token not in out:
                left = deadline - time.monotonic()
                assert left > 0, f"redis-cli monitor printed {out!r}"
                if sel.select(left):
                    out += proc.stdout.read1(65536)  # type: ignore[union-attr]

        read_until(b"OK\n")
        wait_for(lambda: any(c["cmd"] == "monitor" for c in r.client_list()), what="redis-cli to be monitoring")
        r.set("cli:key", "value with spaces")
        r.eval("return redis.call('GET', KEYS[1])", 1, "cli:key")
        read_until(b'"GET" "cli:key"')
        text = out.decode()
        assert re.search(r'^\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] "SET" "cli:key" "value with spaces"$', text, re.M), text
        assert re.search(r'^\d+\.\d{6} \[0 lua\] "GET" "cli:key"$', text, re.M), text
    finally:
        proc.kill()
        proc.wait(10)


def test_monitor_through_redis_py_sync_and_asyncio(server: VfsdProcess, r: redis.Redis) -> None:
    with r.monitor() as m:
        wait_for(lambda: any(c["cmd"] == "monitor" for c in r.client_list()), what="the monitor")
        r.set("py:mon", "1")
        for event in m.listen():
            if event["command"].startswith("SET"):
                assert event["command"] == "SET py:mon 1" and event["db"] == 0
                break

    async def main() -> str:
        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
        async with client.monitor() as m:
            await asyncio.sleep(0)
            other = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
            await other.set("aio:mon", "2")
            async for event in m.listen():
                if "aio:mon" in event["command"]:
                    await other.aclose()
                    await client.aclose()
                    return event["command"]
        raise AssertionError("no event")

    assert asyncio.run(asyncio.wait_for(main(), 10)) == "SET aio:mon 2"


# -- CLIENT REPLY ----------------------------------------------------------------------------------------


def test_client_reply_off_skip_on(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    conn.send("CLIENT", "REPLY", "OFF")
    conn.send("SET", "rk", "1")
    conn.send("SET", "/ctx/rk", "1")  # a desired write: dropped too, in its turn
    conn.send("CLIENT", "REPLY", "SKIP")  # ignored while OFF
    assert conn.call(["CLIENT", "REPLY", "ON"]) == b"+OK\r\n"
    assert r.get("/ctx/rk") == b"1"
    conn.send("CLIENT", "REPLY", "SKIP")
    conn.send("INCR", "rk")
    assert conn.call(["GET", "rk"]) == b"$1\r\n2\r\n"
    conn.send("CLIENT", "REPLY", "SKIP")
    conn.send("SET", "/ctx/rk", "2")
    assert conn.call(["GET", "/ctx/rk"]) == b"$1\r\n2\r\n"
    conn.send("CLIENT", "REPLY", "SKIP")
    assert conn.call(["CLIENT", "REPLY", "ON"]) == b"+OK\r\n"  # ON clears a skip
    assert conn.call(["CLIENT", "REPLY", "maybe"]) == b"-ERR syntax error\r\n"
    assert conn.quiet()
    conn.close()


def test_pushes_still_arrive_while_replies_are_off(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    conn.call(["HELLO", "3"])
    conn.call(["SUBSCRIBE", "ch"])
    conn.send("CLIENT", "REPLY", "OFF")
    conn.send("PING")
    r.publish("ch", "hello")
    assert conn.read() == b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
    conn.close()


# -- CLIENT PAUSE -------------------------------------------------------------------------------------


def _timed(fn: object) -> float:
    start = time.monotonic()
    fn()  # type: ignore[operator]
    return time.monotonic() - start


def test_pause_write_holds_writes_not_reads(server: VfsdProcess, r: redis.Redis) -> None:
    other = server.client()
    r.set("pk", "0")
    assert r.client_pause(400, all=False)
    assert _timed(lambda: other.get("pk")) < 0.3
    assert _timed(lambda: other.set("pk", "1")) >= 0.3  # waited, then ran
    assert other.get("pk") == b"1"
    assert r.client_pause(400, all=False)
    tx = other.pipeline()
    tx.get("pk")
    assert _timed(tx.execute) < 0.3  # a read-only transaction goes through
    tx = other.pipeline()
    tx.incr("pk")
    assert _timed(tx.execute) >= 0.3
    assert r.client_pause(400, all=False)
    assert _timed(lambda: other.publish("chan", "x")) >= 0.3  # PUBLISH may replicate: held too
    sha = other.script_load("return redis.call('SET', KEYS[1], ARGV[1])")
    assert r.client_pause(400, all=False)
    assert _timed(lambda: other.evalsha(sha, 1, "pk", "2")) >= 0.3  # a script may write: held too
    assert other.get("pk") == b"2"
    other.close()


def test_unpause_releases_held_writes_and_pause_all_holds_reads(server: VfsdProcess, r: redis.Redis) -> None:
    other = server.client()
    assert r.client_pause(5000, all=False)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(other.set("/run/pw", "1"))),
               threading.Thread(target=lambda: results.append(server.client().set("/ctx/pw", "1")))]
    for t in threads:
        t.start()
    wait_for(lambda: r.info("clients")["blocked_clients"] == 2, what="two held clients")
    assert sum("b" in c["flags"] for c in r.client_list()) == 2
    assert r.client_unpause()
    for t in threads:
        t.join(10)
    assert results == [True, True]
    assert r.client_pause(300)  # ALL: reads wait too
    assert _timed(lambda: other.get("/run/pw")) >= 0.2
    other.close()


def test_pause_errors(server: VfsdProcess) -> None:
    conn = Raw(server.port)
    assert conn.call(["CLIENT", "PAUSE", "x"]) == b"-ERR timeout is not an integer or out of range\r\n"
    assert conn.call(["CLIENT", "PAUSE", "-1"]) == b"-ERR timeout is negative\r\n"
    assert conn.call(["CLIENT", "PAUSE", "10", "foo"]) == b"-ERR CLIENT PAUSE mode must be WRITE or ALL\r\n"
    assert conn.call(["CLIENT", "PAUSE", "10", "write", "x"]) == (
        b"-ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.\r\n")
    assert conn.call(["CLIENT", "UNPAUSE", "x"]) == b"-ERR wrong number of arguments for 'client|unpause' command\r\n"
    conn.close()


# -- CLIENT LIST / INFO, NO-TOUCH, NO-EVICT ------------------------------------------------------------

FIELDS = ["id", "addr", "laddr", "fd", "name", "age", "idle", "flags", "db", "sub", "psub", "ssub", "multi",
          "watch", "qbuf", "qbuf-free", "argv-mem", "multi-mem", "rbs", "rbp", "obl", "oll", "omem", "tot-mem",
          "events", "cmd", "user", "redir", "resp", "lib-name", "lib-ver"]


def test_client_list_has_every_field_in_redis_order(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    conn.call(["HELLO", "3"])
    conn.call(["CLIENT", "SETNAME", "lister"])
    conn.call(["CLIENT", "SETINFO", "LIB-NAME", "mylib"])
    conn.call(["CLIENT", "NO-TOUCH", "on"])
    conn.call(["CLIENT", "NO-EVICT", "on"])
    reply = conn.call(["CLIENT", "INFO"])
    assert reply.startswith(b"=") and reply.split(b"\r\n")[1].startswith(b"txt:id=")  # RESP3: verbatim text
    conn_id = int(conn.call(["CLIENT", "ID"])[1:-2])
    conn.call(["WATCH", "w1"])
    conn.call(["MULTI"])
    conn.call(["SET", "w1", "x"])
    r.set("w1", "changed")
    text = r.execute_command("CLIENT", "LIST", "ID", conn_id).decode()
    pairs = [field.split("=", 1) for field in text.strip().split(" ")]
    assert [k for k, _ in pairs] == FIELDS
    info = dict(pairs)
    assert info["name"] == "lister" and info["lib-name"] == "mylib" and info["resp"] == "3"
    assert info["flags"] == "xdeT" and info["multi"] == "1" and info["watch"] == "1"
    assert info["cmd"] == "set" and info["redir"] == "-1"
    conn.call(["DISCARD"])
    assert conn.call(["CLIENT", "NO-TOUCH", "maybe"]) == b"-ERR syntax error\r\n"
    conn.call(["RESET"])
    line = conn.call(["CLIENT", "INFO"]).decode()
    assert " flags=N " in line and " cmd=client|info " in line
    assert list(r.client_list()[0]) == FIELDS
    conn.close()


# -- CONFIG GET / SET ---------------------------------------------------------------------------------


def test_config_get_takes_several_patterns(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    got = r.config_get("maxclients", "slowlog-*", "MAXCLIENTS", "lua-time-limit", "nosuch")
    assert set(got) == {"maxclients", "slowlog-log-slower-than", "slowlog-max-len", "lua-time-limit"}  # names once
    # A name without glob characters is answered under the name given (Redis's dict lookup), once.
    assert conn.call(["CONFIG", "GET", "MAXCLIENTS", "MAXCLIENTS"]) == b"*2\r\n$10\r\nMAXCLIENTS\r\n$5\r\n10000\r\n"
    assert conn.call(["CONFIG", "GET", "nosuch*"]) == b"*0\r\n"
    conn.call(["HELLO", "3"])
    assert conn.call(["CONFIG", "GET", "maxclients"]).startswith(b"%1\r\n")  # a map in RESP3
    conn.close()


def test_config_set_is_all_or_nothing(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    before = r.config_get("maxclients", "slowlog-max-len")
    cases = [
        (["maxclients", "50", "slowlog-max-len"], b"-ERR syntax error\r\n"),
        (["maxclients", "50", "nosuch", "1"], b"-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"),
        (["maxclients", "50", "node-id", "x"],
         b"-ERR CONFIG SET failed (possibly related to argument 'node-id') - can't set immutable config\r\n"),
        (["maxclients", "50", "Maxclients", "60"],
         b"-ERR CONFIG SET failed (possibly related to argument 'Maxclients') - duplicate parameter\r\n"),
        (["maxclients", "50", "slowlog-max-len", "x"],
         b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument couldn't be parsed "
         b"into an integer\r\n"),
        (["maxclients", "50", "lua-time-limit", "-5"],
         b"-ERR CONFIG SET failed (possibly related to argument 'lua-time-limit') - argument must be between "
         b"0 and 9223372036854775807 inclusive\r\n"),
    ]
    for args, error in cases:
        assert conn.call(["CONFIG", "SET", *args]) == error, args
        assert r.config_get("maxclients", "slowlog-max-len") == before, args
    assert conn.call(["CONFIG", "SET", "maxclients", "500", "slowlog-max-len", "7"]) == b"+OK\r\n"
    assert r.config_get("maxclients", "slowlog-max-len") == {"maxclients": "500", "slowlog-max-len": "7"}
    r.config_set("maxclients", before["maxclients"])
    r.config_set("slowlog-max-len", before["slowlog-max-len"])
    conn.close()


def test_config_set_rolls_back_when_a_change_cannot_take_effect(node_factory: object) -> None:
    node = node_factory()  # type: ignore[operator]
    r = node.client()
    busy = socket_on_free_port()
    with pytest.raises(redis.ResponseError) as err:
        r.execute_command("CONFIG", "SET", "maxclients", "77", "port", str(busy.getsockname()[1]))
    assert str(err.value) == "CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port"
    assert r.config_get("maxclients", "port") == {"maxclients": "10000", "port": str(node.port)}
    assert r.ping()
    busy.close()
    # A port that is free: the node listens there; the open connection stays.
    new_port = socket_on_free_port()
    port = new_port.getsockname()[1]
    new_port.close()
    assert r.config_set("port", port)
    assert r.config_get("port") == {"port": str(port)}
    moved = redis.Redis(host="127.0.0.1", port=port, protocol=2, socket_timeout=5)
    assert wait_for(lambda: moved.ping(), what="the new listener")
    assert r.ping()
    moved.close()
    r.close()


def socket_on_free_port() -> "socket.socket":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


# -- INFO ---------------------------------------------------------------------------------------------


def test_info_takes_several_sections(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)

    def sections(*names: str) -> list[str]:
        text = conn.call(["INFO", *names]).decode()
        return [line[2:] for line in text.split("\r\n") if line.startswith("# ")]

    assert sections("server", "clients") == ["Server", "Clients"]
    assert sections("CLIENTS", "server") == ["Server", "Clients"]  # Redis's order, whatever the arguments'
    default = sections()
    assert default[:3] == ["Server", "Clients", "Memory"] and "Keyspace" in default
    assert sections("default") == default
    assert sections("all") == default and sections("everything") == default
    assert sections("all", "nosuch") == default
    assert sections("nosuch") == []
    assert r.info("clients")["tracking_clients"] == 0  # no client of this test turned tracking on
    conn.close()


# -- SLOWLOG, LATENCY, MEMORY, COMMAND GETKEYSANDFLAGS ----------------------------------------------------


def test_slowlog(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    conn.call(["CLIENT", "SETNAME", "slowpoke"])
    r.config_set("slowlog-log-slower-than", 0)
    try:
        assert conn.call(["SLOWLOG", "RESET"]) == b"+OK\r\n"
        conn.call(["SET", "sl", b"x" * 200])
        conn.call(["AUTH", "secret"])
        conn.call(["MSET", *[f"k{i}" for i in range(40)]])
        entries = r.slowlog_get(10)
        by_command = {tuple(e["command"].split(b" ")[:2]): e for e in entries}
        assert (b"SET", b"sl") in by_command
        set_entry = by_command[(b"SET", b"sl")]
        assert set_entry["command"] == b"SET sl " + b"x" * 128 + b"... (72 more bytes)"
        assert set_entry["client_name"] == b"slowpoke" and set_entry["client_address"].startswith(b"127.0.0.1:")
        assert set_entry["duration"] >= 0 and abs(set_entry["start_time"] - time.time()) < 60
        assert by_command[(b"AUTH", b"(redacted)")]
        raw = conn.call(["SLOWLOG", "GET", "1"])
        assert raw.startswith(b"*1\r\n*6\r\n:")
        mset = [e for e in entries if e["command"].startswith(b"MSET")][0]  # 41 arguments: 31 shown, then a count
        assert mset["command"] == b" ".join([b"MSET", *[b"k%d" % i for i in range(30)], b"... (10 more arguments)"])
        ids = [e["id"] for e in r.slowlog_get(-1)]
        assert ids == sorted(ids, reverse=True)
        assert r.slowlog_len() == len(ids) + 1  # (that SLOWLOG GET, logged once it ran)
        r.config_set("slowlog-max-len", 2)
        assert r.slowlog_len() == 2
        assert conn.call(["SLOWLOG", "GET", "-2"]) == b"-ERR count should be greater than or equal to -1\r\n"
        assert conn.call(["SLOWLOG", "GET", "x"]) == b"-ERR count should be greater than or equal to -1\r\n"
        assert conn.call(["SLOWLOG", "GET", "1", "2"]) == (
            b"-ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP.\r\n")
        r.config_set("slowlog-log-slower-than", -1)
        r.slowlog_reset()
        conn.call(["SET", "sl", "y"])
        assert r.slowlog_len() == 0
        help_lines = r.execute_command("SLOWLOG", "HELP")
        assert help_lines[0] == b"SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    finally:
        r.config_set("slowlog-log-slower-than", 10000)
        r.config_set("slowlog-max-len", 128)
    conn.close()


def test_latency(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    r.latency_reset()
    assert conn.call(["LATENCY", "RESET"]) == b":0\r\n"
    assert r.execute_command("LATENCY", "LATEST") == []
    assert b"Latency monitoring is disabled" in conn.call(["LATENCY", "DOCTOR"])
    assert conn.call(["LATENCY", "GRAPH", "command"]) == b"-ERR No samples available for event 'command'\r\n"
    r.config_set("latency-monitor-threshold", 1)
    try:
        assert b"no latency spike was observed" in conn.call(["LATENCY", "DOCTOR"])
        # A command that takes a few milliseconds: KEYS over many keys.
        with r.pipeline(transaction=False) as p:
            for i in range(20000):
                p.set(f"lat:{i}", i)
            p.execute()
        wait_for(lambda: r.keys("lat:*") and r.execute_command("LATENCY", "LATEST"), timeout=20,
                 what="a latency sample")
        latest = r.execute_command("LATENCY", "LATEST")
        event, when, ms, worst = latest[0]
        assert event in (b"command", b"fast-command") and ms >= 1 and worst >= ms and abs(when - time.time()) < 60
        history = r.execute_command("LATENCY", "HISTORY", event)
        assert history and all(len(sample) == 2 for sample in history)
        assert r.execute_command("LATENCY", "RESET", event.decode(), "nosuch") == 1
    finally:
        r.config_set("latency-monitor-threshold", 0)
    assert conn.call(["LATENCY", "HISTOGRAM"]) == b"*0\r\n"  # vfsd keeps no histograms: an empty map
    conn.close()


def test_memory(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("mem:s", "x" * 1000)
    r.rpush("/run/mem:l", *range(100))
    small = r.memory_usage("mem:s")
    assert small is not None and small >= 1000
    assert r.memory_usage("/run/mem:l") > 100 and r.memory_usage("/run/mem:l", samples=0) > 100
    assert r.memory_usage("nosuch") is None
    conn = Raw(server.port)
    assert conn.call(["MEMORY", "USAGE", "mem:s", "SAMPLES", "x"]) == b"-ERR value is not an integer or out of range\r\n"
    assert conn.call(["MEMORY", "USAGE", "mem:s", "SAMPLES", "-1"]) == b"-ERR syntax error\r\n"
    assert conn.call(["MEMORY", "USAGE", "mem:s", "FOO"]) == b"-ERR syntax error\r\n"
    stats = r.memory_stats()
    for field in ("peak.allocated", "total.allocated", "startup.allocated", "keys.count", "dataset.bytes"):
        assert field in stats
    assert stats["keys.count"] >= 2
    assert r.execute_command("MEMORY", "DOCTOR").startswith(b"Hi Sam")
    assert r.execute_command("MEMORY", "PURGE") == b"OK"
    assert r.execute_command("MEMORY", "HELP")[0].startswith(b"MEMORY <subcommand>")
    conn.close()


def test_command_getkeysandflags(server: VfsdProcess, r: redis.Redis) -> None:
    conn = Raw(server.port)
    conn.call(["HELLO", "3"])
    assert conn.call(["COMMAND", "GETKEYSANDFLAGS", "SET", "a", "b"]) == (
        b"*1\r\n*2\r\n$1\r\na\r\n~2\r\n+OW\r\n+update\r\n")
    assert conn.call(["COMMAND", "GETKEYSANDFLAGS", "SET", "a", "b", "GET"]) == (
        b"*1\r\n*2\r\n$1\r\na\r\n~3\r\n+RW\r\n+access\r\n+update\r\n")
    resp2 = Raw(server.port)
    assert resp2.call(["COMMAND", "GETKEYSANDFLAGS", "LMOVE", "/run/a", "/run/b", "LEFT", "RIGHT"]) == (
        b"*2\r\n*2\r\n$6\r\n/run/a\r\n*3\r\n+RW\r\n+access\r\n+delete\r\n"
        b"*2\r\n$6\r\n/run/b\r\n*2\r\n+RW\r\n+insert\r\n")
    assert resp2.call(["COMMAND", "GETKEYSANDFLAGS", "SORT", "s", "BY", "w*", "STORE", "d"]) == (
        b"*2\r\n*2\r\n$1\r\ns\r\n*2\r\n+RO\r\n+access\r\n*2\r\n$1\r\nd\r\n*2\r\n+OW\r\n+update\r\n")
    assert resp2.call(["COMMAND", "GETKEYSANDFLAGS", "EVAL", "return 1", "0"]) == b"*0\r\n"
    resp2.close()
    errors = [
        (["NOSUCH", "a"], b"-ERR Invalid command specified\r\n"),
        (["PING"], b"-ERR The command has no key arguments\r\n"),
        (["SPUBLISH", "ch", "m"], b"-ERR The command has no key arguments\r\n"),
        (["GET"], b"-ERR Invalid number of arguments specified for command\r\n"),
    ]
    for args, error in errors:
        assert conn.call(["COMMAND", "GETKEYSANDFLAGS", *args]) == error
        assert conn.call(["COMMAND", "GETKEYS", *args]) == error
    conn.close()
