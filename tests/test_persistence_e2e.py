"""The local and active planes across restarts: dumps on SIGTERM, SHUTDOWN, SAVE, BGSAVE and the save schedule."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import redis

from tests.conftest import VfsdProcess, free_port, vfsd_command, wait_for
from tests.test_node_e2e import raw


def stat_of(c: redis.Redis, key: str) -> dict[bytes, object]:
    """VFS.STAT less the fields that change with the clock."""
    reply = c.execute_command("VFS.STAT", key)
    return {k: v for k, v in zip(reply[::2], reply[1::2]) if not k.startswith(b"ttl")}


def write_some(c: redis.Redis) -> None:
    c.hset("/run/h", mapping={"a": "1", "b": "2"})
    c.rpush("local-list", *[f"job{i}" for i in range(200)])  # long enough to be a deque, not a packed list
    c.zadd("/sum/z", {"m1": 1.5, "m2": -3})
    c.sadd("local-set", "x", "y")
    c.set("local", "l1")
    c.set("/run/job", "j1", ex=1000)
    c.json().set("/hw/n1/cpu", "$", {"cores": 8})
    c.set("/ctx/desired", "d1")


def test_sigterm_saves_and_a_restart_loads(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    write_some(c)
    before = {k: stat_of(c, k) for k in ("/run/job", "/hw/n1/cpu")}
    assert node.stop() == 0
    node.restart()
    c = node.client()
    assert c.mget("local", "/run/job", "/ctx/desired") == [b"l1", b"j1", b"d1"]
    assert c.json().get("/hw/n1/cpu") == {"cores": 8}
    assert c.hgetall("/run/h") == {b"a": b"1", b"b": b"2"}
    assert c.lrange("local-list", 0, -1) == [f"job{i}".encode() for i in range(200)]
    assert c.zrange("/sum/z", 0, -1, withscores=True) == [(b"m2", -3.0), (b"m1", 1.5)]
    assert c.smembers("local-set") == {b"x", b"y"}
    assert 990 < c.ttl("/run/job") <= 1000
    for key, stat in before.items():
        assert stat_of(c, key) == stat  # revision, origin, times: all kept
    # The hybrid logical clock resumes above what it handed out: a new write is newer.
    c.set("/run/job", "j2")
    assert stat_of(c, "/run/job")[b"revision"] > before["/run/job"][b"revision"]
    assert "loaded 7 local and active files" in node.output()


def test_kill_9_keeps_what_the_last_save_held(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.set("/run/a", "saved")
    assert c.bgsave()
    wait_for(lambda: c.info("persistence")["rdb_saves"] == 1, what="the background save")
    c.set("/run/b", "after the save")
    c.set("/ctx/durable", "always")
    node.kill9()
    node.restart()
    c = node.client()
    # As with Redis and dump.rdb: what came after the last save is gone; desired state never is.
    assert c.mget("/run/a", "/run/b", "/ctx/durable") == [b"saved", None, b"always"]


def test_save_lastsave_and_info(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.set("k", "v")
    assert c.info("persistence")["rdb_changes_since_last_save"] == 1
    assert c.save()
    info = c.info("persistence")
    assert info["rdb_changes_since_last_save"] == 0 and info["rdb_last_bgsave_status"] == "ok"
    assert info["rdb_saves"] == 1 and info["rdb_last_saved_files"] == 1
    assert c.lastsave().timestamp() == pytest.approx(info["rdb_last_save_time"], abs=1)
    # One batch, so the second BGSAVE finds the first still running.
    replies = raw(node.port, b"BGSAVE\r\nBGSAVE\r\nBGSAVE SCHEDULE\r\n")
    assert replies == (b"+Background saving started\r\n-ERR Background save already in progress\r\n"
                       b"+Background saving scheduled\r\n")
    wait_for(lambda: c.info("persistence")["rdb_saves"] == 3, what="the scheduled save after the running one")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        c.execute_command("BGSAVE", "NOW")


def test_config_set_save_is_checked_and_the_schedule_runs(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    with pytest.raises(redis.ResponseError) as info:
        c.config_set("save", "1")
    assert str(info.value) == "CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters"
    assert c.config_get("save") == {"save": "3600 1 300 100 60 10000"}
    c.config_set("save", "1 2")
    c.set("/run/x", "1")
    c.set("/run/y", "2")
    wait_for(lambda: c.info("persistence")["rdb_saves"] >= 1, timeout=10, what="a save on the schedule")
    assert c.info("persistence")["rdb_changes_since_last_save"] == 0


def test_shutdown_saves_unless_told_not_to(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.set("/run/kept", "1")
    c.shutdown()  # redis-py expects the connection to close, and it does
    assert node.proc.wait(10) == 0
    node.log.close()
    node.restart()
    c = node.client()
    assert c.get("/run/kept") == b"1"
    c.set("/run/lost", "1")
    with pytest.raises(redis.ResponseError, match="No shutdown in progress"):
        c.execute_command("SHUTDOWN", "ABORT")
    c.shutdown(nosave=True)
    assert node.proc.wait(10) == 0
    node.log.close()
    node.restart()
    assert node.client().mget("/run/kept", "/run/lost") == [b"1", None]


def test_a_failed_save_is_reported_and_stops_shutdown(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    node = node_factory(data_dir=data)
    c = node.client()
    c.set("/run/a", "1")
    (data / "dump.vfsd.tmp").mkdir()  # the save cannot create its temporary file
    with pytest.raises(redis.ResponseError, match="saving failed"):
        c.save()
    assert c.info("persistence")["rdb_last_bgsave_status"] == "err"
    with pytest.raises(redis.ResponseError, match="Errors trying to SHUTDOWN. Check logs."):
        c.shutdown()
    assert c.ping()  # still serving
    with pytest.raises(redis.ConnectionError):
        c.execute_command("SHUTDOWN", "FORCE")
    assert node.proc.wait(10) == 0


def test_flushall_is_not_undone_by_a_restart(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    c.set("local", "v")
    c.set("/run/a", "v")
    assert c.save()
    c.flushall()
    wait_for(lambda: c.info("persistence")["rdb_saves"] >= 2, what="the save FLUSHALL starts")
    node.kill9()
    node.restart()
    assert node.client().dbsize() == 0


def test_a_damaged_dump_refuses_to_start(tmp_path: Path) -> None:
    node = VfsdProcess(tmp_path / "data").start()
    node.client().set("/run/a", "1")
    node.stop()
    path = tmp_path / "data" / "dump.vfsd"
    path.write_bytes(path.read_bytes()[:-1])
    done = subprocess.run([*vfsd_command(), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
                           "--node-id", "n1"],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "VFSD_COLLECTORS": "off"})
    assert done.returncode != 0
    assert f"dump is damaged, refusing to start: {path}: truncated" in done.stderr
    assert "Traceback" not in done.stderr
