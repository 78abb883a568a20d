"""The VFS's own commands: VFS.LS (a directory's children) and VFS.STAT (a file's metadata).

Also two internal operations that only ever arrive through the desired log:
``vfs.expire`` (the sweeper's proposal to delete a key whose TTL has passed)
and ``vfs.flush`` (FLUSHALL on the desired plane).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfsd.codec import DOC
from vfsd.commands.context import Ctx
from vfsd.commands.errors import parse_int
from vfsd.commands.keys import type_name
from vfsd.commands.strings import read_bytes
from vfsd.commands.table import command
from vfsd.paths import PathError, check_dir
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE
from vfsd.store.values import length, object_encoding

if TYPE_CHECKING:
    from vfsd.server import Client


@command("vfs.ls", arity=-1, flags="readonly", acl="@keyspace", group="vfs", scope="node",
         summary="Lists a directory's immediate children: files by name, subdirectories with a trailing '/'.",
         complexity="O(C log N) for C children", since="0.1.0", arguments="[directory]")
def vfs_ls(client: "Client", argv: list[bytes]) -> list[bytes]:
    if len(argv) > 2:
        raise ErrorReply("ERR wrong number of arguments for 'vfs.ls' command")
    try:
        prefix = check_dir(argv[1] if len(argv) == 2 else b"/")
    except PathError as exc:
        raise ErrorReply(str(exc)) from None
    node = client.node
    db = node.keyspace
    now = node.now_ms()
    out: list[bytes] = []
    start = prefix
    n = len(prefix)
    while True:
        key = next(iter(db.keys.irange(start, None, inclusive=(True, False))), None)
        if key is None or not key.startswith(prefix):
            break
        slash = key.find(b"/", n)
        if slash < 0:
            if not db.is_expired(key, now):
                out.append(key[n:])
            start = key + b"\x00"
        else:
            child = key[n:slash]
            if any(not db.is_expired(k, now) for k in _first(db.prefixed(key[: slash + 1]), 64)):
                out.append(child + b"/")
            start = key[: slash] + b"0"  # '0' follows '/': skip the whole subtree
    if prefix == b"/":
        for root in sorted(node.router.roots):
            name = root[1:].encode() + b"/"
            if name not in out:
                out.append(name)
        out.sort()
    return out


def _first(it: Any, n: int) -> list[bytes]:
    out = []
    for key in it:
        out.append(key)
        if len(out) >= n:
            break
    return out


@command("vfs.stat", arity=2, flags="readonly", acl="@keyspace", group="vfs", scope="node",
         summary="Returns a file's metadata: plane, revision, origin, ctime/mtime, ttl, size (bytes of a string, "
         "elements of a collection), type, encoding.", since="0.1.0",
         arguments="path")
def vfs_stat(client: "Client", argv: list[bytes]) -> Any:
    node = client.node
    key = argv[1]
    try:
        plane = node.router.plane_of(key)
    except PathError as exc:
        raise ErrorReply(str(exc)) from None
    db = node.keyspace
    now = node.now_ms()
    entry = db.data.get(key)
    if entry is None or db.is_expired(key, now):
        return None
    at = db.expire_at(key)
    return {
        "path": key,
        "plane": plane,
        "revision": entry[REV],
        "origin": entry[ORIGIN],
        "ctime_ms": entry[CTIME],
        "mtime_ms": entry[MTIME],
        "ttl_ms": -1 if at is None else max(at - now, 0),
        "size": len(read_bytes(entry)) if entry[KIND] <= DOC else length(entry[KIND], entry[VALUE]),
        "type": type_name(entry),
        "encoding": ("msgpack" if entry[KIND] == DOC else "raw") if entry[KIND] <= DOC
        else object_encoding(entry[KIND], entry[VALUE]),
    }


@command("vfs.expire", arity=3, flags="write internal", keys=(1, 1, 1), group="vfs",
         summary="Internal: delete a key whose deadline has passed, if it is still the same revision.")
def vfs_expire(ctx: Ctx, argv: list[bytes]) -> int:
    key = argv[1]
    entry = ctx.db.data.get(key)
    if entry is None or entry[REV] != parse_int(argv[2]) or not ctx.db.is_expired(key, ctx.now_ms):
        return 0
    ctx.notify("x", "expired", key, ctx.remove(key))
    return 1


@command("vfs.flush", arity=-1, flags="write internal", group="vfs",
         summary="Internal: remove every key under the given roots (FLUSHALL on the desired plane).")
def vfs_flush(ctx: Ctx, argv: list[bytes]) -> int:
    removed = 0
    for root in argv[1:]:
        keys = ([root] if root in ctx.db.data else []) + list(ctx.db.prefixed(root + b"/"))
        for key in keys:
            ctx.notify("g", "del", key, ctx.remove(key))
            removed += 1
    return removed

