"""RESP codec: exact wire bytes for replies, and request parsing that does not depend
on how the stream is segmented (fed whole, a byte at a time, or cut anywhere)."""

from __future__ import annotations

import ast
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfsd.resp.encoder import encode, encode_into
from vfsd.resp.parser import MAX_HEADER_LINE_BYTES, RequestParser
from vfsd.resp.types import (
    NULL_ARRAY,
    OK,
    PONG,
    QUEUED,
    ErrorReply,
    Push,
    SimpleString,
    Verbatim,
)

# ---------------------------------------------------------------------------
# Helpers


def request(*args: bytes) -> bytes:
    """A multibulk request as a client library would send it."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def feed_chunks(parser: RequestParser, chunks: list[bytes]) -> list[list[bytes]]:
    commands: list[list[bytes]] = []
    for chunk in chunks:
        commands.extend(parser.feed(chunk))
    return commands


def parse(data: bytes, **limits: int) -> tuple[list[list[bytes]], str | None]:
    """Parse the whole input at once: (commands, error text or None)."""
    parser = RequestParser(**limits)
    commands = parser.feed(data)
    return commands, None if parser.error is None else str(parser.error)


def parse_split(data: bytes, cuts: list[int], **limits: int) -> tuple[list[list[bytes]], str | None]:
    points = [0, *sorted(set(cuts)), len(data)]
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    parser = RequestParser(**limits)
    commands = feed_chunks(parser, chunks)
    return commands, None if parser.error is None else str(parser.error)


def parse_bytewise(data: bytes, **limits: int) -> tuple[list[list[bytes]], str | None]:
    return parse_split(data, list(range(1, len(data))), **limits)


def parse_every_way(data: bytes, **limits: int) -> tuple[list[list[bytes]], str | None]:
    """Whole and byte-by-byte must agree; return their common result."""
    whole = parse(data, **limits)
    assert parse_bytewise(data, **limits) == whole
    return whole


# ---------------------------------------------------------------------------
# Encoder


@pytest.mark.parametrize(
    ("value", "resp2", "resp3"),
    [
        (b"hello", b"$5\r\nhello\r\n", b"$5\r\nhello\r\n"),
        (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        (bytearray(b"xy"), b"$2\r\nxy\r\n", b"$2\r\nxy\r\n"),
        (memoryview(b"xyz"), b"$3\r\nxyz\r\n", b"$3\r\nxyz\r\n"),
        ("h\u00e9", b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
        (0, b":0\r\n", b":0\r\n"),
        (1, b":1\r\n", b":1\r\n"),
        (-1, b":-1\r\n", b":-1\r\n"),
        (1023, b":1023\r\n", b":1023\r\n"),
        (1024, b":1024\r\n", b":1024\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (3.0, b"$1\r\n3\r\n", b",3\r\n"),
        (-0.0, b"$2\r\n-0\r\n", b",-0\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (0.1, b"$3\r\n0.1\r\n", b",0.1\r\n"),
        (1e20, b"$5\r\n1e+20\r\n", b",1e+20\r\n"),
        (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
        (float("-inf"), b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (float("nan"), b"$3\r\nnan\r\n", b",nan\r\n"),
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (QUEUED, b"+QUEUED\r\n", b"+QUEUED\r\n"),
        (PONG, b"+PONG\r\n", b"+PONG\r\n"),
        (SimpleString("Background saving started"), b"+Background saving started\r\n",
         b"+Background saving started\r\n"),
        (SimpleString("a\r\nb"), b"+a  b\r\n", b"+a  b\r\n"),
        (ErrorReply("ERR wrong number of arguments for 'get' command"),
         b"-ERR wrong number of arguments for 'get' command\r\n",
         b"-ERR wrong number of arguments for 'get' command\r\n"),
        (ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value"),
         b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
         b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (ErrorReply("ERR bad\r\nthing\n"), b"-ERR bad  thing \r\n", b"-ERR bad  thing \r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
        ((b"a", (b"b",)), b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n",
         b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n"),
        (Push([b"message", b"ch", b"hi"]),
         b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
         b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        ({b"k": 1, "v": b"x"}, b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nv\r\n$1\r\nx\r\n",
         b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nv\r\n$1\r\nx\r\n"),
        ({}, b"*0\r\n", b"%0\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (frozenset(), b"*0\r\n", b"~0\r\n"),
        (Verbatim("Some string"), b"$11\r\nSome string\r\n", b"=15\r\ntxt:Some string\r\n"),
        ([True, 2.5, NULL_ARRAY], b"*3\r\n:1\r\n$3\r\n2.5\r\n*-1\r\n",
         b"*3\r\n#t\r\n,2.5\r\n_\r\n"),
    ],
)
def test_encode_exact_bytes(value: object, resp2: bytes, resp3: bytes) -> None:
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3


def test_encode_large_bulk_avoids_copy_but_joins_right() -> None:
    payload = b"x" * 100_000
    out: list[bytes] = []
    encode_into(out, payload, 2)
    assert out[1] is payload
    assert b"".join(out) == b"$100000\r\n" + payload + b"\r\n"
    assert encode([payload], 3) == b"*1\r\n$100000\r\n" + payload + b"\r\n"


def test_encode_long_array_header() -> None:
    assert encode([0] * 2000, 2) == b"*2000\r\n" + b":0\r\n" * 2000


def test_encode_into_appends_pieces_for_a_batch() -> None:
    out: list[bytes] = []
    for value in (OK, b"v", 7, None):
        encode_into(out, value, 2)
    assert b"".join(out) == b"+OK\r\n$1\r\nv\r\n:7\r\n$-1\r\n"


@pytest.mark.parametrize("value", [object(), 1j, Ellipsis, [object()]])
def test_encode_unknown_type_is_a_programming_error(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value, 3)


def test_reply_types() -> None:
    assert isinstance(OK, str) and OK == "OK"
    err = ErrorReply("ERR no such key")
    assert err.message == "ERR no such key" and str(err) == "ERR no such key"
    assert not NULL_ARRAY and repr(NULL_ARRAY) == "NULL_ARRAY"
    assert type(NULL_ARRAY)() is NULL_ARRAY


# ---------------------------------------------------------------------------
# Parser: well-formed input


def test_multibulk_whole_and_bytewise() -> None:
    data = request(b"SET", b"key", b"value") + request(b"GET", b"key")
    assert parse_every_way(data) == ([[b"SET", b"key", b"value"], [b"GET", b"key"]], None)


def test_bulk_payload_is_binary_safe() -> None:
    payload = b"\r\n*1\r\n$3\r\n\x00\xff\r\n"
    assert parse_every_way(request(b"SET", b"k", payload)) == ([[b"SET", b"k", payload]], None)


def test_empty_argument() -> None:
    assert parse_every_way(request(b"SET", b"k", b"")) == ([[b"SET", b"k", b""]], None)


def test_pipeline_of_many_commands() -> None:
    commands = [[b"SET", b"key:%d" % i, b"v" * (i % 50)] for i in range(5000)]
    data = b"".join(request(*c) for c in commands)
    assert parse(data) == (commands, None)
    # Cut into segments of a typical receive size.
    assert parse_split(data, list(range(4096, len(data), 4096))) == (commands, None)


def test_pipeline_mixing_fast_and_slow_shapes() -> None:
    # Payloads with CRLF, lengths beyond the header cache, inline lines, empty
    # requests and many arities, in one buffer and then cut at every 7th byte.
    commands: list[list[bytes]] = []
    data = b""
    for i in range(600):
        shape = i % 6
        if shape == 0:
            command = [b"SET", b"k%d" % i, b"a\r\nb\r\n"]
        elif shape == 1:
            command = [b"SET", b"big", b"z" * 5000]
        elif shape == 2:
            command = [b"MSET"] + [b"f%d" % n for n in range(i % 11 + 1)]
        elif shape == 3:
            commands.append([b"PING"])
            data += b"PING\r\n*0\r\n"
            continue
        else:
            command = [b"GET", b"k%d" % i][: shape - 2]
        commands.append(command)
        data += request(*command)
    assert parse(data) == (commands, None)
    assert parse_split(data, list(range(7, len(data), 7))) == (commands, None)


def test_zero_and_negative_counts_are_skipped() -> None:
    data = b"*0\r\n*-1\r\n*-5\r\n" + request(b"PING")
    assert parse_every_way(data) == ([[b"PING"]], None)


def test_bytes_after_header_cr_and_payload_are_not_checked() -> None:
    # Like Redis, the byte after '\r' and the two after a payload are skipped blindly.
    assert parse_every_way(b"*1\rX$4\r\nPINGxy") == ([[b"PING"]], None)


def test_partial_command_is_held_and_counted() -> None:
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nGET\r\n$5\r\nab") == []
    assert parser.buffered_bytes == len(b"*2\r\n$3\r\nGET\r\n$5\r\nab")
    assert parser.feed(b"cde\r\n") == [[b"GET", b"abcde"]]
    assert parser.buffered_bytes == 0
    assert parser.error is None


def test_large_payload_in_many_segments() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = request(b"SET", b"k", payload)
    parser = RequestParser()
    chunks = [data[i:i + 1000] for i in range(0, len(data), 1000)]
    commands = feed_chunks(parser, chunks[:-1])
    assert commands == [] and parser.buffered_bytes == len(data) - len(chunks[-1])
    assert parser.feed(chunks[-1]) == [[b"SET", b"k", payload]]
    assert parser.buffered_bytes == 0


def test_huge_payload_at_the_limit_is_awaited_not_refused() -> None:
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nSET\r\n$536870912\r\nxx") == []
    assert parser.error is None


# ---------------------------------------------------------------------------
# Parser: inline commands


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"PING\r\n", [b"PING"]),
        (b"PING\n", [b"PING"]),
        (b"  SET   k  v \t\r\n", [b"SET", b"k", b"v"]),
        (b"SET k \"hello world\"\r\n", [b"SET", b"k", b"hello world"]),
        (b"SET k \"a\\n\\r\\t\\b\\a\\\\\\\"z\"\n", [b"SET", b"k", b"a\n\r\t\b\a\\\"z"]),
        (b"SET k \"\\x41\\x7a\\xZZ\\q\"\n", [b"SET", b"k", b"Az" + b"xZZq"]),
        (b"SET k 'it\\'s \"x\"'\n", [b"SET", b"k", b"it's \"x\""]),
        (b"SET k 'a\\nb'\n", [b"SET", b"k", b"a\\nb"]),
        (b"SET k \"\"\n", [b"SET", b"k", b""]),
        (b"SET k'' ''\n", [b"SET", b"k", b""]),
        (b"SET a\x0bb c\n", [b"SET", b"a\x0bb", b"c"]),
        (b"\x0c SET k\n", [b"SET", b"k"]),
        (b"GET a\x00ignored\n", [b"GET", b"a"]),
        (b"SET k \"v\"\x0b\n", [b"SET", b"k", b"v"]),
    ],
)
def test_inline_splitting(line: bytes, args: list[bytes]) -> None:
    assert parse_every_way(line) == ([args], None)


def test_blank_inline_lines_are_skipped() -> None:
    assert parse_every_way(b"\r\n\n   \r\nPING\r\n \t \n") == ([[b"PING"]], None)


@pytest.mark.parametrize(
    "line",
    [b"SET k \"abc\n", b"SET k \"abc\"def\n", b"SET k 'abc\n", b"SET k 'abc'd\n",
     b"SET k \"abc\\\"\n", b"SET k \"a\x00\"\n", b"SET k''v\n"],
)
def test_inline_unbalanced_quotes(line: bytes) -> None:
    assert parse_every_way(b"PING\n" + line + b"PING\n") == (
        [[b"PING"]], "unbalanced quotes in request")


def test_inline_and_multibulk_mixed() -> None:
    data = b"PING\r\n" + request(b"GET", b"k") + b"ECHO hi\n"
    assert parse_every_way(data) == ([[b"PING"], [b"GET", b"k"], [b"ECHO", b"hi"]], None)


def test_too_big_inline_request() -> None:
    assert parse_every_way(b"PING\n" + b"a" * 17, max_inline_bytes=16) == (
        [[b"PING"]], "too big inline request")
    # The limit is on the line, so it holds even when the newline is already there.
    assert parse_every_way(b"a" * 17 + b"\n", max_inline_bytes=16) == (
        [], "too big inline request")
    assert parse_every_way(b"a" * 16 + b"\n", max_inline_bytes=16) == ([[b"a" * 16]], None)
    assert parse_every_way(b"a" * 16, max_inline_bytes=16) == ([], None)


def test_default_inline_limit() -> None:
    parser = RequestParser()
    assert parser.feed(b"x" * (64 * 1024)) == [] and parser.error is None
    parser.feed(b"x")
    assert str(parser.error) == "too big inline request"


# ---------------------------------------------------------------------------
# Parser: protocol errors and trailing garbage


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"* 1\r\n", "invalid multibulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*99999999999999999999\r\n", "invalid multibulk length"),
        (b"*1\r\n+PING\r\n", "expected '$', got '+'"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"*2\r\n$3\r\nGET\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$+3\r\nfoo\r\n", "invalid bulk length"),
        (b"*1\r\n$03\r\nfoo\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
    ],
)
def test_protocol_errors_after_valid_commands(garbage: bytes, message: str) -> None:
    valid = request(b"SET", b"a", b"1") + b"PING\r\n"
    commands, error = parse_every_way(valid + garbage + request(b"GET", b"a"))
    assert commands == [[b"SET", b"a", b"1"], [b"PING"]]
    assert error == message


def test_huge_declared_bulk_length_is_refused_from_the_header() -> None:
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$3\r\nSET\r\n$9999999999\r\n") == []
    assert str(parser.error) == "invalid bulk length"
    limited = RequestParser(max_bulk_bytes=10)
    assert limited.feed(request(b"GET", b"0123456789") + b"*1\r\n$11\r\n") == [
        [b"GET", b"0123456789"]]
    assert str(limited.error) == "invalid bulk length"


def test_array_length_limit() -> None:
    assert parse_every_way(request(b"a", b"b", b"c"), max_array_len=3) == (
        [[b"a", b"b", b"c"]], None)
    assert parse_every_way(request(b"a", b"b", b"c", b"d"), max_array_len=3) == (
        [], "invalid multibulk length")


def test_too_big_header_lines() -> None:
    digits = b"1" * MAX_HEADER_LINE_BYTES
    assert parse_every_way(b"*" + digits) == ([], "too big mbulk count string")
    assert parse_every_way(b"*" + digits + b"\r\n") == ([], "too big mbulk count string")
    assert parse_every_way(b"*1\r\n$" + digits) == ([], "too big bulk count string")
    # One byte shorter waits (and would be an invalid number once ended).
    assert parse(b"*" + digits[1:]) == ([], None)
    assert parse(b"*" + digits[1:] + b"\r\n") == ([], "invalid multibulk length")


def test_query_buffer_limit() -> None:
    # A command bigger than the limit is refused even when it arrives complete.
    assert parse_every_way(request(b"PING") + request(b"SET", b"k", b"v" * 30),
                           max_query_buffer_bytes=40) == ([[b"PING"]], "query buffer limit exceeded")
    # ... and refused from the `$` header when the payload cannot fit.
    parser = RequestParser(max_query_buffer_bytes=40)
    parser.feed(b"*2\r\n$3\r\nSET\r\n$30\r\n")
    assert str(parser.error) == "query buffer limit exceeded"
    # An endless inline line or header hits it too.
    assert parse_every_way(b"P" * 50, max_query_buffer_bytes=40) == (
        [], "query buffer limit exceeded")
    exactly_40 = request(b"x" * 29)
    assert len(exactly_40) == 40
    assert parse_every_way(exactly_40, max_query_buffer_bytes=40) == ([[b"x" * 29]], None)
    assert parse_every_way(exactly_40 + b"*", max_query_buffer_bytes=40) == ([[b"x" * 29]], None)
    assert parse_every_way(request(b"x" * 30), max_query_buffer_bytes=40) == (
        [], "query buffer limit exceeded")


def test_after_an_error_feed_returns_nothing() -> None:
    parser = RequestParser()
    assert parser.feed(b"PING\r\n*x\r\n") == [[b"PING"]]
    assert str(parser.error) == "invalid multibulk length"
    assert parser.feed(request(b"PING")) == []
    assert parser.buffered_bytes == 0


# ---------------------------------------------------------------------------
# Properties


_args = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(_args, max_size=8))
def test_round_trip_multibulk(commands: list[list[bytes]]) -> None:
    data = b"".join(request(*c) for c in commands)
    assert parse(data) == (commands, None)


@settings(max_examples=40, deadline=None)
@given(st.lists(_args, min_size=1, max_size=4))
def test_round_trip_through_the_encoder(commands: list[list[bytes]]) -> None:
    data = b"".join(encode(c, 2) for c in commands)  # an array of bulks is a request
    assert parse(data) == (commands, None)


# Streams built from fragments that hit every branch: valid and broken commands,
# inline lines with quotes, and raw garbage.
_fragment = st.one_of(
    st.builds(lambda c: request(*c), _args),
    st.sampled_from([
        b"PING\r\n", b"SET k \"a b\"\n", b"GET 'x'\r\n", b"\r\n", b"*0\r\n", b"*-1\r\n",
        b"*1\r\n$4\r\nPING\r\n", b"ECHO \"\\x41\"\n", b"SET a \"b\"c\n",
        b"*2\r\n$3\r\nGET\r\n", b"$3\r\n", b"*1\r\n:1\r\n", b"*x\r\n", b"$-1\r\n",
        b"*1\r\n$100\r\n", b"*1\r\n$2\r\nab\r\n", b"\r", b"\n", b"*", b"$", b"\"", b"'",
    ]),
    st.binary(max_size=12),
)

_limits = st.sampled_from([
    {},
    {"max_bulk_bytes": 8, "max_array_len": 4, "max_inline_bytes": 12},
    {"max_query_buffer_bytes": 24},
    {"max_query_buffer_bytes": 9, "max_inline_bytes": 5, "max_bulk_bytes": 3},
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_fragment, max_size=10).map(b"".join), st.data(), _limits)
def test_segmentation_does_not_change_the_result(data: bytes, draw: st.DataObject,
                                                 limits: dict[str, int]) -> None:
    whole = parse(data, **limits)
    cuts = draw.draw(st.lists(st.integers(0, len(data)), max_size=8))
    assert parse_split(data, cuts, **limits) == whole
    assert parse_bytewise(data, **limits) == whole


# ---------------------------------------------------------------------------
# Sans-IO discipline


def test_codec_modules_import_no_io() -> None:
    forbidden = {"asyncio", "socket", "selectors", "io", "os", "time", "datetime", "threading"}
    root = pathlib.Path(__file__).resolve().parents[1] / "vfsd" / "resp"
    for name in ("types.py", "parser.py", "encoder.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in forbidden, f"{name} imports {module}"
