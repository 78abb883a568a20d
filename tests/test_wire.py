"""Gossip messages on the wire (vfsd.active.wire): round trips, and refusal of anything off.

Every hostile or malformed body must raise ``WireError`` with a reason the agent counts —
never another exception, never a message half-applied (the Corrosion lesson).
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.active.lww import TOMBSTONE
from vfsd.active.wire import (
    ALIVE_OP,
    DEAD_OP,
    SUSPECT,
    Ack,
    Gossip,
    Header,
    Limits,
    MsgType,
    Nack,
    Ping,
    PingReq,
    Records,
    Split,
    SyncDescend,
    SyncOpen,
    SyncRecords,
    SyncReply,
    SyncTree,
    SyncVersions,
    WireError,
    _rows,
    decode,
    decode_header,
    encode,
    on_roots,
)
from vfsd.paths import DEFAULT_ROOTS

LIMITS = Limits(accepts_key=lambda k: k.startswith((b"/run/", b"/hw/")))
HEADER = Header(boot=7, seq=3, hlc=1 << 40, seen=5, view=(1 << 64) - 1)

MESSAGES = [
    Ping(1, "n2", [(ALIVE_OP, "n3", 9, 2, "10.0.0.3:7946"), (DEAD_OP, "n4", 9, 1, "n1")]),
    Ack(1, []),
    PingReq(2, "n3", "10.0.0.3:7946"),
    Nack(2),
    Gossip([(ALIVE_OP, "n1", 1, 0, "")], [(b"/run/a", 10, "n1", 0, b"x", 0), (b"/run/b", 11, "n2", TOMBSTONE, b"", 99)]),
    SyncOpen(5, 123, 7, ("n1", "h:1", 1, 0, 0, 0), True),
    SyncReply(5, 1 << 41, [("n1", "h:1", 1, 0, SUSPECT, 17)], [(3, (1 << 64) - 1, 4)]),
    SyncReply(5, 1 << 41, [], None),
    SyncDescend(5, 2, [255, 0]),
    SyncTree(5, 3, [17], [(17 * 16 + 1, 99, 2)]),
    SyncVersions(5, 4, 65535, 65535, b"/run/zz", [(b"/run/a", 10, "n1", False), (b"/run/b", 3, "n9", True)]),
    SyncRecords(5, [(b"/hw/n1/cpu", 10, "n1", 1, b"\x81\xa1a\x01", 5000)], [b"/run/q"], (1, 3, 0x3FFF, b"/run/p")),
    SyncRecords(5, [], [], None),
    Records([(b"/run/a", 10, "n1", 0, b"", 0)]),
    Split(3, "n0", 1 << 45, 1 << 44),
]


def roundtrip(msg: Any) -> Any:
    body = msgpack.unpackb(msgpack.packb(encode(HEADER, msg), use_bin_type=True), raw=False)
    header, payload = decode_header(body)
    assert header == HEADER
    return decode(msg.TYPE, payload, LIMITS)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_survives_msgpack_unchanged(msg: Any) -> None:
    back = roundtrip(msg)
    assert type(back) is type(msg)
    for field in msg.__dataclass_fields__:
        assert plain(getattr(msg, field)) == plain(getattr(back, field)), field


def plain(x: Any) -> Any:
    """Lists and tuples alike, all the way down (msgpack has only one sequence type)."""
    return tuple(plain(i) for i in x) if isinstance(x, (list, tuple)) else x


def test_message_types_are_append_only() -> None:
    # Numbers are on the wire between versions: never renumber, only add.
    assert {t.name: t.value for t in MsgType} == {
        "PING": 1, "ACK": 2, "PING_REQ": 3, "NACK": 4, "GOSSIP": 5, "SYNC_OPEN": 6, "SYNC_REPLY": 7,
        "SYNC_DESCEND": 8, "SYNC_TREE": 9, "SYNC_VERSIONS": 10, "SYNC_RECORDS": 11, "RECORDS": 12, "SPLIT": 13,
    }


def gossip_body(records: list[Any], origins: list[Any] | None = None) -> list[Any]:
    """A GOSSIP payload of ``records`` given as rows (messages carry them as six columns)."""
    return [[], ["n1"] if origins is None else origins, [list(c) for c in zip(*records)] if records else [[]] * 6]


BAD = [
    ("unknown_type", 99, []),
    ("malformed", MsgType.PING, [1, "n2"]),  # a field missing
    ("malformed", MsgType.PING, [True, "n2", []]),  # a bool is not an int
    ("malformed", MsgType.PING, [1, b"n2", []]),  # bytes are not a name
    ("malformed", MsgType.PING, [1, "", []]),
    ("malformed", MsgType.PING, [1, "n\x00", []]),
    ("malformed", MsgType.PING, [1, "x" * 300, []]),
    ("out_of_range", MsgType.PING, [-1, "n2", []]),
    ("out_of_range", MsgType.PING, [1 << 63, "n2", []]),
    ("malformed", MsgType.PING, [1, "n2", [[0, "n3", 1, 1]]]),  # an update with a field missing
    ("out_of_range", MsgType.PING, [1, "n2", [[7, "n3", 1, 1, "x"]]]),  # an unknown update op
    ("too_large", MsgType.PING, [1, "n2", [[0, "n3", 1, 1, "a"]] * 5000]),
    ("malformed", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 0, "text", 0]])),  # a str value
    ("bad_key", MsgType.GOSSIP, gossip_body([[b"/ctx/a", 1, 0, 0, b"", 0]])),  # not a replicated root
    ("bad_key", MsgType.GOSSIP, gossip_body([[b"/run/../a", 1, 0, 0, b"", 0]])),
    ("bad_key", MsgType.GOSSIP, gossip_body([[b"local", 1, 0, 0, b"", 0]])),
    ("malformed", MsgType.GOSSIP, gossip_body([["/run/a", 1, 0, 0, b"", 0]])),  # a str key
    ("unknown_kind", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 7, b"", 0]])),
    ("malformed", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, TOMBSTONE, b"x", 0]])),  # a tombstone with a value
    ("out_of_range", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 1, 0, b"", 0]])),  # no such origin
    ("malformed", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 0, b"", 0]], origins=[])),
    ("out_of_range", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 0, b"", 1 << 60]])),  # an absurd deadline
    ("too_large", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 0, b"x" * (LIMITS.max_value_bytes + 1), 0]])),
    ("malformed", MsgType.SYNC_OPEN, [1, 2, 3, ["n1", "a", 1, 0, 0], True]),  # a short row
    ("out_of_range", MsgType.SYNC_OPEN, [1, 1 << 64, 3, ["n1", "a", 1, 0, 0, 0], True]),
    ("malformed", MsgType.SYNC_OPEN, [1, 2, 3, ["n1", "a", 1, 0, 0, 0], 1]),  # an int is not a bool
    ("out_of_range", MsgType.SYNC_DESCEND, [1, 9, [0]]),  # no such level
    ("out_of_range", MsgType.SYNC_DESCEND, [1, 1, [16]]),  # no such node at level 1
    ("out_of_range", MsgType.SYNC_TREE, [1, 2, [0], [[300, 0, 0]]]),
    ("out_of_range", MsgType.SYNC_VERSIONS, [1, 1, 0, 1 << 20, b"", [], []]),
    ("malformed", MsgType.SYNC_VERSIONS, [1, 0, 0, 0, "after", [], []]),
    ("malformed", MsgType.GOSSIP, [[], ["n1"], [[b"/run/a"], [1], [0], [0], [b""]]]),  # a column missing
    ("malformed", MsgType.GOSSIP, [[], ["n1"], [[b"/run/a"], [1, 2], [0], [0], [b""], [0]]]),  # unequal columns
    ("malformed", MsgType.GOSSIP, [[], ["n1"], [[b"/run/a"], 1, [0], [0], [b""], [0]]]),  # a column not a list
    ("malformed", MsgType.GOSSIP, [[], ["n1"], [b"/run/a", 1, 0, 0, b"", 0]]),  # a row, not columns
    ("malformed", MsgType.GOSSIP, gossip_body([[b"/run/a", True, 0, 0, b"", 0]])),  # a bool is not a clock
    ("malformed", MsgType.GOSSIP, gossip_body([[b"/run/a", 1, 0, 0, b"", 0], [b"/run/b", 1, 0, 0, None, 0]])),
    ("out_of_range", MsgType.SYNC_RECORDS, [1, [], [[]] * 6, [], [4, 1, 0, b""]]),  # the leaf is not under the node
    ("malformed", MsgType.SPLIT, [1, "n1", 5]),
]


@pytest.mark.parametrize("reason,msg_type,payload", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_messages_are_refused_with_a_reason(reason: str, msg_type: int, payload: list[Any]) -> None:
    with pytest.raises(WireError) as info:
        decode(msg_type, payload, LIMITS)
    assert info.value.reason == reason, info.value.detail


def test_values_can_be_checked_for_their_kind_before_anything_is_applied() -> None:
    def documents_are_msgpack(kind: int, value: bytes) -> bool:
        try:
            msgpack.unpackb(value)
            return True
        except Exception:
            return kind != 1

    strict = Limits(accepts_key=LIMITS.accepts_key, check_value=documents_are_msgpack)
    good = [b"/run/a", 1, 0, 1, msgpack.packb({"a": 1}), 0]
    bad = [b"/run/b", 1, 0, 1, b"\xc1", 0]  # 0xc1 is never valid msgpack
    assert len(decode(MsgType.GOSSIP, gossip_body([good]), strict).records) == 1
    with pytest.raises(WireError) as info:
        decode(MsgType.GOSSIP, gossip_body([good, bad]), strict)
    assert info.value.reason == "bad_value"


@pytest.mark.parametrize("msg_type", [None, "5", [5], 5.0])
def test_a_type_that_is_not_a_number_is_unknown(msg_type: object) -> None:
    with pytest.raises(WireError) as info:
        decode(msg_type, [], LIMITS)  # type: ignore[arg-type]
    assert info.value.reason == "unknown_type"


@pytest.mark.parametrize("body", [None, [], [1, 2, 3, 4], "header", [1, 2, 3, 4, -5], [1, 2, 3, 4, 1 << 64],
                                  [1.5, 2, 3, 4, 5], [1, 2, 3, 4, False]])
def test_bad_headers_are_refused(body: Any) -> None:
    with pytest.raises(WireError):
        decode_header(body)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 64), 1 << 64) | st.binary(max_size=8) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 16), st.lists(msgpack_values, max_size=8))
def test_garbage_never_raises_anything_but_a_wire_error(msg_type: int, payload: list[Any]) -> None:
    try:
        decode(msg_type, payload, LIMITS)
    except WireError as exc:
        assert exc.reason in {"malformed", "out_of_range", "too_large", "bad_key", "unknown_kind", "unknown_type",
                              "bad_value"}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(MESSAGES), st.data())
def test_a_corrupted_field_is_refused_or_decodes_to_a_valid_message(msg: Any, data: st.DataObject) -> None:
    body = encode(HEADER, msg)[5:]
    if not body:
        return
    i = data.draw(st.integers(0, len(body) - 1))
    body[i] = data.draw(msgpack_values)
    try:
        decode(msg.TYPE, body, LIMITS)
    except WireError:
        pass


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_from_wire_is_the_inverse_of_to_wire(msg: Any) -> None:
    back = type(msg).from_wire(msgpack.unpackb(msgpack.packb(msg.to_wire(), use_bin_type=True), raw=False), LIMITS)
    assert plain(back.to_wire()) == plain(msg.to_wire())
    with pytest.raises(WireError):
        type(msg).from_wire(["not", "this"], LIMITS)


def test_a_record_key_is_held_to_the_whole_path_grammar() -> None:
    for good in ("/run/é/ü".encode(), b"/run/a.b/c", b"/run/" + b"a" * 1019):
        assert decode(MsgType.GOSSIP, gossip_body([[good, 1, 0, 0, b"", 0]]), Limits()).records[0][0] == good
    for bad in (b"/run/\xff", b"/run/a/", b"/run//a", b"/run/./a", b"/run/" + b"a" * 1020, b"/run/a\x01", b"/ctx/a",
                b"run/a", b"/runs/a"):
        with pytest.raises(WireError) as exc:
            decode(MsgType.GOSSIP, gossip_body([[bad, 1, 0, 0, b"", 0]]), Limits())
        assert exc.value.reason == "bad_key", bad


def test_one_bad_key_among_many_refuses_the_batch_under_either_kind_of_root_filter() -> None:
    # A batch's keys are checked together (vfsd.paths.all_paths), against a RootFilter's prefixes
    # or through any other filter; one bad key anywhere refuses the whole message.
    good = [b"/run/k/%d" % i for i in range(100)]
    for limits in (Limits(accepts_key=on_roots(DEFAULT_ROOTS)), Limits(accepts_key=lambda k: k.startswith(b"/run/"))):
        assert len(decode(MsgType.GOSSIP, gossip_body([[k, 1, 0, 0, b"", 0] for k in good]), limits).records) == 100
        for bad in (b"/run/\xff", b"/run/a/", b"/run//a", b"/run/./a", b"/run/a\x01", b"/run/a\nb", b"/ctx/a",
                    b"run/a", b"/runs/a", b""):
            keys = [*good[:50], bad, *good[50:]]
            with pytest.raises(WireError) as exc:
                decode(MsgType.GOSSIP, gossip_body([[k, 1, 0, 0, b"", 0] for k in keys]), limits)
            assert exc.value.reason == "bad_key" and "[50].key" in exc.value.detail, bad
    # What the batch check leaves to the checks of one key at a time: a root itself, a non-ASCII path.
    rows = [[k, 1, 0, 0, b"", 0] for k in (b"/run/a", b"/hw", "/run/é".encode(), b"/run/b")]
    assert [r[0] for r in decode(MsgType.GOSSIP, gossip_body(rows), Limits()).records] == [r[0] for r in rows]


#: Per field of a record: values every check passes, and values some check refuses.
FIELDS = [
    ([b"/run/a", b"/run/b/c", b"/hw/n1", b"/hw", b"/run/\xc3\xa9"],
     [b"/run", "/run/a", b"/ctx/a", b"/run//a", b"/run/\xff", b"local", b"/run/" + b"a" * 1020, None]),  # key
    ([1, 7, (1 << 63) - 1], [-1, 1 << 63, True, "1", 1.0, None]),  # hlc
    ([0, 1], [2, -1, True, None]),  # origin index
    ([0, 1, TOMBSTONE], [7, True, "0", None]),  # kind
    ([b"", b"x", b"\x81\xa1a\x01"], [b"\xc1", "x", None, b"v" * 65]),  # value
    ([0, 5, 1 << 53], [(1 << 53) + 1, -1, False, None]),  # deadline
]


def mostly(good: list[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``good`` four times in five, else one of ``bad``."""
    return st.one_of(*[st.sampled_from(good)] * 4, st.sampled_from(bad))


wire_records = st.tuples(*(mostly(good, bad) for good, bad in FIELDS))


def both_checks(rows: list[tuple[Any, ...]], origins: list[str], checked: bool, rooted: bool) -> tuple[Any, Any]:
    """What decoding ``rows`` gives (records, or the refusal's reason) by the column checks
    (``decode``) and by the checks of one record at a time (``_rows``), each under fresh limits."""
    def msgpack_only(kind: int, value: bytes) -> bool:
        try:
            msgpack.unpackb(value)
            return True
        except Exception:
            return kind == 0

    accepts = on_roots(DEFAULT_ROOTS) if rooted else (lambda k: k.startswith((b"/run/", b"/hw/")) or k == b"/hw")

    def limits() -> Limits:
        return Limits(accepts_key=accepts, check_value=msgpack_only if checked else None, max_value_bytes=64)

    try:
        expected: Any = _rows(origins, iter(rows), "records", limits())
    except WireError as exc:
        expected = exc.reason
    try:
        got: Any = decode(MsgType.RECORDS, [origins, [list(c) for c in zip(*rows)]], limits()).records
    except WireError as exc:
        got = exc.reason
    return got, expected


def test_one_field_off_in_a_batch_is_refused_by_the_column_checks_as_by_the_record_checks() -> None:
    base = [(b"/run/a", 5, 0, 0, b"x", 0), (b"/run/b/c", 6, 1, TOMBSTONE, b"", 5), (b"/hw/n1", 7, 0, 1, b"\x81\xa1a\x01", 0)]
    for checked in (False, True):
        for rooted in (False, True):
            named = [(k, h, ["n1", "n2"][o], kind, v, at) for k, h, o, kind, v, at in base]
            assert both_checks(base, ["n1", "n2"], checked, rooted) == (named, named)
            for i in range(len(base)):
                for f, (good, bad) in enumerate(FIELDS):
                    for x in good + bad:
                        rows = list(base)
                        rows[i] = (*rows[i][:f], x, *rows[i][f + 1:])
                        got, expected = both_checks(rows, ["n1", "n2"], checked, rooted)
                        assert got == expected, (rows, checked, rooted)


@settings(max_examples=400, deadline=None)
@given(st.lists(wire_records, min_size=1, max_size=6),
       st.sampled_from([["n1", "n2"], ["n1"], []]), st.booleans(), st.booleans())
def test_the_column_checks_pass_exactly_what_the_record_checks_pass(
        rows: list[tuple[Any, ...]], origins: list[str], checked: bool, rooted: bool) -> None:
    # _records checks whole columns at once and leaves what it cannot pass to the checks of
    # one record at a time (_rows). Both must agree on every message: the same records when
    # it passes, a refusal (with the first fault's reason) when it does not.
    got, expected = both_checks(rows, origins, checked, rooted)
    assert got == expected
