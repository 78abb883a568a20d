"""Settings a user can get wrong: refused with Redis's texts, at start-up and live, never a lock-out."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import vfsd_command, wait_for


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("proto-max-bulk-len", "3", "argument must be between 1048576 and 9223372036854775807 inclusive"),
    ("maxclients", "0", "argument must be between 1 and 4294967295 inclusive"),
    ("max-array-len", "1", "argument must be between 1024 and 2147483647 inclusive"),
    ("client-query-buffer-limit", "5", "argument must be between 1048576 and 9223372036854775807 inclusive"),
    ("maxclients", "abc", "argument couldn't be parsed into an integer"),
    ("protected-mode", "maybe", "argument must be 'yes' or 'no'"),
    ("loglevel", "verbose", "argument(s) must be one of the following: debug, info, warning, error"),
    ("notify-keyspace-events", "Q", "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
])
def test_config_set_refuses_values_that_would_lock_clients_out(r: redis.Redis, name: str, value: str,
                                                               reason: str) -> None:
    before = r.config_get(name)[name]
    with pytest.raises(redis.ResponseError) as info:
        r.config_set(name, value)
    assert str(info.value) == f"CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    assert r.config_get(name)[name] == before
    assert r.ping()


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*vfsd_command(), "serve", "--data-dir", str(tmp_path / "d"), "--node-id", "n1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "VFSD_COLLECTORS": "off"})


def test_port_zero_picks_a_free_port_and_says_which(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--port", "0")
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("listening on" in line for line in lines):
            lines.append(proc.stdout.readline())
        line = next(line for line in lines if "listening on" in line)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+) \(peer port (\d+|any free port)\)", line)
        assert match, line
        port = int(match.group(1))
        assert port != 0
        if port + 10000 <= 65535:
            assert match.group(2) == str(port + 10000)
        c = redis.Redis(port=port, socket_timeout=10)
        wait_for(c.ping, what="the node on its picked port")
        assert c.config_get("port")["port"] == str(port)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--port", "70000"], {}, "port: must be between 0 and 65535 inclusive, got 70000"),
    (["--node-id", "a/b"], {}, "node_id: 'a/b' is not a valid node id"),
    (["--node-id", ".."], {}, "node_id: '..' is not a valid node id"),
    ([], {"VFSD_MAXCLIENTS": "0"}, "maxclients: must be between 1 and 4294967295 inclusive, got '0'"),
])
def test_bad_settings_at_start_up_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                                message: str) -> None:
    done = subprocess.run([*vfsd_command(), "serve", "--data-dir", str(tmp_path / "d"), "--no-collectors", *args],
                          capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_verbose_log_level_in_toml_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "vfsd.toml"
    conf.write_text('[node]\nlog_level = "verbose"\n')
    done = subprocess.run([*vfsd_command(), "serve", "--config", str(conf), "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "log_level: must be one of debug, info, warning, error, got 'verbose'" in done.stderr
    assert "Traceback" not in done.stderr
