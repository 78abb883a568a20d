"""EVAL scripts: the SHA1 cache and the ``#!lua flags=...`` shebang (Redis 7.2 eval.c).

A script without a shebang runs in "compatibility mode" (any command, writes
allowed unless called as EVAL_RO). With a shebang, its flags decide: no-writes
(read-only, and then EVAL_RO is not needed), allow-oom, allow-stale, no-cluster,
allow-cross-slot-keys. The cache is node-local and not persisted, as in Redis: a
client that gets NOSCRIPT after a restart sends the body again (redis-py's
``Script`` and ``Lock`` do exactly that).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from vfsd.resp.types import ErrorReply

__all__ = ["NOSCRIPT", "SCRIPT_FLAGS", "Script", "ScriptCache", "parse_shebang", "sha1hex"]

NOSCRIPT = ErrorReply("NOSCRIPT No matching script. Please use EVAL.")
SCRIPT_FLAGS = ("no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys")


def sha1hex(body: bytes) -> str:
    return hashlib.sha1(body).hexdigest()


def parse_shebang(body: bytes) -> tuple[frozenset[str] | None, int]:
    """(flags, length of the shebang line); flags None for a script without one (compatibility mode)."""
    if not body.startswith(b"#!"):
        return None, 0
    end = body.find(b"\n")
    if end < 0:
        raise ErrorReply("ERR Invalid script shebang")
    parts = body[:end].decode(errors="replace").split()
    if not parts:
        raise ErrorReply("ERR Invalid engine in script shebang")
    if parts[0] != "#!lua":
        raise ErrorReply(f"ERR Unexpected engine in script shebang: {parts[0]}")
    flags: set[str] = set()
    for part in parts[1:]:
        if not part.startswith("flags="):
            raise ErrorReply(f"ERR Unknown lua shebang option: {part}")
        for flag in part[len("flags="):].split(","):
            if not flag:
                continue
            if flag not in SCRIPT_FLAGS:
                raise ErrorReply(f"ERR Unexpected flag in script shebang: {flag}")
            flags.add(flag)
    return frozenset(flags), end


@dataclass(slots=True)
class Script:
    sha: str
    body: bytes
    #: None: no shebang (compatibility mode)
    flags: frozenset[str] | None
    #: The compiled function, in the runtime of the cache that holds it.
    function: Any = None

    @property
    def read_only(self) -> bool:
        return self.flags is not None and "no-writes" in self.flags


class ScriptCache:
    """sha -> Script for one Lua runtime; ``compile(body) -> function`` raises ErrorReply."""

    def __init__(self, compile_body: Any) -> None:
        self._compile = compile_body
        self.scripts: dict[str, Script] = {}
        #: The same scripts by their digest as bytes (EVALSHA's argument, looked up without decoding).
        self.digests: dict[bytes, Script] = {}

    def load(self, body: bytes, sha: str | None = None) -> Script:
        sha = sha or sha1hex(body)
        script = self.scripts.get(sha)
        if script is not None:
            return script
        flags, offset = parse_shebang(body)
        # The shebang line is dropped but its newline kept, so line numbers still match the body.
        function = self._compile(body[offset:])
        script = self.scripts[sha] = self.digests[sha.encode()] = Script(sha, body, flags, function)
        return script

    def get(self, sha: str) -> Script | None:
        return self.scripts.get(sha)

    def flush(self) -> None:
        self.scripts.clear()
        self.digests.clear()

    def __len__(self) -> int:
        return len(self.scripts)
