"""The script corpus (``compat/script_corpus.py``) against redis-server and vfsd: byte-identical replies.

Both servers are fresh (their Lua random generators start from the same state),
get the same commands in the same order over raw sockets, and every reply is
compared as bytes, RESP2 first, then RESP3 after ``HELLO 3``. The few documented
differences are asserted to be exactly vfsd's documented reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hiredis
import pytest

from compat.rawresp import RawConnection
from compat.script_corpus import CASES, DIFFERENCES, RESP3_CASES, UNORDERED
from compat.support import RedisServerProcess
from tests.conftest import VfsdProcess


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RawConnection, RawConnection]]:
    if RedisServerProcess.binary() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    redis_server = RedisServerProcess(tmp_path_factory.mktemp("diff-redis")).start()
    vfsd = VfsdProcess(tmp_path_factory.mktemp("diff-vfsd") / "data").start()
    a, b = RawConnection(redis_server.port), RawConnection(vfsd.port)
    try:
        yield a, b
    finally:
        a.close()
        b.close()
        vfsd.stop()
        redis_server.stop()


def _parse(raw: bytes) -> Any:
    reader = hiredis.Reader(notEnoughData=None)
    reader.feed(raw)
    return reader.gets()


def _canonical(value: Any) -> Any:
    """A FUNCTION LIST reply with libraries and functions in a fixed order."""
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr)
    return value


def test_corpus_replies_match_redis_server(pair: tuple[RawConnection, RawConnection]) -> None:
    redis_conn, vfsd_conn = pair
    mismatches = []
    compared = 0
    for proto, cases in ((2, CASES), (3, RESP3_CASES)):
        if proto == 3:
            redis_conn.call(["HELLO", "3"])
            vfsd_conn.call(["HELLO", "3"])
        for case in cases:
            expected, got = redis_conn.call(case), vfsd_conn.call(case)
            name = " ".join(case)
            if name in DIFFERENCES:
                if got != DIFFERENCES[name]:
                    mismatches.append(f"documented difference changed: {case!r}: vfsd {got!r}")
                continue
            if name in UNORDERED:
                expected, got = _canonical(_parse(expected)), _canonical(_parse(got))
            compared += 1
            if expected != got:
                mismatches.append(f"RESP{proto} {case!r}:\n   redis-server {expected!r:.400}\n   vfsd         {got!r:.400}")
    assert compared > 250
    assert not mismatches, f"{len(mismatches)} replies differ:\n" + "\n".join(mismatches)
