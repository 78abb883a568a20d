"""``Ctx``: the one place handlers read and write through."""

from __future__ import annotations

import itertools
from typing import Any

from vfsd.codec import RAW
from vfsd.commands.context import Ctx
from vfsd.store.keyspace import CTIME, KIND, MTIME, REV, VALUE, Keyspace


def make(lazy_delete: bool = True) -> tuple[Ctx, list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    ctx = Ctx(Keyspace(), "local", "n1", itertools.count(1).__next__,
              lambda *event: events.append(event), lazy_delete=lazy_delete, now_ms=1000)
    return ctx, events


def test_replace_matches_write_after_lookup() -> None:
    ctx, _ = make()
    first = ctx.replace(b"k", b"v1")
    assert first[VALUE] == b"v1" and first[KIND] == RAW and first[REV] == 1 and first[CTIME] == first[MTIME] == 1000
    ctx.now_ms = 2000
    second = ctx.replace(b"k", b"v2")
    assert second[REV] == 2 and second[CTIME] == 1000 and second[MTIME] == 2000  # creation time kept
    assert ctx.db.get(b"k") is second and list(ctx.db.keys) == [b"k"]


def test_replace_clears_a_live_ttl_and_expires_a_lapsed_one_first() -> None:
    ctx, events = make()
    ctx.replace(b"k", b"v")
    ctx.db.set_expire(b"k", 5000)
    ctx.replace(b"k", b"w")
    assert ctx.db.expire_at(b"k") is None and ctx.db.get(b"k")[CTIME] == 1000  # type: ignore[index]
    ctx.db.set_expire(b"k", 1500)
    ctx.now_ms = 3000
    entry = ctx.replace(b"k", b"fresh")
    # The lapsed key expired before the new one was written; the expiry is a change with a revision of its own.
    assert events == [("x", "expired", b"k", (None, RAW, 3, "n1", 1000, 3000))]
    assert entry[REV] == 4 and entry[CTIME] == 3000 and ctx.db.expire_at(b"k") is None


def test_replace_on_the_desired_plane_overwrites_an_expired_unswept_key() -> None:
    ctx, events = make(lazy_delete=False)
    ctx.replace(b"/ctx/k", b"v")
    ctx.db.set_expire(b"/ctx/k", 1500)
    ctx.now_ms = 3000
    entry = ctx.replace(b"/ctx/k", b"w")
    assert events == [] and entry[CTIME] == 3000  # a new file: the old one had lapsed
    assert ctx.db.expire_at(b"/ctx/k") is None and list(ctx.db.keys) == [b"/ctx/k"]


def test_probe_answers_argument_errors_and_stops_at_the_first_touch_of_state() -> None:
    import vfsd.commands.families  # noqa: F401  (fills the command table)
    from vfsd.commands.context import probe
    from vfsd.commands.table import TABLE

    def check(*argv: bytes) -> Any:
        return probe(TABLE[argv[0].decode().lower()].handler, list(argv), 1_000, 512 * 1024 * 1024)

    assert check(b"SET", b"/ctx/a", b"v") is None
    assert str(check(b"SET", b"/ctx/a", b"v", b"NX", b"XX")) == "ERR syntax error"
    assert str(check(b"SETRANGE", b"/ctx/a", b"-1", b"v")) == "ERR offset is out of range"
    assert "invalid JSON" in str(check(b"JSON.SET", b"/ctx/a", b"$", b'"\\ud800"'))
    assert check(b"INCR", b"/ctx/a") is None  # whether the value is a number is the state's to say
