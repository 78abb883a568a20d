"""Import every command family (filling the table) and index it for dispatch."""

from vfsd.commands import (  # noqa: F401
    bits,
    cluster,
    connection,
    hashes,
    introspection,
    json,
    keys,
    lists,
    locks,
    multi,
    persistence,
    pubsub,
    scripting,
    server,
    sets,
    sort,
    strings,
    vfs,
    watch,
    zsets,
)
from vfsd.commands.dispatch import build_lookup

build_lookup()
