"""The JSONPath subset (vfsd.jsonpath): grammar, match semantics, locations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd import jsonpath
from vfsd.jsonpath import (
    Descendants,
    Indexes,
    JSONPathError,
    Names,
    Slice,
    Wildcard,
    delete_at,
    deletion_order,
    format_location,
    get_at,
    locate,
    parse,
    query,
    replace_at,
    type_name,
)

DOC: dict[str, Any] = {
    "a": {"b": 1, "c": [10, 20, 30]},
    "list": [{"x": 1}, {"x": 2}, {"y": 3}],
    "a b": "spaced",
    "q\"uote": True,
    "n": None,
}


def q(text: str, doc: Any = DOC) -> list[Any]:
    return query(doc, parse(text))


# --- grammar -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "legacy", "steps"),
    [
        ("$", False, ()),
        (".", True, ()),
        ("$.a.b", False, (Names(("a",)), Names(("b",)))),
        (".a.b", True, (Names(("a",)), Names(("b",)))),
        ("a.b", True, (Names(("a",)), Names(("b",)))),
        (".a[0]", True, (Names(("a",)), Indexes((0,)))),
        ("[0]", True, (Indexes((0,)),)),
        ("$.a[-1]", False, (Names(("a",)), Indexes((-1,)))),
        ('$["a"]', False, (Names(("a",)),)),
        ("$['a b']", False, (Names(("a b",)),)),
        ('$.["a"]', False, (Names(("a",)),)),
        ("$['x',\"y\"]", False, (Names(("x", "y")),)),
        ("$[0,2,-1]", False, (Indexes((0, 2, -1)),)),
        ("$.a[*]", False, (Names(("a",)), Wildcard())),
        ("$.*", False, (Wildcard(),)),
        ("$..a", False, (Descendants(), Names(("a",)))),
        ("$..*", False, (Descendants(), Wildcard())),
        ("$..[0]", False, (Descendants(), Indexes((0,)))),
        ("$[1:3]", False, (Slice(1, 3, 1),)),
        ("$[:2]", False, (Slice(None, 2, 1),)),
        ("$[1:]", False, (Slice(1, None, 1),)),
        ("$[::2]", False, (Slice(None, None, 2),)),
        ("$[-2:]", False, (Slice(-2, None, 1),)),
        ("$a", False, (Names(("a",)),)),
        ("$ .a [ 1 , 2 ]", False, (Names(("a",)), Indexes((1, 2)))),
        ("$.a-b_c:d/e", False, (Names(("a-b_c:d/e",)),)),
        ("$.名前", False, (Names(("名前",)),)),
        ('$["q\\"uote"]', False, (Names(('q"uote',)),)),
        ("$['it\\'s']", False, (Names(("it's",)),)),
        ('$["back\\\\slash"]', False, (Names(("back\\slash",)),)),
    ],
)
def test_parse(text: str, legacy: bool, steps: tuple[Any, ...]) -> None:
    path = parse(text)
    assert path.text == text
    assert path.legacy is legacy
    assert path.steps == steps


@pytest.mark.parametrize(
    "text",
    ["", "$.", "$..", "$[", "$[0", "$[]", "$['a", "$[?(@.a>1)]", "$.a[01]", "$[1:2:0]",
     "$.a b", "$.a.", "$!", '$["bad\\x"]', "a..", "$[0,]", "$['a',1]", "$[x]"],
)
def test_parse_rejects_unsupported_syntax_naming_the_path(text: str) -> None:
    with pytest.raises(JSONPathError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("ERR invalid JSONPath ")
    assert f"'{text}'" in message


def test_error_offset_counts_in_the_legacy_text() -> None:
    with pytest.raises(JSONPathError, match=r"at offset 2$"):
        parse("a.")


def test_legacy_paths_normalize_as_redisjson_does() -> None:
    assert parse(".").normalized == "$"
    assert parse(".a.b").normalized == "$.a.b"
    assert parse("a.b").normalized == "$.a.b"
    assert parse("$.a").normalized == "$.a"


def test_static_paths() -> None:
    assert parse("$.a[0]['b']").is_static
    assert parse("$").is_static
    for text in ("$.*", "$..a", "$[0,1]", "$['a','b']", "$[0:1]"):
        assert not parse(text).is_static


def test_parent() -> None:
    assert parse("$.a.b").parent().steps == parse("$.a").steps
    assert parse("$").parent().is_root


# --- matching ----------------------------------------------------------------


def test_root_matches_the_document() -> None:
    assert q("$") == [DOC]
    assert q(".") == [DOC]


def test_members_and_indexes() -> None:
    assert q("$.a.b") == [1]
    assert q("a.b") == [1]
    assert q("$.a.c[0]") == [10]
    assert q("$.a.c[-1]") == [30]
    assert q("$.a.c[-3]") == [10]
    assert q('$["a b"]') == ["spaced"]
    assert q("$['q\\'uote']") == []
    assert q('$["q\\"uote"]') == [True]
    assert q("$.n") == [None]


def test_no_match_is_empty() -> None:
    assert q("$.missing") == []
    assert q("$.a.b.c") == []  # through a scalar
    assert q("$.a.c[3]") == []
    assert q("$.a.c[-4]") == []  # RFC 9535: outside the array matches nothing
    assert q("$.a[0]") == []  # index into an object
    assert q("$.a.c.x") == []  # name into an array


def test_unions_keep_the_order_given() -> None:
    assert q("$.a.c[2,0]") == [30, 10]
    assert q("$['n','a b','missing']") == [None, "spaced"]


def test_wildcards() -> None:
    assert q("$.a.c[*]") == [10, 20, 30]
    assert q("$.a.*") == [1, [10, 20, 30]]
    assert q("$.list[*].x") == [1, 2]
    assert q("$.a.b.*") == []


def test_slices_clamp_like_redisjson() -> None:
    doc = {"s": [0, 1, 2, 3, 4]}
    assert q("$.s[1:3]", doc) == [1, 2]
    assert q("$.s[:2]", doc) == [0, 1]
    assert q("$.s[3:]", doc) == [3, 4]
    assert q("$.s[::2]", doc) == [0, 2, 4]
    assert q("$.s[-2:]", doc) == [3, 4]
    assert q("$.s[1:100]", doc) == [1, 2, 3, 4]
    assert q("$.s[-100:1]", doc) == [0]
    assert q("$.s[3:1]", doc) == []


def test_descendants_are_preorder() -> None:
    doc = {"a": {"a": 1, "b": {"a": 2}}, "c": [{"a": 3}]}
    assert q("$..a", doc) == [{"a": 1, "b": {"a": 2}}, 1, 2, 3]
    assert q("$..[0]", doc) == [{"a": 3}]
    assert q("$..*", {"x": [1, {"y": 2}]}) == [[1, {"y": 2}], 1, {"y": 2}, 2]


def test_locate_gives_concrete_locations() -> None:
    found = locate(DOC, parse("$.a.c[-1]"))
    assert found == [(("a", "c", 2), 30)]
    assert [loc for loc, _ in locate(DOC, parse("$.list[*].x"))] == [("list", 0, "x"), ("list", 1, "x")]
    assert locate(DOC, parse("$")) == [((), DOC)]


# --- locations -----------------------------------------------------------------


def test_get_at() -> None:
    assert get_at(DOC, ("a", "c", 1)) == (True, 20)
    assert get_at(DOC, ()) == (True, DOC)
    assert get_at(DOC, ("a", "x")) == (False, None)
    assert get_at(DOC, ("a", "c", 5)) == (False, None)
    assert get_at(DOC, ("a", "b", "deeper")) == (False, None)


def test_replace_at() -> None:
    doc = {"a": [1, 2]}
    assert replace_at(doc, ("a", 1), "x") == ({"a": [1, "x"]}, True)
    assert replace_at(doc, ("a", 9), "x") == ({"a": [1, "x"]}, False)
    assert replace_at(doc, ("b",), 1) == ({"a": [1, "x"]}, False)  # replaces only; never creates
    assert replace_at(doc, (), 7) == (7, True)


def test_delete_at() -> None:
    doc = {"a": [1, 2, 3], "b": 1}
    assert delete_at(doc, ("a", 0))
    assert delete_at(doc, ("b",))
    assert not delete_at(doc, ("b",))
    assert doc == {"a": [2, 3]}


def test_deletion_order_drops_nested_and_puts_higher_indexes_first() -> None:
    locs = [("a", 0), ("a", 2), ("a", 2, "x"), ("b",), ("a", 10), ("a", 0)]
    assert deletion_order(locs) == [("b",), ("a", 10), ("a", 2), ("a", 0)]
    doc = {"a": list(range(11)), "b": 1}
    for loc in deletion_order(locs[:2] + locs[3:]):
        assert delete_at(doc, loc)
    assert doc == {"a": [1, 3, 4, 5, 6, 7, 8, 9]}


def test_format_location_round_trips_awkward_names() -> None:
    loc = ("a b", 0, 'q"\\', "x")
    text = format_location(loc)
    assert text == '$["a b"][0]["q\\"\\\\"]["x"]'
    assert parse(text).steps == (Names(("a b",)), Indexes((0,)), Names(('q"\\',)), Names(("x",)))


@pytest.mark.parametrize(
    ("value", "name"),
    [(None, "null"), (True, "boolean"), (False, "boolean"), (0, "integer"), (1.0, "number"),
     ("", "string"), ([], "array"), ({}, "object")],
)
def test_type_name(value: Any, name: str) -> None:
    assert type_name(value) == name


def test_the_core_imports_no_io() -> None:
    source = open(jsonpath.__file__, encoding="utf-8").read()
    for module in ("asyncio", "socket", "time", "os"):
        assert f"import {module}" not in source


# --- properties ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


def children(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, dict):
        return list(value.items())
    return list(enumerate(value)) if isinstance(value, list) else []


def naive_nodes(value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Reference: every descendant of ``value`` (not itself), pre-order."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    for key, child in children(value):
        out.append((loc + (key,), child))
        out.extend(naive_nodes(child, loc + (key,)))
    return out


def naive_descendant_wildcard(value: Any) -> list[tuple[Any, ...]]:
    """Reference for ``$..*``: the children of each node, nodes visited pre-order (RedisJSON's order)."""
    nodes = [((), value)] + naive_nodes(value)
    return [loc + (key,) for loc, node in nodes for key, _ in children(node)]


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_descendant_wildcard_finds_every_node_once(doc: Any) -> None:
    found = locate(doc, parse("$..*"))
    assert [loc for loc, _ in found] == naive_descendant_wildcard(doc)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_every_location_resolves_by_its_static_path(doc: Any) -> None:
    for loc, value in naive_nodes(doc):
        path = parse(format_location(loc))
        assert path.is_static
        [(found_loc, found)] = locate(doc, path)
        assert found_loc == loc
        assert found is value
        assert get_at(doc, loc) == (True, value)
