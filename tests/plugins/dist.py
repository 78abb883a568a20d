"""Make a plugin discoverable without pip: a ``*.dist-info`` directory on ``sys.path``.

``importlib.metadata`` finds distributions by scanning ``sys.path`` entries
for ``<name>-<version>.dist-info`` directories; their ``entry_points.txt`` is
exactly what ``pip install`` would have written. So a test (or a ``vfsd
serve`` started with ``PYTHONPATH``) discovers the plugin through real entry
points, with nothing installed into the environment and nothing to undo.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

#: The example plugin package: its source directory goes on sys.path next to the dist-info.
PLUGIN_SOURCE = Path(__file__).resolve().parent / "vfsd_test_plugin"
GROUP = "vfsd.collectors"


def declared_entry_points(project: Path = PLUGIN_SOURCE) -> dict[str, str]:
    """The ``vfsd.collectors`` entry points a plugin's pyproject.toml declares."""
    with open(project / "pyproject.toml", "rb") as fh:
        meta = tomllib.load(fh)["project"]
    return dict(meta["entry-points"][GROUP])


def write_dist_info(site: Path, name: str, version: str, entry_points: Mapping[str, str]) -> Path:
    """Write ``<site>/<name>-<version>.dist-info`` declaring ``entry_points`` in the vfsd.collectors group."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"[{GROUP}]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return dist


def install_test_plugin(site: Path, *, faulty: bool = False) -> list[str]:
    """Make the example plugin (and, with ``faulty``, its misbehaving collectors) discoverable from ``site``.

    Returns the sys.path entries to add: ``site`` (the dist-infos) and the plugin's source directory.
    """
    write_dist_info(site, "vfsd-test-plugin", "0.1.0", declared_entry_points())
    if faulty:
        write_dist_info(site, "vfsd-test-faulty", "0.1.0", {
            "test_boom": "vfsd_test_plugin.faulty:Boom",
            "test_hang": "vfsd_test_plugin.faulty:Hang",
        })
    return [str(site), str(PLUGIN_SOURCE)]
