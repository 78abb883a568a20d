"""A fault-injecting TCP proxy for the peer port: partitions between named nodes, on loopback.

Each node gets a proxy port that stands for its peer port: the cluster's ``--peers`` list
names the proxies, so every connection between two nodes passes through the proxy of
the node that was dialled. The proxy reads the dialler's first frame (its HELLO, a
msgpack map naming its ``node_id``) to learn who is calling, then forwards both ways.
``partition({"n1"}, {"n2", "n3"})`` refuses new connections between the groups and cuts
the ones open (both ways, as a real partition does); ``heal()`` lets them through again.
It runs on its own event loop in a thread, so tests stay synchronous.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import msgpack

HEADER = struct.Struct(">IBBH")


class FaultProxies:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.AbstractServer] = []
        self._cut: set[frozenset[str]] = set()
        self._live: list[tuple[str, str, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.refused = 0

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def add(self, name: str, target_port: int) -> int:
        """A proxy standing for ``name``'s peer port (which listens on ``target_port``); its port."""
        async def start() -> int:
            server = await asyncio.start_server(lambda r, w: self._serve(name, target_port, r, w), "127.0.0.1", 0)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]
        return self._call(start())

    def partition(self, *groups: set[str]) -> None:
        async def cut() -> None:
            self._cut = {frozenset((a, b)) for i, g in enumerate(groups) for h in groups[i + 1:] for a in g for b in h}
            for src, dst, w1, w2 in list(self._live):
                if frozenset((src, dst)) in self._cut:
                    w1.transport.abort()
                    w2.transport.abort()
        self._call(cut())

    def heal(self) -> None:
        async def heal() -> None:
            self._cut = set()
        self._call(heal())

    def close(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for _, _, w1, w2 in self._live:
                w1.transport.abort()
                w2.transport.abort()
        try:
            self._call(close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _serve(self, dst: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readexactly(HEADER.size), 10)
            length = HEADER.unpack(head)[0]
            body = await asyncio.wait_for(reader.readexactly(length), 10)
            hello = msgpack.unpackb(body, raw=False)
            src = str(hello.get("node_id")) if isinstance(hello, dict) else "?"
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, msgpack.UnpackException, OSError):
            writer.transport.abort()
            return
        if frozenset((src, dst)) in self._cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.transport.abort()
            return
        up_writer.write(head + body)
        entry = (src, dst, writer, up_writer)
        self._live.append(entry)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            if entry in self._live:
                self._live.remove(entry)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()
