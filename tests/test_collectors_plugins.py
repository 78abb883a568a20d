"""Plugin discovery through real entry points (group ``vfsd.collectors``) and plugin instantiation."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.plugins.dist import declared_entry_points, install_test_plugin, write_dist_info
from vfsd.collectors import Collector
from vfsd.collectors.registry import BUILTINS, GROUP, CollectorLoadError, Plugin, discover, instantiate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path where a test can drop dist-infos; undone (with the imports) afterwards."""
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("vfsd_test_plugin"):
            del sys.modules[name]


def add_to_path(monkeypatch: pytest.MonkeyPatch, entries: list[str]) -> None:
    for entry in reversed(entries):
        monkeypatch.syspath_prepend(entry)
    importlib.invalidate_caches()


def test_the_plugin_is_discovered_through_its_entry_point(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_to_path(monkeypatch, install_test_plugin(site))
    eps = {ep.name: ep for ep in metadata.entry_points(group=GROUP)}
    assert eps["uptime"].value == "vfsd_test_plugin:Uptime"
    assert eps["uptime"].dist is not None and eps["uptime"].dist.name == "vfsd-test-plugin"
    plugins = discover()
    assert plugins["uptime"].source == "vfsd-test-plugin 0.1.0"
    collector = instantiate(plugins["uptime"])
    assert isinstance(collector, Collector) and (collector.kind, collector.interval_s) == ("status", 10.0)
    assert collector.collect(0.0)["uptime"]["uptime_seconds"] > 0


def test_builtins_are_always_there_and_registered_in_pyproject() -> None:
    plugins = discover()
    for name, value in BUILTINS.items():
        assert plugins[name].value == value
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as fh:
        declared = tomllib.load(fh)["project"]["entry-points"][GROUP]
    assert declared == dict(BUILTINS)
    assert declared_entry_points() == {"uptime": "vfsd_test_plugin:Uptime"}


def test_a_plugin_cannot_take_a_builtin_name_and_duplicates_keep_the_first(
    site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_dist_info(site, "evil", "1.0", {"status": "evil:Status", "bad/name": "evil:X", "dup": "a_mod:A"})
    write_dist_info(site, "zzz", "1.0", {"dup": "z_mod:Z"})
    add_to_path(monkeypatch, [str(site)])
    plugins = discover()
    assert plugins["status"].value == BUILTINS["status"]
    assert plugins["dup"].value == "a_mod:A"
    assert "bad/name" not in plugins
    text = caplog.text
    assert "'status' is a built-in" in text and "one path segment" in text and "has that name already" in text


def test_entry_points_passed_explicitly() -> None:
    ep = metadata.EntryPoint("x", "vfsd_test_plugin:Uptime", GROUP)
    assert discover([ep])["x"].value == "vfsd_test_plugin:Uptime"


class Configurable(Collector):
    kind = "props"

    def __init__(self, *, size: int = 1) -> None:
        self.size = size

    def collect(self, now_s: float) -> dict:
        return {}


def plugin(target: object, name: str = "p") -> Plugin:
    return Plugin(name, f"tests:{name}", "test", lambda: target)


def test_instantiate_passes_options_and_accepts_factories_and_instances() -> None:
    assert instantiate(plugin(Configurable), {"size": 3}).size == 3
    assert instantiate(plugin(lambda: Configurable(size=4))).size == 4
    instance = Configurable()
    assert instantiate(plugin(instance)) is instance


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (Configurable, {"colour": "red"}, "cannot create tests:p: TypeError"),
        (object(), None, "no collect(now_s) method"),
        (type("K", (Configurable,), {"kind": "other"}), None, "kind must be one of props, status"),
        (type("I", (Configurable,), {"interval_s": 0}), None, "interval_s must be a positive number"),
        (Configurable(), {"size": 1}, "takes no options"),
    ],
)
def test_instantiate_errors_say_what_is_wrong(target: object, options: dict | None, message: str) -> None:
    with pytest.raises(CollectorLoadError) as info:
        instantiate(plugin(target), options)
    assert message in str(info.value)


def test_an_import_error_is_a_load_error() -> None:
    broken = Plugin("broken", "no_such_module_xyz:C", "test",
                    metadata.EntryPoint("broken", "no_such_module_xyz:C", GROUP).load)
    with pytest.raises(CollectorLoadError, match="cannot import no_such_module_xyz:C: ModuleNotFoundError"):
        instantiate(broken)
