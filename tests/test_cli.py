"""The ``vfsd`` command's small clients, run as real processes against a real node."""

from __future__ import annotations

import json
import os
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


def test_get_prints_binary_values_exactly(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("/run/bin", b"\xff\x00\xfe")
    done = subprocess.run([*vfsd_command(), "get", "--port", str(server.port), "/run/bin"], capture_output=True,
                          timeout=30)
    assert done.returncode == 0 and done.stdout == b"\xff\x00\xfe\n"


def test_ls_of_a_missing_or_a_file_path_says_so(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("/ctx/file", "v")
    missing = vfsd(server, "ls", "/ctx/nothing")
    assert missing.returncode == 1 and "/ctx/nothing: no such directory" in missing.stderr
    file = vfsd(server, "ls", "/ctx/file")
    assert file.returncode == 1 and "/ctx/file: not a directory" in file.stderr
    assert vfsd(server, "ls", "/ctx").stdout.split() == ["file"]


def test_del_removes_files_on_any_plane(server: VfsdProcess, r: redis.Redis) -> None:
    r.set("/ctx/a", "1")
    r.set("/run/b", "2")
    done = vfsd(server, "del", "/ctx/a", "/run/b")
    assert done.returncode == 0 and done.stdout.strip() == "2"
    assert r.exists("/ctx/a", "/run/b") == 0
    again = vfsd(server, "del", "/ctx/a")
    assert again.returncode == 1 and "no such file" in again.stderr


def test_a_password_protected_node_says_authentication_failed(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory("--requirepass", "s3cret")
    refused = vfsd(node, "ls", "/")
    assert refused.returncode == 1 and "authentication failed" in refused.stderr
    assert "cannot reach" not in refused.stderr
    wrong = vfsd(node, "ls", "-a", "nope", "/")
    assert wrong.returncode == 1 and "authentication failed" in wrong.stderr
    ok = subprocess.run([*vfsd_command(), "ls", "--port", str(node.port), "/"], capture_output=True, text=True,
                        timeout=30, env={**os.environ, "VFSD_PASSWORD": "s3cret"})
    assert ok.returncode == 0 and "ctx/" in ok.stdout.split()


def test_client_help_names_the_environment_and_checks_the_port() -> None:
    shown = subprocess.run([*vfsd_command(), "ls", "--help"], capture_output=True, text=True, timeout=30).stdout
    for env in ("VFSD_HOST", "VFSD_PORT", "VFSD_PASSWORD"):
        assert env in shown
    bad = subprocess.run([*vfsd_command(), "ls", "-p", "70000"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "70000 is not in the range 1<=x<=65535" in bad.stderr
