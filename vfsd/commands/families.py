"""Import every command family (filling the table) and index it for dispatch."""

from vfsd.commands import connection, json, keys, multi, pubsub, server, strings, vfs, watch  # noqa: F401
from vfsd.commands.dispatch import build_lookup

build_lookup()
