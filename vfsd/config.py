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


SETTINGS: tuple[Setting, ...] = (
    Setting("node_id", "node", str, "", "Node name; empty means the host name.", "node-id"),
    Setting("bind", "node", str, "127.0.0.1", "Address the client port listens on.", "bind"),
    Setting("port", "node", int, 6379, "Client (Redis protocol) port.", "port"),
    Setting("peer_port", "node", int, 0, "Peer port (Raft, gossip); 0 means port + 10000.", "peer-port"),
    Setting("data_dir", "node", str, "", "Where durable state lives; empty means ./vfsd-data/<node-id>.", "dir"),
    Setting("requirepass", "security", str, "", "Password for AUTH; empty means none.", "requirepass", live=True),
    Setting("protected_mode", "security", bool, True,
            "With no password, accept only loopback clients (as Redis's protected mode).", "protected-mode", live=True),
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
    Setting("notify_keyspace_events", "notifications", str, "",
            "Redis notify-keyspace-events for local keys (off by default, as in Redis).",
            "notify-keyspace-events", live=True),
    Setting("notify_vfs_events", "notifications", str, "KEA",
            "notify-keyspace-events flags for VFS paths (all events by default).", "notify-vfs-events", live=True),
    Setting("vfs_event_max_value_bytes", "notifications", int, 1 * MiB,
            "A __vfs__ event leaves out a value larger than this (it says the size instead): JSON-escaping a large "
            "value would hold up every client.", "vfs-event-max-value-bytes", live=True),
    Setting("expire_sweep_interval_ms", "expiry", int, 100, "How often the active expiry sweep runs.",
            "expire-sweep-interval-ms", live=True),
    Setting("expire_sweep_max_keys", "expiry", int, 1000, "Most keys one sweep expires (the rest wait for the next).",
            "expire-sweep-max-keys", live=True),
    Setting("snapshot_every_entries", "desired", int, 10000,
            "Snapshot the desired plane and compact its log after this many entries.", "snapshot-every-entries", live=True),
    Setting("wal_segment_max_bytes", "desired", int, 64 * MiB, "Roll the write-ahead log to a new segment past this size.",
            "wal-segment-max-bytes"),
    Setting("watch_history_max_revisions", "watch", int, 100_000,
            "VFS.WATCH FROM can resume at most this many revisions back.", "watch-history-max-revisions", live=True,
            check=_positive("watch_history_max_revisions")),
    Setting("watch_history_max_bytes", "watch", int, 64 * MiB,
            "Most memory the watch history may hold (index records plus values the keyspace has replaced).",
            "watch-history-max-bytes", live=True),
)

BY_NAME = {s.name: s for s in SETTINGS}
BY_REDIS_NAME = {s.redis_name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    node_id: str = ""
    bind: str = "127.0.0.1"
    port: int = 6379
    peer_port: int = 0
    data_dir: str = ""
    requirepass: str = ""
    protected_mode: bool = True
    log_level: str = "info"
    maxclients: int = 10000
    max_bulk_bytes: int = 512 * MiB
    max_array_len: int = 1024 * 1024
    max_inline_bytes: int = 64 * 1024
    max_query_buffer_bytes: int = 1024 * MiB
    client_output_buffer_limit: str = DEFAULT_OUTPUT_LIMITS.format()
    notify_keyspace_events: str = ""
    notify_vfs_events: str = "KEA"
    vfs_event_max_value_bytes: int = 1 * MiB
    expire_sweep_interval_ms: int = 100
    expire_sweep_max_keys: int = 1000
    snapshot_every_entries: int = 10000
    wal_segment_max_bytes: int = 64 * MiB
    watch_history_max_revisions: int = 100_000
    watch_history_max_bytes: int = 64 * MiB
    roots: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROOTS))
    #: The ``[collectors]`` table as written (validated by ``vfsd.collectors``).
    collectors: Mapping[str, Any] = field(default_factory=dict)
    source: str = "defaults"

    def resolved(self) -> "Config":
        """Fill the derived defaults (node id, peer port, data dir)."""
        node_id = self.node_id or socket.gethostname()
        return dataclasses.replace(
            self,
            node_id=node_id,
            peer_port=self.peer_port or self.port + 10000,
            data_dir=self.data_dir or os.path.join("vfsd-data", node_id),
        )


class ConfigError(ValueError):
    pass


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
    """Convert a value from TOML, the environment or CONFIG SET to the setting's type."""
    if setting.type is bool:
        return parse_switch(raw, setting.name)
    if setting.type is int:
        if isinstance(raw, (bool, float)):
            raise ConfigError(f"{setting.name}: expected an integer, got {raw!r}")
        try:
            value = parse_size(raw) if isinstance(raw, str) else int(raw)
        except ValueError:
            raise ConfigError(f"{setting.name}: expected an integer, got {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{setting.name}: must not be negative, got {value}")
        _check(setting, value)
        return value
    if not isinstance(raw, str):
        raise ConfigError(f"{setting.name}: expected a string, got {raw!r}")
    _check(setting, raw)
    return raw


def _check(setting: Setting, value: Any) -> None:
    if setting.check is not None:
        try:
            setting.check(value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None




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
    return Config(**values, roots=roots, collectors=collectors, source=source)
