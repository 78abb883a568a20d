"""One vfsd node: the client server, the planes, the sweeper; start and stop.

This is the wiring and nothing else: every decision lives in a core module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from vfsd import codec
from vfsd.active.plane import ActivePlane
from vfsd.active.shell import GossipShell, HighWaterError
from vfsd.blocking import Blocker
from vfsd.collectors.runner import CollectorRunner
from vfsd.commands import families  # noqa: F401  (fills and indexes the command table)
from vfsd.commands.dispatch import hold_general_path
from vfsd.commands.locks import NodeLocks
from vfsd.commands.scripting import NodeScripting
from vfsd.config import ALIASES, SETTINGS, Config, SettingApplyError, parse_address, parse_peers, parse_save_points
from vfsd.datadir import DataDir, DataDirError, Identity
from vfsd.desired.log import LogCorruption
from vfsd.desired.plane import DesiredPlane
from vfsd.desired.replicated import ClusterStartError, RaftPlane
from vfsd.desired.snapshot import HardStateCorruption, SnapshotCorruption
from vfsd.durations import CommandTimer
from vfsd.latency import LatencyMonitor
from vfsd.metrics import Stats
from vfsd.monitor import Monitors
from vfsd.paths import CONSENSUS, EVENTUAL, GROUP, LEASE, LOCAL, Router
from vfsd.pause import ClientPause
from vfsd.peers.transport import PeerTransport
from vfsd.pubsub import Notifier, PubSub, parse_notify_flags
from vfsd.resp.output_limits import OutputLimitError, OutputLimits
from vfsd.resp.types import OK, ErrorReply
from vfsd.server import Client, PushFlusher
from vfsd.slowlog import SlowLog
from vfsd.store.cursors import ScanCursors
from vfsd.store.dump import DumpCorruption
from vfsd.store.keyspace import KIND, REV, VALUE, Keyspace
from vfsd.store.local import LocalPlane
from vfsd.store.saver import Saver
from vfsd.tracking import Tracker
from vfsd.watch.feed import DesiredFeed
from vfsd.watch.history import WatchHistory
from vfsd.watch.watchers import Watchers

log = logging.getLogger(__name__)

#: Bytes a replicated entry's frame adds around its data (message and entry fields, framing).
ENTRY_FRAME_OVERHEAD = 64 << 10
#: The cyclic garbage collector's thresholds once the node runs (Python's are 700, 10, 10).
#: Every write makes a new entry tuple, which the collector examines once before it learns the
#: tuple holds no containers; at Python's thresholds a young collection follows every few
#: hundred writes and a full one (every hash, list and set value held, a replica's digest)
#: every few tens of thousands, which cost a node 0.8-1.2 µs of CPU per write under a stream
#: of SETs. At these a young collection comes every 50,000 surviving objects (about 30 ms of
#: pause on a 100k-key node, about as long as a full collection at Python's thresholds) and
#: full ones almost never; the cluster write throughput of compat/bench_gossip.py rose 5-10%
#: in three paired runs. Garbage that only the collector frees (reference cycles) waits
#: longer for it, no more than that.
GC_THRESHOLDS = (50_000, 20, 100)


def _call_soon(callback: Callable[[], None]) -> None:
    asyncio.get_running_loop().call_soon(callback)


class StartupError(Exception):
    """The node cannot start; the message is one line that says what to fix."""


class Settings:
    """The live, mutable copy of the configuration (CONFIG SET changes it)."""

    def __init__(self, config: Config) -> None:
        for f in dataclasses.fields(config):
            setattr(self, f.name, getattr(config, f.name))


class Node:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config.resolved()
        self.settings: Any = Settings(self.config)
        self._clock = clock
        self.run_id = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        self.keyspace = Keyspace()
        self.scan_cursors = ScanCursors()
        self.router = Router(self.config.roots)
        cfg = self.config
        self.pubsub = PubSub()
        #: Every desired-plane change of the recent past, for VFS.WATCH ... FROM (vfsd.watch.history).
        self.history = WatchHistory(cfg.watch_history_max_revisions, cfg.watch_history_max_bytes)
        self.watchers = Watchers(self.history)
        self.notifier = Notifier(self.pubsub, self.watchers, cfg.notify_keyspace_events, cfg.notify_vfs_events,
                                 cfg.vfs_event_max_value_bytes)
        #: Client output is bounded by class (client-output-buffer-limit); shown normalised by CONFIG GET.
        self.output_limits = OutputLimits.parse(cfg.client_output_buffer_limit)
        self.settings.client_output_buffer_limit = self.output_limits.format()
        #: Writes every client's queued pushes once per event-loop iteration.
        self.flusher = PushFlusher(self)
        self.watchers.on_open = self.flusher.schedule
        self.stats = Stats()
        self.clients: dict[int, Client] = {}
        #: The generator behind RANDOMKEY, SPOP, SRANDMEMBER... on the local and active planes (the
        #: desired plane seeds its own from each entry's index, so replicas agree).
        self.random = random.Random()
        #: Client-side caching (CLIENT TRACKING): a change-event listener while any client tracks.
        self.tracker = Tracker(self.clients, self.notifier.listeners, _call_soon,
                               max_keys=cfg.tracking_table_max_keys)
        #: MONITOR's clients; while there are any, every command takes dispatch's general path, which feeds them.
        self.monitors = Monitors(time.time_ns, hold_general_path)
        #: CLIENT PAUSE: commands held until it ends.
        self.pause = ClientPause(self)
        #: SLOWLOG and LATENCY, fed by the client shell's command timing.
        self.slowlog = SlowLog(cfg.slowlog_log_slower_than_us, cfg.slowlog_max_len)
        self.latency = LatencyMonitor(cfg.latency_monitor_threshold_ms)
        self.command_timer = CommandTimer(self.slowlog, self.latency)
        #: Clients parked in blocking pops (BLPOP, BZPOPMIN...); dispatch serves its ready keys.
        self.blocking = Blocker(self)
        self.blocking_ready = self.blocking.ready
        self.data_dir = DataDir(cfg.data_dir)
        #: Part of a cluster: the peer port opens, and the active plane replicates by gossip.
        self.clustered = bool(cfg.peers or cfg.join or cfg.seeds)
        #: The peer port (Raft, gossip): configured, port + 10000, or derived once a free client port is bound.
        self.peer_port = cfg.peer_port
        #: This data dir's node, member id and start count (``DataDir.identity``); set by start().
        self.identity: Identity | None = None
        #: The peer port's transport, shared by Raft and gossip (one message family each); made by
        #: start() once the identity is known, and opened only for a node that is part of a cluster.
        self.peers: PeerTransport | None = None
        #: The active plane's gossip member (vfsd.active.shell), on a clustered node once started; else None.
        self.gossip: GossipShell | None = None
        sink = self.notifier
        self.desired_feed = DesiredFeed(self.history, self.notifier)
        log_roots = [r.encode() for r, p in cfg.roots.items() if p in (CONSENSUS, LEASE)]
        #: A node started with --peers or --join replicates its desired plane by Raft; otherwise the
        #: desired plane is a one-voter log on this node (vfsd.desired.plane), as a standalone node's.
        self.raft_member = bool(cfg.peers or cfg.join)
        desired: Any
        if self.raft_member:
            desired = RaftPlane(self.keyspace, cfg.node_id, self.desired_feed, cfg.data_dir, sorted(log_roots),
                                cluster_id=cfg.cluster_id, initial_peers=parse_peers(cfg.peers) if cfg.peers else {},
                                join=parse_address(cfg.join, "join") if cfg.join else None,
                                max_entry_bytes=cfg.peer_max_frame_bytes - ENTRY_FRAME_OVERHEAD,
                                snapshot_every_entries=cfg.snapshot_every_entries,
                                segment_max_bytes=cfg.wal_segment_max_bytes,
                                script_max_memory_bytes=cfg.script_max_memory_bytes, router=self.router,
                                replay_sink=self.desired_feed.replay,
                                on_snapshot_installed=self.desired_state_installed)
        else:
            desired = DesiredPlane(self.keyspace, cfg.node_id, self.desired_feed, cfg.data_dir, sorted(log_roots),
                                   snapshot_every_entries=cfg.snapshot_every_entries,
                                   segment_max_bytes=cfg.wal_segment_max_bytes,
                                   script_max_memory_bytes=cfg.script_max_memory_bytes, router=self.router,
                                   replay_sink=self.desired_feed.replay)
        self.planes: dict[str, Any] = {
            "local": LocalPlane(self.keyspace, cfg.node_id, sink, cfg.max_bulk_bytes, rng=self.random),
            "eventual": ActivePlane(self.keyspace, cfg.node_id, sink, cfg.max_bulk_bytes, rng=self.random,
                                    replicated=self.clustered),
            "log": desired,
        }
        self.desired_feed.machine = self.planes["log"].machine
        self.local_plane = self.planes["local"]
        #: EVAL/FCALL: the node's Lua runtime and busy-script handling (vfsd.commands.scripting).
        self.scripting = NodeScripting(self)
        #: Lock waiters, sessions and holders on this node (vfsd.commands.locks).
        self.locks = NodeLocks(self)
        self.planes["log"].after_apply = self._after_desired_apply
        #: Dumps of the local and active planes (the desired plane keeps its own log).
        self.saver = Saver(self.keyspace, self.local_plane, self.planes["eventual"], sorted(log_roots), cfg.data_dir,
                           cfg.node_id, self.now_ms)
        self.save_points = parse_save_points(cfg.save)
        #: Set by SHUTDOWN: whoever runs the node then calls stop(save=self.shutdown_save).
        self.shutdown_requested = asyncio.Event()
        self.shutdown_save: bool | None = None
        self.plane_for = {CONSENSUS: self.planes["log"], LEASE: self.planes["log"],
                          EVENTUAL: self.planes["eventual"], LOCAL: self.local_plane}
        #: The time commands of the current batch run at: read once per batch (``tick``), not per command.
        self.clock_ms = self.now_ms()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._cron: asyncio.Task[None] | None = None
        #: Props and Status collectors (vfsd.collectors); None until start(), and when switched off.
        self.collectors: CollectorRunner | None = None
        self._expiring: set[bytes] = set()
        self.started_monotonic = time.monotonic()
        #: Resident memory once started (MEMORY STATS's startup.allocated).
        self.startup_rss_bytes = 0
        self.address: tuple[str, int] | None = None

    @staticmethod
    def rss_bytes() -> int:
        """This process's resident memory (Linux /proc; 0 where there is none)."""
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def tick(self) -> int:
        """Read the clock for the batch of commands about to run."""
        self.clock_ms = now = int(self._clock() * 1000)
        return now

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Lock the data dir, recover the planes, then listen; StartupError says what went wrong."""
        try:
            self.data_dir.acquire()
            self.identity = self.data_dir.identity(self.config.node_id)
        except DataDirError as exc:
            self.data_dir.release()
            raise StartupError(str(exc)) from None
        desired = self.planes["log"]
        if self.raft_member:
            desired.member_id, desired.boots = self.identity.member_id, self.identity.boots
        try:
            desired.open()
        except ClusterStartError as exc:
            self.data_dir.release()
            raise StartupError(str(exc)) from None
        except (LogCorruption, SnapshotCorruption, HardStateCorruption) as exc:
            self.data_dir.release()
            raise StartupError(f"desired-state data is damaged, refusing to start: {exc}") from None
        except OSError as exc:
            self.data_dir.release()
            raise StartupError(f"cannot read data dir {self.data_dir.path}: {exc}") from None
        try:
            self.saver.load()
        except DumpCorruption as exc:
            self.data_dir.release()
            raise StartupError(f"the local and active planes' dump is damaged, refusing to start: {exc}") from None
        except OSError as exc:
            self.data_dir.release()
            raise StartupError(f"cannot read data dir {self.data_dir.path}: {exc}") from None
        # The replay refilled the history with the changes after the snapshot; it is complete from there.
        self.history.reset(self.planes["log"].snapshot_index)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Client(self), self.config.bind, self.config.port, reuse_address=True, backlog=511
            )
        except OSError as exc:
            self.data_dir.release()
            raise StartupError(f"cannot listen on {self.config.bind}:{self.config.port}: {exc.strerror}") from None
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        if self.config.port == 0:  # a free port was picked: CONFIG GET and the derived peer port follow it
            self.settings.port = sock[1]
            if self.peer_port == 0 and sock[1] + 10000 <= 65535:
                self.peer_port = self.settings.peer_port = sock[1] + 10000
        if self.clustered:
            try:
                await self._open_peer_port()
                await self._start_gossip()
            except StartupError:
                self._server.close()
                self.data_dir.release()
                raise
        self._sweeper = loop.create_task(self._sweep_loop())
        self._cron = loop.create_task(self._cron_loop())
        self.collectors = CollectorRunner.for_node(self)
        if self.collectors is not None:
            self.collectors.start()
        # What start-up allocated lives for the whole run: keep it out of every later full collection.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.startup_rss_bytes = self.rss_bytes()
        log.info("vfsd node %s listening on %s:%d (peer port %s), data in %s", self.config.node_id, sock[0], sock[1],
                 self.peer_port or "any free port", self.data_dir.path)

    async def _open_peer_port(self) -> None:
        """Open the peer port (Raft and gossip register their message families on ``self.peers``)."""
        assert self.identity is not None
        config = dataclasses.replace(self.config, peer_port=self.peer_port)
        # What peers reach this node at: peer_advertise if set, else the address --peers gives it (it
        # may differ from where it listens: a forwarded port, a proxy), else its bind address and port.
        listed = parse_peers(config.peers).get(config.node_id) if config.peers else None
        advertise = config.peer_advertise or (f"{listed[0]}:{listed[1]}" if listed is not None else None)
        self.peers = PeerTransport.from_config(config, member_id=self.identity.member_id, advertise=advertise)
        try:
            await self.peers.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on peer port {self.config.bind}:{self.peer_port}: {exc.strerror}") \
                from None
        self.peer_port = self.settings.peer_port = self.peers.port
        if self.raft_member:
            desired = self.planes["log"]
            desired.advertised_address = self.peers.advertised_address
            try:
                desired.start(self.peers)
            except ClusterStartError as exc:
                await self.peers.stop()
                raise StartupError(str(exc)) from None

    async def _start_gossip(self) -> None:
        """Make this node a gossip member of the active plane (vfsd.active.shell)."""
        assert self.peers is not None
        try:
            self.gossip = GossipShell(self, self.peers)
        except HighWaterError as exc:
            await self.peers.stop()
            raise StartupError(f"cannot start gossip: {exc}") from None
        self.gossip.start()

    def request_shutdown(self, *, save: bool | None) -> None:
        """SHUTDOWN: ask whoever runs the node to stop it (``save`` as for ``stop``)."""
        log.info("shutdown requested by a client")
        self.shutdown_save = save
        self.shutdown_requested.set()

    async def stop(self, *, save: bool | None = None) -> None:
        """Stop serving, dump the local and active planes (``save`` True; None: if save points are
        configured, as Redis does on SIGTERM), then close the planes and release the data dir."""
        if self.collectors is not None:
            await self.collectors.stop()
        for task in (self._sweeper, self._cron):
            if task is not None:
                task.cancel()
        if self._server is not None:
            self._server.close()
        for client in list(self.clients.values()):
            client.kill()
        if self._server is not None:
            await self._server.wait_closed()
        if self.gossip is not None:  # leave before the save: peers stop probing us at once
            await self.gossip.stop()
        if save or (save is None and self.save_points):
            try:
                count = await self.saver.save()
                log.info("saved %d local and active files before stopping", count)
            except Exception:  # already logged; the desired plane is unaffected
                log.error("stopping without a fresh dump of the local and active planes")
        await self.saver.close()
        if self.peers is not None:
            await self.peers.stop()
        await self.planes["log"].close()
        self.data_dir.release()
        log.info("vfsd node %s stopped", self.config.node_id)

    def _after_desired_apply(self) -> None:
        """After each applied desired entry: end a busy script's polling, answer granted lock waiters."""
        self.scripting.busy.finish()
        if self.planes["log"].machine.leases.granted:
            self.locks.after_apply()

    # -- expiry -----------------------------------------------------------------

    #: How often the cron samples INFO's rates and memory peak (Redis's ``hz``).
    HZ = 10

    async def _cron_loop(self) -> None:
        while True:
            await asyncio.sleep(1 / self.HZ)
            self.stats.sample(self.now_ms(), self.rss_bytes())
            self.saver.tick(self.save_points)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.expire_sweep_interval_ms / 1000)
            try:
                self.sweep()
            except Exception:  # the sweeper must outlive a bad key
                log.exception("expiry sweep failed")

    def sweep(self) -> int:
        """Expire keys past their deadline: at once on local/active planes, through the log on the desired plane."""
        if not self.pause.sweep_allowed():  # CLIENT PAUSE holds expiry too
            return 0
        now = self.now_ms()
        due = self.keyspace.due(now, self.settings.expire_sweep_max_keys)
        for key in due:
            group = GROUP[self.router.plane_of(key)]
            plane = self.planes[group]
            if group != "log":
                plane.ctx.now_ms = now
                plane.ctx.lookup(key)  # deletes and raises "expired"
                continue
            if not plane.may_expire:  # only a Raft leader proposes expiry; followers read the key as missing
                self.keyspace.due_again(key)
                continue
            clock = getattr(plane, "entry_clock_ms", None)
            if clock is not None and self.keyspace.expires.get(key, 0) > clock():
                self.keyspace.due_again(key)  # not due yet by the time the entry would carry (leases)
                continue
            entry = self.keyspace.get(key)
            if entry is None or key in self._expiring:
                continue
            self._expiring.add(key)
            future = plane.submit([[b"vfs.expire", key, str(entry[REV]).encode()]], now)
            future.add_done_callback(lambda _f, k=key: self._expired_or_retry(k))
        return len(due)

    def delete_document(self, path: bytes) -> bool:
        """Delete an active-plane path as DEL would (same change event); False if it was absent."""
        ctx = self._active_ctx(path)
        if ctx.lookup(path) is None:
            return False
        ctx.notify("g", "del", path, ctx.remove(path))
        return True

    def _expired_or_retry(self, key: bytes) -> None:
        """After a vfs.expire entry applied: if it did not delete the key (its revision moved on,
        say by SET KEEPTTL), the deadline still stands and must go back in the sweep's heap."""
        self._expiring.discard(key)
        self.keyspace.due_again(key)

    # -- node-wide operations ---------------------------------------------------

    def _active_ctx(self, path: bytes) -> Any:
        """The active plane's Ctx, at the current time, for the node's own writes to ``path``."""
        plane = self.plane_for[self.router.plane_of(path)]
        if plane.deferred:
            raise ValueError(f"the node writes its own documents on the active plane only, not {path!r}")
        ctx = plane.ctx
        ctx.now_ms = self.now_ms()
        return ctx

    def write_document(self, path: bytes, doc: Any) -> bool:
        """Write a structured document to an active-plane path as JSON.SET would; False if unchanged.

        Collectors and membership use this, so their writes take the same path as a
        client's JSON.SET: same revision stamping, same change events and notifications.
        """
        ctx = self._active_ctx(path)
        packed = codec.pack(doc)
        old = ctx.lookup(path)
        if old is not None and old[KIND] == codec.DOC and old[VALUE] == packed:
            return False
        entry = ctx.write(path, packed, codec.DOC, old=old, keep_ttl=old is not None)
        ctx.notify("d", "json.set", path, entry)
        return True

    def flush_all(self) -> Any:
        """FLUSHALL: each plane clears itself through its own write path."""
        db = self.keyspace
        now = self.now_ms()
        by_plane: dict[str, list[bytes]] = {LOCAL: [], EVENTUAL: []}
        for key in list(db.keys):
            plane = self.router.plane_of(key) if key[:1] == b"/" else LOCAL
            if plane in by_plane:
                by_plane[plane].append(key)
        # Tracking clients get one null invalidation for everything (as Redis); the desired plane's deletes,
        # applied later, still invalidate what is read meanwhile.
        self.tracker.flush_all()
        self.tracker.flushing(True)
        try:
            for name in (LOCAL, EVENTUAL):
                plane = self.planes["local" if name == LOCAL else "eventual"]
                plane.ctx.now_ms = now
                plane.remove_all(by_plane[name])
        finally:
            self.tracker.flushing(False)
        if self.save_points:  # as Redis does: a restart must not bring the flushed files back
            if not self.saver.bgsave():
                self.saver.schedule_after_current()
        desired = self.planes["log"]
        future = desired.submit([[b"vfs.flush", *desired.log_roots]], now)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: done.set_result(f.result() if isinstance(f.result(), ErrorReply) else OK))
        return done

    def plane_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        router = self.router
        for key in self.keyspace.keys:
            try:
                counts[router.plane_of(key)] += 1
            except Exception:
                counts["unrouted"] += 1
        return {p: counts.get(p, 0) for p in (CONSENSUS, EVENTUAL, LEASE, LOCAL)}

    def config_values(self) -> dict[str, str]:
        out = {}
        for setting in SETTINGS:
            value = getattr(self.settings, setting.name)
            if isinstance(value, bool):
                value = "yes" if value else "no"
            out[setting.redis_name] = str(value)
        for alias, name in ALIASES.items():
            out[alias] = out[name]
        return out

    def apply_settings(self, changes: dict[str, Any]) -> None:
        """CONFIG SET: every value was checked (``config.coerce``); set them all, then apply them. If one
        cannot take effect, every setting of the call goes back to its old value and is applied again (Redis's
        restoreBackupConfig), and the error names the setting that failed."""
        old = {name: getattr(self.settings, name) for name in changes}
        try:
            self._apply_settings(changes)
        except SettingApplyError as exc:
            self._apply_settings(old)  # these were in effect a moment ago
            raise ErrorReply(f"ERR CONFIG SET failed (possibly related to argument '{exc.redis_name}') - "
                             f"{exc.reason}") from None

    def _apply_settings(self, changes: dict[str, Any]) -> None:
        output_limits = self.output_limits
        if "client_output_buffer_limit" in changes:  # only the classes named change, as in Redis
            try:
                output_limits = output_limits.updated(changes["client_output_buffer_limit"])
            except OutputLimitError as exc:
                raise SettingApplyError("client-output-buffer-limit", str(exc)) from None
            changes = {**changes, "client_output_buffer_limit": output_limits.format()}
        for name, value in changes.items():  # each value was checked by config.coerce
            setattr(self.settings, name, value)
        if "port" in changes:  # last: the one change that can still fail once the others are set
            self.settings.port = self._listen_on(changes["port"])
        self.notifier.local_flags = parse_notify_flags(self.settings.notify_keyspace_events)
        self.notifier.vfs_flags = parse_notify_flags(self.settings.notify_vfs_events)
        self.notifier.max_value_bytes = self.settings.vfs_event_max_value_bytes
        self.tracker.max_keys = self.settings.tracking_table_max_keys
        self.slowlog.slower_than_us = self.settings.slowlog_log_slower_than_us
        self.slowlog.max_len = self.settings.slowlog_max_len
        self.slowlog.trim()
        self.latency.threshold_ms = self.settings.latency_monitor_threshold_ms
        self.command_timer.update()
        if "log_level" in changes:
            logging.getLogger("vfsd").setLevel(changes["log_level"].upper())
        if "snapshot_every_entries" in changes:
            self.planes["log"].snapshot_every_entries = changes["snapshot_every_entries"]
        if "save" in changes:
            self.save_points = parse_save_points(changes["save"])
        if "max_bulk_bytes" in changes:  # immediate planes check it when they run; the log carries it per entry
            for plane in (self.planes["local"], self.planes["eventual"]):
                plane.ctx.max_bulk_bytes = changes["max_bulk_bytes"]
        self.output_limits = output_limits
        if "watch_history_max_revisions" in changes or "watch_history_max_bytes" in changes:
            self.history.set_bounds(self.settings.watch_history_max_revisions, self.settings.watch_history_max_bytes)

    def _listen_on(self, port: int) -> int:
        """CONFIG SET port: open the new listener (SettingApplyError if it cannot be), then close the old one;
        open connections stay. Returns the port listened on (a free one for 0)."""
        if self._server is None or (self.address is not None and port == self.address[1]):
            return port
        try:
            sock = socket.create_server((self.config.bind, port), backlog=511, reuse_port=False)
        except OSError as exc:
            log.warning("CONFIG SET port %d: cannot listen (%s)", port, exc.strerror)
            raise SettingApplyError("port", "Unable to listen on this port") from None
        sock.setblocking(False)
        bound = sock.getsockname()
        old, self.address = self._server, (bound[0], bound[1])
        loop = asyncio.get_running_loop()

        async def switch() -> None:
            self._server = await loop.create_server(lambda: Client(self), sock=sock, backlog=511)
            old.close()

        loop.create_task(switch())
        log.info("now listening on %s:%d", bound[0], bound[1])
        return bound[1]

    def desired_state_installed(self, index: int) -> None:
        """The desired plane's state up to ``index`` was replaced without its changes (a Raft snapshot
        installed from the leader): the watch history restarts there, and watches behind it end as compacted."""
        self.watchers.history_reset(index)

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT (in place: clients hold a reference to the counters)."""
        Stats.__init__(self.stats)
        self.notifier.expired_keys = 0
