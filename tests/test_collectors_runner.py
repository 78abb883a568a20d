"""The collector runner: writes only changes, deletes what vanished, merges the node documents, and isolates
collectors that raise, hang, return garbage or fight over a path. Then the same through a real Node."""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from vfsd import codec
from vfsd.collectors import Collector
from vfsd.collectors.registry import Plugin
from vfsd.collectors.runner import CollectorRunner
from vfsd.collectors.settings import parse
from vfsd.config import Config, ConfigError
from vfsd.store.keyspace import KIND, VALUE


class DictSink:
    """Documents by path, with a log of every write and delete the runner made."""

    def __init__(self) -> None:
        self.docs: dict[bytes, Any] = {}
        self.writes: list[bytes] = []
        self.deletes: list[bytes] = []

    def write(self, path: bytes, doc: Any) -> bool:
        if self.docs.get(path) == doc:
            return False
        self.docs[path] = copy.deepcopy(doc)
        self.writes.append(path)
        return True

    def delete(self, path: bytes) -> bool:
        self.deletes.append(path)
        return self.docs.pop(path, None) is not None

    def health(self, name: str) -> dict[str, Any]:
        return self.docs.get(f"/itg/n1/collectors/{name}".encode(), {})


async def until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Scripted(Collector):
    """Returns the next document set from a script each time (the last one repeats)."""

    def __init__(self, kind: str, script: list[dict[str, Any]], interval_s: float = 0.02) -> None:
        self.kind, self.script, self.interval_s = kind, script, interval_s
        self.calls = 0
        self.closed = False

    def collect(self, now_s: float) -> dict[str, Any]:
        docs = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(docs, BaseException):
            raise docs
        return docs

    def close(self) -> None:
        self.closed = True


def plugins(**targets: Any) -> dict[str, Plugin]:
    return {name: Plugin(name, f"tests:{name}", "test", lambda t=target: t) for name, target in targets.items()}


def runner(sink: DictSink, table: dict[str, Any] | None = None, **targets: Any) -> CollectorRunner:
    settings = parse({"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "health_refresh_s": 0.05, **(table or {})})
    return CollectorRunner("n1", plugins(**targets), settings, sink)


async def test_writes_only_changes_deletes_what_vanished_and_merges_node_documents() -> None:
    sink = DictSink()
    disks = Scripted("props", [
        {"disks/sda": {"total_bytes": 1}, "disks/sdb": {"total_bytes": 2}, "": {"capacity": {"cpu_cores": 4}}},
        {"disks/sda": {"total_bytes": 1}, "": {"capacity": {"cpu_cores": 4}}},  # sdb unplugged
    ])
    gpus = Scripted("props", [{"gpu": {"gpu_count": 1}, "": {"capacity": {"gpus": 1}}}])
    load = Scripted("status", [{"cpu": {"cpu_percent": 1.0}, "": {"cpu_percent": 1.0}},
                               {"cpu": {"cpu_percent": 2.0}, "": {"cpu_percent": 2.0}}])
    r = runner(sink, disks=disks, gpus=gpus, load=load)
    r.start()
    try:
        await until(lambda: disks.calls >= 4 and load.calls >= 4 and gpus.calls >= 4, what="a few rounds")
    finally:
        await r.stop()
    assert sink.docs[b"/hw/n1/disks/sda"] == {"total_bytes": 1}
    assert b"/hw/n1/disks/sdb" not in sink.docs and b"/hw/n1/disks/sdb" in sink.deletes
    assert sink.docs[b"/hw/n1"] == {"capacity": {"cpu_cores": 4, "gpus": 1}}
    assert sink.docs[b"/sum/n1/cpu"] == {"cpu_percent": 2.0} and sink.docs[b"/sum/n1"] == {"cpu_percent": 2.0}
    # Unchanged documents were written once, however many rounds ran.
    assert sink.writes.count(b"/hw/n1/disks/sda") == 1 and sink.writes.count(b"/hw/n1/gpu") == 1
    assert sink.writes.count(b"/sum/n1/cpu") == 2
    health = sink.health("disks")
    assert (health["state"], health["kind"], health["documents"], health["failures"]) == ("ok", "props", 2, 0)
    assert health["plugin"] == "tests:disks (test)" and health["last_success_ms"] > 0
    assert disks.closed and gpus.closed and load.closed
    # A client deleted some documents (FLUSHALL): restore() puts back exactly those.
    sink.delete(b"/hw/n1/disks/sda")
    sink.delete(b"/hw/n1")
    writes = len(sink.writes)
    assert r.restore() == 2
    assert sink.docs[b"/hw/n1/disks/sda"] == {"total_bytes": 1}
    assert sink.docs[b"/hw/n1"] == {"capacity": {"cpu_cores": 4, "gpus": 1}}
    assert len(sink.writes) == writes + 2 and r.restore() == 0


async def test_a_failing_collector_is_isolated_marked_failed_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="vfsd.collectors")
    sink = DictSink()
    good = Scripted("status", [{"cpu": {"n": 1}}])
    flaky = Scripted("status", [RuntimeError("disk on fire")] * 3 + [{"flaky": {"ok": True}}])
    r = runner(sink, {"log_every_s": 60}, good=good, flaky=flaky)
    r.start()
    try:
        failed = await until(lambda: sink.health("flaky").get("failures") == 2 and sink.health("flaky"), what="failures")
        assert failed["state"] == "failed" and failed["last_error"] == "RuntimeError: disk on fire"
        assert failed["next_retry_ms"] is not None and failed["failures_total"] == 2
        assert good.calls >= 2 and sink.docs[b"/sum/n1/cpu"] == {"n": 1}
        await until(lambda: sink.health("flaky").get("state") == "ok", what="recovery")
    finally:
        await r.stop()
    assert sink.health("flaky")["failures_total"] == 3 and sink.docs[b"/sum/n1/flaky"] == {"ok": True}
    failures = [rec for rec in caplog.records if "collector flaky failed" in rec.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # rate limited: the first, with its traceback
    assert "collector flaky recovered" in caplog.text


async def test_backoff_spaces_out_retries() -> None:
    sink = DictSink()
    broken = Scripted("status", [ValueError("nope")])
    r = runner(sink, {"backoff_initial_s": 0.1, "backoff_max_s": 0.4}, broken=broken)
    r.start()
    try:
        await asyncio.sleep(1.0)  # a measurement window, not a wait for a condition
    finally:
        await r.stop()
    # Tries at 0, 0.1, 0.3, 0.7 (then every 0.4): 4 or 5 calls in a second, not the 50 its interval would allow.
    assert 2 <= broken.calls <= 5


class Hanging(Collector):
    kind, interval_s = "status", 0.02

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self, now_s: float) -> dict[str, Any]:
        self.calls += 1
        self.release.wait(30)
        return {"late": {"x": 1}}


async def test_a_hung_collector_is_not_rescheduled_until_it_returns_and_others_keep_going() -> None:
    sink = DictSink()
    hang = Hanging()
    good = Scripted("status", [{"cpu": {"n": 1}}, {"cpu": {"n": 2}}, {"cpu": {"n": 3}}])
    r = runner(sink, {"hang": {"timeout_s": 0.1}}, hang=hang, good=good)
    r.start()
    try:
        health = await until(lambda: sink.health("hang").get("state") == "hung" and sink.health("hang"), what="hung")
        assert "still running after 0.1 s" in health["last_error"]
        await until(lambda: good.calls >= 5, what="the other collector to keep running")
        assert hang.calls == 1  # never a second thread into a hung collector
        assert sink.docs[b"/sum/n1/cpu"] == {"n": 3}
        hang.release.set()
        await until(lambda: sink.health("hang").get("state") == "failed", what="the hung call to return")
        assert b"/sum/n1/late" not in sink.docs  # the late result is discarded
        await until(lambda: sink.health("hang").get("state") == "ok", what="the retry to succeed")
        assert sink.docs[b"/sum/n1/late"] == {"x": 1}
    finally:
        hang.release.set()
        await r.stop()


async def test_bad_documents_and_path_conflicts_fail_only_that_collector() -> None:
    sink = DictSink()
    garbage = Scripted("props", [{"bad": {"value": {1, 2}}}])
    first = Scripted("status", [{"shared": {"by": "first"}}])
    r = runner(sink, first=first)
    r.start()
    await until(lambda: b"/sum/n1/shared" in sink.docs, what="first")
    await r.stop()
    # A second runner over the same owners: a later collector claiming first's path fails.
    r.slots += runner(sink, garbage=garbage, second=Scripted("status", [{"shared": {"by": "second"}}])).slots
    r._stopping = False
    r.start()
    try:
        await until(lambda: sink.health("second").get("state") == "failed", what="conflict")
        await until(lambda: sink.health("garbage").get("state") == "failed", what="garbage")
    finally:
        await r.stop()
    assert sink.health("second")["last_error"] == "/sum/n1/shared belongs to collector first"
    assert sink.health("garbage")["last_error"] == "document 'bad': set at $.value is not a JSON value"
    assert sink.docs[b"/sum/n1/shared"] == {"by": "first"}


async def test_load_failures_and_options_reach_the_health_document() -> None:
    sink = DictSink()

    class NeedsOption(Collector):
        kind = "status"

        def __init__(self, *, level: int) -> None:
            self.level = level

        def collect(self, now_s: float) -> dict[str, Any]:
            return {"level": {"level": self.level}}

    r = runner(sink, {"configured": {"level": 7, "interval_s": 0.05}, "unconfigured": {"enabled": True}},
               configured=NeedsOption, unconfigured=NeedsOption, off=NeedsOption)
    r.slots = [s for s in r.slots if s.name != "off"]
    r.start()
    try:
        await until(lambda: sink.health("unconfigured").get("state") == "failed", what="load failure")
        await until(lambda: sink.docs.get(b"/sum/n1/level") == {"level": 7}, what="configured")
    finally:
        await r.stop()
    assert "cannot create tests:unconfigured: TypeError" in sink.health("unconfigured")["last_error"]
    assert sink.health("configured")["interval_s"] == 0.05


def test_disabled_collectors_and_bad_node_ids() -> None:
    sink = DictSink()
    r = runner(sink, {"b": {"enabled": False}}, a=Scripted("status", [{}]), b=Scripted("status", [{}]))
    assert [s.name for s in r.slots] == ["a"]
    with pytest.raises(ConfigError, match="node id"):
        CollectorRunner("a/b", {}, parse({}), sink)


# -- through a real Node ------------------------------------------------------------------


class FakeSubscriber:
    def __init__(self) -> None:
        self.messages: list[list[bytes]] = []

    def deliver(self, message: list[bytes]) -> None:
        self.messages.append(message)


async def test_collectors_in_a_node_write_like_clients_and_raise_keyspace_events(tmp_path: Any) -> None:
    from vfsd.node import Node

    table = {"status": {"interval_s": 0.1}, "health_refresh_s": 0.1, "restore_s": 0.1}
    node = Node(Config(node_id="n1", data_dir=str(tmp_path), port=0, collectors=table))
    sub = FakeSubscriber()
    node.pubsub.psubscribe(sub, b"__keyspace@0__:/sum/*")
    await node.start()
    try:
        assert node.collectors is not None
        entry = await until(lambda: node.keyspace.get(b"/hw/n1/cpu"), what="/hw/n1/cpu")
        assert entry[KIND] == codec.DOC
        import psutil

        assert codec.unpack(entry[VALUE])["logical_cores"] == psutil.cpu_count()
        await until(lambda: any(m[2] == b"__keyspace@0__:/sum/n1" for m in sub.messages), what="a /sum event")
        assert [b"pmessage", b"__keyspace@0__:/sum/*", b"__keyspace@0__:/sum/n1", b"json.set"] in sub.messages
        def status_health() -> Any:
            entry = node.keyspace.get(b"/itg/n1/collectors/status")
            return entry is not None and codec.unpack(entry[VALUE])["state"] == "ok"

        await until(status_health, what="status health ok")
        gpu = codec.unpack((await until(lambda: node.keyspace.get(b"/hw/n1/gpu"), what="gpu"))[VALUE])
        assert "gpu_count" in gpu
        # FLUSHALL empties the node; the collectors' documents come back (restore), /hw/n1/cpu included.
        await node.flush_all()
        assert node.keyspace.get(b"/hw/n1/cpu") is None
        await until(lambda: node.keyspace.get(b"/hw/n1/cpu"), what="/hw/n1/cpu restored")
    finally:
        await node.stop()


async def test_collectors_off_in_a_node(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from vfsd.node import Node

    monkeypatch.setenv("VFSD_COLLECTORS", "off")
    node = Node(Config(node_id="n1", data_dir=str(tmp_path), port=0))
    await node.start()
    try:
        assert node.collectors is None and len(node.keyspace) == 0
    finally:
        await node.stop()
