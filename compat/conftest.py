"""Compatibility fixtures: one real ``vfsd serve`` per test module, flushed before every test.

The process helpers come from ``tests/conftest.py`` so that both suites start
nodes the same way. Every compat test drives a *real* client (redis-py,
redis-cli, ioredis) against that process over loopback; nothing here reaches
into vfsd's internals.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from compat.support import RedisServerProcess
from tests.conftest import VfsdProcess


@pytest.fixture(scope="module")
def vfsd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VfsdProcess]:
    """One vfsd node shared by the tests of a module (stopped at the end of the module)."""
    proc = VfsdProcess(tmp_path_factory.mktemp("compat-vfsd") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def vfsd(vfsd_server: VfsdProcess) -> Iterator[VfsdProcess]:
    """The module's node, emptied (all planes, FLUSHALL) before the test runs."""
    client = vfsd_server.client()
    try:
        assert client.flushall() is True
        assert client.dbsize() == 0
    finally:
        client.close()
    yield vfsd_server


@pytest.fixture
def port(vfsd: VfsdProcess) -> int:
    return vfsd.port


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """A real redis-server to compare printed output against (skips the test where it is not installed)."""
    if RedisServerProcess.binary() is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    # One database, as vfsd has (MOVE and SWAPDB answer alike).
    proc = RedisServerProcess(tmp_path_factory.mktemp("compat-redis"), extra=["--databases", "1"]).start()
    try:
        yield proc
    finally:
        proc.stop()
