"""Redis glob patterns (vfsd.glob) against Redis's ``stringmatchlen`` (util.c).

``reference_match`` below is a direct, recursive transcription of Redis's
``stringmatchlen_impl`` over bytes (case-sensitive), kept deliberately naive:
the compiled-regex matcher is checked against it by a hypothesis property.
Redis compares class range ends as C ``char`` (signed on x86), so for bytes
>= 0x80 as range ends real Redis differs from any byte-wise reading; the
generated patterns therefore use ASCII only (subjects may hold any byte).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vfsd.glob import compile_glob, glob_match, literal_prefix

STAR, QUESTION, OPEN, CLOSE, CARET, DASH, BACKSLASH = b"*?[]^-\\"


def reference_match(pattern: bytes, subject: bytes) -> bool:
    """Redis 7's stringmatchlen, transcribed: ``p``/``s`` are positions, the loop is the C loop."""
    plen, slen = len(pattern), len(subject)

    def match(p: int, s: int) -> bool:
        while p < plen and s < slen:
            c = pattern[p]
            if c == STAR:
                while p + 1 < plen and pattern[p + 1] == STAR:
                    p += 1
                if p == plen - 1:
                    return True  # a trailing star matches the rest
                # Try the rest of the pattern at every non-empty suffix of the subject.
                return any(match(p + 1, start) for start in range(s, slen))
            if c == QUESTION:
                s += 1
            elif c == OPEN:
                p += 1
                negate = p < plen and pattern[p] == CARET
                if negate:
                    p += 1
                matched = False
                while True:
                    if p < plen and pattern[p] == BACKSLASH and plen - p >= 2:
                        p += 1
                        matched |= pattern[p] == subject[s]
                    elif p < plen and pattern[p] == CLOSE:
                        break
                    elif p >= plen:  # unterminated class: it runs to the end of the pattern
                        p -= 1
                        break
                    elif plen - p >= 3 and pattern[p + 1] == DASH:
                        lo, hi = sorted((pattern[p], pattern[p + 2]))
                        p += 2
                        matched |= lo <= subject[s] <= hi
                    else:
                        matched |= pattern[p] == subject[s]
                    p += 1
                if negate:
                    matched = not matched
                if not matched:
                    return False
                s += 1
            else:
                if c == BACKSLASH and plen - p >= 2:
                    p += 1
                if pattern[p] != subject[s]:
                    return False
                s += 1
            p += 1
            if s == slen:
                while p < plen and pattern[p] == STAR:
                    p += 1
                break
        return p == plen and s == slen

    return match(0, 0)


# --- the reference itself, on cases checked against redis-server 7 -------------

CASES = [
    # (pattern, subject, matches)
    (b"*", b"/hw/n1/cpu", True),
    (b"/hw/*", b"/hw/n1/cpu", True),  # no special meaning for '/'
    (b"/hw/*", b"/hwx", False),
    (b"/hw/*/cpu", b"/hw/n1/cpu", True),
    (b"/hw/*/cpu", b"/hw/n1/gpu", False),
    (b"a*b*c", b"aXXbYYc", True),
    (b"a*b*c", b"aXXcYYb", False),
    (b"**a", b"a", True),
    (b"a**", b"a", True),
    (b"*?", b"", False),
    (b"", b"", True),
    (b"", b"a", False),
    (b"h?llo", b"hello", True),
    (b"h?llo", b"hllo", False),
    (b"h?llo", b"h\xffllo", True),
    (b"?", b"\n", True),
    (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[a-b]llo", b"hcllo", False),
    (b"[z-a]", b"m", True),  # a reversed range is swapped
    (b"[z-a]", b"A", False),
    (b"[^z-a]", b"A", True),
    (b"[a-z0-9]", b"7", True),
    (b"[]", b"a", False),  # an empty class matches nothing
    (b"[^]", b"a", True),  # a negated empty class matches any byte
    (b"[]a]", b"]a]", False),
    (b"[]a]", b"a]", False),
    (b"[]a]", b"a", False),
    (b"[\\]]", b"]", True),  # an escaped ']' inside a class
    (b"[\\-]", b"-", True),
    (b"[a-]", b"]", True),  # Redis: 'a-]' is the range ']'..'a' and the class is unterminated
    (b"[a-]", b"_", True),
    (b"[a-]", b"-", False),
    (b"[a-]x]", b"x", True),
    (b"[abc", b"b", True),  # an unterminated class runs to the end of the pattern
    (b"[abc", b"d", False),
    (b"x[", b"x", False),
    (b"x[", b"x[", False),
    (b"x[^", b"xq", True),
    (b"[a\\", b"\\", True),
    (b"\\*", b"*", True),
    (b"\\*", b"x", False),
    (b"\\?", b"?", True),
    (b"\\?", b"a", False),
    (b"\\[a]", b"[a]", True),
    (b"\\a", b"a", True),
    (b"a\\", b"a\\", True),  # a trailing backslash is literal
    (b"\\\\", b"\\", True),
    (b"*\\*", b"abc*", True),
    (b"*\\*", b"abc", False),
    (b"\xe9*", b"\xe9t\xe9", True),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), CASES)
def test_reference_matcher_on_known_redis_answers(pattern: bytes, subject: bytes, expected: bool) -> None:
    assert reference_match(pattern, subject) is expected


@pytest.mark.parametrize(("pattern", "subject", "expected"), CASES)
def test_glob_match_on_known_redis_answers(pattern: bytes, subject: bytes, expected: bool) -> None:
    assert glob_match(pattern, subject) is expected
    assert (compile_glob(pattern)(subject) is not None) is expected


def test_star_matches_the_empty_key_as_keys_star_does() -> None:
    # stringmatchlen("*", "") is false (its loop needs a non-empty subject), but Redis's
    # KEYS * and SCAN without MATCH short-cut to "every key", the empty one included.
    # vfsd's '*' matches b"" directly; the properties below therefore use non-empty subjects.
    assert reference_match(b"*", b"") is False
    assert glob_match(b"*", b"") is True


def test_compile_glob_is_cached_and_reusable() -> None:
    match = compile_glob(b"/hw/*")
    assert compile_glob(b"/hw/*") is match
    assert match(b"/hw/a") and match(b"/hw/b") and not match(b"/ctx/a")


def test_patterns_with_regex_metacharacters_are_literal() -> None:
    for pattern in (b"a.b", b"a+b", b"(a)", b"a|b", b"a{2}", b"$a^", b"a\nb"):
        assert glob_match(pattern, pattern)
    assert not glob_match(b"a.b", b"axb")
    assert not glob_match(b"a|b", b"a")


def test_match_is_whole_subject_not_prefix_or_search() -> None:
    assert not glob_match(b"/hw", b"/hw/x")
    assert not glob_match(b"hw", b"/hw")
    assert glob_match(b"*hw*", b"/hw/x")


class _TooSlow(Exception):
    pass


def _within(seconds: float, fn: Callable[[], object]) -> object:
    """Run ``fn``, raising _TooSlow after ``seconds`` (``re`` polls for signals while it backtracks)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _TooSlow(f"took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_few_stars_match_quickly() -> None:
    assert _within(2.0, lambda: glob_match(b"a*" * 6 + b"b", b"a" * 20)) is False
    assert _within(2.0, lambda: glob_match(b"*a*b*c*", b"x" * 200 + b"abc")) is True


def test_pathological_star_pattern_is_answered_quickly() -> None:
    assert _within(0.5, lambda: glob_match(b"a*" * 30 + b"b", b"a" * 60)) is False


# --- against the reference ----------------------------------------------------

PATTERN_BYTES = b"ab-^]\\[*?z/"
SUBJECT_BYTES = b"ab-^]\\[*?z/\xe9"

patterns = st.lists(st.sampled_from([bytes([c]) for c in PATTERN_BYTES]), max_size=8).map(b"".join)
subjects = st.lists(st.sampled_from([bytes([c]) for c in SUBJECT_BYTES]), min_size=1, max_size=7).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(patterns, subjects)
@example(b"[z-a]", b"m")
@example(b"[^", b"x")
@example(b"a\\", b"a\\")
@example(b"*\\*", b"**")
def test_glob_match_agrees_with_reference(pattern: bytes, subject: bytes) -> None:
    assert glob_match(pattern, subject) == reference_match(pattern, subject), (pattern, subject)


@settings(max_examples=150, deadline=None)
@given(patterns, subjects)
def test_a_subject_always_matches_itself_escaped(pattern: bytes, subject: bytes) -> None:
    escaped = b"".join(b"\\" + bytes([c]) if c in b"*?[]\\" else bytes([c]) for c in subject)
    assert glob_match(escaped, subject)
    assert glob_match(escaped + b"*", subject + pattern)


# --- literal_prefix -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (b"/hw/*", b"/hw/"),
        (b"/hw/n?/cpu", b"/hw/n"),
        (b"/hw/[ab]", b"/hw/"),
        (b"/hw/\\*", b"/hw/"),
        (b"/hw/n1/cpu", b"/hw/n1/cpu"),
        (b"*", b""),
        (b"", b""),
    ],
)
def test_literal_prefix_examples(pattern: bytes, prefix: bytes) -> None:
    assert literal_prefix(pattern) == prefix


@settings(max_examples=200, deadline=None)
@given(patterns, subjects)
def test_every_matching_subject_starts_with_the_literal_prefix(pattern: bytes, subject: bytes) -> None:
    prefix = literal_prefix(pattern)
    assert pattern.startswith(prefix)
    for candidate in (subject, prefix + subject, pattern):
        if glob_match(pattern, candidate) or reference_match(pattern, candidate):
            assert candidate.startswith(prefix), (pattern, candidate)
