"""Data that must not be lost or poisoned: real ``vfsd serve`` processes on damaged or shared data dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.conftest import VfsdProcess, free_port, vfsd_command, wait_for


def serve_once(data_dir: Path, *extra: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``vfsd serve`` expecting it to refuse to start; returns the finished process."""
    args = [*vfsd_command(), "serve", "--port", str(free_port()), "--data-dir", str(data_dir), "--node-id", "n1",
            *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "VFSD_COLLECTORS": "off"})


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "desired").glob("wal-*.log"))


# -- one data dir, one node -------------------------------------------------------------


def test_a_second_node_on_the_same_data_dir_is_refused(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = node_factory(data_dir=tmp_path / "shared")
    first.client().set("/ctx/a", "1")
    done = serve_once(tmp_path / "shared")
    assert done.returncode != 0
    assert f"data dir {tmp_path / 'shared'} is in use by another vfsd (pid {first.proc.pid})" in done.stderr
    assert "Traceback" not in done.stderr
    assert first.client().get("/ctx/a") == b"1"  # the first node is unharmed


def test_the_lock_goes_with_the_process(tmp_path: Path) -> None:
    """kill -9 leaves no stale lock: the kernel drops an flock with its last descriptor."""
    node = VfsdProcess(tmp_path / "d").start()
    node.client().set("/ctx/a", "1")
    node.kill9()
    node.restart()
    try:
        assert node.client().get("/ctx/a") == b"1"
    finally:
        node.stop()


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    done = serve_once(tmp_path / "file")
    assert done.returncode != 0
    assert f"data dir {tmp_path / 'file'} is not a directory" in done.stderr
    assert "listen" not in done.stderr and "Traceback" not in done.stderr


# -- damaged files refuse to start, in one line -------------------------------------------


def _node_with_entries(tmp_path: Path, n: int = 5) -> Path:
    data = tmp_path / "data"
    node = VfsdProcess(data).start()
    c = node.client()
    for i in range(n):
        c.set(f"/ctx/k{i}", str(i))
    node.stop()
    return data


@pytest.mark.parametrize("garbage", [b"garbage!" * 64, b"garbage", os.urandom(4096)], ids=["long", "short", "random"])
def test_a_segment_of_garbage_is_corruption_not_an_empty_log(tmp_path: Path, garbage: bytes) -> None:
    data = _node_with_entries(tmp_path)
    (segment,) = segments(data)
    segment.write_bytes(garbage)
    done = serve_once(data)
    assert done.returncode != 0
    assert f"{segment}: at byte offset 0:" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_garbage_after_valid_records_is_corruption(tmp_path: Path) -> None:
    data = _node_with_entries(tmp_path)
    (segment,) = segments(data)
    size = segment.stat().st_size
    with segment.open("ab") as fh:
        fh.write(b"\x00\x00\x10\x00" + b"\x12\x34\x56\x78" + b"not a record " * 20)
    done = serve_once(data)
    assert done.returncode != 0
    assert f"{segment}: at byte offset {size}:" in done.stderr
    assert "not a partly written record" in done.stderr


def test_a_torn_tail_is_still_repaired(tmp_path: Path) -> None:
    """What a crash during append leaves (the start of the next record) is cut off, as before."""
    data = _node_with_entries(tmp_path)
    (segment,) = segments(data)
    raw = segment.read_bytes()
    # Repeat the start of the last record (its header and the first body bytes hold index 5):
    # renumbered as index 6 it is exactly what a torn append of the next entry looks like.
    last = raw.rindex(b"\x93\x05") - 8
    torn = bytearray(raw[last : last + 12])
    torn[9] = 6
    segment.write_bytes(raw + bytes(torn))
    node = VfsdProcess(data).start()
    try:
        assert node.client().mget([f"/ctx/k{i}" for i in range(5)]) == [str(i).encode() for i in range(5)]
        assert "truncating torn tail" in node.output()
    finally:
        node.stop()


def test_a_foreign_file_in_the_desired_dir_is_refused(tmp_path: Path) -> None:
    data = _node_with_entries(tmp_path)
    stray = data / "desired" / "wal-1.log"
    stray.write_bytes(b"")
    done = serve_once(data)
    assert done.returncode != 0
    assert f"{stray}: at byte offset 0: not a log segment, snapshot, hard-state or meta file" in done.stderr


# -- no poison entries ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["local-doc", "/run/doc", "/ctx/doc"])
def test_a_lone_surrogate_is_invalid_json_on_every_plane(node_factory, key: str) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    before = c.info("vfsd")["desired_applied_index"]
    for text in ('"\\ud800"', '{"a":"\\udfff"}', b'"\xed\xa0\x80"'):
        with pytest.raises(redis.ResponseError, match="invalid JSON: lone surrogate"):
            c.execute_command("JSON.SET", key, "$", text)
    assert c.exists(key) == 0
    # Refused before it was proposed: no log entry, so nothing to replay (and fail) at restart.
    assert c.info("vfsd")["desired_applied_index"] == before
    node.kill9()
    node.restart()
    assert "ERROR" not in node.output() and "Traceback" not in node.output()


def test_wrong_arguments_never_reach_the_log(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    before = c.info("vfsd")["desired_applied_index"]
    for command in (("SET", "/ctx/a", "v", "NX", "XX"), ("SET", "/ctx/a", "v", "EX", "0"),
                    ("INCRBY", "/ctx/a", "x"), ("SETRANGE", "/ctx/a", "-1", "x"), ("EXPIRE", "/ctx/a", "soon"),
                    ("JSON.SET", "/ctx/a", "$", "{"), ("JSON.SET", "/ctx/a", "$..[", "1")):
        with pytest.raises(redis.ResponseError):
            c.execute_command(*command)
    assert c.info("vfsd")["desired_applied_index"] == before
    # State-dependent errors are the apply's to give (the same on every replica).
    c.set("/ctx/s", "text")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        c.incr("/ctx/s")


def test_a_transaction_keeps_its_order_when_an_argument_is_wrong(node_factory) -> None:  # type: ignore[no-untyped-def]
    node = node_factory()
    c = node.client()
    pipe = c.pipeline(transaction=True)
    pipe.set("/ctx/t1", "1")
    pipe.execute_command("SET", "/ctx/t2", "2", "NX", "XX")
    pipe.incr("/ctx/t1")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] is True and replies[2] == 2
    assert isinstance(replies[1], redis.ResponseError) and "syntax error" in str(replies[1])
    assert c.get("/ctx/t1") == b"2" and c.exists("/ctx/t2") == 0


def test_string_limits_travel_with_the_entry(node_factory) -> None:  # type: ignore[no-untyped-def]
    """The proposer's proto-max-bulk-len decides; a restart with other settings replays the same state."""
    node = node_factory()
    c = node.client()
    c.config_set("proto-max-bulk-len", str(1024 * 1024))
    c.set("/ctx/s", "x" * (1024 * 1024 - 1))
    assert c.append("/ctx/s", "y") == 1024 * 1024
    with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
        c.append("/ctx/s", "z")
    with pytest.raises(redis.ResponseError, match="string exceeds maximum allowed size"):
        c.setrange("/ctx/big", 1024 * 1024, "z")
    node.kill9()
    node.restart()  # default limit now: the replay must still give what was answered
    c = node.client()
    assert c.strlen("/ctx/s") == 1024 * 1024
    assert c.exists("/ctx/big") == 0


# -- the snapshot fallback ------------------------------------------------------------------


def test_a_damaged_newest_snapshot_falls_back_to_the_older_one(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(data_dir=tmp_path / "data")
    c = node.client()
    c.config_set("snapshot-every-entries", "40")
    for i in range(300):
        c.set(f"/ctx/k{i}", str(i))
    assert c.info("vfsd")["desired_snapshot_index"] >= 240
    node.stop()
    snaps = sorted((tmp_path / "data" / "desired").glob("snap-*.snap"))
    assert len(snaps) == 2
    newest = snaps[-1]
    raw = bytearray(newest.read_bytes())
    raw[-1] ^= 0xFF
    newest.write_bytes(bytes(raw))
    node.restart()
    c = node.client()
    assert c.mget([f"/ctx/k{i}" for i in range(300)]) == [str(i).encode() for i in range(300)]
    assert "skipping damaged snapshot" in node.output()


def test_a_damaged_only_snapshot_replays_the_whole_log(node_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(data_dir=tmp_path / "data")
    c = node.client()
    c.config_set("snapshot-every-entries", "40")
    for i in range(50):
        c.set(f"/ctx/k{i}", str(i))
    node.stop()
    (snap,) = (tmp_path / "data" / "desired").glob("snap-*.snap")
    snap.write_bytes(snap.read_bytes()[:-1])
    node.restart()
    assert node.client().mget([f"/ctx/k{i}" for i in range(50)]) == [str(i).encode() for i in range(50)]


def test_python_m_vfsd_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "vfsd", "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("vfsd")


def test_kill_9_while_many_clients_write_loses_no_acknowledged_write(node_factory) -> None:  # type: ignore[no-untyped-def]
    """The node dies mid-stream, not after the writes stop: every write a client saw acknowledged is there."""
    import threading

    node = node_factory()
    acked: dict[str, str] = {}
    incr_acked = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        c = node.client()
        i = 0
        while not stop.is_set():
            key, value = f"/ctx/w{n}/{i}", f"v{n}.{i}"
            try:
                if n % 4 == 0:
                    c.incr("/ctx/counter")
                    with lock:
                        incr_acked[0] += 1
                else:
                    c.set(key, value)
                    with lock:
                        acked[key] = value
            except (redis.ConnectionError, redis.TimeoutError):
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 600, timeout=30, what="writes to be flowing")
    node.kill9()  # while all eight are mid-write
    stop.set()
    for t in threads:
        t.join(10)
    node.restart()
    c = node.client()
    keys = sorted(acked)
    assert c.mget(keys) == [acked[k].encode() for k in keys]
    # A write in flight at the kill may or may not have landed; one acknowledged must have.
    assert int(c.get("/ctx/counter") or 0) >= incr_acked[0]


def test_a_data_dir_keeps_its_member_id_and_belongs_to_one_node(tmp_path: Path) -> None:
    import json

    node = VfsdProcess(tmp_path / "d").start()
    node.stop()
    first = json.loads((tmp_path / "d" / "identity.json").read_text())
    node.restart()
    node.stop()
    again = json.loads((tmp_path / "d" / "identity.json").read_text())
    assert again["member_id"] == first["member_id"] and again["boots"] == first["boots"] + 1
    assert first["node_id"] == "n1" and first["member_id"].startswith("n1-")
    done = serve_once(tmp_path / "d", "--node-id", "n2")  # the later --node-id wins over serve_once's
    assert done.returncode != 0 and "belongs to node 'n1', not 'n2'" in done.stderr
    # A wiped data dir is a new incarnation: a new member id.
    import shutil

    shutil.rmtree(tmp_path / "d")
    node.restart()
    node.stop()
    assert json.loads((tmp_path / "d" / "identity.json").read_text())["member_id"] != first["member_id"]


def test_a_clustered_node_opens_its_peer_port(node_factory) -> None:  # type: ignore[no-untyped-def]
    import socket

    peer_port = free_port()
    node = node_factory("--peer-port", str(peer_port), "--seeds", f"127.0.0.1:{free_port()}")
    # The client port answers first; the peer port opens right after it.
    wait_for(lambda: socket.create_connection(("127.0.0.1", peer_port), timeout=5).close() or True,
             what="the peer port")
    assert node.client().config_get("peer-port")["peer-port"] == str(peer_port)
