"""The collector runner: the asyncio shell that runs collectors and writes what they find.

Theory of operation. Each enabled collector gets one asyncio task. The task
starts the collector's work — importing and creating it the first time, then
``collect(now_s)`` and checking the documents — on a fresh daemon thread, and
waits for it with the collector's timeout. Nothing a collector does runs on
the event loop, so a slow ``/proc``, a stuck NFS mount or a wedged GPU driver
cannot stall the client port.

- **Success**: the task writes the documents on the loop through the sink
  (``Node.write_document``: the same path as a client's ``JSON.SET``, so the
  write is stamped, replicated and raises keyspace notifications; an unchanged
  document is not written), deletes the documents the collector returned last
  time but not now, re-merges the node's summary document (``/hw/<node>`` or
  ``/sum/<node>``) from every collector's ``""`` contribution, and sleeps until
  ``start + interval_s`` (fixed rate: slow collections do not drift the cadence).
- **Failure** (an exception, an invalid document, an import that fails): the
  collector is marked failed in ``/itg/<node>/collectors/<name>`` and retried
  after an exponential backoff (``health.py``); logs are rate limited.
- **Hang** (still running at its timeout): Python cannot kill a thread, so the
  collector is marked ``hung`` and not scheduled again until the call returns;
  its late result is discarded and it is retried after backoff. A hung thread
  is a daemon thread: it never keeps the process from exiting. One thread per
  collector run (not a shared pool), so a hung plugin holds only its own thread.

Documents a collector returns are owned by it: another collector returning the
same path fails with an error naming the owner, so two plugins cannot fight
over one file. The node is the source of truth for its own subtree: every
``restore_s`` the runner writes each collector's last documents again, which
writes nothing unless a client deleted or changed one (a FLUSHALL would
otherwise leave ``/hw`` empty until the next Props collection, minutes later). Time comes in through ``clock`` (monotonic seconds, for
scheduling and rates) and ``wall_ms`` (for the health documents).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from vfsd.collectors.base import HEALTH_ROOT, KINDS, ROOTS
from vfsd.collectors.documents import DocumentError, check_documents, deep_merge, document_path
from vfsd.collectors.health import HUNG, Health
from vfsd.collectors.registry import CollectorLoadError, Plugin, discover, instantiate
from vfsd.collectors.settings import CollectorOptions, CollectorSettings, parse
from vfsd.config import ConfigError
from vfsd.paths import PathError, check_path

log = logging.getLogger(__name__)

#: How long stop() waits for collectors' close() (NVML shutdown) before leaving them to the daemon thread.
CLOSE_TIMEOUT_S = 2.0


class Sink(Protocol):
    """Where documents go: the node's active plane (``NodeSink``) or a test's dict."""

    def write(self, path: bytes, doc: Any) -> bool: ...

    def delete(self, path: bytes) -> bool: ...


class NodeSink:
    """Writes through the node exactly as clients do: ``write_document`` (JSON.SET) and DEL."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def write(self, path: bytes, doc: Any) -> bool:
        return bool(self.node.write_document(path, doc))

    def delete(self, path: bytes) -> bool:
        return bool(self.node.delete_document(path))


def describe(exc: BaseException) -> str:
    if isinstance(exc, (DocumentError, CollectorLoadError)):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Slot:
    """One collector as the runner sees it: plugin, options, the instance once created, health, owned paths."""

    def __init__(self, plugin: Plugin, options: CollectorOptions, settings: CollectorSettings) -> None:
        self.name = plugin.name
        self.plugin = plugin
        self.options = options
        self.collector: Any = None
        self.timeout_s = options.timeout_s or settings.timeout_s
        self.health = Health(plugin.name, "", options.interval_s or 0.0, self.timeout_s,
                             backoff_initial_s=settings.backoff_initial_s, backoff_max_s=settings.backoff_max_s,
                             log_every_s=settings.log_every_s, refresh_s=settings.health_refresh_s,
                             plugin=f"{plugin.value} ({plugin.source})")
        #: The documents this collector wrote last (path -> document): what ``restore`` puts back.
        self.last: dict[bytes, dict[str, Any]] = {}
        self.busy = False  # a thread is inside the collector
        self.task: asyncio.Task[None] | None = None

    @property
    def kind(self) -> str:
        return str(self.collector.kind)

    @property
    def interval_s(self) -> float:
        return self.options.interval_s or float(self.collector.interval_s)

    def work(self, now_s: float) -> dict[str, dict[str, Any]]:
        """The part that runs on the worker thread: create on first use, collect, check."""
        if self.collector is None:
            collector = instantiate(self.plugin, self.options.options)
            self.health.kind = collector.kind
            self.collector = collector
            self.health.interval_s = self.interval_s
        return check_documents(self.collector.collect(now_s))


def _settled(slot: Slot, future: asyncio.Future[Any]) -> None:
    slot.busy = False
    if not future.cancelled():
        future.exception()  # retrieved here, so a late (discarded) failure is not reported as "never retrieved"


def _close_all(collectors: list[Any]) -> None:
    for collector in collectors:
        close = getattr(collector, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("collector %s: close() failed", getattr(collector, "name", collector))


class CollectorRunner:
    def __init__(
        self,
        node_id: str,
        plugins: Mapping[str, Plugin],
        settings: CollectorSettings,
        sink: Sink,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        try:
            if "/" in node_id:
                raise PathError("contains '/'")
            check_path(f"/hw/{node_id}/x".encode())
        except (PathError, UnicodeEncodeError):
            raise ConfigError(f"node id {node_id!r} cannot be a path segment (collectors write /hw/<node-id>/...)") from None
        self.node_id = node_id
        self.settings = settings
        self.sink = sink
        self._clock = clock
        self._wall_ms = wall_ms
        for name in settings.collectors:
            if name not in plugins:
                log.warning("[collectors.%s] is configured but no collector of that name is installed", name)
        self.slots = [Slot(p, settings.for_collector(n), settings) for n, p in sorted(plugins.items())
                      if settings.for_collector(n).enabled]
        self.owners: dict[bytes, str] = {}
        self.summaries: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._stopping = False
        self._restorer: asyncio.Task[None] | None = None

    @classmethod
    def for_node(cls, node: Any, environ: Mapping[str, str] | None = None) -> "CollectorRunner | None":
        """The node's runner, or None when collectors are switched off ([collectors] enabled, VFSD_COLLECTORS)."""
        settings = parse(node.config.collectors, os.environ if environ is None else environ)
        if not settings.enabled:
            log.info("collectors are off")
            return None
        return cls(node.config.node_id, discover(), settings, NodeSink(node), wall_ms=node.now_ms)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for slot in self.slots:
            slot.task = loop.create_task(self._run(slot), name=f"vfsd-collector-{slot.name}")
        self._restorer = loop.create_task(self._restore_loop(), name="vfsd-collectors-restore")
        log.info("collectors: %s", ", ".join(f"{s.name} ({s.plugin.source})" for s in self.slots) or "none enabled")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [s.task for s in self.slots if s.task is not None]
        if self._restorer is not None:
            tasks.append(self._restorer)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        idle = [s.collector for s in self.slots if s.collector is not None and not s.busy]
        if idle:  # close() may block (NVML shutdown on a wedged driver): a daemon thread and a bounded wait
            done = self._spawn(lambda: _close_all(idle), "close")
            await asyncio.wait({done}, timeout=CLOSE_TIMEOUT_S)

    # -- one collector -------------------------------------------------------------

    def _spawn(self, fn: Callable[[], Any], name: str) -> asyncio.Future[Any]:
        """Run ``fn`` on a new daemon thread; the returned future resolves on the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def resolve(ok: bool, value: Any) -> None:
            if not future.done():
                future.set_result(value) if ok else future.set_exception(value)

        def body() -> None:
            try:
                outcome = (True, fn())
            except BaseException as exc:  # a plugin's SystemExit must not vanish with the thread
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(resolve, *outcome)
            except RuntimeError:  # the loop is closed: the node stopped while this ran
                pass

        threading.Thread(target=body, name=f"vfsd-collector-{name}", daemon=True).start()
        return future

    async def _run(self, slot: Slot) -> None:
        self._write_health(slot)
        while not self._stopping:
            started = self._clock()
            slot.busy = True
            future = self._spawn(functools.partial(slot.work, started), slot.name)
            future.add_done_callback(lambda f: _settled(slot, f))
            done, _ = await asyncio.wait({future}, timeout=slot.timeout_s)
            if not done:
                slot.health.hung(f"collect() still running after {slot.timeout_s:g} s "
                                 "(a thread cannot be stopped: not scheduled again until it returns)")
                self._log_failure(slot, None)
                self._write_health(slot)
                await asyncio.wait({future})  # the late result is discarded
                delay = slot.health.hung_returned(self._wall_ms(), self._ms_since(started))
                self._write_health(slot)
                await asyncio.sleep(delay)
                continue
            duration_ms = self._ms_since(started)
            error = future.exception()
            written = 0
            if error is None:
                try:
                    written = self._apply(slot, future.result())
                except Exception as exc:  # a write the plane refused, a path another collector owns
                    error = exc
            if error is None:
                if slot.health.succeeded(self._wall_ms(), duration_ms, written):
                    log.info("collector %s recovered", slot.name)
                self._write_health(slot)
                next_at = started + slot.interval_s
            else:
                delay = slot.health.failed(self._wall_ms(), describe(error), duration_ms)
                self._log_failure(slot, error)
                self._write_health(slot)
                next_at = self._clock() + delay
            await asyncio.sleep(max(0.0, next_at - self._clock()))

    def _ms_since(self, started: float) -> int:
        return int((self._clock() - started) * 1000)

    def _log_failure(self, slot: Slot, error: BaseException | None) -> None:
        should, suppressed = slot.health.should_log_failure(self._clock())
        if not should:
            return
        health = slot.health
        more = f" ({suppressed} more failures since the last report)" if suppressed else ""
        if health.state == HUNG:
            log.warning("collector %s hung: %s%s", slot.name, health.last_error, more)
            return
        retry_s = (health.next_retry_ms - self._wall_ms()) / 1000 if health.next_retry_ms is not None else 0.0
        first = health.failures == 1 and not isinstance(error, (DocumentError, CollectorLoadError))
        log.warning("collector %s failed (%d in a row; next try in %.3g s): %s%s", slot.name, health.failures,
                    max(0.0, retry_s), health.last_error, more, exc_info=error if first else None)

    # -- writing -----------------------------------------------------------------

    def _apply(self, slot: Slot, docs: dict[str, dict[str, Any]]) -> int:
        """Write a collector's documents; returns how many it owns now (the summary counts as one)."""
        kind = slot.kind
        root = ROOTS[kind]
        paths: dict[bytes, dict[str, Any]] = {}
        for sub, doc in docs.items():
            if sub == "":
                continue
            path = document_path(root, self.node_id, sub)
            owner = self.owners.get(path)
            if owner is not None and owner != slot.name:
                raise DocumentError(f"{path.decode()} belongs to collector {owner}")
            paths[path] = doc
        for path, doc in paths.items():
            self.sink.write(path, doc)
            self.owners[path] = slot.name
        for path in slot.last.keys() - paths.keys():
            self.sink.delete(path)
            self.owners.pop(path, None)
        slot.last = paths
        contributions = self.summaries[kind]
        if "" in docs:
            contributions[slot.name] = docs[""]
        elif contributions.pop(slot.name, None) is None:
            return len(paths)
        self._write_summary(kind)
        return len(paths) + ("" in docs)

    async def _restore_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.restore_s)
            try:
                self.restore()
            except Exception:  # best effort: the next collection writes again anyway
                log.exception("restoring collector documents failed")

    def restore(self) -> int:
        """Write every collector's last documents again; only those a client deleted or changed are written.

        Returns how many were put back.
        """
        restored = 0
        for slot in self.slots:
            for path, doc in slot.last.items():
                restored += self.sink.write(path, doc)
        for kind in KINDS:
            if self.summaries[kind]:
                restored += self._write_summary(kind)
        return restored

    def _write_summary(self, kind: str) -> bool:
        contributions = self.summaries[kind]
        path = document_path(ROOTS[kind], self.node_id, "")
        if contributions:
            return self.sink.write(path, deep_merge([contributions[name] for name in sorted(contributions)]))
        self.sink.delete(path)
        return False

    def _write_health(self, slot: Slot) -> None:
        if not slot.health.due_for_write(self._clock()):
            return
        path = f"{HEALTH_ROOT}/{self.node_id}/collectors/{slot.name}".encode()
        try:
            self.sink.write(path, slot.health.doc())
        except Exception:  # /itg moved to another plane by the operator: health is best effort
            log.exception("cannot write collector health to %s", path.decode())
