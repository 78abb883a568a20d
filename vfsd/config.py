"""Configuration: embedded defaults < conf file < ``VFSD_*`` environment < flags.

Every setting is declared once in ``SETTINGS`` with its section in the TOML
file, its default, its documentation, the name ``CONFIG GET`` knows it by (the
Redis name where Redis has one) and whether ``CONFIG SET`` may change it live.
``conf/vfsd.toml`` documents the same defaults; a test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vfsd.paths import DEFAULT_ROOTS, PLANES, Router
from vfsd.resp.output_limits import DEFAULT as DEFAULT_OUTPUT_LIMITS
from vfsd.resp.output_limits import OutputLimits


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    section: str
    type: type
    default: Any
    doc: str
    redis_name: str
    live: bool = False
    #: Raises ValueError (its text is the error) when a value of the right type is still not acceptable.
    check: Callable[[Any], object] | None = None


MiB = 1024 * 1024


def _positive(name: str) -> Callable[[int], None]:
    def check(value: int) -> None:
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    return check


def _one_of(name: str, choices: tuple[str, ...]) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return check


#: The gossip profiles (``vfsd.active.profile.PROFILES``), by name.
GOSSIP_PROFILES = ("lan", "local", "wan")

SETTINGS: tuple[Setting, ...] = (
    Setting("node_id", "node", str, "", "Node name; empty means the host name.", "node-id"),
    Setting("bind", "node", str, "127.0.0.1", "Address the client port listens on.", "bind"),
    Setting("port", "node", int, 6379, "Client (Redis protocol) port; CONFIG SET moves the listener (open "
            "connections stay), refusing a port it cannot listen on.", "port", live=True),
    Setting("peer_port", "node", int, 0,
            "Peer port (Raft, gossip); 0 means port + 10000 (any free port if that passes 65535).", "peer-port"),
    Setting("peer_advertise", "node", str, "",
            "host:port peers are told to reach this node's peer port at (behind NAT, a proxy or a container's "
            "port mapping); empty means bind:peer_port.", "peer-advertise"),
    Setting("data_dir", "node", str, "", "Where durable state lives; empty means ./vfsd-data/<node-id>.", "dir"),
    Setting("peers", "cluster", str, "",
            "The initial cluster: id=host:peerport,... (every voter of a new cluster gets the same list; "
            "empty: a one-voter cluster).", "peers"),
    Setting("join", "cluster", str, "",
            "host:peerport of any member of an existing cluster, to join it as a learner.", "join"),
    Setting("seeds", "cluster", str, "",
            "host:peerport,... of gossip members to join through (peers and join are seeds too).", "seeds"),
    Setting("gossip_profile", "cluster", str, "lan",
            "Gossip timing, as memberlist's profiles: lan (1 s probes, 200 ms gossip), local (loopback and "
            "tests: faster gossip and suspicion) or wan (5 s probes, slower everything).", "gossip-profile",
            check=_one_of("gossip_profile", GOSSIP_PROFILES)),
    Setting("cluster_id", "node", str, "vfsd",
            "Name of the cluster; the peer port refuses peers of another cluster.", "cluster-id"),
    Setting("requirepass", "security", str, "", "Password for AUTH; empty means none.", "requirepass", live=True),
    Setting("protected_mode", "security", bool, True,
            "With no password, accept only loopback clients (as Redis's protected mode).", "protected-mode", live=True),
    Setting("peer_secret", "security", str, "",
            "Shared secret peers prove with HMAC-SHA256 at connect; empty means none (loopback peers only "
            "while protected_mode is on).", "peer-secret"),
    Setting("log_level", "node", str, "info", "debug, info, warning or error.", "loglevel", live=True),
    Setting("maxclients", "limits", int, 10000, "Most client connections at once.", "maxclients", live=True),
    Setting("max_bulk_bytes", "limits", int, 512 * MiB, "Largest bulk string a client may send.",
            "proto-max-bulk-len", live=True),
    Setting("max_array_len", "limits", int, 1024 * 1024, "Most arguments in one command.", "max-array-len", live=True),
    Setting("max_inline_bytes", "limits", int, 64 * 1024, "Longest inline (telnet-style) command.",
            "max-inline-bytes", live=True),
    Setting("max_query_buffer_bytes", "limits", int, 1024 * MiB,
            "Most bytes buffered for one client's unfinished command.", "client-query-buffer-limit", live=True),
    Setting("client_output_buffer_limit", "limits", str, DEFAULT_OUTPUT_LIMITS.format(),
            "Redis's client-output-buffer-limit: per class, hard and soft limits on unsent output and soft seconds; "
            "normal clients also pause at their soft limit.", "client-output-buffer-limit", live=True,
            check=OutputLimits.parse),
    Setting("tracking_table_max_keys", "limits", int, 1_000_000,
            "Most keys the client-side caching table remembers (CLIENT TRACKING); past it the oldest are dropped and "
            "their clients told, as if the keys had changed. 0: no bound.", "tracking-table-max-keys", live=True),
    Setting("peer_max_frame_bytes", "limits", int, 16 * MiB,
            "Largest frame a peer may send this node, header included.", "peer-max-frame-bytes"),
    Setting("peer_send_queue_max_bytes", "limits", int, 64 * MiB,
            "Most bytes queued for one peer; past it the oldest queued messages are dropped.",
            "peer-send-queue-max-bytes"),
    Setting("notify_keyspace_events", "notifications", str, "",
            "Redis notify-keyspace-events for local keys (off by default, as in Redis).",
            "notify-keyspace-events", live=True),
    Setting("notify_vfs_events", "notifications", str, "KEA",
            "notify-keyspace-events flags for VFS paths (all events by default).", "notify-vfs-events", live=True),
    Setting("vfs_event_max_value_bytes", "notifications", int, 1 * MiB,
            "A __vfs__ event leaves out a value larger than this (it says the size instead): JSON-escaping a large "
            "value would hold up every client.", "vfs-event-max-value-bytes", live=True),
    Setting("slowlog_log_slower_than_us", "monitoring", int, 10_000,
            "SLOWLOG keeps commands that took at least this many microseconds (0: every command, -1: none).",
            "slowlog-log-slower-than", live=True),
    Setting("slowlog_max_len", "monitoring", int, 128, "Most entries SLOWLOG keeps (the oldest go first).",
            "slowlog-max-len", live=True),
    Setting("latency_monitor_threshold_ms", "monitoring", int, 0,
            "LATENCY records commands that took at least this many milliseconds (0: off).",
            "latency-monitor-threshold", live=True),
    Setting("expire_sweep_interval_ms", "expiry", int, 100, "How often the active expiry sweep runs.",
            "expire-sweep-interval-ms", live=True),
    Setting("expire_sweep_max_keys", "expiry", int, 1000, "Most keys one sweep expires (the rest wait for the next).",
            "expire-sweep-max-keys", live=True),
    Setting("snapshot_every_entries", "desired", int, 10000,
            "Snapshot the desired plane and compact its log after this many entries.", "snapshot-every-entries", live=True),
    Setting("wal_segment_max_bytes", "desired", int, 64 * MiB, "Roll the write-ahead log to a new segment past this size.",
            "wal-segment-max-bytes"),
    Setting("save", "persistence", str, "3600 1 300 100 60 10000",
            "When to dump the local and active planes: pairs of <seconds> <changes> (Redis's save); empty: never.",
            "save", live=True),
    Setting("busy_reply_threshold_ms", "scripting", int, 5000,
            "A script running longer than this makes other clients get -BUSY (0: never). Alias lua-time-limit.",
            "busy-reply-threshold", live=True),
    Setting("script_max_memory_bytes", "scripting", int, 256 * MiB,
            "Most memory one Lua runtime may hold; a script past it fails with 'not enough memory'.",
            "script-max-memory"),
    Setting("script_max_instructions", "scripting", int, 500_000_000,
            "Most Lua VM instructions a desired-plane script (or a FUNCTION LOAD) may run; the same on every node "
            "because the entry carries it.", "script-max-instructions", live=True),
    Setting("watch_history_max_revisions", "watch", int, 100_000,
            "VFS.WATCH FROM can resume at most this many revisions back.", "watch-history-max-revisions", live=True,
            check=_positive("watch_history_max_revisions")),
    Setting("watch_history_max_bytes", "watch", int, 64 * MiB,
            "Most memory the watch history may hold (index records plus values the keyspace has replaced).",
            "watch-history-max-bytes", live=True),
)

BY_NAME = {s.name: s for s in SETTINGS}
BY_REDIS_NAME = {s.redis_name: s for s in SETTINGS}
#: Other names CONFIG GET/SET know a setting by (Redis's older names).
ALIASES = {"lua-time-limit": "busy-reply-threshold"}

INT64_MAX = (1 << 63) - 1
#: Inclusive ranges of the integer settings: Redis's own where Redis has the setting, otherwise
#: the smallest value that still lets a client send one ordinary command. The same checks apply
#: to the TOML file, VFSD_* variables, flags and CONFIG SET, so no value can lock every client out.
RANGES: dict[str, tuple[int, int]] = {
    "port": (0, 65535),  # 0: pick a free port
    "peer_port": (0, 65535),  # 0: port + 10000
    "maxclients": (1, (1 << 32) - 1),
    "max_bulk_bytes": (1024 * 1024, INT64_MAX),
    "max_array_len": (1024, (1 << 31) - 1),
    "max_inline_bytes": (1024, (1 << 31) - 1),
    "max_query_buffer_bytes": (1024 * 1024, INT64_MAX),
    "slowlog_log_slower_than_us": (-1, INT64_MAX),  # as Redis: -1 switches it off
    "expire_sweep_interval_ms": (1, 3_600_000),
    "expire_sweep_max_keys": (1, (1 << 31) - 1),
    "snapshot_every_entries": (1, INT64_MAX),
    "wal_segment_max_bytes": (4096, (1 << 32) - 1),
}
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Config:
    node_id: str = ""
    bind: str = "127.0.0.1"
    port: int = 6379
    peer_port: int = 0
    peer_advertise: str = ""
    data_dir: str = ""
    peers: str = ""
    join: str = ""
    seeds: str = ""
    gossip_profile: str = "lan"
    cluster_id: str = "vfsd"
    requirepass: str = ""
    protected_mode: bool = True
    peer_secret: str = ""
    log_level: str = "info"
    maxclients: int = 10000
    max_bulk_bytes: int = 512 * MiB
    max_array_len: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_query_buffer_bytes: int = 1024 * MiB
    client_output_buffer_limit: str = DEFAULT_OUTPUT_LIMITS.format()
    tracking_table_max_keys: int = 1_000_000
    peer_max_frame_bytes: int = 16 * MiB
    peer_send_queue_max_bytes: int = 64 * MiB
    notify_keyspace_events: str = ""
    notify_vfs_events: str = "KEA"
    vfs_event_max_value_bytes: int = 1 * MiB
    slowlog_log_slower_than_us: int = 10_000
    slowlog_max_len: int = 128
    latency_monitor_threshold_ms: int = 0
    expire_sweep_interval_ms: int = 100
    expire_sweep_max_keys: int = 1000
    snapshot_every_entries: int = 10000
    wal_segment_max_bytes: int = 64 * MiB
    save: str = "3600 1 300 100 60 10000"
    busy_reply_threshold_ms: int = 5000
    script_max_memory_bytes: int = 256 * MiB
    script_max_instructions: int = 500_000_000
    watch_history_max_revisions: int = 100_000
    watch_history_max_bytes: int = 64 * MiB
    roots: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROOTS))
    #: The ``[collectors]`` table as written (validated by ``vfsd.collectors``).
    collectors: Mapping[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def resolved(self) -> "Config":
        """Fill the derived defaults (node id, peer port, data dir).

        The peer port is ``port + 10000``; with ``port = 0`` (any free port) it is derived
        once the client port is bound (``Node.start``), and stays 0 here, as it does when
        ``port + 10000`` would pass 65535: the peer port is then any free port, picked when
        it opens (and logged).
        """
        node_id = self.node_id or socket.gethostname()
        check_node_id(node_id)
        peer_port = self.peer_port
        listed = parse_peers(self.peers).get(node_id) if self.peers else None
        if listed is not None and not peer_port:  # --peers names this node's peer address: listen there,
            peer_port = listed[1]  # unless --peer-port says otherwise (the listed one is then advertised)
        if not peer_port and 0 < self.port <= 65535 - 10000:
            peer_port = self.port + 10000
        return dataclasses.replace(
            self,
            node_id=node_id,
            peer_port=peer_port,
            data_dir=self.data_dir or os.path.join("vfsd-data", node_id),
        )


class SettingApplyError(Exception):
    """A live change could not take effect (CONFIG SET rolls every change of the call back)."""

    def __init__(self, redis_name: str, reason: str) -> None:
        super().__init__(f"{redis_name}: {reason}")
        self.redis_name = redis_name
        self.reason = reason


class ConfigError(ValueError):
    """A setting that cannot be used. ``reason`` is the part without the setting's name, for
    replies that name it their own way (CONFIG SET)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _invalid(setting: "Setting", raw: Any, reason: str) -> ConfigError:
    return ConfigError(f"{setting.name}: {reason}, got {raw!r}", f"argument {reason}")


def check_node_id(node_id: str) -> None:
    """A node id names ``/hw/<node-id>``: it must be one valid path segment."""
    from vfsd.paths import PathError, check_path

    if not node_id or "/" in node_id or node_id in (".", ".."):
        raise ConfigError(f"node_id: {node_id!r} is not a valid node id: it must be one path segment "
                          "(no '/', not '.' or '..', not empty)")
    try:
        check_path(b"/hw/" + node_id.encode())
    except (PathError, UnicodeEncodeError) as exc:
        raise ConfigError(f"node_id: {node_id!r} is not a valid node id ({exc})") from None


def parse_switch(raw: Any, where: str) -> bool:
    """yes/no, true/false, on/off, 1/0 (or a TOML boolean); ConfigError naming ``where`` otherwise."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise ConfigError(f"{where}: expected yes/no, got {raw!r}")


def coerce(setting: Setting, raw: Any) -> Any:
    """Convert a value from TOML, the environment, a flag or CONFIG SET to the setting's type,
    checked against its range or choices; ConfigError says what is wrong."""
    if setting.type is bool:
        try:
            return parse_switch(raw, setting.name)
        except ConfigError:
            raise ConfigError(f"{setting.name}: expected yes/no, got {raw!r}", "argument must be 'yes' or 'no'") from None
    if setting.type is int:
        not_int = ConfigError(f"{setting.name}: expected an integer, got {raw!r}",
                              "argument couldn't be parsed into an integer")
        if isinstance(raw, (bool, float)):
            raise not_int
        try:
            value = parse_size(raw) if isinstance(raw, str) else int(raw)
        except ValueError:
            raise not_int from None
        low, high = RANGES.get(setting.name, (0, INT64_MAX))
        if not low <= value <= high:
            raise _invalid(setting, raw, f"must be between {low} and {high} inclusive")
        _check(setting, value)
        return value
    if not isinstance(raw, str):
        raise ConfigError(f"{setting.name}: expected a string, got {raw!r}", "argument must be a string")
    if setting.name == "log_level" and raw.lower() not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise ConfigError(f"{setting.name}: must be one of {choices}, got {raw!r}",
                          f"argument(s) must be one of the following: {choices}")
    if setting.name in ("notify_keyspace_events", "notify_vfs_events"):
        from vfsd.pubsub import parse_notify_flags
        from vfsd.resp.types import ErrorReply

        try:
            parse_notify_flags(raw)
        except ErrorReply as exc:
            raise ConfigError(f"{setting.name}: {str(exc).removeprefix('ERR ')}",
                              "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.") from None
    if setting.name == "save":
        try:
            parse_save_points(raw)
        except ValueError as exc:
            raise ConfigError(f"save: {exc} in {raw!r} (pairs of <seconds> <changes>)", str(exc)) from None
    if setting.name == "node_id" and raw:
        check_node_id(raw)
    if setting.name == "peers" and raw:
        parse_peers(raw)
    if setting.name == "peer_advertise" and raw:
        parse_address(raw, setting.name)
    if setting.name in ("join", "seeds") and raw:
        for address in raw.split(","):
            parse_address(address, setting.name)
    _check(setting, raw)
    return raw


def _check(setting: Setting, value: Any) -> None:
    """A setting's own check (``Setting.check``): ValueError's text is Redis's reason."""
    if setting.check is not None:
        try:
            setting.check(value)
        except ValueError as exc:
            raise ConfigError(f"{setting.name}: {exc}", str(exc)) from None


def parse_address(text: str, where: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:port``) -> (host, port); ConfigError naming ``where`` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not host:port (port 1-65535)", f"argument {text!r} is not host:port")
    return host, int(port)


def parse_peers(text: str) -> dict[str, tuple[str, int]]:
    """``n1=127.0.0.1:17001,n2=...`` -> {node id: (host, port)}, as etcd's --initial-cluster."""
    peers: dict[str, tuple[str, int]] = {}
    for item in text.split(","):
        node_id, sep, address = item.strip().partition("=")
        if not sep:
            raise ConfigError(f"peers: {item!r} is not id=host:port", f"argument {item!r} is not id=host:port")
        check_node_id(node_id)
        if node_id in peers:
            raise ConfigError(f"peers: {node_id!r} is listed twice", "argument lists a node twice")
        peers[node_id] = parse_address(address, "peers")
    return peers


def parse_save_points(text: str) -> list[tuple[int, int]]:
    """``"3600 1 300 100"`` -> ``[(3600, 1), (300, 100)]`` (Redis's ``save``); "" disables saving."""
    parts = text.split()
    if len(parts) % 2:
        raise ValueError("Invalid save parameters")
    points = []
    for i in range(0, len(parts), 2):
        try:
            seconds, changes = int(parts[i]), int(parts[i + 1])
        except ValueError:
            raise ValueError("Invalid save parameters") from None
        if seconds < 1 or changes < 0:
            raise ValueError("Invalid save parameters")
        points.append((seconds, changes))
    return points


def parse_size(text: str) -> int:
    """``1024``, ``64kb``, ``512mb``, ``1gb`` → bytes (Redis memory units)."""
    t = text.strip().lower()
    for suffix, mult in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 10**9), ("m", 10**6), ("k", 1000), ("b", 1)):
        if t.endswith(suffix):
            return int(t[: -len(suffix)]) * mult
    return int(t)


def load(path: str | None = None, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the Config: defaults, then the TOML file, then VFSD_* variables, then flags."""
    values: dict[str, Any] = {}
    roots = dict(DEFAULT_ROOTS)
    collectors: dict[str, Any] = {}
    source = "defaults"
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        source = path
        for section, table in doc.items():
            if section == "roots":
                if not isinstance(table, dict):
                    raise ConfigError("[roots] must be a table of root = plane")
                roots = {str(k): str(v) for k, v in table.items()}
                continue
            if section == "collectors":
                if not isinstance(table, dict):
                    raise ConfigError("[collectors] must be a table")
                collectors = dict(table)
                continue
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
            for key, raw in table.items():
                setting = BY_NAME.get(key)
                if setting is None or setting.section != section:
                    raise ConfigError(f"{path}: unknown setting [{section}] {key}")
                values[key] = coerce(setting, raw)
    environ = os.environ if env is None else env
    for setting in SETTINGS:
        raw = environ.get("VFSD_" + setting.name.upper())
        if raw is not None:
            values[setting.name] = coerce(setting, raw)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = coerce(BY_NAME[key], raw)
    for root, plane in roots.items():
        if plane not in PLANES:
            raise ConfigError(f"[roots] {root} = {plane!r}: plane must be one of {', '.join(PLANES)}")
    try:
        Router(roots)
    except ValueError as exc:
        raise ConfigError(f"[roots] {exc}") from None
    from vfsd.collectors.settings import parse as parse_collectors  # validates the table; imports psutil lazily

    parse_collectors(collectors, environ)
    config = Config(**values, roots=roots, collectors=collectors, source=source)
    config.resolved()  # the derived values (node id from the host name, peer port) must be valid too
    return config
