"""redis-py's ``Lock``, unmodified, sync and asyncio, on a local key, an active path and a lease path.

``Lock`` acquires with ``SET NX PX`` and releases, extends and reacquires through
Lua scripts run with EVALSHA (``register_script``: EVALSHA first, EVAL on NOSCRIPT).
On ``/lk`` those scripts are desired-plane log entries, applied atomically.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import LockError, LockNotOwnedError

from tests.conftest import VfsdProcess

KEYS = ["lock-local", "/run/locks/deploy", "/lk/deploy"]


@pytest.fixture
def client(vfsd: VfsdProcess) -> redis.Redis:
    c = vfsd.client()
    yield c
    c.close()


@pytest.mark.parametrize("key", KEYS)
def test_lock_sync(client: redis.Redis, key: str) -> None:
    lock = client.lock(key, timeout=5)
    assert lock.acquire(blocking=False)
    assert lock.locked() and lock.owned()
    other = client.lock(key, timeout=5)
    started = time.monotonic()
    assert not other.acquire(blocking=True, blocking_timeout=0.3)  # blocking acquire gives up at its timeout
    assert 0.15 < time.monotonic() - started < 3
    assert not other.owned()
    assert lock.extend(5)  # adds to the remaining TTL
    assert 5000 < client.pttl(key) <= 10000
    assert lock.extend(2, replace_ttl=True)
    assert client.pttl(key) <= 2000
    assert lock.reacquire()
    assert 4000 < client.pttl(key) <= 5000
    lock.release()
    assert not lock.locked() and not lock.owned()
    assert other.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):  # the release script refuses a token that does not hold the lock
        lock.do_release(b"not-the-token")
    other.release()


@pytest.mark.parametrize("key", KEYS)
def test_release_after_expiry_raises_not_owned(client: redis.Redis, key: str) -> None:
    lock = client.lock(key, timeout=0.2)
    assert lock.acquire(blocking=False)
    deadline = time.monotonic() + 5
    while client.exists(key) and time.monotonic() < deadline:  # the lease lapses (poll, bounded)
        time.sleep(0.05)
    thief = client.lock(key, timeout=5)
    assert thief.acquire(blocking=False)
    with pytest.raises(LockNotOwnedError):
        lock.extend(1)
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()
    with pytest.raises(LockNotOwnedError):
        lock.release()  # (release forgets the token first, so it comes last)
    assert thief.owned()
    thief.release()


@pytest.mark.parametrize("key", KEYS)
def test_lock_context_manager_and_unlocked_release(client: redis.Redis, key: str) -> None:
    with client.lock(key, timeout=5, blocking_timeout=1) as held:
        assert held.owned()
    assert not client.exists(key)
    with pytest.raises(LockError):
        client.lock(key).release()  # never acquired


@pytest.mark.parametrize("key", KEYS)
async def test_lock_asyncio(vfsd: VfsdProcess, key: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=vfsd.port, socket_timeout=10, protocol=2)
    try:
        lock = client.lock(key, timeout=5)
        assert await lock.acquire(blocking=False)
        assert await lock.locked() and await lock.owned()
        other = client.lock(key, timeout=5)
        assert not await other.acquire(blocking=True, blocking_timeout=0.3)
        assert await lock.extend(5)
        assert 5000 < await client.pttl(key) <= 10000
        assert await lock.extend(2, replace_ttl=True)
        assert await client.pttl(key) <= 2000
        assert await lock.reacquire()
        await lock.release()
        assert not await lock.locked()

        short = client.lock(key, timeout=0.2)
        assert await short.acquire(blocking=False)
        deadline = time.monotonic() + 5
        while await client.exists(key) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await other.acquire(blocking=False)
        with pytest.raises(LockNotOwnedError):
            await short.release()
        await other.release()
    finally:
        await client.aclose()


@pytest.mark.parametrize("key", KEYS)
async def test_lock_asyncio_not_owned_after_expiry(vfsd: VfsdProcess, key: str) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=vfsd.port, socket_timeout=10, protocol=2)
    try:
        lock = client.lock(key, timeout=0.2)
        assert await lock.acquire(blocking=False)
        deadline = time.monotonic() + 5
        while await client.exists(key) and time.monotonic() < deadline:  # the lease lapses (poll, bounded)
            await asyncio.sleep(0.05)
        assert not await lock.owned()
        thief = client.lock(key, timeout=5)
        assert await thief.acquire(blocking=True, blocking_timeout=1)
        started = time.monotonic()  # now held: a blocking acquire gives up at its timeout
        assert not await client.lock(key, timeout=5).acquire(blocking=True, blocking_timeout=0.3)
        assert 0.15 < time.monotonic() - started < 3
        with pytest.raises(LockNotOwnedError):
            await lock.extend(1)
        with pytest.raises(LockNotOwnedError):
            await lock.reacquire()
        with pytest.raises(LockNotOwnedError):
            await lock.do_release(b"not-the-token")
        with pytest.raises(LockNotOwnedError):
            await lock.release()
        assert await thief.owned() and await thief.locked()
        await thief.release()
        assert not await thief.locked()
    finally:
        await client.aclose()


def test_lock_survives_script_flush(client: redis.Redis) -> None:
    """After SCRIPT FLUSH (or a restart) EVALSHA gets NOSCRIPT and redis-py falls back to EVAL."""
    lock = client.lock("/lk/flushed", timeout=5)
    assert lock.acquire(blocking=False)
    client.script_flush()
    assert lock.extend(1)
    lock.release()
    assert not client.exists("/lk/flushed")
