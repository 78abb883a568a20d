"""Redis glob patterns (``KEYS``, ``SCAN MATCH``, ``PSUBSCRIBE``), matched in linear-ish time.

Redis's stringmatchlen differs from fnmatch: ``\\`` escapes the next character,
``[^...]`` negates a class, ``[a-z]`` ranges may be written backwards, and there
is no special handling of ``/``.

A pattern is not compiled to one regular expression: ``a*a*a*...b`` would make
a backtracking engine take exponential time, and one such KEYS, SCAN MATCH or
PSUBSCRIBE would stall the node (Redis's CVE-2022-36021). Instead the pattern is
split at its stars into segments that each match a fixed number of bytes. The
first segment must match at the start, the last at the end, and each middle
segment is searched for left to right, taking the leftmost match — which is
optimal for glob, so the whole match costs O(len(subject) × segments) with no
backtracking. Each segment is a small star-free regex.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

Matcher = Callable[[bytes], "bool | None"]


def _atoms(pattern: bytes) -> list[bytes | None]:
    """The pattern as atoms: a regex that matches exactly one byte, or None for a star."""
    atoms: list[bytes | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        i += 1
        if c == b"*":
            if not atoms or atoms[-1] is not None:
                atoms.append(None)
        elif c == b"?":
            atoms.append(b".")
        elif c == b"\\" and i < n:
            atoms.append(re.escape(pattern[i : i + 1]))
            i += 1
        elif c == b"[":
            negate = i < n and pattern[i : i + 1] == b"^"
            if negate:
                i += 1
            items: list[bytes] = []
            while i < n and pattern[i : i + 1] != b"]":
                ch = pattern[i : i + 1]
                if ch == b"\\" and i + 1 < n:
                    items.append(re.escape(pattern[i + 1 : i + 2]))
                    i += 2
                elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
                    # As Redis: a range needs three bytes left, and its end may even be ']'.
                    lo, hi = sorted((pattern[i : i + 1], pattern[i + 2 : i + 3]))
                    items.append(re.escape(lo) + b"-" + re.escape(hi))
                    i += 3
                else:
                    items.append(re.escape(ch))
                    i += 1
            i += 1  # past ']' (an unterminated class runs to the end of the pattern, as in Redis)
            body = b"".join(items)
            if not body:
                atoms.append(b"[\\s\\S]" if negate else b"[^\\s\\S]")
            else:
                atoms.append(b"[" + (b"^" if negate else b"") + body + b"]")
        else:
            atoms.append(re.escape(c))
    return atoms


@lru_cache(maxsize=4096)
def compile_glob(pattern: bytes) -> Matcher:
    """A function returning True (or None for no match) for a Redis glob pattern."""
    segments: list[list[bytes]] = [[]]
    for atom in _atoms(pattern):
        if atom is None:
            segments.append([])
        else:
            segments[-1].append(atom)
    if len(segments) == 1:
        whole = re.compile(b"".join(segments[0]), re.DOTALL).fullmatch
        return lambda subject: True if whole(subject) is not None else None
    first, *middle, last = ([len(s), re.compile(b"".join(s), re.DOTALL)] for s in segments)
    first_len, first_re = first
    last_len, last_re = last
    middles = [(n, r.search) for n, r in middle if n]
    minimum = first_len + last_len + sum(n for n, _ in middles)

    def match(subject: bytes) -> bool | None:
        size = len(subject)
        if size < minimum:
            return None
        if first_len and first_re.match(subject) is None:
            return None
        pos = first_len
        end = size - last_len
        for _, search in middles:
            found = search(subject, pos, end)
            if found is None:
                return None
            pos = found.end()
        if last_len and last_re.match(subject, end) is None:
            return None
        return True

    return match


def literal_prefix(pattern: bytes) -> bytes:
    """The fixed prefix of a pattern (``/hw/*`` → ``/hw/``), for range walks."""
    for i, ch in enumerate(pattern):
        if ch in b"*?[\\":
            return pattern[:i]
    return pattern


def glob_match(pattern: bytes, subject: bytes) -> bool:
    return compile_glob(pattern)(subject) is not None
