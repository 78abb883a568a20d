"""The ``vfsd`` command's small clients, run as real processes against a real node."""

from __future__ import annotations

import json
import subprocess

import redis

from tests.conftest import VfsdProcess, vfsd_command


def vfsd(server: VfsdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*vfsd_command(), *args[:1], "--port", str(server.port), *args[1:]],
                          capture_output=True, text=True, timeout=30)


def test_set_get_ls_stat(server: VfsdProcess, r: redis.Redis) -> None:
    assert vfsd(server, "set", "/ctx/web", '{"replicas":3}', "--json").returncode == 0
    assert r.type("/ctx/web") == b"ReJSON-RL"
    got = vfsd(server, "get", "/ctx/web")
    assert got.returncode == 0 and got.stdout.strip() == '{"replicas":3}'
    assert vfsd(server, "set", "/run/x", "plain").returncode == 0
    assert vfsd(server, "ls", "/").stdout.split() == sorted(
        ["ctx/", "hw/", "itg/", "lk/", "mid/", "run/", "sum/", "sys/", "ztb/"]
    )
    assert vfsd(server, "ls", "/ctx").stdout.split() == ["web"]
    stat = json.loads(vfsd(server, "stat", "/ctx/web").stdout)
    assert stat["plane"] == "consensus" and stat["type"] == "ReJSON-RL"


def test_errors_exit_nonzero_with_the_reason(server: VfsdProcess, r: redis.Redis) -> None:
    missing = vfsd(server, "get", "/ctx/none")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    bad = vfsd(server, "ls", "/ctx//x")
    assert bad.returncode == 1 and "empty segment" in bad.stderr


def test_serve_rejects_a_bad_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "bad.toml"
    conf.write_text('[node]\nport = "six"\n')
    done = subprocess.run([*vfsd_command(), "serve", "--config", str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "port: expected an integer" in done.stderr
