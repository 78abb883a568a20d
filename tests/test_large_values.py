"""Large values: the parser hands a large payload over as its received pieces (joined once, off the event loop),
and large replies go out as pieces; what the client gets back is exactly what it stored, in order."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import VfsdProcess
from vfsd.resp.parser import RequestParser


def request(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def feed_all(parser: RequestParser, stream: bytes, cuts: list[int]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    last = 0
    for cut in sorted(set(c % (len(stream) + 1) for c in cuts)) + [len(stream)]:
        out += parser.feed(stream[last:cut])
        for bulk in parser.deferred:  # what the shell does, on a worker thread
            bulk.resolve(bulk.join())
        parser.deferred.clear()
        last = cut
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6), st.lists(st.integers(0, 10**6), max_size=30),
       st.integers(1, 2000))
def test_deferred_payloads_give_the_same_commands(values: list[bytes], cuts: list[int], threshold: int) -> None:
    stream = b"".join(request(b"SET", b"k%d" % i, v) for i, v in enumerate(values)) + request(b"PING")
    plain = feed_all(RequestParser(), stream, cuts)
    deferring = feed_all(RequestParser(defer_bulk_bytes=threshold), stream, cuts)
    assert deferring == plain
    assert plain[-1] == [b"PING"] and len(plain) == len(values) + 1


def test_a_payload_that_is_one_whole_segment_is_not_copied() -> None:
    parser = RequestParser()
    payload = b"p" * 100_000
    assert parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n") == []
    commands = parser.feed(payload)  # the payload alone, as a socket read of exactly its size can deliver it
    assert commands == [] and parser.buffered_bytes > 0
    [[_, _, value]] = parser.feed(b"\r\n")
    assert value is payload


def test_only_payloads_past_the_threshold_are_deferred() -> None:
    parser = RequestParser(defer_bulk_bytes=1000)
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1500\r\n" + b"a" * 700)
    commands = parser.feed(b"a" * 800 + b"\r\n*1\r\n$4\r\nPING\r\n")
    assert commands == [[b"SET", b"k", b""], [b"PING"]]  # b"" stands in until resolved
    assert len(parser.deferred) == 1 and parser.deferred[0].size == 1500
    bulk = parser.deferred[0]
    bulk.resolve(bulk.join())
    assert commands[0] == [b"SET", b"k", b"a" * 1500] and bulk.parts == []
    small = RequestParser(defer_bulk_bytes=1000)
    small.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999\r\n" + b"a" * 500)
    assert small.feed(b"a" * 499 + b"\r\n") == [[b"SET", b"k", b"a" * 999]] and not small.deferred


def read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 22))
        assert chunk, "connection closed"
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def test_large_values_round_trip_in_order_on_every_plane(server: VfsdProcess) -> None:
    value = bytes(range(256)) * (24 * 4096)  # 24 MiB, past the off-loop join threshold
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        for key in (b"big", b"/run/big", b"/ctx/big"):
            # One write: the large SET, then a GET of it and a PING that must wait their turn behind it.
            sock.sendall(request(b"SET", key, value) + request(b"GET", key) + request(b"STRLEN", key) +
                         request(b"PING"))
            assert read_exactly(sock, 5) == b"+OK\r\n"
            header = b"$%d\r\n" % len(value)
            assert read_exactly(sock, len(header)) == header
            assert hashlib.sha256(read_exactly(sock, len(value))).digest() == hashlib.sha256(value).digest()
            tail = b"\r\n:%d\r\n+PONG\r\n" % len(value)
            assert read_exactly(sock, len(tail)) == tail


def test_vfs_events_leave_out_values_too_large_to_encode_as_json(server: VfsdProcess) -> None:
    import json

    from tests.conftest import wait_for

    r = server.client()
    p = r.pubsub(ignore_subscribe_messages=True)

    def next_message() -> Any:
        return wait_for(lambda: p.get_message(timeout=0.5), timeout=10, what="a __vfs__ event")

    try:
        p.subscribe("__vfs__:/run/huge")
        wait_for(lambda: r.pubsub_numsub("__vfs__:/run/huge")[0][1] == 1, what="the subscription")
        value = b"h" * (2 << 20)
        r.set("/run/huge", value)
        message = next_message()
        body = json.loads(message["data"])
        assert body["value_omitted"] is True and body["size"] == len(value) and "value" not in body
        r.config_set("vfs-event-max-value-bytes", str(4 << 20))
        r.set("/run/huge", value)
        assert json.loads(next_message()["data"])["value"] == value.decode()
    finally:
        r.config_set("vfs-event-max-value-bytes", str(1 << 20))
        p.close()
        r.close()
