"""The ``[collectors]`` table of ``conf/vfsd.toml``, validated.

One scheme, documented with its defaults in ``conf/vfsd.toml``::

    [collectors]
    enabled = true              # the master switch; VFSD_COLLECTORS=on|off overrides it
    timeout_s = 10.0            # a collect() still running after this is hung
    backoff_initial_s = 1.0     # retry delay after a failure, doubling ...
    backoff_max_s = 60.0        # ... up to this
    log_every_s = 60.0          # at most one failure log line per collector per this
    health_refresh_s = 60.0     # rewrite an unchanged /itg health document at most this often
    restore_s = 10.0            # put back a collector's documents a client deleted (FLUSHALL, DEL) within this

    [collectors.status]         # one table per collector, by its entry-point name
    enabled = true
    interval_s = 5.0
    timeout_s = 10.0
    # any other key is passed to the collector's factory as a keyword argument

A collector without a table runs with its own defaults. A table for a name
that is not installed is ignored with a warning (plugins differ per node).

Precedence, as for every setting: the file < ``VFSD_COLLECTORS`` < the
command-line flag (which the CLI applies by setting ``enabled``; see the
report of issue 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from vfsd.config import ConfigError, parse_switch

ENV = "VFSD_COLLECTORS"

#: Keys of a per-collector table the runner itself uses; the rest are the collector's options.
RUNNER_KEYS = ("enabled", "interval_s", "timeout_s")


@dataclass(frozen=True)
class CollectorOptions:
    enabled: bool = True
    interval_s: float | None = None  # None: the collector's own interval_s
    timeout_s: float | None = None  # None: [collectors] timeout_s
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class CollectorSettings:
    enabled: bool = True
    timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    log_every_s: float = 60.0
    health_refresh_s: float = 60.0
    restore_s: float = 10.0
    collectors: Mapping[str, CollectorOptions] = field(default_factory=lambda: MappingProxyType({}))

    def for_collector(self, name: str) -> CollectorOptions:
        return self.collectors.get(name) or CollectorOptions()


_DURATIONS = ("timeout_s", "backoff_initial_s", "backoff_max_s", "log_every_s", "health_refresh_s", "restore_s")


def _positive_seconds(raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ConfigError(f"{where}: expected a number of seconds, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}: must be a positive number of seconds, got {raw!r}")
    return value


def parse(table: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> CollectorSettings:
    """Validate the ``[collectors]`` table (raising ConfigError naming the key) and apply ``VFSD_COLLECTORS``."""
    table = table or {}
    top: dict[str, Any] = {}
    per: dict[str, CollectorOptions] = {}
    for key, raw in table.items():
        if isinstance(raw, Mapping):
            per[key] = _parse_collector(key, raw)
        elif key == "enabled":
            top["enabled"] = parse_switch(raw, "[collectors] enabled")
        elif key in _DURATIONS:
            top[key] = _positive_seconds(raw, f"[collectors] {key}")
        else:
            raise ConfigError(f"unknown setting [collectors] {key} (per-collector settings go in [collectors.<name>])")
    env_value = (environ or {}).get(ENV)
    if env_value is not None and env_value.strip() != "":
        top["enabled"] = parse_switch(env_value, ENV)
    settings = CollectorSettings(**top, collectors=MappingProxyType(per))
    if settings.backoff_max_s < settings.backoff_initial_s:
        raise ConfigError("[collectors] backoff_max_s must not be smaller than backoff_initial_s")
    return settings


def _parse_collector(name: str, table: Mapping[str, Any]) -> CollectorOptions:
    where = f"[collectors.{name}]"
    enabled = True
    interval_s = timeout_s = None
    options: dict[str, Any] = {}
    for key, raw in table.items():
        if key == "enabled":
            enabled = parse_switch(raw, f"{where} enabled")
        elif key == "interval_s":
            interval_s = _positive_seconds(raw, f"{where} interval_s")
        elif key == "timeout_s":
            timeout_s = _positive_seconds(raw, f"{where} timeout_s")
        else:
            options[key] = raw
    return CollectorOptions(enabled, interval_s, timeout_s, MappingProxyType(options))
