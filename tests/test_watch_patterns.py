"""The pattern index against the plain scan: the same patterns match, always (Consul #9449: delivered == matching)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.glob import glob_match
from vfsd.watch.patterns import PatternIndex

# A small alphabet makes prefixes collide and globs match often; the glob characters and '/' are in it.
_CHARS = st.sampled_from(list(b"ab/c*?[]^-\\"))
patterns = st.lists(_CHARS, max_size=8).map(bytes)
subjects = st.lists(st.sampled_from(list(b"ab/c*?[]^-\\x")), max_size=10).map(bytes)


def scan(live: dict[bytes, int], subject: bytes) -> set[tuple[bytes, int]]:
    return {(p, v) for p, v in live.items() if glob_match(p, subject)}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), patterns), max_size=40), st.lists(subjects, min_size=1, max_size=20))
def test_match_equals_the_plain_scan_through_adds_and_removes(ops: list[tuple[bool, bytes]],
                                                              probes: list[bytes]) -> None:
    index: PatternIndex[int] = PatternIndex()
    live: dict[bytes, int] = {}
    for n, (add, pattern) in enumerate(ops):
        if add:
            index.add(pattern, n)
            live[pattern] = n
        else:
            assert index.remove(pattern) == live.pop(pattern, None)
        assert len(index) == len(live)
        prefixes = {_literal(p) for p in live} - {b""}
        gate_len = min(map(len, prefixes), default=0)
        assert index._gate_len == gate_len  # the gate is exactly the heads of the non-empty prefixes
        assert set(index._gate) == {p[:gate_len] for p in prefixes}
    for subject in probes:
        expected = scan(live, subject)
        found = index.match(subject)
        assert len(found) == len(set(found)), "a pattern reported twice"
        assert set(found) == expected
        assert index.any_match(subject) == bool(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(patterns, max_size=20), st.sampled_from([b"a", b"ab", b"a/", b"c*", b""]), subjects)
def test_could_match_prefix_never_misses(added: list[bytes], family: bytes, rest: bytes) -> None:
    """If some pattern matches some subject starting with the family, the index must say it could."""
    index: PatternIndex[int] = PatternIndex(families=(b"a", b"ab", b"a/"))
    for pattern in added:
        index.add(pattern, 0)
    if any(glob_match(p, family + rest) for p in added):
        assert index.could_match_prefix(family)


@settings(max_examples=100, deadline=None)
@given(st.lists(patterns, max_size=20), st.lists(st.integers(0, 19), max_size=20))
def test_family_counts_follow_removals(added: list[bytes], removed: list[int]) -> None:
    index: PatternIndex[int] = PatternIndex(families=(b"a", b"ab/"))
    for pattern in added:
        index.add(pattern, 0)
    for i in removed:
        if i < len(added):
            index.remove(added[i])
    for family in (b"a", b"ab/"):
        naive = any(_literal(p).startswith(family) or family.startswith(_literal(p)) for p, _ in index.items())
        assert index.could_match_prefix(family) == naive, family


def _literal(pattern: bytes) -> bytes:
    for i, ch in enumerate(pattern):
        if ch in b"*?[\\":
            return pattern[:i]
    return pattern


def test_shapes_are_decided_without_the_matcher() -> None:
    index: PatternIndex[str] = PatternIndex()
    index.add(b"/ctx/app1/*", "star")
    index.add(b"/ctx/app1/x", "exact")
    index.add(b"/ctx/app?/x", "glob")
    index.add(b"*", "all")
    assert sorted(v for _, v in index.match(b"/ctx/app1/x")) == ["all", "exact", "glob", "star"]
    assert sorted(v for _, v in index.match(b"/ctx/app1/xy")) == ["all", "star"]
    assert sorted(v for _, v in index.match(b"/ctx/app2/x")) == ["all", "glob"]
    assert index.match(b"") == [(b"*", "all")]
    assert index.remove(b"*") == "all" and index.remove(b"*") is None
    assert index.match(b"/run/x") == []


def test_ten_thousand_prefixes_probe_only_their_lengths() -> None:
    """Non-matching subjects cost one probe per distinct prefix length, however many patterns there are."""
    index: PatternIndex[int] = PatternIndex(families=(b"__keyspace@0__:",))
    for n in range(10_000):
        index.add(b"/ctx/app%d/*" % n, n)
    assert len(index._lengths) == 4  # /ctx/app0/ .. /ctx/app9999/
    assert index.match(b"/ctx/bench/news") == []
    assert index.match(b"/ctx/app42/cfg") == [(b"/ctx/app42/*", 42)]
    assert not index.could_match_prefix(b"__keyspace@0__:")
    for n in range(10_000):
        index.remove(b"/ctx/app%d/*" % n)
    assert index._lengths == [] and len(index) == 0
