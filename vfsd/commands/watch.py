"""VFS.WATCH and VFS.UNWATCH: subscription-mode streams of changes to paths (see ``vfsd.watch.watchers``).

    VFS.WATCH <pattern> [FROM <revision>] [VALUES]
    VFS.UNWATCH [<pattern> ...]

The first reply, like SUBSCRIBE's, is a push::

    vfs.watch <pattern> <subscription count> history|live <revision>

``history``: the pattern can only match desired-state paths; the stream
carries every matching change after ``<revision>`` (FROM's, or the revision
applied now), in revision order, first from the watch history and then live,
with no gap and no duplicate. ``live``: the pattern can match active-plane
paths, which have no global order; changes stream as they happen and FROM is
refused; ``<revision>`` is then the desired plane's revision now. Which roots
a pattern can reach is read from its literal prefix (``/ctx/*`` reaches
``/ctx`` only, ``/c*`` and ``*`` reach every root whose name could follow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vfsd.commands.errors import SYNTAX
from vfsd.commands.pubsub import Replies
from vfsd.commands.table import command
from vfsd.glob import literal_prefix
from vfsd.paths import CONSENSUS, LEASE
from vfsd.resp.types import ErrorReply, Push
from vfsd.watch.history import Compacted

if TYPE_CHECKING:
    from vfsd.server import Client

ORDERED_PLANES = frozenset({CONSENSUS, LEASE})


def reachable_roots(roots: dict[str, str], pattern: bytes) -> dict[str, str]:
    """The roots (and their planes) holding some path the pattern could match."""
    prefix = literal_prefix(pattern)
    found = {}
    for root, plane in roots.items():
        name = root.encode()
        if prefix == pattern:  # no glob character: one path
            hit = pattern == name or pattern.startswith(name + b"/")
        elif len(prefix) > len(name):
            hit = prefix.startswith(name + b"/")
        else:  # the prefix ends within the root's name: every root it begins may be reached
            hit = (name + b"/").startswith(prefix)
        if hit:
            found[root] = plane
    return found


def _parse_options(argv: list[bytes]) -> tuple[int | None, bool]:
    after: int | None = None
    values = False
    i = 2
    while i < len(argv):
        option = argv[i].upper()
        if option == b"FROM" and after is None and i + 1 < len(argv):
            raw = argv[i + 1]
            if not raw.isdigit() or len(raw) > 19:
                raise ErrorReply(f"ERR FROM revision must be a non-negative integer, got "
                                 f"'{raw[:40].decode(errors='replace')}'")
            after = int(raw)
            i += 2
        elif option == b"VALUES" and not values:
            values = True
            i += 1
        else:
            raise SYNTAX
    return after, values


@command("vfs.watch", arity=-2, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="vfs",
         scope="node", since="0.1.0", complexity="O(changes replayed) then O(1) per change",
         summary="Streams every change to paths matching a pattern, in revision order, resuming after a revision.",
         arguments="pattern [FROM revision] [VALUES]")
def vfs_watch(client: "Client", argv: list[bytes]) -> Replies:
    pattern = argv[1]
    after, values = _parse_options(argv)
    node = client.node
    roots = reachable_roots(node.router.roots, pattern)
    shown = pattern[:128].decode(errors="replace")
    if not roots:
        raise ErrorReply(f"ERR VFS.WATCH pattern '{shown}' matches no path under any root "
                         f"(roots: {' '.join(sorted(node.router.roots))})")
    ordered = all(plane in ORDERED_PLANES for plane in roots.values())
    if after is not None and not ordered:
        active = " ".join(sorted(r for r, p in roots.items() if p not in ORDERED_PLANES))
        raise ErrorReply(f"ERR FROM needs a pattern on desired-state paths only: '{shown}' can match active paths "
                         f"({active}), which have no global revision order; watch them without FROM (live)")
    try:
        watch = client.add_watch(pattern, ordered=ordered, after=after, values=values)
    except Compacted as exc:
        raise ErrorReply(f"ERR VFS.WATCH FROM {after}: the watch history starts at revision {exc.oldest} (older "
                         f"revisions are compacted); resume FROM {exc.oldest - 1} or later, or read the state again "
                         f"and watch FROM its revision") from None
    revision = watch.position if ordered else node.planes["log"].machine.applied_index
    return Replies([Push([b"vfs.watch", pattern, client.pubsub_count(), b"history" if ordered else b"live",
                          revision])])


@command("vfs.unwatch", arity=-1, flags="pubsub noscript loading stale no_multi", acl="@pubsub", group="vfs",
         scope="node", since="0.1.0", summary="Stops VFS.WATCH streams (all of them without a pattern).",
         arguments="[pattern ...]")
def vfs_unwatch(client: "Client", argv: list[bytes]) -> Replies:
    targets = argv[1:] or sorted(client.vfs_watches)
    if not targets:
        return Replies([Push([b"vfs.unwatch", None, client.pubsub_count()])])
    out = Replies()
    for pattern in targets:
        client.remove_watch(pattern)
        out.append(Push([b"vfs.unwatch", pattern, client.pubsub_count()]))
    return out
