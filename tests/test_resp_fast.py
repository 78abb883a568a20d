"""The hiredis-accelerated parser must agree with the strict parser on every byte stream."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.resp.fast import FastRequestParser
from vfsd.resp.parser import RequestParser


def encode(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def run(parser: RequestParser | FastRequestParser, chunks: list[bytes]) -> tuple[list[list[bytes]], str | None]:
    out: list[list[bytes]] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out, None if parser.error is None else str(parser.error)


fragments = st.one_of(
    st.lists(st.binary(max_size=12), min_size=1, max_size=4).map(encode),
    st.sampled_from([b"PING\r\n", b"*0\r\n", b"*-1\r\n", b"*1\r\n:5\r\n", b"*1\r\n$-1\r\n", b"+OK\r\n", b"*2\r\n*1\r\n",
                     b"$3\r\nfoo\r\n", b"*1\r\n$4\r\nPI", b"NG\r\n", b'SET "a b" c\r\n', b"*99999999999\r\n",
                     b"*1\r\n$99999999999\r\n", b"\r\n", b"*3\r\n$3\r\nSET\r\n", b"_\r\n"]),
    st.binary(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(fragments, max_size=12), st.data())
def test_fast_parser_matches_strict_parser(parts: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    chunks = [c for c in chunks if c]
    assert run(FastRequestParser(max_array_len=1000, max_bulk_bytes=10_000), chunks) == run(
        RequestParser(max_array_len=1000, max_bulk_bytes=10_000), chunks
    )


def test_fast_parser_takes_the_fast_path_for_whole_batches() -> None:
    parser = FastRequestParser()
    batch = b"".join(encode([b"SET", b"k%d" % i, b"v"]) for i in range(16))
    assert parser.feed(batch) == [[b"SET", b"k%d" % i, b"v"] for i in range(16)]
    assert parser.buffered_bytes == 0 and parser.error is None
    # a request split across reads falls back and is still parsed exactly once
    assert parser.feed(batch[:10]) == []
    assert parser.feed(batch[10:]) == [[b"SET", b"k%d" % i, b"v"] for i in range(16)]


def test_fast_parser_limits_and_errors_match_redis() -> None:
    parser = FastRequestParser(max_array_len=2)
    assert parser.feed(encode([b"PING"]) + encode([b"A", b"B", b"C"])) == [[b"PING"]]
    assert str(parser.error) == "invalid multibulk length"
    assert parser.feed(encode([b"PING"])) == []
