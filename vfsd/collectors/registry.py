"""Finding collectors: the Python entry-point group ``vfsd.collectors``.

A plugin is any installed distribution that declares, in its ``pyproject.toml``::

    [project.entry-points."vfsd.collectors"]
    uptime = "vfsd_uptime:Uptime"

The built-ins register the same way in vfsd's own ``pyproject.toml``. They are
also listed here (``BUILTINS``) so a node run from a source tree, or from an
install whose metadata predates a built-in, still has them; an entry point
for a built-in's name that points elsewhere is ignored with a warning, so a
third-party package cannot silently replace ``status``. Among third-party
entry points with the same name, the first distribution in name order wins.

Discovery only reads metadata. Importing a plugin and calling its factory
happen later, in the collector's worker thread (``instantiate``), so an
import that hangs or raises is one collector's failure, not the node's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from vfsd.collectors.base import KINDS
from vfsd.paths import PathError, check_path

log = logging.getLogger(__name__)

GROUP = "vfsd.collectors"

BUILTINS: Mapping[str, str] = {
    "props": "vfsd.collectors.props:PropsCollector",
    "status": "vfsd.collectors.status:StatusCollector",
    "gpu_props": "vfsd.collectors.gpu:GpuPropsCollector",
    "gpu_status": "vfsd.collectors.gpu:GpuStatusCollector",
}


@dataclass(frozen=True)
class Plugin:
    """A discovered collector, not yet imported."""

    name: str
    value: str  # "module:attribute"
    source: str  # "built-in" or "<distribution> <version>"
    load: Callable[[], Any]

    @classmethod
    def from_entry_point(cls, ep: metadata.EntryPoint) -> "Plugin":
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else "entry point"
        return cls(ep.name, ep.value, source, ep.load)

    @classmethod
    def builtin(cls, name: str) -> "Plugin":
        ep = metadata.EntryPoint(name, BUILTINS[name], GROUP)
        return cls(name, ep.value, "built-in", ep.load)


def _valid_name(name: str) -> bool:
    try:
        check_path(b"/x/" + name.encode())
    except (PathError, UnicodeEncodeError):
        return False
    return "/" not in name


def discover(entry_points: Iterable[metadata.EntryPoint] | None = None) -> dict[str, Plugin]:
    """Every collector known to this environment, by name (built-ins first, then plugins by name)."""
    if entry_points is None:
        entry_points = metadata.entry_points(group=GROUP)
    found: dict[str, Plugin] = {name: Plugin.builtin(name) for name in BUILTINS}
    plugins = sorted(entry_points, key=lambda ep: (ep.name, Plugin.from_entry_point(ep).source))
    for ep in plugins:
        plugin = Plugin.from_entry_point(ep)
        if not _valid_name(ep.name):
            log.warning("ignoring collector entry point %r (%s): the name must be one path segment", ep.name, plugin.source)
            continue
        if ep.name in BUILTINS:
            if ep.value == BUILTINS[ep.name]:
                found[ep.name] = plugin  # vfsd's own registration: same object, better provenance
            else:
                log.warning("ignoring collector entry point %s = %s (%s): %r is a built-in collector's name",
                            ep.name, ep.value, plugin.source, ep.name)
            continue
        if ep.name in found:
            log.warning("ignoring collector entry point %s = %s (%s): %s from %s has that name already",
                        ep.name, ep.value, plugin.source, found[ep.name].value, found[ep.name].source)
            continue
        found[ep.name] = plugin
    return found


class CollectorLoadError(Exception):
    """A plugin could not be imported, created, or is not a collector; the text says which and why."""


def instantiate(plugin: Plugin, options: Mapping[str, Any] | None = None) -> Any:
    """Import the plugin and create its collector (runs in the collector's worker thread)."""
    try:
        target = plugin.load()
    except Exception as exc:
        raise CollectorLoadError(f"cannot import {plugin.value}: {type(exc).__name__}: {exc}") from exc
    if isinstance(target, type) or (callable(target) and not hasattr(target, "collect")):
        try:
            collector = target(**dict(options or {}))
        except Exception as exc:
            raise CollectorLoadError(f"cannot create {plugin.value}: {type(exc).__name__}: {exc}") from exc
    else:
        if options:
            raise CollectorLoadError(f"{plugin.value} is an instance; it takes no options ({', '.join(options)})")
        collector = target
    check_collector(collector, plugin)
    return collector


def check_collector(collector: Any, plugin: Plugin) -> None:
    if not callable(getattr(collector, "collect", None)):
        raise CollectorLoadError(f"{plugin.value} is not a collector: it has no collect(now_s) method")
    kind = getattr(collector, "kind", None)
    if kind not in KINDS:
        raise CollectorLoadError(f"{plugin.value}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    interval = getattr(collector, "interval_s", None)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        raise CollectorLoadError(f"{plugin.value}: interval_s must be a positive number of seconds, not {interval!r}")
