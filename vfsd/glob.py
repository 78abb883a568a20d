"""Redis glob patterns (``KEYS``, ``SCAN MATCH``, ``PSUBSCRIBE``), compiled to regexes.

Redis's stringmatchlen differs from fnmatch: ``\\`` escapes the next character,
``[^...]`` negates a class, and there is no special handling of ``/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=4096)
def compile_glob(pattern: bytes) -> Callable[[bytes], re.Match[bytes] | None]:
    """Return a ``fullmatch`` function for a Redis glob pattern."""
    out: list[bytes] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            while i < n and pattern[i : i + 1] == b"*":
                i += 1
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i < n:
            out.append(re.escape(pattern[i : i + 1]))
            i += 1
        elif c == b"[":
            j = i
            negate = j < n and pattern[j : j + 1] == b"^"
            if negate:
                j += 1
            items: list[bytes] = []
            while j < n and pattern[j : j + 1] != b"]":
                ch = pattern[j : j + 1]
                if ch == b"\\" and j + 1 < n:
                    items.append(re.escape(pattern[j + 1 : j + 2]))
                    j += 2
                elif j + 2 < n and pattern[j + 1 : j + 2] == b"-" and pattern[j + 2 : j + 3] != b"]":
                    lo, hi = sorted((pattern[j : j + 1], pattern[j + 2 : j + 3]))
                    items.append(re.escape(lo) + b"-" + re.escape(hi))
                    j += 3
                else:
                    items.append(re.escape(ch))
                    j += 1
            # Redis treats an unterminated class as running to the end of the pattern.
            i = j + 1 if j < n else n
            body = b"".join(items)
            if not body:
                out.append(b"[^\\s\\S]" if not negate else b"[\\s\\S]")
            else:
                out.append(b"[" + (b"^" if negate else b"") + body + b"]")
        else:
            out.append(re.escape(c))
    return re.compile(b"".join(out), re.DOTALL).fullmatch


def literal_prefix(pattern: bytes) -> bytes:
    """The fixed prefix of a pattern (``/hw/*`` → ``/hw/``), for range walks."""
    for i, ch in enumerate(pattern):
        if ch in b"*?[\\":
            return pattern[:i]
    return pattern


def glob_match(pattern: bytes, subject: bytes) -> bool:
    return compile_glob(pattern)(subject) is not None
