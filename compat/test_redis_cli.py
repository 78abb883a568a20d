"""The compat scenarios through the real ``redis-cli`` binary (Debian redis-tools).

What ``redis-cli`` prints is checked three ways: against the output the
scenario tables imply (``render_raw``), against hand-written expectations for
vfsd's own commands, and line for line against a real ``redis-server`` fed the
same input (``--no-raw`` and ``-3`` formatting: ``(integer) 1``, ``(nil)``,
``1) "a"``). Every ``redis-cli`` runs under a timeout; a subscriber is killed
at the end of its test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest
import redis

from compat.scenarios import ERRORS, FAMILIES, PLANE_KEYS, STRINGS, render_raw, steps
from compat.support import CLIENT_TIMEOUT_S, RedisServerProcess, wait_for
from tests.conftest import VfsdProcess

REDIS_CLI = shutil.which("redis-cli")
PLANES = [pytest.param(key, id=plane) for plane, key in PLANE_KEYS.items()]


@pytest.fixture(autouse=True)
def _need_redis_cli() -> None:
    if REDIS_CLI is None:
        pytest.fail("redis-cli is not installed (Debian: apt-get install redis-tools)")


def cli(port: int, *args: str, stdin: str | None = None) -> str:
    """Run ``redis-cli -p PORT ARGS...`` (stdout is a pipe, so redis-cli prints raw) and return its stdout."""
    assert REDIS_CLI is not None
    done = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args], input=stdin, capture_output=True,
                          text=True, timeout=CLIENT_TIMEOUT_S)
    assert done.returncode == 0, f"redis-cli {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


@pytest.fixture
def r(vfsd: VfsdProcess) -> Iterator[redis.Redis]:
    client = vfsd.client(decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def stdin_script(table: list, key: str) -> tuple[str, str]:
    """(commands, expected raw output) for a scenario table, one command a line as redis-cli reads stdin."""
    bound = steps(table, key)
    return "".join(" ".join(s.args) + "\n" for s in bound), "".join(render_raw(s.reply) for s in bound)


# -- (a) strings ------------------------------------------------------------------------


@pytest.mark.parametrize("key", PLANES)
def test_string_steps_through_stdin(port: int, key: str) -> None:
    """Several commands piped into one redis-cli, as a shell script does."""
    commands, expected = stdin_script(STRINGS, key)
    assert cli(port, stdin=commands) == expected


@pytest.mark.parametrize("key", PLANES)
def test_string_steps_as_arguments(port: int, key: str) -> None:
    """A sample of the steps, one redis-cli process each, the command on the command line."""
    for step in steps(STRINGS, key)[:12]:
        assert cli(port, *step.args) == render_raw(step.reply), step.args


@pytest.mark.parametrize("mode", [pytest.param(["--no-raw"], id="no-raw"), pytest.param(["-3"], id="resp3-raw"),
                                  pytest.param(["-3", "--no-raw"], id="resp3-no-raw")])
def test_output_matches_redis_server(port: int, redis_server: RedisServerProcess, mode: list[str]) -> None:
    """Same input, same printed bytes as a real redis-server: the replies' types and framing match."""
    script = "".join(stdin_script(STRINGS, key)[0] for key in PLANE_KEYS.values())
    script += "MULTI\nINCR /ctx/m\nINCR /ctx/m\nGET /ctx/m\nEXEC\nMGET /ctx/m nothing\nKEYS /none/*\nPING\nECHO hi\n"
    for line in ("SET k", "GET", "NOSUCHCMD a", "SET k v EX 0", "INCR /ctx/m extra"):
        script += line + "\n"
    assert cli(redis_server.port, "FLUSHALL") == "OK\n"
    assert cli(port, *mode, stdin=script) == cli(redis_server.port, *mode, stdin=script)


def test_resp3_formatting(port: int) -> None:
    assert cli(port, "-3", "--no-raw", "SET", "/ctx/a", "1") == "OK\n"
    assert cli(port, "-3", "--no-raw", "INCR", "/ctx/a") == "(integer) 2\n"
    assert cli(port, "-3", "--no-raw", "GET", "/ctx/none") == "(nil)\n"
    assert cli(port, "-3", "--no-raw", "MGET", "/ctx/a", "/ctx/none") == '1) "2"\n2) (nil)\n'
    hello = cli(port, "-3", "--no-raw", "HELLO", "3")
    assert '1# "server" => ' in hello and '"proto" => (integer) 3' in hello


# -- (b) SCAN and KEYS ------------------------------------------------------------------

HW_PATHS = [f"/hw/node-{n:03d}/cpu/{c}" for n in range(100) for c in range(3)]


def _fill(r: redis.Redis) -> None:
    assert r.mset({p: "x" for p in HW_PATHS}) is True
    assert r.mset({"/run/hw/a": "x", "/run/hwb": "x"}) is True
    assert r.set("hw:local", "x") is True


def test_keys_and_scan_command(port: int, r: redis.Redis) -> None:
    _fill(r)
    assert sorted(cli(port, "KEYS", "/hw/*").splitlines()) == sorted(HW_PATHS)
    out = cli(port, "SCAN", "0", "MATCH", "/hw/node-000/*", "COUNT", "1000").splitlines()
    assert out == ["0", *HW_PATHS[:3]]  # one call covers the range: cursor 0, then the keys


def test_scan_mode(port: int, r: redis.Redis) -> None:
    _fill(r)
    assert REDIS_CLI is not None
    done = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), "--scan", "--pattern", "/hw/*"],
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == len(set(lines)) and set(lines) == set(HW_PATHS)


# -- (c) pub/sub ------------------------------------------------------------------------


class CliProcess:
    """A long-lived ``redis-cli`` (a subscriber, or one reading commands from stdin as they are written);
    its stdout is read line by line with a deadline, and ``stop`` kills it."""

    def __init__(self, port: int, *args: str) -> None:
        assert REDIS_CLI is not None
        self.proc = subprocess.Popen([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def read(self, n: int, timeout: float = 5.0) -> list[str]:
        """The next ``n`` lines; fails after ``timeout`` seconds (a stuck read is ended by killing the process)."""
        out: list[str] = []
        done = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            while len(out) < n:
                line = self.proc.stdout.readline()
                if not line:
                    break
                out.append(line.rstrip("\n"))
            done.set()

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        if not done.wait(timeout):
            self.stop()
            thread.join(CLIENT_TIMEOUT_S)
            raise AssertionError(f"redis-cli printed {out!r} within {timeout}s, expected {n} lines")
        if len(out) < n:
            raise AssertionError(f"redis-cli exited after printing {out!r}, expected {n} lines")
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(CLIENT_TIMEOUT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:  # a closed pipe's unflushed input
                    pass


@pytest.mark.parametrize("resp", [pytest.param([], id="resp2"), pytest.param(["-3"], id="resp3")])
def test_psubscribe_keyspace(port: int, r: redis.Redis, resp: list[str]) -> None:
    sub = CliProcess(port, *resp, "PSUBSCRIBE", "__keyspace@0__:/ctx/*")
    try:
        assert sub.read(3) == ["psubscribe", "__keyspace@0__:/ctx/*", "1"]
        assert cli(port, "SET", "/ctx/x", "1") == "OK\n"
        assert cli(port, "DEL", "/ctx/x") == "1\n"
        assert sub.read(8) == ["pmessage", "__keyspace@0__:/ctx/*", "__keyspace@0__:/ctx/x", "set",
                               "pmessage", "__keyspace@0__:/ctx/*", "__keyspace@0__:/ctx/x", "del"]
    finally:
        sub.stop()


def test_subscribe_publish_and_vfs_channel(port: int) -> None:
    sub = CliProcess(port, "SUBSCRIBE", "news", "__vfs__:/ctx/x")
    try:
        assert sub.read(6) == ["subscribe", "news", "1", "subscribe", "__vfs__:/ctx/x", "2"]
        assert cli(port, "PUBLISH", "news", "hello world") == "1\n"
        assert sub.read(3) == ["message", "news", "hello world"]
        assert cli(port, "SET", "/ctx/x", "v1") == "OK\n"
        kind, channel, payload = sub.read(3)
        assert (kind, channel) == ("message", "__vfs__:/ctx/x")
        body = json.loads(payload)
        assert body["op"] == "set" and body["path"] == "/ctx/x" and body["value"] == "v1" and body["origin"] == "n1"
    finally:
        sub.stop()


# -- (d) transactions -------------------------------------------------------------------


@pytest.mark.parametrize("key", PLANES)
def test_multi_exec_through_stdin(port: int, key: str) -> None:
    script = f"MULTI\nSET {key} 1\nINCR {key}\nGET {key}\nEXEC\nGET {key}\n"
    assert cli(port, stdin=script) == "OK\nQUEUED\nQUEUED\nQUEUED\nOK\n2\n2\n2\n"
    assert cli(port, "--no-raw", stdin=script) == 'OK\nQUEUED\nQUEUED\nQUEUED\n1) OK\n2) (integer) 2\n3) "2"\n"2"\n'


def test_cross_plane_transaction(port: int) -> None:
    out = cli(port, stdin="MULTI\nSET /ctx/t 1\nSET /run/t 1\nEXEC\nEXISTS /ctx/t /run/t\n")
    lines = out.splitlines()
    assert lines[:2] == ["OK", "QUEUED"]
    assert lines[2].startswith("ERR transaction spans planes: '/run/t'")
    assert "EXECABORT Transaction discarded because of previous errors." in lines
    assert lines[-1] == "0"


def test_watch_aborts_on_concurrent_change(port: int, r: redis.Redis) -> None:
    """One redis-cli connection reads commands from stdin; the change comes from another connection meanwhile."""
    cli_proc = CliProcess(port)
    try:
        cli_proc.send("SET /ctx/w 0\nWATCH /ctx/w\nGET /ctx/w\n")
        assert cli_proc.read(3) == ["OK", "OK", "0"]
        assert r.set("/ctx/w", "other") is True
        cli_proc.send("MULTI\nSET /ctx/w mine\nEXEC\nGET /ctx/w\n")
        assert cli_proc.read(4) == ["OK", "QUEUED", "", "other"]  # a nil EXEC prints an empty line in raw mode
    finally:
        cli_proc.stop()


# -- (e) JSON ---------------------------------------------------------------------------


def test_json(port: int) -> None:
    doc = '{"a":{"b":[1,2]},"c":"x"}'
    assert cli(port, "JSON.SET", "/ctx/doc", "$", doc) == "OK\n"
    assert cli(port, "JSON.GET", "/ctx/doc") == doc + "\n"
    assert cli(port, "JSON.GET", "/ctx/doc", "$.a.b") == "[[1,2]]\n"
    assert cli(port, "JSON.TYPE", "/ctx/doc", "$.a.b") == "array\n"
    assert cli(port, "GET", "/ctx/doc") == doc + "\n"
    assert cli(port, "TYPE", "/ctx/doc") == "ReJSON-RL\n"
    assert cli(port, "JSON.DEL", "/ctx/doc", "$.c") == "1\n"
    assert cli(port, "--no-raw", "GET", "/ctx/doc") == '"{\\"a\\":{\\"b\\":[1,2]}}"\n'
    # single quotes keep a JSON argument whole when redis-cli reads commands from stdin
    out = cli(port, stdin="JSON.SET /run/doc $ '{\"n\":1}'\nJSON.GET /run/doc $.n\nJSON.MGET /run/doc /ctx/doc $.n\n")
    assert out == "OK\n[1]\n[1]\n[]\n"


# -- (f) errors -------------------------------------------------------------------------


def test_errors(port: int, r: redis.Redis) -> None:
    for args, error in ERRORS:
        assert cli(port, *args) == error.text + "\n\n", args
        assert cli(port, "--no-raw", *args) == f"(error) {error.text}\n", args
    assert r.json().set("/ctx/doc", "$", {"n": 1}) is True
    assert cli(port, "INCR", "/ctx/doc") == "WRONGTYPE Operation against a key holding the wrong kind of value\n\n"
    assert cli(port, "MSET", "/ctx/a", "1", "/run/a", "1").startswith("ERR 'mset' spans planes")


# -- (g) VFS.LS and VFS.STAT ------------------------------------------------------------


def test_vfs_ls_and_stat(port: int, r: redis.Redis) -> None:
    assert r.mset({"/ctx/web/replicas": "3", "/ctx/web/image": "nginx", "/ctx/db/replicas": "1"}) is True
    assert cli(port, "VFS.LS", "/ctx") == "db/\nweb/\n"
    assert cli(port, "--no-raw", "VFS.LS", "/ctx/web") == '1) "image"\n2) "replicas"\n'
    roots = cli(port, "VFS.LS", "/").splitlines()
    assert {"ctx/", "hw/", "run/", "lk/"} <= set(roots)
    stat = cli(port, "-3", "VFS.STAT", "/ctx/web/image").splitlines()  # RESP3 map, raw: "field value" lines
    fields = dict(line.split(" ", 1) for line in stat)
    assert fields["path"] == "/ctx/web/image" and fields["plane"] == "consensus" and fields["size"] == "5"
    assert fields["type"] == "string" and fields["ttl_ms"] == "-1" and int(fields["revision"]) > 0
    flat = cli(port, "VFS.STAT", "/ctx/web/image").splitlines()  # RESP2: field, value, field, value...
    assert dict(zip(flat[0::2], flat[1::2])) == fields
    assert cli(port, "--no-raw", "VFS.STAT", "/ctx/none") == "(nil)\n"
    assert cli(port, "VFS.STAT", "/nope/x").startswith("ERR no plane for root '/nope'")


def test_expiry_seen_through_cli(port: int) -> None:
    assert cli(port, "SET", "/ctx/e", "1", "PX", "100") == "OK\n"
    wait_for(lambda: cli(port, "EXISTS", "/ctx/e") == "0\n", timeout=5, what="/ctx/e to expire")
    assert cli(port, "TTL", "/ctx/e") == "-2\n"


# -- (g) hashes, lists, sets, sorted sets, bits, keyspace ---------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("key", PLANES)
def test_family_steps_through_stdin(port: int, key: str, family: str) -> None:
    commands, expected = stdin_script(FAMILIES[family], key)
    assert cli(port, stdin=commands) == expected


#: Replies whose printing (maps, doubles, nested arrays, sets) differs between RESP2 and RESP3.
FORMATTING = """HSET {k}-fh a 1 b 2
HGETALL {k}-fh
HRANDFIELD {k}-fh 5 WITHVALUES
ZADD {k}-fz 1.5 m 2 n -inf o
ZRANGE {k}-fz 0 -1 WITHSCORES
ZSCORE {k}-fz m
ZINCRBY {k}-fz 0.25 m
ZPOPMIN {k}-fz 2
ZMPOP 1 {k}-fz MAX COUNT 2
ZRANK {k}-fz none
SADD {k}-fs only
SMEMBERS {k}-fs
SPOP {k}-fs 3
RPUSH {k}-fl a b
LMPOP 1 {k}-fl LEFT COUNT 9
BLPOP {k}-fl 0.01
LCS {k}-fh {k}-fh
SET {k}-x ohmytext
SET {k}-y mynewtext
LCS {k}-x {k}-y IDX MINMATCHLEN 2 WITHMATCHLEN
OBJECT HELP
"""


@pytest.mark.parametrize("mode", [pytest.param(["--no-raw"], id="no-raw"), pytest.param(["-3", "--no-raw"],
                                                                                       id="resp3-no-raw")])
def test_family_output_matches_redis_server(port: int, redis_server: RedisServerProcess, mode: list[str]) -> None:
    """The family tables and the formatting script: what redis-cli prints for vfsd is what it prints for redis-server.
    (OBJECT ENCODING rows are left out: Redis 7.0 has no listpack lists, see compat/DIFFERENCES.md.)"""
    script = ""
    for key in PLANE_KEYS.values():
        for table in FAMILIES.values():
            script += "".join(" ".join(s.args) + "\n" for s in steps(table, key) if s.args[0] != "OBJECT")
        script += FORMATTING.replace("{k}", key)
    assert cli(redis_server.port, "FLUSHALL") == "OK\n"
    assert cli(port, *mode, stdin=script) == cli(redis_server.port, *mode, stdin=script)
