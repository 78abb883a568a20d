"""Path grammar and the roots table: which plane a key belongs to.

A VFS path is absolute, ``/``-separated UTF-8 with no empty, ``.`` or ``..``
segment, no trailing slash, no control characters and at most
``MAX_PATH_BYTES`` bytes (DESIGN.md §2). Keys that do not start with ``/`` are
node-local, as in a plain Redis. The first segment of a path is its *root*;
the roots table maps each root to a plane.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping, Sequence
from typing import Final

CONSENSUS: Final = "consensus"
EVENTUAL: Final = "eventual"
LEASE: Final = "lease"
LOCAL: Final = "local"
PLANES: Final = (CONSENSUS, EVENTUAL, LEASE, LOCAL)

#: The replication group a plane writes through. A transaction must stay in one
#: group: consensus and lease share the Raft log, so a fenced write (check a
#: lease, write desired state) is one atomic entry.
GROUP: Final = {CONSENSUS: "log", LEASE: "log", EVENTUAL: "eventual", LOCAL: "local"}
#: How errors name each plane: the names users see (README, VFS.STAT), never the internal group.
PLANE_NAMES: Final = {CONSENSUS: "desired: consensus", LEASE: "desired: lease", EVENTUAL: "active: eventual",
                      LOCAL: "local"}

DEFAULT_ROOTS: Final[Mapping[str, str]] = {
    "/mid": CONSENSUS,
    "/ctx": CONSENSUS,
    "/ztb": CONSENSUS,
    "/sys": CONSENSUS,
    "/hw": EVENTUAL,
    "/sum": EVENTUAL,
    "/run": EVENTUAL,
    "/itg": EVENTUAL,
    "/lk": LEASE,
}

MAX_PATH_BYTES: Final = 1024

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# Everything check_path rejects, in one pass: the common (valid) case costs one regex search.
_SUSPECT = re.compile(rb"[\x00-\x1f\x7f]|//|/\.\.?(?:/|$)|/$")
#: The same pattern, for a caller that inlines check_path's common case (an ASCII key of at most
#: MAX_PATH_BYTES that it does not match is a valid path).
PATH_SUSPECT: Final = _SUSPECT


_CONTROL_BYTES = bytes(range(0x20)) + b"\x7f"
#: ``_SUSPECT`` less the control characters, over paths joined by (and ending with) a newline.
_SUSPECT_JOINED = re.compile(rb"/(?:/|\.\.?(?:/|\n)|\n)")


def all_paths(keys: Sequence[bytes], prefixes: tuple[bytes, ...] = ()) -> bool:
    """Whether every one of ``keys`` is an ASCII path that ``check_path`` passes and, given
    ``prefixes`` (none the start of another: roots with their slash), under one of them.

    A batch's answer in a few C calls over the keys joined by newlines, where ``check_path``
    costs each key a call and a search of its own: a newline is a control character, in no
    valid path, so once none is found but the separators, every suspect pattern can be
    looked for across the whole batch in one search (a path's end is a newline there), and
    every key's first bytes are counted after its newline. False says only that some key
    may not pass: the caller then checks them one by one."""
    n = len(keys)
    joined = b"\n".join([b"", *keys, b""])
    if (len(joined.translate(None, _CONTROL_BYTES)) != len(joined) - n - 1 or not joined.isascii()
            or max(map(len, keys), default=0) > MAX_PATH_BYTES or _SUSPECT_JOINED.search(joined) is not None):
        return False
    if prefixes:
        return sum(joined.count(b"\n" + prefix) for prefix in prefixes) == n
    return joined.count(b"\n/") == n


class PathError(ValueError):
    """A key that looks like a path but breaks the grammar; the text is the error reply."""


def check_path(key: bytes) -> None:
    """Raise PathError naming the problem when ``key`` is not a well-formed path."""
    if len(key) <= MAX_PATH_BYTES and _SUSPECT.search(key) is None:
        try:
            key.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    shown = key[:80].decode("utf-8", "replace")
    if len(key) > MAX_PATH_BYTES:
        raise PathError(f"ERR invalid path '{shown}...': longer than {MAX_PATH_BYTES} bytes")
    if _CONTROL.search(key):
        raise PathError(f"ERR invalid path '{shown!r}': control characters are not allowed")
    if key == b"/" or key.endswith(b"/"):
        raise PathError(f"ERR invalid path '{shown}': trailing slash (directories are implicit)")
    if b"//" in key:
        raise PathError(f"ERR invalid path '{shown}': empty segment")
    if b"/./" in key or b"/../" in key or key.endswith((b"/.", b"/..")):
        raise PathError(f"ERR invalid path '{shown}': '.' and '..' segments are not allowed")
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        raise PathError(f"ERR invalid path '{shown}': not valid UTF-8") from None


def check_dir(key: bytes) -> bytes:
    """Normalise a directory argument (``/``, ``/hw``, ``/hw/``) to its prefix form ``/hw/``."""
    if key in (b"/", b""):
        return b"/"
    if not key.startswith(b"/"):
        raise PathError(f"ERR invalid directory '{key[:80].decode('utf-8', 'replace')}': must start with '/'")
    stripped = key.rstrip(b"/")
    check_path(stripped)
    return stripped + b"/"


class Router:
    """Maps keys to planes from the roots table.

    Validated paths are remembered in a bounded cache: the benchmarked hot path
    writes the same paths again and again, and a dict probe is cheaper than
    re-checking the grammar.
    """

    __slots__ = ("roots", "_by_root", "_cache", "_cache_max")

    def __init__(self, roots: Mapping[str, str] = DEFAULT_ROOTS, cache_max: int = 65536) -> None:
        for root, plane in roots.items():
            if plane not in PLANES:
                raise ValueError(f"root {root!r}: unknown plane {plane!r} (one of {', '.join(PLANES)})")
            if not root.startswith("/") or root.count("/") != 1 or len(root) < 2:
                raise ValueError(f"root {root!r}: a root is one path segment such as '/app'")
            try:
                check_path(root.encode())
            except PathError as exc:
                raise ValueError(f"root {root!r} is not a valid path: {exc}") from None
        self.roots = dict(roots)
        self._by_root = {root.encode(): plane for root, plane in roots.items()}
        self._cache: dict[bytes, str] = {}
        self._cache_max = cache_max

    def plane_of(self, key: bytes, known: Container[bytes] = ()) -> str:
        """The plane ``key`` lives on; PathError for a malformed or unrooted path.

        ``known`` holds keys already validated (the keyspace itself): a path that
        exists was checked when it was first written.
        """
        if key[:1] != b"/":
            return LOCAL
        plane = self._cache.get(key)
        if plane is not None:
            return plane
        if key in known:
            end = key.find(b"/", 1)
            plane = self._by_root.get(key if end < 0 else key[:end])
            if plane is not None:
                return plane
        check_path(key)
        end = key.find(b"/", 1)
        root = key if end < 0 else key[:end]
        plane = self._by_root.get(root)
        if plane is None:
            known = " ".join(sorted(self.roots))
            raise PathError(
                f"ERR no plane for root '{root.decode(errors='replace')}' in path "
                f"'{key[:80].decode(errors='replace')}' (roots: {known})"
            )
        if len(self._cache) >= self._cache_max:
            self._cache.clear()
        self._cache[key] = plane
        return plane

    def roots_of(self, plane: str) -> list[bytes]:
        return sorted(r for r, p in self._by_root.items() if p == plane)
