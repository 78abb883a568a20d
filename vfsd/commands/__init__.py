"""Command families; importing this package fills the command table."""

from vfsd.commands import connection, keys, multi, pubsub, server, strings, vfs  # noqa: F401

try:
    from vfsd.commands import json  # noqa: F401
except ImportError:  # pragma: no cover - the JSON family is part of the package
    raise

from vfsd.commands.dispatch import build_lookup

build_lookup()
