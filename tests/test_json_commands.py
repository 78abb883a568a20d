"""RedisJSON-compatible commands (vfsd.commands.json), called through the command table.

Replies and error texts are those RedisJSON 2.x gives in RESP2, which redis-py's
``r.json()`` parses: a ``$`` path answers every match, a legacy path its first.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vfsd.commands.json  # noqa: F401  (registers the commands)
from vfsd import codec
from vfsd.commands.context import Ctx
from vfsd.commands.table import TABLE
from vfsd.jsonpath import format_location
from vfsd.resp.types import OK, ErrorReply
from vfsd.store.keyspace import CTIME, KIND, VALUE, Entry, Keyspace


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes, Entry | None]] = []

    def __call__(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
        self.events.append((flag, event, key, entry))

    def names(self) -> list[tuple[str, str, bytes]]:
        return [(flag, event, key) for flag, event, key, _ in self.events]


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


@pytest.fixture
def ctx(sink: Recorder) -> Ctx:
    return Ctx(Keyspace(), "local", "n1", itertools.count(1).__next__, sink)


def arg(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def call(ctx: Ctx, *argv: Any) -> Any:
    args = [arg(a) for a in argv]
    return TABLE[args[0].decode().lower()].handler(ctx, args)


def error(ctx: Ctx, *argv: Any) -> str:
    with pytest.raises(ErrorReply) as info:
        call(ctx, *argv)
    return info.value.message


def doc(ctx: Ctx, key: str = "k") -> Any:
    entry = ctx.db.get(key.encode())
    assert entry is not None and entry[KIND] == codec.DOC
    return codec.unpack(entry[VALUE])


def put(ctx: Ctx, value: Any, key: str = "k") -> None:
    assert call(ctx, "JSON.SET", key, "$", json.dumps(value)) == OK


SAMPLE = {"a": 1, "s": "héllo", "f": 1.5, "t": True, "n": None, "arr": [1, 2, {"x": 3}], "obj": {"x": 1, "y": [1]}}


# --- the table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arity", "flag"),
    [("json.set", -4, "write"), ("json.get", -2, "readonly"), ("json.del", -2, "write"),
     ("json.forget", -2, "write"), ("json.type", -2, "readonly"), ("json.mget", -3, "readonly"),
     ("json.strlen", -2, "readonly"), ("json.arrappend", -4, "write"), ("json.arrlen", -2, "readonly"),
     ("json.objkeys", -2, "readonly"), ("json.numincrby", 4, "write"), ("json.clear", -2, "write"),
     ("json.toggle", 3, "write")],
)
def test_registered_in_the_table(name: str, arity: int, flag: str) -> None:
    spec = TABLE[name]
    assert spec.arity == arity
    assert flag in spec.flags
    assert spec.group == "json"
    assert "@json" in spec.acl
    assert spec.keys([name.encode(), b"k", b"$", b"1"][: max(abs(arity), 3)]) == [b"k"]


def test_the_commands_import_no_io() -> None:
    source = open(vfsd.commands.json.__file__, encoding="utf-8").read()
    for module in ("asyncio", "socket", "time"):
        assert f"import {module}" not in source


def test_mget_keys_are_all_but_the_path() -> None:
    assert TABLE["json.mget"].keys([b"JSON.MGET", b"a", b"b", b"c", b"$"]) == [b"a", b"b", b"c"]


# --- JSON.SET ----------------------------------------------------------------------


def test_set_new_key_at_root_stores_a_msgpack_document(ctx: Ctx, sink: Recorder) -> None:
    assert call(ctx, "JSON.SET", "k", "$", '{"a": 1, "b": [true, null]}') == OK
    entry = ctx.db.get(b"k")
    assert entry is not None and entry[KIND] == codec.DOC
    assert entry[VALUE] == codec.pack({"a": 1, "b": [True, None]})
    assert sink.names() == [("d", "json.set", b"k")]
    assert sink.events[0][3] is entry
    assert call(ctx, "JSON.SET", "k2", ".", "7") == OK  # the legacy root
    assert doc(ctx, "k2") == 7


def test_set_new_key_elsewhere_than_root_is_refused(ctx: Ctx) -> None:
    assert error(ctx, "JSON.SET", "k", "$.a", "1") == "ERR new objects must be created at the root"
    assert error(ctx, "JSON.SET", "k", ".a", "1") == "ERR new objects must be created at the root"
    assert ctx.db.get(b"k") is None


def test_set_nx_xx_on_a_new_key(ctx: Ctx, sink: Recorder) -> None:
    assert call(ctx, "JSON.SET", "k", "$", "1", "XX") is None
    assert ctx.db.get(b"k") is None
    assert sink.events == []
    assert call(ctx, "JSON.SET", "k", "$", "1", "nx") == OK
    assert doc(ctx) == 1


def test_set_nx_xx_at_root_of_an_existing_key(ctx: Ctx) -> None:
    put(ctx, {"a": 1})
    assert call(ctx, "JSON.SET", "k", "$", "2", "NX") is None
    assert call(ctx, "JSON.SET", "k", "$", "2", "XX") == OK
    assert doc(ctx) == 2


def test_set_replaces_and_creates_members(ctx: Ctx) -> None:
    put(ctx, {"a": 1, "o": {}})
    assert call(ctx, "JSON.SET", "k", "$.a", '"x"') == OK
    assert call(ctx, "JSON.SET", "k", "$.b", "[1]") == OK  # parent exists: created
    assert call(ctx, "JSON.SET", "k", ".o.c", "{}") == OK  # legacy path
    assert call(ctx, "JSON.SET", "k", '$["with space"]', "true") == OK
    assert doc(ctx) == {"a": "x", "o": {"c": {}}, "b": [1], "with space": True}


def test_set_with_a_missing_parent_answers_null(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"a": 1})
    sink.events.clear()
    assert call(ctx, "JSON.SET", "k", "$.x.y", "1") is None
    assert call(ctx, "JSON.SET", "k", ".x.y", "1") is None
    assert call(ctx, "JSON.SET", "k", "$.a.y", "1") is None  # the parent is not an object
    assert doc(ctx) == {"a": 1}
    assert sink.events == []


def test_set_nx_xx_on_members(ctx: Ctx) -> None:
    put(ctx, {"a": 1})
    assert call(ctx, "JSON.SET", "k", "$.a", "2", "NX") is None
    assert call(ctx, "JSON.SET", "k", "$.b", "2", "XX") is None
    assert call(ctx, "JSON.SET", "k", "$.a", "3", "XX") == OK
    assert call(ctx, "JSON.SET", "k", "$.b", "4", "NX") == OK
    assert doc(ctx) == {"a": 3, "b": 4}


def test_set_every_match(ctx: Ctx) -> None:
    put(ctx, {"l": [{"x": 1}, {"x": 2}, {"y": 3}]})
    assert call(ctx, "JSON.SET", "k", "$.l[*].x", "[0]") == OK
    assert doc(ctx) == {"l": [{"x": [0]}, {"x": [0]}, {"y": 3}]}


def test_set_a_value_at_nested_matches_copies_it(ctx: Ctx) -> None:
    put(ctx, {"a": {"a": 1}})
    assert call(ctx, "JSON.SET", "k", "$..a", '{"a": 0}') == OK  # RedisJSON: outer first, then inside it
    assert call(ctx, "JSON.GET", "k") == b'{"a":{"a":{"a":0}}}'


def test_set_array_elements(ctx: Ctx) -> None:
    put(ctx, {"arr": [1, 2]})
    assert call(ctx, "JSON.SET", "k", "$.arr[-1]", "9") == OK
    assert call(ctx, "JSON.SET", "k", "$.arr[0]", "0", "NX") is None
    assert error(ctx, "JSON.SET", "k", "$.arr[5]", "1") == "ERR array index out of range"
    assert doc(ctx) == {"arr": [1, 9]}


def test_set_cannot_create_through_a_wildcard(ctx: Ctx) -> None:
    put(ctx, {"a": {}})
    assert error(ctx, "JSON.SET", "k", "$.*.b", "1") == "ERR wrong static path"


@pytest.mark.parametrize("text", ["{", "nope", "[1,]", "NaN", "1e400", "[" * 200 + "]" * 200, b"\xff"])
def test_set_rejects_invalid_json(ctx: Ctx, text: Any) -> None:
    assert error(ctx, "JSON.SET", "k", "$", text).startswith("ERR invalid JSON")
    assert ctx.db.get(b"k") is None


def test_set_rejects_a_bad_path(ctx: Ctx) -> None:
    put(ctx, {})
    message = error(ctx, "JSON.SET", "k", "$.a[", "1")
    assert message.startswith("ERR invalid JSONPath '$.a['")


@pytest.mark.parametrize("extra", [["NX", "XX"], ["NX", "NX"], ["FOO"]])
def test_set_syntax_errors(ctx: Ctx, extra: list[str]) -> None:
    assert error(ctx, "JSON.SET", "k", "$", "1", *extra) == "ERR syntax error"


def test_set_on_a_raw_key_is_wrongtype(ctx: Ctx) -> None:
    ctx.write(b"r", b"x")
    assert error(ctx, "JSON.SET", "r", "$", "1").startswith("WRONGTYPE ")
    assert ctx.db.get(b"r")[VALUE] == b"x"  # type: ignore[index]


def test_set_keeps_the_ttl_and_creation_time(ctx: Ctx) -> None:
    put(ctx, {"a": 1})
    created = ctx.db.get(b"k")[CTIME]  # type: ignore[index]
    ctx.db.set_expire(b"k", 10_000)
    ctx.now_ms = 5
    assert call(ctx, "JSON.SET", "k", "$.a", "2") == OK
    assert call(ctx, "JSON.SET", "k", "$", "3") == OK
    assert ctx.db.expire_at(b"k") == 10_000
    assert ctx.db.get(b"k")[CTIME] == created  # type: ignore[index]


def test_numbers_keep_their_json_type(ctx: Ctx) -> None:
    assert call(ctx, "JSON.SET", "k", "$", "[1, 1.0, -0.5, 9223372036854775807, 18446744073709551616]") == OK
    stored = doc(ctx)
    assert [type(v) for v in stored] == [int, float, float, int, float]
    assert call(ctx, "JSON.GET", "k") == b"[1,1.0,-0.5,9223372036854775807,1.8446744073709552e+19]"
    assert call(ctx, "JSON.TYPE", "k", "$[*]") == [b"integer", b"number", b"number", b"integer", b"number"]


# --- JSON.GET ----------------------------------------------------------------------


def test_get_missing_key_is_null(ctx: Ctx) -> None:
    assert call(ctx, "JSON.GET", "nokey") is None
    assert call(ctx, "JSON.GET", "nokey", "$.a") is None


def test_get_without_path_is_the_compact_document(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert call(ctx, "JSON.GET", "k") == json.dumps(SAMPLE, separators=(",", ":"), ensure_ascii=False).encode()


def test_get_one_legacy_path_answers_the_value(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert call(ctx, "JSON.GET", "k", ".") == call(ctx, "JSON.GET", "k")
    assert call(ctx, "JSON.GET", "k", ".a") == b"1"
    assert call(ctx, "JSON.GET", "k", "arr[2].x") == b"3"
    assert call(ctx, "JSON.GET", "k", ".s") == '"héllo"'.encode()
    assert call(ctx, "JSON.GET", "k", ".arr[*]") == b"1"  # the first match
    assert error(ctx, "JSON.GET", "k", ".nope") == "ERR Path '$.nope' does not exist"
    assert error(ctx, "JSON.GET", "k", "nope") == "ERR Path '$.nope' does not exist"


def test_get_one_dollar_path_answers_every_match(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert call(ctx, "JSON.GET", "k", "$") == b"[" + call(ctx, "JSON.GET", "k") + b"]"
    assert call(ctx, "JSON.GET", "k", "$.a") == b"[1]"
    assert call(ctx, "JSON.GET", "k", "$..x") == b"[3,1]"
    assert call(ctx, "JSON.GET", "k", "$.nope") == b"[]"
    assert call(ctx, "JSON.GET", "k", "$.f") == b"[1.5]"


def test_get_several_legacy_paths_answers_an_object(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert json.loads(call(ctx, "JSON.GET", "k", ".a", "t", ".arr[0]")) == {".a": 1, "t": True, ".arr[0]": 1}
    assert error(ctx, "JSON.GET", "k", ".a", ".nope") == "ERR Path '.nope' does not exist"


def test_get_several_paths_with_a_dollar_one_answers_all_matches(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert json.loads(call(ctx, "JSON.GET", "k", ".a", "$..x", "$.nope")) == {
        ".a": [1], "$..x": [3, 1], "$.nope": []}


def test_get_formatting_follows_redisjson(ctx: Ctx) -> None:
    put(ctx, {"a": [1, {}], "b": {}, "c": []})
    expected = '{\n\t"a": [\n\t\t1,\n\t\t{}\n\t],\n\t"b": {},\n\t"c": []\n}'
    assert call(ctx, "JSON.GET", "k", "INDENT", "\t", "NEWLINE", "\n", "SPACE", " ") == expected.encode()
    assert call(ctx, "JSON.GET", "k", "indent", "_", ".a") == b"[_1,_{}]"  # indent without newline
    assert call(ctx, "JSON.GET", "k", "SPACE", " ", "NOESCAPE", "$.b") == b"[{}]"
    assert call(ctx, "JSON.GET", "k", "NEWLINE", "\n", "$.a[0]") == b"[\n1\n]"


def test_get_option_without_value(ctx: Ctx) -> None:
    put(ctx, {})
    assert error(ctx, "JSON.GET", "k", "INDENT") == "ERR wrong number of arguments for 'json.get' command"


def test_get_errors(ctx: Ctx) -> None:
    ctx.write(b"r", b"x")
    assert error(ctx, "JSON.GET", "r").startswith("WRONGTYPE ")
    put(ctx, {})
    assert error(ctx, "JSON.GET", "k", "$[?(@.a)]").startswith("ERR invalid JSONPath '$[?(@.a)]'")
    assert error(ctx, "JSON.GET", "k", ".a", "$[").startswith("ERR invalid JSONPath '$['")


# --- JSON.DEL / JSON.FORGET ----------------------------------------------------------------


def test_del_missing_key(ctx: Ctx) -> None:
    assert call(ctx, "JSON.DEL", "nokey") == 0
    assert call(ctx, "JSON.DEL", "nokey", "$.a") == 0


@pytest.mark.parametrize("path", [[], ["$"], ["."]])
def test_del_root_deletes_the_key(ctx: Ctx, sink: Recorder, path: list[str]) -> None:
    put(ctx, {"a": 1})
    sink.events.clear()
    assert call(ctx, "JSON.DEL", "k", *path) == 1
    assert ctx.db.get(b"k") is None
    ((flag, event, key, tombstone),) = sink.events
    assert (flag, event, key) == ("d", "json.del", b"k")
    assert tombstone[0] is None and tombstone[2] > 1  # no value, and a revision of its own


def test_del_paths_counts_what_it_removed(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"a": [1, 2, 3, 4], "b": {"x": 1, "y": 2}, "c": {"x": {"x": 0}}})
    sink.events.clear()
    assert call(ctx, "JSON.DEL", "k", "$.a[0,2,-1]") == 3
    assert call(ctx, "JSON.DEL", "k", ".b.x") == 1
    assert call(ctx, "JSON.DEL", "k", "$..x") == 1  # c.x; the x inside it goes with it
    assert doc(ctx) == {"a": [2], "b": {"y": 2}, "c": {}}
    assert sink.names() == [("d", "json.del", b"k")] * 3


def test_del_nothing_matched(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"a": 1})
    sink.events.clear()
    assert call(ctx, "JSON.DEL", "k", "$.nope") == 0
    assert call(ctx, "JSON.DEL", "k", ".nope") == 0
    assert sink.events == []


def test_forget_is_del(ctx: Ctx) -> None:
    put(ctx, {"a": 1, "b": 2})
    assert call(ctx, "JSON.FORGET", "k", "$.a") == 1
    assert doc(ctx) == {"b": 2}


def test_del_keeps_the_ttl(ctx: Ctx) -> None:
    put(ctx, {"a": 1, "b": 2})
    ctx.db.set_expire(b"k", 500)
    assert call(ctx, "JSON.DEL", "k", "$.a") == 1
    assert ctx.db.expire_at(b"k") == 500


def test_del_errors(ctx: Ctx) -> None:
    ctx.write(b"r", b"x")
    assert error(ctx, "JSON.DEL", "r").startswith("WRONGTYPE ")
    put(ctx, {})
    assert error(ctx, "JSON.DEL", "k", "$.a", "extra") == "ERR wrong number of arguments for 'json.del' command"


# --- JSON.TYPE / JSON.MGET ---------------------------------------------------------------


def test_type(ctx: Ctx) -> None:
    put(ctx, SAMPLE)
    assert call(ctx, "JSON.TYPE", "k") == b"object"
    assert call(ctx, "JSON.TYPE", "k", ".s") == b"string"
    assert call(ctx, "JSON.TYPE", "k", ".nope") is None
    assert call(ctx, "JSON.TYPE", "k", "$.*") == [
        b"integer", b"string", b"number", b"boolean", b"null", b"array", b"object"]
    assert call(ctx, "JSON.TYPE", "k", "$.nope") == []
    assert call(ctx, "JSON.TYPE", "nokey") is None
    assert call(ctx, "JSON.TYPE", "nokey", "$") is None
    ctx.write(b"r", b"x")
    assert error(ctx, "JSON.TYPE", "r").startswith("WRONGTYPE ")


def test_mget(ctx: Ctx) -> None:
    put(ctx, {"a": 1}, "k1")
    put(ctx, {"a": [2]}, "k2")
    put(ctx, {"b": 3}, "k3")
    ctx.write(b"r", b"x")
    keys = ["k1", "k2", "k3", "nokey", "r"]
    assert call(ctx, "JSON.MGET", *keys, "$.a") == [b"[1]", b"[[2]]", b"[]", None, None]
    assert call(ctx, "JSON.MGET", *keys, ".a") == [b"1", b"[2]", None, None, None]
    assert call(ctx, "JSON.MGET", "k1", "$") == [b'[{"a":1}]']
    assert error(ctx, "JSON.MGET", "k1", "$[").startswith("ERR invalid JSONPath '$['")


# --- the smaller commands --------------------------------------------------------------------


def test_strlen(ctx: Ctx) -> None:
    put(ctx, {"s": "héllo", "n": 1, "o": {"s": "ab"}})
    assert call(ctx, "JSON.STRLEN", "k", ".s") == 6  # UTF-8 bytes, as RedisJSON counts
    assert call(ctx, "JSON.STRLEN", "k", "$..s") == [6, 2]
    assert call(ctx, "JSON.STRLEN", "k", "$.*") == [6, None, None]
    assert error(ctx, "JSON.STRLEN", "k", ".n") == "WRONGTYPE wrong type of path value - expected string but found integer"
    assert error(ctx, "JSON.STRLEN", "k", ".x") == "ERR Path '$.x' does not exist"
    assert call(ctx, "JSON.STRLEN", "nokey", ".s") is None
    assert error(ctx, "JSON.STRLEN", "nokey", "$.s") == "ERR could not perform this operation on a key that doesn't exist"


def test_arrappend(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"a": [1], "b": {"a": []}, "c": 1})
    sink.events.clear()
    assert call(ctx, "JSON.ARRAPPEND", "k", "$..a", "2", '"x"') == [3, 2]
    assert call(ctx, "JSON.ARRAPPEND", "k", ".a", "null") == 4
    assert call(ctx, "JSON.ARRAPPEND", "k", "$.c", "1") == [None]
    assert doc(ctx) == {"a": [1, 2, "x", None], "b": {"a": [2, "x"]}, "c": 1}
    assert sink.names() == [("d", "json.arrappend", b"k")] * 2
    assert error(ctx, "JSON.ARRAPPEND", "k", ".c", "1") == "ERR Path '.c' does not exist or not an array"
    assert error(ctx, "JSON.ARRAPPEND", "k", "$.a", "[").startswith("ERR invalid JSON")
    assert error(ctx, "JSON.ARRAPPEND", "nokey", "$.a", "1") == (
        "ERR could not perform this operation on a key that doesn't exist")


def test_arrappend_to_several_arrays_copies_the_values(ctx: Ctx) -> None:
    put(ctx, {"a": [], "b": []})
    assert call(ctx, "JSON.ARRAPPEND", "k", "$.*", "{}") == [1, 1]
    assert call(ctx, "JSON.SET", "k", "$.a[0].x", "1") == OK
    assert doc(ctx) == {"a": [{"x": 1}], "b": [{}]}


def test_arrlen(ctx: Ctx) -> None:
    put(ctx, {"a": [1, 2], "b": {"a": []}, "c": 1})
    assert call(ctx, "JSON.ARRLEN", "k", ".a") == 2
    assert call(ctx, "JSON.ARRLEN", "k", "$..a") == [2, 0]
    assert call(ctx, "JSON.ARRLEN", "k", "$.c") == [None]
    assert error(ctx, "JSON.ARRLEN", "k") == "ERR Path '.' does not exist or not an array"  # the root
    assert error(ctx, "JSON.ARRLEN", "k", ".c") == "ERR Path '.c' does not exist or not an array"
    assert error(ctx, "JSON.ARRLEN", "k", ".x") == "ERR Path '.x' does not exist"
    assert call(ctx, "JSON.ARRLEN", "nokey", ".a") is None
    assert error(ctx, "JSON.ARRLEN", "nokey", "$.a") == "ERR could not perform this operation on a key that doesn't exist"
    put(ctx, [1, 2, 3], "list")
    assert call(ctx, "JSON.ARRLEN", "list") == 3


def test_objkeys(ctx: Ctx) -> None:
    put(ctx, {"a": {"x": 1, "y": 2}, "b": 1})
    assert call(ctx, "JSON.OBJKEYS", "k") == [b"a", b"b"]
    assert call(ctx, "JSON.OBJKEYS", "k", ".a") == [b"x", b"y"]
    assert call(ctx, "JSON.OBJKEYS", "k", "$.*") == [[b"x", b"y"], None]
    assert call(ctx, "JSON.OBJKEYS", "k", ".nope") is None
    assert error(ctx, "JSON.OBJKEYS", "k", ".b") == "ERR Path '$.b' does not exist or not an object"
    assert call(ctx, "JSON.OBJKEYS", "nokey") is None


def test_numincrby(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"i": 1, "f": 1.5, "s": "x", "o": {"i": 10}})
    sink.events.clear()
    assert call(ctx, "JSON.NUMINCRBY", "k", ".i", "2") == b"3"
    assert call(ctx, "JSON.NUMINCRBY", "k", "$.f", "1.5") == b"[3.0]"
    assert call(ctx, "JSON.NUMINCRBY", "k", "$..i", "-1") == b"[2,9]"
    assert call(ctx, "JSON.NUMINCRBY", "k", "$.*", "1") == b"[3,4.0,null,null]"
    assert call(ctx, "JSON.NUMINCRBY", "k", ".i", "0.5") == b"3.5"
    assert doc(ctx) == {"i": 3.5, "f": 4.0, "s": "x", "o": {"i": 9}}
    assert sink.names() == [("d", "json.numincrby", b"k")] * 5
    assert error(ctx, "JSON.NUMINCRBY", "k", ".s", "1") == (
        "ERR Path '$.s' does not exist or does not contains a number")
    assert error(ctx, "JSON.NUMINCRBY", "k", ".i", "abc") == "ERR bad input number"
    assert error(ctx, "JSON.NUMINCRBY", "k", ".i", '"1"') == "ERR bad input number"
    assert error(ctx, "JSON.NUMINCRBY", "nokey", ".i", "1") == (
        "ERR could not perform this operation on a key that doesn't exist")


def test_numincrby_past_int64_becomes_a_float(ctx: Ctx) -> None:
    put(ctx, {"i": -9223372036854775808})
    assert call(ctx, "JSON.NUMINCRBY", "k", ".i", "-1") == b"-9.223372036854776e+18"


def test_toggle(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"t": True, "o": {"t": False}, "n": 1})
    sink.events.clear()
    assert call(ctx, "JSON.TOGGLE", "k", ".t") == b"false"
    assert call(ctx, "JSON.TOGGLE", "k", "$..t") == [1, 1]
    assert call(ctx, "JSON.TOGGLE", "k", "$.n") == [None]
    assert doc(ctx) == {"t": True, "o": {"t": True}, "n": 1}
    assert sink.names() == [("d", "json.toggle", b"k")] * 2
    assert error(ctx, "JSON.TOGGLE", "k", ".n") == "ERR Path '$.n' does not exist or not a bool"
    assert error(ctx, "JSON.TOGGLE", "nokey", "$.t") == (
        "ERR could not perform this operation on a key that doesn't exist")


def test_clear(ctx: Ctx, sink: Recorder) -> None:
    put(ctx, {"a": [1, 2], "o": {"x": {"y": 1}}, "n": 5, "f": 0.5, "z": 0, "s": "keep", "e": []})
    sink.events.clear()
    assert call(ctx, "JSON.CLEAR", "k", "$.*") == 4  # a, o, n, f; z and e are already clear, s is not clearable
    assert doc(ctx) == {"a": [], "o": {}, "n": 0, "f": 0, "z": 0, "s": "keep", "e": []}
    assert call(ctx, "JSON.CLEAR", "k", "$.*") == 0
    assert sink.names() == [("d", "json.clear", b"k")]
    assert call(ctx, "JSON.CLEAR", "k") == 1  # the root object
    assert doc(ctx) == {}
    assert error(ctx, "JSON.CLEAR", "nokey") == "ERR could not perform this operation on a key that doesn't exist"


def test_clear_nested_matches_counts_the_outer_one(ctx: Ctx) -> None:
    put(ctx, {"a": {"a": [1]}})
    assert call(ctx, "JSON.CLEAR", "k", "$..a") == 1
    assert doc(ctx) == {"a": {}}


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_set_then_get_at_root_round_trips(value: Any) -> None:
    ctx = Ctx(Keyspace(), "local", "n1", itertools.count(1).__next__)
    text = json.dumps(value, ensure_ascii=False).encode()
    assert call(ctx, "JSON.SET", "k", "$", text) == OK
    got = call(ctx, "JSON.GET", "k")
    assert json.loads(got) == value
    assert [type(v) for v in _leaves(json.loads(got))] == [type(v) for v in _leaves(value)]
    assert json.loads(call(ctx, "JSON.GET", "k", "$")) == [value]
    assert call(ctx, "JSON.GET", "k", "INDENT", "  ", "NEWLINE", "\n", "SPACE", " ") == json.dumps(
        value, indent=2, ensure_ascii=False).encode()


@settings(max_examples=100, deadline=None)
@given(json_values, json_values)
def test_set_at_every_existing_location_then_get_it_back(document: Any, replacement: Any) -> None:
    ctx = Ctx(Keyspace(), "local", "n1", itertools.count(1).__next__)
    put(ctx, document)
    for loc in _locations(document):
        path = format_location(loc)
        assert call(ctx, "JSON.SET", "k", path, json.dumps(replacement)) == OK
        assert json.loads(call(ctx, "JSON.GET", "k", path)) == [replacement]
        put(ctx, document)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _locations(value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    out = []
    for key, child in children:
        out.append(loc + (key,))
        out.extend(_locations(child, loc + (key,)))
    return out
