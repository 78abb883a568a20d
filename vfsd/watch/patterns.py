"""Glob patterns indexed by their literal prefix: which patterns match a subject, without trying them all.

Theory of operation
-------------------
Redis tries every pattern subscription against every published channel, so a
PUBLISH costs O(patterns). Watch patterns on a VFS are nearly always anchored
(``/ctx/app7/*``, ``__keyspace@0__:/ctx/*``): the text before the first glob
character (``* ? [ \\``) is a literal prefix that every matching subject must
start with. The index groups patterns by that prefix, and keeps the sorted set
of distinct prefix lengths. For a subject ``s`` the only patterns that can
match are those whose prefix is ``s[:n]`` for some indexed length ``n``: one
dict probe per distinct length, so matching costs O(distinct prefix lengths
+ candidates), not O(patterns). Patterns with an empty prefix (``*foo``,
``?x``) land in the length-0 bucket, which is scanned for every subject: the
unavoidable fallback.

A gate in front of the probes makes the usual case, a subject no pattern is
anywhere near, cost one probe: ``_gate`` holds the first ``_gate_len`` bytes
of every non-empty prefix (``_gate_len`` is the shortest such prefix), so a
subject whose first ``_gate_len`` bytes are not in it cannot match any anchored
pattern, however many prefix lengths there are.

Every candidate still gets Redis's exact glob check last (``vfsd.glob``, the
linear-time matcher), so the index only ever saves work and never changes an
answer: a property test compares it against trying every pattern. Two shapes
skip even that check because the prefix decides them: a pattern with no glob
character at all matches only the subject equal to it, and ``prefix*`` (one
trailing star) matches every subject its prefix matches.

``could_match_prefix(p)`` answers, without a subject, whether any indexed
pattern could match *some* subject starting with ``p``: the notifier uses it to
skip building ``__keyspace@0__:<path>`` channel names when no pattern could
possibly want them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Generic, TypeVar

from vfsd.glob import Matcher, compile_glob, literal_prefix

V = TypeVar("V")

# How a bucket member is decided once its prefix matched.
_EXACT = 0  # no glob character: the subject must equal the pattern
_PREFIX_STAR = 1  # literal prefix then one '*': every subject with the prefix matches
_GLOB = 2  # anything else: the exact matcher decides


_ZERO_ONLY: list[int] = [0]  # shared, never mutated: the lengths to probe when only the fallback bucket can match
_NONE: list[int] = []


def _shape(pattern: bytes, prefix: bytes) -> int:
    if len(prefix) == len(pattern):
        return _EXACT
    if len(pattern) == len(prefix) + 1 and pattern[-1] == 42:  # b"*"
        return _PREFIX_STAR
    return _GLOB


class PatternIndex(Generic[V]):
    """Patterns (bytes) each carrying a value; ``match(subject)`` yields ``(pattern, value)`` pairs."""

    __slots__ = ("_buckets", "_lengths", "_buckets_of_length", "_values", "_prefixes", "_families", "_gate",
                 "_gate_len")

    def __init__(self, families: tuple[bytes, ...] = ()) -> None:
        #: literal prefix -> {pattern: (shape, matcher or None)}
        self._buckets: dict[bytes, dict[bytes, tuple[int, Matcher | None]]] = {}
        self._lengths: list[int] = []  # distinct prefix lengths, ascending
        self._buckets_of_length: dict[int, int] = {}
        self._values: dict[bytes, V] = {}
        self._prefixes: dict[bytes, bytes] = {}  # pattern -> its literal prefix
        #: For each subject prefix named at construction, how many patterns could match a subject starting
        #: with it: ``could_match_prefix`` answers those in O(1).
        self._families: dict[bytes, int] = dict.fromkeys(families, 0)
        self._gate: dict[bytes, int] = {}  # first _gate_len bytes of each non-empty prefix -> buckets with it
        self._gate_len = 0  # the shortest non-empty prefix length; 0 when there is none

    def _rebuild_gate(self) -> None:
        """O(buckets): only when the shortest non-empty prefix length changes."""
        self._gate_len = next((n for n in self._lengths if n), 0)
        self._gate = {}
        if self._gate_len:
            for prefix in self._buckets:
                if prefix:
                    head = prefix[: self._gate_len]
                    self._gate[head] = self._gate.get(head, 0) + 1

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, pattern: object) -> bool:
        return pattern in self._values

    def get(self, pattern: bytes) -> V | None:
        return self._values.get(pattern)

    def items(self) -> Iterator[tuple[bytes, V]]:
        return iter(self._values.items())

    def add(self, pattern: bytes, value: V) -> None:
        """Index ``pattern`` with ``value`` (replacing the value of a pattern already indexed)."""
        if pattern in self._values:
            self._values[pattern] = value
            return
        prefix = literal_prefix(pattern)
        shape = _shape(pattern, prefix)
        bucket = self._buckets.get(prefix)
        if bucket is None:
            bucket = self._buckets[prefix] = {}
            n = len(prefix)
            count = self._buckets_of_length.get(n, 0)
            if not count:
                bisect.insort(self._lengths, n)
            self._buckets_of_length[n] = count + 1
            if n and (not self._gate_len or n < self._gate_len):
                self._rebuild_gate()
            elif n:
                head = prefix[: self._gate_len]
                self._gate[head] = self._gate.get(head, 0) + 1
        bucket[pattern] = (shape, compile_glob(pattern) if shape == _GLOB else None)
        self._values[pattern] = value
        self._prefixes[pattern] = prefix
        for family in self._families:
            if prefix.startswith(family) or family.startswith(prefix):
                self._families[family] += 1

    def remove(self, pattern: bytes) -> V | None:
        """Drop ``pattern``; returns its value, or None if it was not indexed."""
        value = self._values.pop(pattern, None)
        if value is None and pattern not in self._prefixes:
            return None
        prefix = self._prefixes.pop(pattern)
        bucket = self._buckets[prefix]
        del bucket[pattern]
        if not bucket:
            del self._buckets[prefix]
            n = len(prefix)
            count = self._buckets_of_length[n] - 1
            if count:
                self._buckets_of_length[n] = count
            else:
                del self._buckets_of_length[n]
                self._lengths.remove(n)
            if n and n == self._gate_len and not count:
                self._rebuild_gate()
            elif n:
                head = prefix[: self._gate_len]
                left = self._gate[head] - 1
                if left:
                    self._gate[head] = left
                else:
                    del self._gate[head]
        for family in self._families:
            if prefix.startswith(family) or family.startswith(prefix):
                self._families[family] -= 1
        return value

    def _candidate_lengths(self, subject: bytes) -> list[int]:
        """The prefix lengths worth probing for ``subject``: all of them only if it passes the gate.

        (A head in the gate is exactly ``_gate_len`` bytes long, so a shorter subject never passes.)
        """
        lengths = self._lengths
        if not lengths:
            return lengths
        gate = self._gate_len
        if gate and subject[:gate] in self._gate:
            return lengths
        return _ZERO_ONLY if lengths[0] == 0 else _NONE

    def match(self, subject: bytes) -> list[tuple[bytes, V]]:
        """Every ``(pattern, value)`` whose pattern matches ``subject`` (Redis glob semantics)."""
        lengths = self._candidate_lengths(subject)
        if not lengths:  # the usual case on a busy node: nothing near
            return []
        found: list[tuple[bytes, V]] = []
        buckets = self._buckets
        values = self._values
        size = len(subject)
        for n in lengths:
            if n > size:
                break
            bucket = buckets.get(subject[:n])
            if bucket is None:
                continue
            for pattern, (shape, matcher) in bucket.items():
                if shape == _PREFIX_STAR or (shape == _EXACT and n == size) or (
                        shape == _GLOB and matcher(subject) is not None):  # type: ignore[misc]
                    found.append((pattern, values[pattern]))
        return found

    def any_match(self, subject: bytes) -> bool:
        """Whether some pattern matches ``subject`` (stops at the first)."""
        buckets = self._buckets
        size = len(subject)
        for n in self._candidate_lengths(subject):
            if n > size:
                break
            bucket = buckets.get(subject[:n])
            if bucket is None:
                continue
            for shape, matcher in bucket.values():
                if shape == _PREFIX_STAR or (shape == _EXACT and n == size) or (
                        shape == _GLOB and matcher(subject) is not None):  # type: ignore[misc]
                    return True
        return False

    def could_match_prefix(self, prefix: bytes) -> bool:
        """Whether some pattern could match a subject that starts with ``prefix``.

        True when a pattern's literal prefix and ``prefix`` agree as far as both go
        (one starts with the other). Conservative: ``__keyspace@0__:*x`` counts.
        O(1) for a family named at construction, O(distinct prefixes) otherwise.
        """
        count = self._families.get(prefix)
        if count is not None:
            return count > 0
        for p in self._buckets:
            if p.startswith(prefix) or prefix.startswith(p):
                return True
        return False
