"""The Raft desired plane inside one process: a one-member ``--peers`` cluster, driven by redis.asyncio.

What the multi-process tests cannot reach easily: a disk that fails under the log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import free_port
from vfsd.config import Config
from vfsd.desired.log import WriteAheadLog


async def _node(tmp_path: Path, **kw: Any) -> Any:
    from vfsd.node import Node

    peer = free_port()
    node = Node(Config(node_id="n1", data_dir=str(tmp_path / "n1"), port=0, peer_port=peer,
                       peers=f"n1=127.0.0.1:{peer}", collectors={"enabled": False}, **kw))
    await node.start()
    return node


async def _leading(node: Any) -> None:
    for _ in range(200):
        if node.planes["log"].may_expire:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the one-member cluster elected no leader")


async def test_a_failed_fsync_stops_acknowledging_and_never_lies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = await _node(tmp_path)
    try:
        await _leading(node)
        r = aioredis.Redis(port=node.address[1])
        assert await r.set("/ctx/before", "1") is True

        def broken_sync(self: WriteAheadLog) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(WriteAheadLog, "sync", broken_sync)
        with pytest.raises(aioredis.ResponseError, match="desired-state log unavailable"):
            await r.set("/ctx/after", "2")
        monkeypatch.undo()  # even a disk that "recovers" is not trusted again (fsyncgate)
        with pytest.raises(aioredis.ResponseError, match="desired-state log unavailable"):
            await r.set("/ctx/later", "3")
        # Reads of what was committed still answer from the state; nothing unconfirmed shows.
        await r.execute_command("READONLY")
        assert await r.get("/ctx/before") == b"1"
        assert await r.get("/ctx/after") is None
        # The other planes keep serving.
        assert await r.set("/run/still", "ok") is True
        await r.aclose()
    finally:
        await node.stop()


async def test_a_one_member_cluster_serves_and_restarts_from_its_data_dir(tmp_path: Path) -> None:
    node = await _node(tmp_path)
    try:
        await _leading(node)
        r = aioredis.Redis(port=node.address[1])
        for i in range(50):
            assert await r.set(f"/ctx/k/{i}", str(i)) is True
        assert await r.get("/ctx/k/7") == b"7"
        info = await r.info("raft")
        assert info["role"] == "leader" and info["voters"] == 1
        await r.aclose()
    finally:
        await node.stop()
    node = await _node(tmp_path)
    try:
        await _leading(node)
        r = aioredis.Redis(port=node.address[1])
        assert [await r.get(f"/ctx/k/{i}") for i in range(50)] == [str(i).encode() for i in range(50)]
        await r.aclose()
    finally:
        await node.stop()


async def test_an_entry_larger_than_a_peer_frame_is_refused_before_it_is_proposed(tmp_path: Path) -> None:
    node = await _node(tmp_path, peer_max_frame_bytes=1 << 20)
    try:
        await _leading(node)
        r = aioredis.Redis(port=node.address[1])
        with pytest.raises(aioredis.ResponseError, match="exceeds the largest replicated entry"):
            await r.set("/ctx/big", b"x" * (2 << 20))
        assert await r.get("/ctx/big") is None
        await r.aclose()
    finally:
        await node.stop()
