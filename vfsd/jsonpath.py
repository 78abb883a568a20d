"""A JSONPath subset over plain JSON values (dict, list, str, int, float, bool, None).

Theory of operation. ``parse`` compiles a path once (cached) into a tuple of
steps; ``locate`` walks a document and yields every match as a *location* (the
tuple of keys and non-negative indexes leading to it from the root) with its
value, in document order. The JSON commands read through ``query`` and write
through ``locate`` plus ``replace_at`` / ``delete_at``, so a path is resolved
once and each change lands on a concrete location.

Syntax (the RedisJSON 2.x grammar, less filters):

    $                root                  $.a.b  $a      member by name
    $["a b"] $['a']  member by quoted name  $["a","b"]    several members
    $.a[0] $.a[-1]   element by index       $.a[0,2]      several elements
    $.a[1:3] $[::2]  slice [start:end:step] $.* $.a[*]    every child
    $..a $..* $..[0] the step applied to the node and all its descendants

A path that does not start with ``$`` is a *legacy* path (RedisJSON 1.x):
``.`` is the root, ``.a.b`` and ``a.b`` mean ``$.a.b``. The caller decides
what legacy means for replies (RedisJSON: a legacy path answers its first
match and a missing match is an error; a ``$`` path answers every match).

Index semantics follow RFC 9535: an index outside the array matches nothing
(RedisJSON clamps a negative index below ``-len`` to 0; we do not). Slice
bounds are clamped as RedisJSON does.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Union

#: A step on the way from the root to a value: a member name or an array index.
Location = tuple[Union[str, int], ...]

MAX_PATH_CHARS = 4096

# RedisJSON's ``literal`` characters, plus any non-ASCII character (member
# names in collector documents may be UTF-8).
_LITERAL_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_`~+#%$^/:")


class JSONPathError(ValueError):
    """A path outside the supported grammar; ``str()`` is a Redis ``ERR`` text naming the path."""


@dataclass(frozen=True, slots=True)
class Names:
    """``.a``, ``["a"]``, ``["a","b"]``: members of an object, in the order given."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Indexes:
    """``[0]``, ``[-1]``, ``[0,2]``: elements of an array; negative counts from the end."""

    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Slice:
    """``[start:end:step]``: None means the array's bounds; ``step`` >= 1."""

    start: int | None
    end: int | None
    step: int


@dataclass(frozen=True, slots=True)
class Wildcard:
    """``*``: every member of an object or element of an array."""


@dataclass(frozen=True, slots=True)
class Descendants:
    """``..``: the rest of the path is applied to the node and to each descendant, pre-order."""


Step = Union[Names, Indexes, Slice, Wildcard, Descendants]


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled path. ``text`` is what the user wrote; ``legacy`` if it did not start with ``$``."""

    text: str
    legacy: bool
    steps: tuple[Step, ...]

    @property
    def is_root(self) -> bool:
        return not self.steps

    @property
    def is_static(self) -> bool:
        """At most one match whatever the document: single names and single indexes only."""
        return all(
            (type(s) is Names and len(s.names) == 1) or (type(s) is Indexes and len(s.indexes) == 1)
            for s in self.steps
        )

    @property
    def normalized(self) -> str:
        """The ``$`` form RedisJSON converts a legacy path to (and names in some errors)."""
        return legacy_to_dollar(self.text) if self.legacy else self.text

    def parent(self) -> Path:
        """The path without its last step (the root's parent is the root)."""
        return Path(self.text, self.legacy, self.steps[:-1])


def legacy_to_dollar(text: str) -> str:
    """RedisJSON's conversion of a 1.x path: ``.`` -> ``$``, ``.a`` -> ``$.a``, ``a`` -> ``$.a``."""
    if text == ".":
        return "$"
    if text.startswith("."):
        return "$" + text
    return "$." + text


# --- parsing ---------------------------------------------------------------


class _Scanner:
    __slots__ = ("text", "source", "pos")

    def __init__(self, text: str, source: str) -> None:
        self.text = text  # the $-form being parsed
        self.source = source  # what the user wrote, for error messages
        self.pos = 0

    def fail(self, reason: str) -> JSONPathError:
        # Offsets count in what the user wrote, not in the $-form of a legacy path.
        offset = max(0, self.pos - (len(self.text) - len(self.source)))
        return JSONPathError(f"ERR invalid JSONPath '{self.source}': {reason} at offset {offset}")

    def skip_spaces(self) -> None:
        # RedisJSON's grammar ignores spaces between tokens.
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] == " ":
            pos += 1
        self.pos = pos

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def expect(self, char: str) -> None:
        self.skip_spaces()
        if self.peek() != char:
            found = repr(self.peek()) if not self.at_end() else "end of path"
            raise self.fail(f"expected '{char}', found {found}")
        self.pos += 1

    def literal(self) -> str:
        text, start = self.text, self.pos
        pos = start
        while pos < len(text) and (text[pos] in _LITERAL_ASCII or ord(text[pos]) > 127):
            pos += 1
        if pos == start:
            raise self.fail("expected a member name")
        self.pos = pos
        return text[start:pos]

    def number(self) -> int:
        """RedisJSON's ``number``: ``-?[1-9][0-9]*`` or ``-?[0-9]`` (no leading zeros)."""
        text, start = self.text, self.pos
        pos = start
        if pos < len(text) and text[pos] == "-":
            pos += 1
        digits = pos
        while pos < len(text) and text[pos].isascii() and text[pos].isdigit():
            pos += 1
        if pos == digits:
            raise self.fail("expected a number")
        if pos - digits > 1 and text[digits] == "0":
            raise self.fail("leading zeros in a number")
        self.pos = pos
        return int(text[start:pos])

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated string")
            char = text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                escaped = text[self.pos + 1 : self.pos + 2]
                if escaped not in (quote, "\\"):
                    raise self.fail("bad escape in string (only \\\\ and the quote may be escaped)")
                out.append(escaped)
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1

    def bracket(self) -> Step:
        """After ``[``: a string list, a number list, a range or ``*``; consumes the ``]``."""
        self.skip_spaces()
        char = self.peek()
        if char == "*":
            self.pos += 1
            step: Step = Wildcard()
        elif char == "?":
            raise self.fail("filter expressions are not supported")
        elif char in ("'", '"'):
            names = [self.quoted()]
            self.skip_spaces()
            while self.peek() == ",":
                self.pos += 1
                self.skip_spaces()
                if self.peek() not in ("'", '"'):
                    raise self.fail("expected a quoted member name")
                names.append(self.quoted())
                self.skip_spaces()
            step = Names(tuple(names))
        else:
            step = self.numbers()
        self.expect("]")
        return step

    def numbers(self) -> Step:
        start = None if self.peek() == ":" else self.number()
        self.skip_spaces()
        if start is not None and self.peek() != ":":
            indexes = [start]
            while self.peek() == ",":
                self.pos += 1
                self.skip_spaces()
                indexes.append(self.number())
                self.skip_spaces()
            return Indexes(tuple(indexes))
        self.pos += 1  # the first ':'
        self.skip_spaces()
        end = None
        if self.peek() not in (":", "]"):
            end = self.number()
            self.skip_spaces()
        step = 1
        if self.peek() == ":":
            self.pos += 1
            self.skip_spaces()
            if self.peek() != "]":
                step = self.number()
                if step < 1:
                    raise self.fail("slice step must be a positive number")
        return Slice(start, end, step)

    def element(self, first: bool) -> Step | tuple[Step, Step]:
        """One element of the grammar; ``..x`` comes back as (Descendants(), x)."""
        text = self.text
        if text.startswith("..", self.pos):
            self.pos += 2
            self.skip_spaces()
            char = self.peek()
            if char == "*":
                self.pos += 1
                return Descendants(), Wildcard()
            if char == "[":
                self.pos += 1
                return Descendants(), self.bracket()
            return Descendants(), Names((self.literal(),))
        char = self.peek()
        if char == ".":
            self.pos += 1
            self.skip_spaces()
            char = self.peek()
            if char == "*":
                self.pos += 1
                return Wildcard()
            if char == "[":
                self.pos += 1
                return self.bracket()
            return Names((self.literal(),))
        if char == "[":
            self.pos += 1
            return self.bracket()
        if first:  # RedisJSON accepts ``$a`` and ``$*`` for ``$.a`` and ``$.*``
            if char == "*":
                self.pos += 1
                return Wildcard()
            return Names((self.literal(),))
        raise self.fail(f"unexpected {char!r}")


@lru_cache(maxsize=4096)
def parse(text: str) -> Path:
    """Compile ``text``; raises JSONPathError (a Redis ``ERR`` text) outside the grammar."""
    legacy = not text.startswith("$")
    dollar = legacy_to_dollar(text) if legacy else text
    scanner = _Scanner(dollar, text)
    if len(text) > MAX_PATH_CHARS:
        raise scanner.fail(f"longer than {MAX_PATH_CHARS} characters")
    scanner.pos = 1  # past the '$'
    steps: list[Step] = []
    scanner.skip_spaces()
    while not scanner.at_end():
        got = scanner.element(first=not steps)
        if isinstance(got, tuple):
            steps.extend(got)
        else:
            steps.append(got)
        scanner.skip_spaces()
    return Path(text, legacy, tuple(steps))


# --- evaluation ------------------------------------------------------------


def locate(doc: Any, path: Path) -> list[tuple[Location, Any]]:
    """Every match of ``path`` in ``doc`` as (location, value), in document order."""
    out: list[tuple[Location, Any]] = []
    _walk(path.steps, 0, doc, (), out)
    return out


def query(doc: Any, path: Path) -> list[Any]:
    """The values ``path`` matches in ``doc``, in document order."""
    return [value for _, value in locate(doc, path)]


def _children(node: Any) -> Iterator[tuple[str | int, Any]]:
    if type(node) is dict:
        return iter(node.items())
    if type(node) is list:
        return enumerate(node)
    return iter(())


def _walk(steps: tuple[Step, ...], i: int, node: Any, loc: Location, out: list[tuple[Location, Any]]) -> None:
    if i == len(steps):
        out.append((loc, node))
        return
    step = steps[i]
    kind = type(step)
    if kind is Names:
        if type(node) is dict:
            for name in step.names:  # type: ignore[union-attr]
                if name in node:
                    _walk(steps, i + 1, node[name], loc + (name,), out)
    elif kind is Indexes:
        if type(node) is list:
            n = len(node)
            for index in step.indexes:  # type: ignore[union-attr]
                at = index + n if index < 0 else index
                if 0 <= at < n:
                    _walk(steps, i + 1, node[at], loc + (at,), out)
    elif kind is Wildcard:
        for key, child in _children(node):
            _walk(steps, i + 1, child, loc + (key,), out)
    elif kind is Slice:
        if type(node) is list:
            n = len(node)
            start = 0 if step.start is None else _clamp(step.start, n)  # type: ignore[union-attr]
            end = n if step.end is None else _clamp(step.end, n)  # type: ignore[union-attr]
            for at in range(start, end, step.step):  # type: ignore[union-attr]
                _walk(steps, i + 1, node[at], loc + (at,), out)
    else:  # Descendants: pre-order, as RedisJSON's full scan
        _walk(steps, i + 1, node, loc, out)
        for key, child in _children(node):
            _walk(steps, i, child, loc + (key,), out)


def _clamp(index: int, n: int) -> int:
    return min(index, n) if index >= 0 else max(index + n, 0)


# --- locations -------------------------------------------------------------


def get_at(doc: Any, loc: Location) -> tuple[bool, Any]:
    """(True, value) at ``loc``, or (False, None) where the location no longer exists."""
    node = doc
    for step in loc:
        if type(node) is dict and type(step) is str and step in node:
            node = node[step]
        elif type(node) is list and type(step) is int and 0 <= step < len(node):
            node = node[step]
        else:
            return False, None
    return True, node


def replace_at(doc: Any, loc: Location, value: Any) -> tuple[Any, bool]:
    """Put ``value`` at an existing ``loc``; returns (new root, whether it was there)."""
    if not loc:
        return value, True
    found, parent = get_at(doc, loc[:-1])
    last = loc[-1]
    if found and type(parent) is dict and type(last) is str and last in parent:
        parent[last] = value
        return doc, True
    if found and type(parent) is list and type(last) is int and 0 <= last < len(parent):
        parent[last] = value
        return doc, True
    return doc, False


def delete_at(doc: Any, loc: Location) -> bool:
    """Remove the member or element at a non-root ``loc``; False if it is not there."""
    assert loc, "the root is deleted with its key, not here"
    found, parent = get_at(doc, loc[:-1])
    last = loc[-1]
    if found and type(parent) is dict and type(last) is str and last in parent:
        del parent[last]
        return True
    if found and type(parent) is list and type(last) is int and 0 <= last < len(parent):
        del parent[last]
        return True
    return False


def deletion_order(locs: list[Location]) -> list[Location]:
    """Distinct locations, without those inside another one, each array's highest index first.

    Deleting in this order keeps every remaining location valid (RedisJSON's
    ``prepare_paths_for_deletion``). Reverse tuple order is well defined: the
    first differing step of two locations indexes the same container, so both
    are names or both are indexes.
    """
    unique = set(locs)
    kept = [loc for loc in unique if not any(loc[:k] in unique for k in range(len(loc)))]
    kept.sort(reverse=True)
    return kept


def format_location(loc: Location) -> str:
    """The ``$`` path of a location, in bracket form: ``$["a"][0]``."""
    parts = ["$"]
    for step in loc:
        if type(step) is int:
            parts.append(f"[{step}]")
        else:
            escaped = str(step).replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'["{escaped}"]')
    return "".join(parts)


def type_name(value: Any) -> str:
    """RedisJSON's name for a value's type (``JSON.TYPE``)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind is int:
        return "integer"
    if kind is float:
        return "number"
    if kind is str:
        return "string"
    if kind is list:
        return "array"
    if kind is dict:
        return "object"
    raise AssertionError(f"not a JSON value: {kind.__name__}")
