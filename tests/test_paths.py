"""Path grammar and the roots table (vfsd.paths), checked against DESIGN.md §2.

A path is absolute, ``/``-separated UTF-8 with no empty, ``.`` or ``..``
segment, no trailing slash, no control character and at most 1024 bytes; its
first segment (its root) picks the plane. The grammar is also written out as a
naive reference (``naive_is_valid``) that a hypothesis property compares
``check_path`` against.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vfsd.paths import (
    CONSENSUS,
    DEFAULT_ROOTS,
    EVENTUAL,
    LEASE,
    LOCAL,
    MAX_PATH_BYTES,
    PLANES,
    PathError,
    Router,
    all_paths,
    check_dir,
    check_path,
)

# --- a naive reference for the grammar -----------------------------------------


def naive_is_valid(key: bytes) -> bool:
    """DESIGN.md §2, spelled out one rule at a time (control = ASCII C0 and DEL)."""
    if not key.startswith(b"/") or len(key) > MAX_PATH_BYTES:
        return False
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if any(b < 0x20 or b == 0x7F for b in key):
        return False
    segments = key[1:].split(b"/")
    return all(seg not in (b"", b".", b"..") for seg in segments)


# --- check_path: accepted ------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        b"/hw/n1/cpu",
        b"/hw",
        "/hw/nœud-ä/cpu".encode(),
        "/ctx/服务/副本".encode(),
        "/run/😀".encode(),
        b"/ctx/a b",
        b"/ctx/.hidden",
        b"/ctx/..x",
        b"/ctx/a..b",
        b"/ctx/...",
        b"/" + b"a" * (MAX_PATH_BYTES - 1),
    ],
)
def test_check_path_accepts_well_formed_paths(key: bytes) -> None:
    check_path(key)  # no exception


def test_exactly_max_bytes_is_accepted_and_one_more_is_not() -> None:
    exact = b"/hw/" + b"x" * (MAX_PATH_BYTES - 4)
    assert len(exact) == 1024
    check_path(exact)
    with pytest.raises(PathError, match="longer than 1024 bytes"):
        check_path(exact + b"x")


def test_exactly_max_bytes_with_multibyte_characters() -> None:
    # "/hw/" (4 bytes) and 340 three-byte characters: 1024 bytes.
    key = b"/hw/" + "€".encode() * 340
    assert len(key) == 1024
    check_path(key)


# --- check_path: rejected, with a message naming the problem ------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (b"/hw//cpu", "empty segment"),
        (b"//hw", "empty segment"),
        (b"/hw/./cpu", "'.' and '..' segments are not allowed"),
        (b"/hw/../cpu", "'.' and '..' segments are not allowed"),
        (b"/hw/.", "'.' and '..' segments are not allowed"),
        (b"/hw/..", "'.' and '..' segments are not allowed"),
        (b"/..", "'.' and '..' segments are not allowed"),
        (b"/hw/", "trailing slash"),
        (b"/", "trailing slash"),
        (b"/hw/a\x00b", "control characters are not allowed"),
        (b"/hw/a\nb", "control characters are not allowed"),
        (b"/hw/a\tb", "control characters are not allowed"),
        (b"/hw/a\x1fb", "control characters are not allowed"),
        (b"/hw/a\x7fb", "control characters are not allowed"),
        (b"/" + b"a" * MAX_PATH_BYTES, "longer than 1024 bytes"),
        (b"/hw/\xff", "not valid UTF-8"),
        (b"/hw/\xc3", "not valid UTF-8"),
        (b"/hw/\xc3(", "not valid UTF-8"),
        (b"/hw/\xed\xa0\x80", "not valid UTF-8"),  # an encoded surrogate
    ],
)
def test_check_path_rejects_each_bad_form(key: bytes, problem: str) -> None:
    with pytest.raises(PathError) as info:
        check_path(key)
    message = str(info.value)
    assert message.startswith("ERR invalid path "), message
    assert problem in message, message


@pytest.mark.parametrize("key", [b"/hw//cpu", b"/hw/../cpu", b"/hw/cpu/", b"/hw/\xff"])
def test_rejection_message_names_the_path(key: bytes) -> None:
    with pytest.raises(PathError) as info:
        check_path(key)
    assert key.decode("utf-8", "replace") in str(info.value)


def test_control_character_message_shows_the_path() -> None:
    with pytest.raises(PathError) as info:
        check_path(b"/hw/node\x00a")
    assert "/hw/node" in str(info.value)


def test_long_path_message_is_truncated() -> None:
    with pytest.raises(PathError) as info:
        check_path(b"/hw/" + b"z" * 5000)
    assert len(str(info.value)) < 200


def test_path_error_is_a_value_error() -> None:
    assert issubclass(PathError, ValueError)


segment_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/\x7f"), min_size=1, max_size=8
).filter(lambda s: s not in (".", "..") and not any(ord(c) < 0x20 for c in s))


@settings(max_examples=150, deadline=None)
@given(st.lists(segment_text, min_size=1, max_size=6))
def test_paths_built_from_good_segments_are_accepted(segments: list[str]) -> None:
    key = ("/" + "/".join(segments)).encode()
    if len(key) <= MAX_PATH_BYTES:
        check_path(key)


path_like_bytes = st.one_of(
    st.binary(max_size=40).map(lambda b: b"/" + b),
    st.lists(st.sampled_from([b"/", b".", b"..", b"a", b"\xc3\xa9", b"\xff", b"\x00", b"\n", b"\x7f", b"xyz"]),
             max_size=12).map(lambda parts: b"/" + b"".join(parts)),
    st.integers(1015, 1030).map(lambda n: b"/" + b"q" * (n - 1)),
)


@settings(max_examples=200, deadline=None)
@given(path_like_bytes)
@example(b"/a/")
@example(b"/a/.")
@example(b"/a\n")
def test_check_path_agrees_with_the_naive_grammar(key: bytes) -> None:
    try:
        check_path(key)
        accepted = True
    except PathError as exc:
        accepted = False
        assert str(exc).startswith("ERR invalid path ")
    assert accepted == naive_is_valid(key), key


any_key = st.one_of(path_like_bytes, st.binary(max_size=12), st.sampled_from([b"/hw", b"/run/a", b"/run/b/c", b"/sum"]))


def one_by_one(keys: list[bytes], prefixes: tuple[bytes, ...]) -> bool:
    """``all_paths`` the slow way: check_path of each ASCII key, and its prefix."""
    for key in keys:
        if not key.startswith(prefixes or (b"/",)) or not key.isascii():
            return False
        try:
            check_path(key)
        except PathError:
            return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.lists(any_key, max_size=8), st.sampled_from([(), (b"/run/",), (b"/hw/", b"/run/", b"/sum/")]))
@example([b"/run/a", b"/run/b\n/run/c"], ())  # a newline inside a key: no key boundary
@example([b"/run/a/", b"/run/b"], ())
@example([b"/run/a/..", b"/run/b"], (b"/run/",))
@example([b"/run/a", b""], ())
@example([b"/hw", b"/run/a"], (b"/hw/", b"/run/"))  # a root itself is not under its prefix
def test_all_paths_of_a_batch_is_check_path_of_each(keys: list[bytes], prefixes: tuple[bytes, ...]) -> None:
    assert all_paths(keys, prefixes) == one_by_one(keys, prefixes), keys


# --- check_dir -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "normalised"),
    [
        (b"", b"/"),
        (b"/", b"/"),
        (b"/hw", b"/hw/"),
        (b"/hw/", b"/hw/"),
        (b"/hw/n1", b"/hw/n1/"),
        (b"/hw/n1/", b"/hw/n1/"),
        ("/ctx/服务".encode(), "/ctx/服务/".encode()),
    ],
)
def test_check_dir_normalises_to_prefix_form(arg: bytes, normalised: bytes) -> None:
    assert check_dir(arg) == normalised


def test_check_dir_requires_a_leading_slash() -> None:
    with pytest.raises(PathError, match="invalid directory 'hw': must start with '/'"):
        check_dir(b"hw")


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        (b"/hw//n1", "empty segment"),
        (b"/hw/../n1", "'.' and '..'"),
        (b"/hw/\x01", "control characters"),
        (b"/hw/\xff", "not valid UTF-8"),
    ],
)
def test_check_dir_rejects_bad_paths(arg: bytes, problem: str) -> None:
    with pytest.raises(PathError, match=problem):
        check_dir(arg)


# --- Router.plane_of -----------------------------------------------------------


@pytest.mark.parametrize(("root", "plane"), sorted(DEFAULT_ROOTS.items()))
def test_every_default_root_maps_to_its_plane(root: str, plane: str) -> None:
    router = Router()
    assert router.plane_of(root.encode()) == plane
    assert router.plane_of(root.encode() + b"/node-a/cpu") == plane
    assert router.plane_of(root.encode() + b"/x") == plane  # twice: the cached answer is the same


def test_default_roots_cover_the_documented_planes() -> None:
    router = Router()
    assert router.roots_of(CONSENSUS) == [b"/ctx", b"/mid", b"/sys", b"/ztb"]
    assert router.roots_of(EVENTUAL) == [b"/hw", b"/itg", b"/run", b"/sum"]
    assert router.roots_of(LEASE) == [b"/lk"]
    assert router.roots_of(LOCAL) == []


@pytest.mark.parametrize("key", [b"foo", b"", b"hw/n1", b"\x00", b"\xff\xfe", b" /hw", b"ctx:web"])
def test_keys_not_starting_with_slash_are_local(key: bytes) -> None:
    assert Router().plane_of(key) == LOCAL


@pytest.mark.parametrize("key", [b"/nope/x", b"/nope", b"/hwx/a", b"/h", b"/Hw/a"])
def test_unknown_root_names_the_root_and_lists_the_roots(key: bytes) -> None:
    with pytest.raises(PathError) as info:
        Router().plane_of(key)
    message = str(info.value)
    root = key.split(b"/")[1].decode()
    assert message.startswith(f"ERR no plane for root '/{root}' in path '{key.decode()}'"), message
    assert "(roots: /ctx /hw /itg /lk /mid /run /sum /sys /ztb)" in message


def test_unknown_root_lists_a_custom_table() -> None:
    router = Router({"/app": CONSENSUS, "/b": EVENTUAL})
    assert router.plane_of(b"/app/x") == CONSENSUS
    with pytest.raises(PathError, match=r"\(roots: /app /b\)"):
        router.plane_of(b"/hw/x")


@pytest.mark.parametrize("key", [b"/hw//cpu", b"/hw/cpu/", b"/ctx/../x", b"/hw/\x00", b"/hw/\xff"])
def test_plane_of_rejects_malformed_paths_under_known_roots(key: bytes) -> None:
    with pytest.raises(PathError, match="ERR invalid path"):
        Router().plane_of(key)


def test_bad_path_is_rejected_every_time_not_only_the_first() -> None:
    router = Router(cache_max=2)
    for _ in range(3):
        with pytest.raises(PathError):
            router.plane_of(b"/hw//x")
    for i in range(10):  # the cache clearing itself does not change answers
        assert router.plane_of(b"/hw/%d" % i) == EVENTUAL
        assert router.plane_of(b"/ctx/%d" % i) == CONSENSUS


valid_paths = st.tuples(st.sampled_from(sorted(DEFAULT_ROOTS)), st.lists(segment_text, max_size=4)).map(
    lambda t: ("/".join([t[0], *t[1]])).encode()
).filter(lambda k: len(k) <= MAX_PATH_BYTES)


@settings(max_examples=150, deadline=None)
@given(valid_paths)
def test_known_shortcut_gives_the_same_plane_as_the_full_check(key: bytes) -> None:
    full = Router().plane_of(key)
    assert Router().plane_of(key, known={key}) == full
    assert Router().plane_of(key, known=frozenset([key, b"/other"])) == full
    assert full == DEFAULT_ROOTS["/" + key.split(b"/")[1].decode()]


def _plane_or_path_error(key: bytes) -> None:
    try:
        plane = Router().plane_of(key)
    except PathError as exc:
        assert str(exc).startswith(("ERR invalid path ", "ERR no plane for root ")), str(exc)
    else:
        assert plane in PLANES
        assert naive_is_valid(key)


# Keys of at most 80 bytes here; longer ones are covered below.
short_keys = st.one_of(
    st.binary(max_size=79).map(lambda b: b"/" + b),
    st.text(max_size=30).map(lambda s: ("/" + s).encode()[:80]),
    st.lists(st.sampled_from([b"/", b"hw", b"ctx", b"nope", b".", b"\xc3\xa9", b"\xff", b"\x00"]), max_size=10).map(
        lambda parts: b"/" + b"".join(parts)
    ),
)


@settings(max_examples=200, deadline=None)
@given(short_keys)
def test_plane_of_raises_only_path_error_on_arbitrary_short_keys(key: bytes) -> None:
    _plane_or_path_error(key)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(DEFAULT_ROOTS)), st.binary(max_size=1100))
def test_plane_of_raises_only_path_error_under_known_roots(root: str, tail: bytes) -> None:
    _plane_or_path_error(root.encode() + b"/" + tail)


def test_plane_of_unknown_root_with_long_unicode_path_raises_path_error() -> None:
    key = ("/" + "é" * 50).encode()  # valid UTF-8, 101 bytes, byte 80 is mid-character
    check_path(key)  # the grammar accepts it
    with pytest.raises(PathError, match="no plane for root"):
        Router().plane_of(key)


# --- Router: validating the roots table ---------------------------------------


@pytest.mark.parametrize(
    ("roots", "problem"),
    [
        ({"/app": "durable"}, "unknown plane 'durable'"),
        ({"/app": ""}, "unknown plane ''"),
        ({"app": CONSENSUS}, "a root is one path segment"),
        ({"/": CONSENSUS}, "a root is one path segment"),
        ({"": CONSENSUS}, "a root is one path segment"),
        ({"/a/b": CONSENSUS}, "a root is one path segment"),
        ({"/app/": CONSENSUS}, "a root is one path segment"),
        ({"/hw": EVENTUAL, "/x": "nope"}, "unknown plane 'nope'"),
    ],
)
def test_router_rejects_bad_roots_tables(roots: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Router(roots)


@pytest.mark.parametrize("plane", PLANES)
def test_router_accepts_every_plane(plane: str) -> None:
    assert Router({"/app": plane}).plane_of(b"/app/x") == plane


@pytest.mark.parametrize("root", ["/.", "/..", "/a\x00"])
def test_router_rejects_roots_that_are_not_valid_paths(root: str) -> None:
    with pytest.raises(ValueError):
        Router({root: CONSENSUS})
