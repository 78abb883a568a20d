"""A fault-injecting TCP proxy for the peer port: cut the network between groups of nodes.

Each node's peer port gets a proxy listener, and the node advertises the proxy's address
(``--peer-advertise``), so every peer connection to it runs through the proxy. The proxy
learns who is calling from the first frame the dialler sends (its HELLO, which names its
node id) and then copies bytes both ways. ``partition({"n1", "n2"}, {"n3", "n4", "n5"})``
aborts every connection between the groups and holds new ones open in silence (as a real
partition does: the handshake never completes, probes time out); ``heal()`` lets traffic
through again and closes the silent connections so their diallers redial at once.

The proxy runs its own event loop on a daemon thread; every method is called from the
test's thread and returns once the change is in effect.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import msgpack

_HEADER = struct.Struct(">IBBH")  # vfsd.peers.frame.HEADER: body length, version, family, type
_MAX_HELLO_BYTES = 64 * 1024


class _Link:
    __slots__ = ("caller", "callee", "writers", "silent")

    def __init__(self, caller: str, callee: str) -> None:
        self.caller = caller
        self.callee = callee
        self.writers: list[asyncio.StreamWriter] = []
        self.silent = False

    def abort(self) -> None:
        for writer in self.writers:
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()


class FaultProxy:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="faultproxy", daemon=True)
        self.thread.start()
        self.groups: list[set[str]] | None = None
        self.links: set[_Link] = set()
        self.servers: list[asyncio.Server] = []
        self.connections = 0
        self.held = 0

    def _call(self, coro: Any, timeout: float = 5.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- set-up -------------------------------------------------------------------------

    def add(self, callee: str, target_port: int) -> int:
        """Listen in front of ``callee``'s peer port ``target_port``; returns the proxy's port."""
        return self._call(self._listen(callee, target_port))

    async def _listen(self, callee: str, target_port: int) -> int:
        server = await asyncio.start_server(lambda r, w: self._serve(callee, target_port, r, w), "127.0.0.1", 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    def close(self) -> None:
        async def shut() -> None:
            for server in self.servers:
                server.close()
            for link in list(self.links):
                link.abort()
        try:
            self._call(shut())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    # -- faults -------------------------------------------------------------------------

    def _cut(self, a: str, b: str) -> bool:
        groups = self.groups
        if groups is None:
            return False
        return not any(a in g and b in g for g in groups)

    def partition(self, *groups: set[str]) -> None:
        """Only nodes in the same group reach each other (a node in no group reaches nobody)."""
        async def apply() -> None:
            self.groups = [set(g) for g in groups]
            for link in list(self.links):
                if self._cut(link.caller, link.callee):
                    link.abort()
        self._call(apply())

    def heal(self) -> None:
        async def apply() -> None:
            self.groups = None
            for link in list(self.links):
                if link.silent:
                    link.abort()
        self._call(apply())

    # -- connections --------------------------------------------------------------------

    async def _serve(self, callee: str, target_port: int, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            header = await reader.readexactly(_HEADER.size)
            length = _HEADER.unpack(header)[0]
            if length > _MAX_HELLO_BYTES:
                raise ValueError("not a HELLO")
            body = await reader.readexactly(length)
            hello = msgpack.unpackb(body, raw=False)
            caller = str(hello.get("node_id", "?")) if isinstance(hello, dict) else "?"
        except (asyncio.IncompleteReadError, ValueError, ConnectionError, msgpack.UnpackException):
            writer.transport.abort()
            return
        link = _Link(caller, callee)
        link.writers.append(writer)
        self.links.add(link)
        try:
            if self._cut(caller, callee):
                link.silent = True
                self.held += 1
                while await reader.read(65536):  # swallow everything, answer nothing
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                return
            link.writers.append(up_writer)
            up_writer.write(header + body)
            await asyncio.gather(self._pump(reader, up_writer, link), self._pump(up_reader, writer, link))
        finally:
            self.links.discard(link)
            link.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data or self._cut(link.caller, link.callee):
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            link.abort()
