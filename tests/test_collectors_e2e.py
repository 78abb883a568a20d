"""End to end: ``vfsd serve`` with collectors on, read and watched through redis-py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from tests.conftest import VfsdProcess, wait_for
from tests.plugins.dist import install_test_plugin

CONFIG = """
[collectors]
backoff_initial_s = 0.2
backoff_max_s = 0.5
health_refresh_s = 0.5

[collectors.status]
interval_s = 0.5

[collectors.gpu_status]
interval_s = 0.5

[collectors.uptime]
interval_s = 0.5

[collectors.test_hang]
timeout_s = 0.3
"""


@pytest.fixture
def node(tmp_path: Path) -> Any:
    config = tmp_path / "vfsd.toml"
    config.write_text(CONFIG)
    path = install_test_plugin(tmp_path / "site", faulty=True)
    env = {"VFSD_COLLECTORS": "on", "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    proc = VfsdProcess(tmp_path / "data", "--config", str(config), env=env).start()
    yield proc
    proc.stop()


def json_get(r: redis.Redis, path: str, jsonpath: str = "$") -> Any:
    text = r.execute_command("JSON.GET", path, jsonpath)
    return None if text is None else json.loads(text)


def test_serve_publishes_hw_and_sum_and_keeps_sum_current(node: VfsdProcess) -> None:
    r = node.client()
    watcher = node.client()
    pubsub = watcher.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("__keyspace@0__:/sum/*")
    try:
        # Props: JSON.GET with a path, and GET as compact JSON, both work on the collector's documents.
        cores = wait_for(lambda: json_get(r, "/hw/n1/cpu", "$.logical_cores"), timeout=10, what="/hw/n1/cpu")
        assert cores == [psutil.cpu_count()]
        assert json.loads(r.get("/hw/n1/memory"))["memory_total_bytes"] == psutil.virtual_memory().total
        assert json_get(r, "/hw/n1", "$.capacity.cpu_cores") == [psutil.cpu_count()]
        assert r.execute_command("VFS.STAT", "/hw/n1/cpu")[3] == b"eventual"

        # Status: /sum/n1 appears and changes over time.
        first = wait_for(lambda: r.get("/sum/n1"), timeout=10, what="/sum/n1")
        assert "memory_available_bytes" in json.loads(first)
        wait_for(lambda: r.get("/sum/n1") != first, timeout=10, what="/sum/n1 to change")
        assert 0 <= json_get(r, "/sum/n1", "$.cpu_percent")[0] <= 100

        # A PSUBSCRIBE watcher sees the collectors' writes as keyspace notifications.
        def sum_event() -> Any:
            message = pubsub.get_message(timeout=0.2)
            return message if message and message["channel"].startswith(b"__keyspace@0__:/sum/n1") else None

        event = wait_for(sum_event, timeout=10, what="a __keyspace@0__:/sum/* notification")
        assert event["type"] == "pmessage" and event["data"] == b"json.set"

        # Health: built-ins ok; the third-party plugin ran; the faulty ones are isolated and marked.
        def health(name: str) -> dict[str, Any]:
            return json.loads(r.get(f"/itg/n1/collectors/{name}") or "{}")

        wait_for(lambda: health("status").get("state") == "ok", timeout=10, what="status healthy")
        wait_for(lambda: health("props").get("state") == "ok", timeout=10, what="props healthy")
        assert json_get(r, "/sum/n1/uptime", "$.uptime_seconds")[0] > 0
        boom = wait_for(lambda: health("test_boom").get("state") == "failed" and health("test_boom"), what="boom")
        assert "boom: this collector always fails" in boom["last_error"]
        hang = wait_for(lambda: health("test_hang").get("state") == "hung" and health("test_hang"), what="hang")
        assert "still running after 0.3 s" in hang["last_error"]
        assert r.ping()
        gpu = json_get(r, "/hw/n1/gpu")[0]
        try:
            import pynvml  # noqa: F401
        except ImportError:
            assert gpu == {"driver_available": False, "gpu_count": 0, "error": gpu["error"]}
        assert "gpu_count" in json.loads(r.get("/sum/n1"))
    finally:
        pubsub.close()
        watcher.close()
        r.close()
    # A hung collector's thread does not keep the node from exiting cleanly.
    assert node.stop() == 0


def test_collectors_off_by_environment(tmp_path: Path) -> None:
    proc = VfsdProcess(tmp_path / "data", env={"VFSD_COLLECTORS": "off"}).start()
    try:
        wait_for(lambda: "collectors are off" in proc.output(), timeout=10, what="the log line")
        r = proc.client()
        assert r.dbsize() == 0
        r.close()
    finally:
        proc.stop()
