"""RedisJSON-compatible commands (JSON.SET, JSON.GET and friends), as redis-py's ``r.json()`` uses them.

A document is a file of kind DOC: its value is the msgpack of a JSON value
(DESIGN.md §2). A handler unpacks the document, resolves the path with
``vfsd.jsonpath``, changes the Python value in place and packs it back with
``ctx.write(..., old=entry, keep_ttl=True)`` (RedisJSON keeps a key's TTL when
a document changes). A key holding raw bytes answers WRONGTYPE.

Replies follow RedisJSON 2.x (RESP2). The rule that shapes most of them: a
``$`` path answers every match (an array; no match is an empty array, or null
per non-matching value), a legacy path (``.a``, ``a.b``) answers its first
match and a missing match is ``ERR Path '...' does not exist``. Where RedisJSON
is quirky we follow it and say so; where it swallows an error (an invalid path
in JSON.GET with several paths or JSON.MGET) we answer the error.

Every write emits a keyspace event of class ``d`` (module key events) named
after the command, as RedisJSON does.
"""

from __future__ import annotations

import math
from typing import Any

from vfsd.codec import DOC, JSONError, dumps_json, loads_json, pack, unpack
from vfsd.commands.context import Ctx
from vfsd.commands.errors import INT64_MIN, SYNTAX, WRONGTYPE, wrong_arity
from vfsd.commands.table import command
from vfsd.jsonpath import (
    JSONPathError,
    Location,
    Names,
    Path,
    delete_at,
    deletion_order,
    get_at,
    locate,
    parse,
    query,
    replace_at,
    type_name,
)
from vfsd.resp.types import OK, ErrorReply
from vfsd.store.keyspace import KIND, VALUE, Entry

UINT64_MAX = (1 << 64) - 1

#: RedisJSON refuses documents nested deeper than this.
MAX_DEPTH = 128

_ROOT_LEGACY = parse(".")
_ROOT = parse("$")

NO_KEY = ErrorReply("ERR could not perform this operation on a key that doesn't exist")
NEW_AT_ROOT = ErrorReply("ERR new objects must be created at the root")


# --- shared helpers ----------------------------------------------------------


def path_arg(arg: bytes) -> Path:
    try:
        return parse(arg.decode())
    except UnicodeDecodeError:
        raise ErrorReply(f"ERR invalid JSONPath {arg!r}: not UTF-8") from None
    except JSONPathError as exc:
        raise ErrorReply(str(exc)) from None


def json_arg(arg: bytes) -> Any:
    """A JSON value from an argument, in the range a document can hold.

    Like serde_json, an integer beyond 64 bits becomes a float; NaN, Infinity
    and numbers too large for a float are refused.
    """
    try:
        value = loads_json(arg)
    except JSONError as exc:
        raise ErrorReply(str(exc)) from None
    except RecursionError:
        raise ErrorReply(f"ERR invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    return _checked(value, 0)


def _checked(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise ErrorReply(f"ERR invalid JSON: nested deeper than {MAX_DEPTH} levels")
        for key, child in value.items():
            if type(child) in (dict, list, int, float):
                value[key] = _checked(child, depth + 1)
    elif kind is list:
        if depth >= MAX_DEPTH:
            raise ErrorReply(f"ERR invalid JSON: nested deeper than {MAX_DEPTH} levels")
        for i, child in enumerate(value):
            if type(child) in (dict, list, int, float):
                value[i] = _checked(child, depth + 1)
    elif kind is int:
        if not INT64_MIN <= value <= UINT64_MAX:
            try:
                return float(value)
            except OverflowError:
                raise ErrorReply("ERR invalid JSON: number out of range") from None
    elif kind is float and not math.isfinite(value):
        raise ErrorReply("ERR invalid JSON: numbers must be finite")
    return value


def _clone(value: Any) -> Any:
    """A deep copy of a JSON value (one per location when a value lands in several)."""
    kind = type(value)
    if kind is dict:
        return {k: _clone(v) for k, v in value.items()}
    if kind is list:
        return [_clone(v) for v in value]
    return value


def load_doc(ctx: Ctx, key: bytes) -> tuple[Entry | None, Any]:
    """(entry, document) at ``key``; (None, None) if absent; WRONGTYPE for raw bytes."""
    entry = ctx.lookup(key)
    if entry is None:
        return None, None
    if entry[KIND] != DOC:
        raise WRONGTYPE
    return entry, unpack(entry[VALUE])


def store_doc(ctx: Ctx, key: bytes, doc: Any, old: Entry | None, event: str) -> Entry:
    entry = ctx.write(key, pack(doc), DOC, old=old, keep_ttl=old is not None)
    ctx.notify("d", event, key, entry)
    return entry


def path_missing(text: str) -> ErrorReply:
    return ErrorReply(f"ERR Path '{text}' does not exist")


def path_missing_or(text: str, reason: str) -> ErrorReply:
    return ErrorReply(f"ERR Path '{text}' does not exist or {reason}")


def expected(kind: str, value: Any) -> ErrorReply:
    return ErrorReply(f"WRONGTYPE wrong type of path value - expected {kind} but found {type_name(value)}")


# --- formatting (JSON.GET INDENT/NEWLINE/SPACE) ------------------------------


class Layout:
    """RedisJSON's formatter: ``newline`` then ``indent`` x depth before each member and
    before the closing bracket of a non-empty container; ``space`` after each ``:``."""

    __slots__ = ("indent", "newline", "space")

    def __init__(self, indent: str = "", newline: str = "", space: str = "") -> None:
        self.indent = indent
        self.newline = newline
        self.space = space

    def dumps(self, value: Any) -> bytes:
        if not (self.indent or self.newline or self.space):
            return dumps_json(value)
        out: list[str] = []
        self._write(value, 0, out)
        return "".join(out).encode("utf-8", "surrogateescape")

    def _write(self, value: Any, level: int, out: list[str]) -> None:
        kind = type(value)
        if kind is dict or kind is list:
            if not value:
                out.append("{}" if kind is dict else "[]")
                return
            opener, closer = ("{", "}") if kind is dict else ("[", "]")
            inner = self.newline + self.indent * (level + 1)
            out.append(opener)
            first = True
            items = value.items() if kind is dict else ((None, v) for v in value)
            for key, child in items:
                out.append(inner if first else "," + inner)
                first = False
                if key is not None:
                    out.append(dumps_json(key).decode())
                    out.append(":" + self.space)
                self._write(child, level + 1, out)
            out.append(self.newline + self.indent * level + closer)
        else:
            out.append(dumps_json(value).decode())


_COMPACT = Layout()


# --- JSON.SET / JSON.GET / JSON.DEL -----------------------------------------


@command("json.set", arity=-4, flags="write denyoom", keys=(1, 1, 1), acl="@json", group="json",
         summary="Sets or updates the JSON value at a path.", since="1.0.0",
         complexity="O(M+N) where M is the size of the original value and N the size of the new one",
         arguments="key path value [NX|XX]")
def json_set(ctx: Ctx, argv: list[bytes]) -> Any:
    key = argv[1]
    condition = b""
    for arg in argv[4:]:
        upper = arg.upper()
        if upper not in (b"NX", b"XX") or condition:
            raise SYNTAX
        condition = upper
    # The arguments first: their errors need no state, so a desired-plane proposal is refused
    # before it reaches the log (see context.probe).
    value = json_arg(argv[3])
    path = path_arg(argv[2])
    entry, doc = load_doc(ctx, key)

    if entry is None:
        if condition == b"XX":
            return None
        if not path.is_root:
            raise NEW_AT_ROOT
        store_doc(ctx, key, value, None, "json.set")
        return OK
    if path.is_root:
        if condition == b"NX":
            return None
        store_doc(ctx, key, value, entry, "json.set")
        return OK

    matches = locate(doc, path) if condition != b"NX" else []
    if matches:
        many = len(matches) > 1
        for loc, _ in matches:
            doc, _ = replace_at(doc, loc, _clone(value) if many else value)
        store_doc(ctx, key, doc, entry, "json.set")
        return OK
    if condition == b"XX":
        return None
    if not _add_member(doc, path, value):
        return None
    store_doc(ctx, key, doc, entry, "json.set")
    return OK


def _add_member(doc: Any, path: Path, value: Any) -> bool:
    """Create the member a static path names, in each parent object that lacks it (RedisJSON's
    ``find_add_paths``); False if there is nothing to create."""
    if not path.is_static:
        raise ErrorReply("ERR wrong static path")
    last = path.steps[-1]
    if not isinstance(last, Names):  # an array index: only existing elements can be set
        if query(doc, path):
            return False  # NX on an element that exists
        raise ErrorReply("ERR array index out of range")
    name = last.names[0]
    parents = [parent for _, parent in locate(doc, path.parent())]
    added = False
    for parent in parents:
        if type(parent) is dict and name not in parent:
            parent[name] = _clone(value) if added else value
            added = True
    return added


def _get_options(argv: list[bytes]) -> tuple[Layout, list[Path]]:
    indent = newline = space = ""
    paths: list[Path] = []
    i = 2
    while i < len(argv):
        arg = argv[i]
        upper = arg.upper() if len(arg) <= 8 else b""  # longer than any option: a path
        if upper in (b"INDENT", b"NEWLINE", b"SPACE"):
            if i + 1 >= len(argv):
                raise wrong_arity("json.get")
            text = argv[i + 1].decode("utf-8", "surrogateescape")
            if upper == b"INDENT":
                indent = text
            elif upper == b"NEWLINE":
                newline = text
            else:
                space = text
            i += 2
            continue
        if upper != b"NOESCAPE":  # accepted and ignored, as RedisJSON does
            paths.append(path_arg(arg))
        i += 1
    layout = Layout(indent, newline, space) if indent or newline or space else _COMPACT
    return layout, paths


@command("json.get", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@json", group="json",
         summary="Gets the value at one or more paths in JSON serialized form.", since="1.0.0",
         complexity="O(N) where N is the size of the value",
         arguments="key [INDENT indent] [NEWLINE newline] [SPACE space] [path [path ...]]")
def json_get(ctx: Ctx, argv: list[bytes]) -> bytes | None:
    layout, paths = _get_options(argv)
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        return None
    if not paths:
        return layout.dumps(doc)
    # One $ path among several makes every path answer all its matches.
    legacy = all(p.legacy for p in paths)
    if len(paths) == 1:
        path = paths[0]
        found = query(doc, path)
        if not legacy:
            return layout.dumps(found)
        if not found:
            raise path_missing(path.normalized)
        return layout.dumps(found[0])
    out: dict[str, Any] = {}
    for path in paths:
        found = query(doc, path)
        if legacy:
            if not found:
                raise path_missing(path.text)
            out[path.text] = found[0]
        else:
            out[path.text] = found
    return layout.dumps(out)


def _json_del(ctx: Ctx, argv: list[bytes]) -> int:
    if len(argv) > 3:
        raise wrong_arity(argv[0].decode(errors="replace").lower())
    key = argv[1]
    path = path_arg(argv[2]) if len(argv) == 3 else _ROOT_LEGACY
    entry, doc = load_doc(ctx, key)
    if entry is None:
        return 0
    if path.is_root:
        ctx.notify("d", "json.del", key, ctx.remove(key))
        return 1
    deleted = 0
    for loc in deletion_order([loc for loc, _ in locate(doc, path)]):
        deleted += delete_at(doc, loc)
    if deleted:
        store_doc(ctx, key, doc, entry, "json.del")
    return deleted


command("json.del", arity=-2, flags="write", keys=(1, 1, 1), acl="@json", group="json",
        summary="Deletes a value.", since="1.0.0", complexity="O(N) where N is the size of the deleted value",
        arguments="key [path]")(_json_del)
command("json.forget", arity=-2, flags="write", keys=(1, 1, 1), acl="@json", group="json",
        summary="Deletes a value (an alias of JSON.DEL).", since="1.0.0",
        complexity="O(N) where N is the size of the deleted value", arguments="key [path]")(_json_del)


# --- read-only inspection ----------------------------------------------------


def _optional_path(argv: list[bytes], default: Path = _ROOT_LEGACY) -> Path:
    if len(argv) > 3:
        raise wrong_arity(argv[0].decode(errors="replace").lower())
    return path_arg(argv[2]) if len(argv) == 3 else default


@command("json.type", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@json", group="json",
         summary="Returns the type of the JSON value at a path.", since="1.0.0", arguments="key [path]")
def json_type(ctx: Ctx, argv: list[bytes]) -> Any:
    path = _optional_path(argv)
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        return None
    found = query(doc, path)
    if path.legacy:
        return type_name(found[0]).encode() if found else None
    return [type_name(value).encode() for value in found]


@command("json.mget", arity=-3, flags="readonly", keys=(1, -2, 1), acl="@json", group="json",
         summary="Returns the values at a path from one or more keys.", since="1.0.0",
         complexity="O(M*N) where M is the number of keys and N the size of the value",
         arguments="key [key ...] path")
def json_mget(ctx: Ctx, argv: list[bytes]) -> list[bytes | None]:
    path = path_arg(argv[-1])
    out: list[bytes | None] = []
    for key in argv[1:-1]:
        entry = ctx.lookup(key)
        if entry is None or entry[KIND] != DOC:  # RedisJSON answers null for a key of another type
            out.append(None)
            continue
        found = query(unpack(entry[VALUE]), path)
        if path.legacy:
            out.append(dumps_json(found[0]) if found else None)
        else:
            out.append(dumps_json(found))
    return out


@command("json.strlen", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@json", group="json",
         summary="Returns the length (in UTF-8 bytes) of the JSON string at a path.", since="1.0.0",
         arguments="key [path]")
def json_strlen(ctx: Ctx, argv: list[bytes]) -> Any:
    path = _optional_path(argv)
    entry, doc = load_doc(ctx, argv[1])
    if path.legacy:
        if entry is None:
            return None
        found = query(doc, path)
        if not found:
            raise path_missing(path.normalized)
        if type(found[0]) is not str:
            raise expected("string", found[0])
        return len(found[0].encode())
    if entry is None:
        raise NO_KEY
    return [len(v.encode()) if type(v) is str else None for v in query(doc, path)]


@command("json.arrlen", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@json", group="json",
         summary="Returns the length of the array at a path.", since="1.0.0", arguments="key [path]")
def json_arrlen(ctx: Ctx, argv: list[bytes]) -> Any:
    path = _optional_path(argv)
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        if path.legacy:
            return None
        raise NO_KEY
    found = query(doc, path)
    if not path.legacy:
        return [len(v) if type(v) is list else None for v in found]
    if not found:
        raise path_missing(path.text)
    if type(found[0]) is not list:
        raise path_missing_or(path.text, "not an array")
    return len(found[0])


@command("json.objkeys", arity=-2, flags="readonly", keys=(1, 1, 1), acl="@json", group="json",
         summary="Returns the member names of the object at a path.", since="1.0.0", arguments="key [path]")
def json_objkeys(ctx: Ctx, argv: list[bytes]) -> Any:
    path = _optional_path(argv)
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        if path.legacy:
            return None
        raise NO_KEY
    found = query(doc, path)
    if not path.legacy:
        return [[k.encode() for k in v] if type(v) is dict else None for v in found]
    if not found:
        return None
    if type(found[0]) is not dict:
        raise path_missing_or(path.normalized, "not an object")
    return [k.encode() for k in found[0]]


# --- in-place changes ----------------------------------------------------------


def _matching(doc: Any, path: Path, accept: type | tuple[type, ...]) -> list[tuple[Location, Any] | None]:
    """Each match of ``path``: (location, value) where the value's type is accepted, else None."""
    kinds = accept if isinstance(accept, tuple) else (accept,)
    return [(loc, value) if type(value) in kinds else None for loc, value in locate(doc, path)]


@command("json.arrappend", arity=-4, flags="write denyoom", keys=(1, 1, 1), acl="@json", group="json",
         summary="Appends JSON values to the array at a path.", since="1.0.0", arguments="key path value [value ...]")
def json_arrappend(ctx: Ctx, argv: list[bytes]) -> Any:
    path = path_arg(argv[2])
    values = [json_arg(arg) for arg in argv[3:]]
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        raise NO_KEY
    targets = _matching(doc, path, list)
    lengths: list[int | None] = []
    for target in targets:
        if target is None:
            lengths.append(None)
            continue
        array = target[1]
        array.extend(_clone(values) if len(targets) > 1 else values)
        lengths.append(len(array))
    changed = [n for n in lengths if n is not None]
    if path.legacy and not changed:
        raise path_missing_or(path.text, "not an array")
    if changed:
        store_doc(ctx, argv[1], doc, entry, "json.arrappend")
    return changed[-1] if path.legacy else lengths


def _add_numbers(current: int | float, increment: int | float) -> int | float:
    if type(current) is int and type(increment) is int:
        total = current + increment
        if INT64_MIN <= total <= UINT64_MAX:
            return total
    total_float = float(current) + float(increment)
    if not math.isfinite(total_float):
        raise ErrorReply("ERR result is not a number")
    return total_float


@command("json.numincrby", arity=4, flags="write denyoom", keys=(1, 1, 1), acl="@json", group="json",
         summary="Increments the number at a path.", since="1.0.0", arguments="key path value")
def json_numincrby(ctx: Ctx, argv: list[bytes]) -> bytes:
    path = path_arg(argv[2])
    try:
        increment = loads_json(argv[3])
    except JSONError:
        raise ErrorReply("ERR bad input number") from None
    if type(increment) not in (int, float) or not math.isfinite(increment):
        raise ErrorReply("ERR bad input number")
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        raise NO_KEY
    results: list[int | float | None] = []
    for target in _matching(doc, path, (int, float)):
        if target is None:
            results.append(None)
            continue
        loc, current = target
        total = _add_numbers(current, increment)
        doc, _ = replace_at(doc, loc, total)
        results.append(total)
    changed = [n for n in results if n is not None]
    if path.legacy and not changed:
        raise path_missing_or(path.normalized, "does not contains a number")
    if changed:
        store_doc(ctx, argv[1], doc, entry, "json.numincrby")
    return dumps_json(changed[-1] if path.legacy else results)


@command("json.toggle", arity=3, flags="write denyoom", keys=(1, 1, 1), acl="@json", group="json",
         summary="Toggles the boolean at a path.", since="2.0.0", arguments="key path")
def json_toggle(ctx: Ctx, argv: list[bytes]) -> Any:
    path = path_arg(argv[2])
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        raise NO_KEY
    results: list[int | None] = []
    for target in _matching(doc, path, bool):
        if target is None:
            results.append(None)
            continue
        loc, current = target
        doc, _ = replace_at(doc, loc, not current)
        results.append(0 if current else 1)
    changed = [n for n in results if n is not None]
    if path.legacy and not changed:
        raise path_missing_or(path.normalized, "not a bool")
    if changed:
        store_doc(ctx, argv[1], doc, entry, "json.toggle")
    if path.legacy:
        return b"true" if changed[-1] else b"false"
    return results


def _clearable(value: Any) -> bool:
    kind = type(value)
    if kind is dict or kind is list:
        return bool(value)
    if kind is int or kind is float:
        return value != 0
    return False


@command("json.clear", arity=-2, flags="write", keys=(1, 1, 1), acl="@json", group="json",
         summary="Empties arrays and objects and sets numbers to 0 at a path.", since="2.0.0",
         arguments="key [path]")
def json_clear(ctx: Ctx, argv: list[bytes]) -> int:
    path = _optional_path(argv, _ROOT)
    entry, doc = load_doc(ctx, argv[1])
    if entry is None:
        raise NO_KEY
    cleared = 0
    # In document order: a container cleared first makes its descendants' locations vanish.
    for loc, value in locate(doc, path):
        if not _clearable(value):
            continue
        if not get_at(doc, loc)[0]:
            continue
        empty: Any = {} if type(value) is dict else [] if type(value) is list else 0
        doc, _ = replace_at(doc, loc, empty)
        cleared += 1
    if cleared:
        store_doc(ctx, argv[1], doc, entry, "json.clear")
    return cleared
