"""Busy scripts: answering other clients while a script runs past ``busy-reply-threshold``.

Theory of operation. Scripts run on the event loop thread, like every other
command, so nothing can interleave with them: no client command, expiry sweep,
collector write or desired-plane apply runs until the script returns. (Running
them on a worker thread would cost a thread hand-off, about 50 µs, on every
EVALSHA; and the loop would then have to hold back every other mutator anyway.)

While a script runs, the loop is not running, so it cannot answer anyone. Redis
solves this from inside its Lua count hook (``processEventsWhileBlocked``) and so
does vfsd: the sandbox's hook calls ``BusyScripts.tick`` every 100,000 Lua
instructions. Once the script has run for ``busy-reply-threshold`` ms, each tick
polls (``poll`` with a zero timeout) the listening sockets and the sockets of
idle clients, reads what they sent through their own parsers, and answers every
command with -BUSY, except those Redis allows then: SCRIPT KILL, FUNCTION KILL,
FUNCTION STATS, SHUTDOWN NOSAVE, AUTH, HELLO, QUIT, RESET, MULTI, DISCARD,
UNWATCH. New connections are accepted into ``Client`` objects over a small raw
transport and handed to the event loop (``connect_accepted_socket``) when the
script ends. Clients waiting on a reply of their own (a desired-plane write), the
script's caller, and clients whose output is backed up are not read: their
bytes wait in the kernel, so no reply can overtake an earlier one.

SCRIPT KILL sets the run's verdict; the next hook raises it as a Lua error (and
keeps raising it on every line, so ``pcall`` cannot swallow it). A script that
wrote is unkillable (-UNKILLABLE), as in Redis; so is a desired-plane script,
which runs identically on every node and stops by itself within
``script-max-instructions``. SHUTDOWN NOSAVE ends the process at once: every
acknowledged desired write is already fsynced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from vfsd.resp.encoder import encode_into
from vfsd.resp.types import OK, ErrorReply

if TYPE_CHECKING:
    from vfsd.node import Node
    from vfsd.scripting.calls import Invocation
    from vfsd.server import Client

log = logging.getLogger(__name__)

BUSY_EVAL = ErrorReply("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
BUSY_FUNCTION = ErrorReply("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
NOTBUSY = ErrorReply("NOTBUSY No scripts in execution right now.")
UNKILLABLE_WROTE = ErrorReply(
    "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the "
    "script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")
UNKILLABLE_DESIRED = ErrorReply(
    "UNKILLABLE The busy script runs on the desired plane: it is one log entry, applied identically on every node, "
    "and cannot be killed on one of them. It stops by itself within script-max-instructions; or use SHUTDOWN NOSAVE.")
KILLED = b"ERR Script killed by user with SCRIPT KILL..."
#: Commands answered normally while a script is busy (Redis's CMD_ALLOW_BUSY ones that touch no data).
ALLOWED = frozenset({b"auth", b"hello", b"quit", b"reset", b"multi", b"discard", b"unwatch"})
READ_BYTES = 64 * 1024


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class _RawTransport:
    """A socket accepted while the loop was blocked; replaced by a real transport afterwards."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.pending:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.close()
                return
            data = data[sent:]
        self.pending += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        try:
            if name == "peername":
                return self.sock.getpeername()
            if name == "sockname":
                return self.sock.getsockname()
        except OSError:
            return default
        return self.sock if name == "socket" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return len(self.pending)


class BusyScripts:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.active: Invocation | None = None
        self._listeners: list[socket.socket] = []
        self._watched: dict[int, tuple[socket.socket, Client]] = {}
        self._accepted: list[tuple[Client, _RawTransport]] = []
        self._poll: select.poll | None = None  # poll, not select: descriptors past 1024 are common

    @staticmethod
    def now_ms() -> int:
        return _monotonic_ms()

    # -- called from the sandbox's hook ----------------------------------------------------

    def tick(self, run: "Invocation | None") -> bytes | None:
        if run is None:
            return None
        threshold = self.node.settings.busy_reply_threshold_ms
        if not run.busy:
            if threshold <= 0:
                return None
            now = _monotonic_ms()
            if not run.started_ms:
                run.started_ms = now  # a desired-plane run is timed from its first hook
                return None
            if now - run.started_ms < threshold:
                return None
            self._enter(run)
        self._serve(run)
        return run.verdict

    def _enter(self, run: "Invocation") -> None:
        run.busy = True
        self.active = run
        log.warning("Slow script detected: still in execution after %d milliseconds. You can try killing the script "
                    "using the %s command. Script name is: %s.", _monotonic_ms() - run.started_ms,
                    "SCRIPT KILL" if run.is_eval else "FUNCTION KILL", run.name)
        server = getattr(self.node, "_server", None)
        self._listeners = []
        self._poll = select.poll()
        for listener in (server.sockets if server is not None else ()):
            dup = socket.socket(fileno=os.dup(listener.fileno()))
            dup.setblocking(False)
            self._listeners.append(dup)
            self._poll.register(dup.fileno(), select.POLLIN)
        self._watched = {}
        for client in list(self.node.clients.values()):
            self._watch(client, run)

    def _watch(self, client: "Client", run: "Invocation") -> None:
        transport = client.transport
        if (client is run.caller or transport is None or transport.is_closing() or client.waiting is not None
                or client.backlog or client.closing or transport.get_write_buffer_size()):
            return
        if isinstance(transport, _RawTransport):
            sock = transport.sock
        else:
            raw = transport.get_extra_info("socket")
            if raw is None:
                return
            sock = socket.socket(fileno=os.dup(raw.fileno()))
            sock.setblocking(False)
        self._watched[sock.fileno()] = (sock, client)
        if self._poll is not None:
            self._poll.register(sock.fileno(), select.POLLIN)

    def _serve(self, run: "Invocation") -> None:
        if self._poll is None:
            return
        try:
            readable = [fd for fd, _ in self._poll.poll(0)]
        except OSError:
            return
        listeners = {s.fileno(): s for s in self._listeners}
        for fd in readable:
            if fd in listeners:
                self._accept(listeners[fd], run)
                continue
            entry = self._watched.get(fd)
            if entry is None:
                continue
            sock, client = entry
            try:
                data = sock.recv(READ_BYTES)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._forget(fd)
                client.kill()
                continue
            self._answer(client, data, run)
            if client.closing:
                self._forget(fd)
                if client.transport is not None:
                    client.transport.close()

    def _accept(self, listener: socket.socket, run: "Invocation") -> None:
        from vfsd.server import Client

        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        client = Client(self.node)
        transport = _RawTransport(sock)
        client.connection_made(transport)  # type: ignore[arg-type]
        if client.closing:  # refused (protected mode, maxclients): it has its reply already
            transport.close()
            return
        self._accepted.append((client, transport))
        self._watched[sock.fileno()] = (sock, client)
        if self._poll is not None:
            self._poll.register(sock.fileno(), select.POLLIN)

    def _forget(self, fd: int) -> None:
        if self._poll is not None:
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass
        entry = self._watched.pop(fd, None)
        if entry is not None and not isinstance(entry[1].transport, _RawTransport):
            entry[0].close()  # our duplicate only: the client's own socket stays open

    def _answer(self, client: "Client", data: bytes, run: "Invocation") -> None:
        out: list[bytes] = []
        for argv in client.parser.feed(data):
            reply = self.reply(client, argv, run)
            if type(reply) is ErrorReply:
                self.node.stats.error_replies += 1
            if reply is not None:
                encode_into(out, reply, client.proto)
            if client.closing:
                break
        if client.parser.error is not None and not client.closing:
            out.append(b"-ERR Protocol error: " + str(client.parser.error).encode() + b"\r\n")
            client.closing = True
        if out and client.transport is not None:
            client.transport.write(b"".join(out))

    def reply(self, client: "Client", argv: list[bytes], run: "Invocation") -> Any:
        """The answer to one command that arrived while ``run`` is busy."""
        from vfsd.commands.dispatch import NOAUTH, dispatch

        name = argv[0].lower()
        sub = argv[1].lower() if len(argv) > 1 else b""
        if not client.authenticated and name not in ALLOWED:
            return NOAUTH
        if name == b"script" and sub == b"kill":
            return self.kill(run, is_eval=True)
        if name == b"function" and sub == b"kill":
            return self.kill(run, is_eval=False)
        if name == b"function" and sub == b"stats":
            return BUSY_EVAL if run.is_eval else self.stats()
        if name == b"shutdown":
            if any(a.upper() == b"NOSAVE" for a in argv[1:]):
                self.shutdown_now()
            return ErrorReply("ERR Errors trying to SHUTDOWN. Check logs.")
        if name in ALLOWED:
            return dispatch(client, argv)
        return BUSY_EVAL if run.is_eval else BUSY_FUNCTION

    def kill(self, run: "Invocation | None", *, is_eval: bool) -> Any:
        if run is None or not run.busy:
            return NOTBUSY
        if run.deterministic:
            return UNKILLABLE_DESIRED
        if run.wrote:
            return UNKILLABLE_WROTE
        if is_eval and not run.is_eval:
            return BUSY_FUNCTION
        if not is_eval and run.is_eval:
            return BUSY_EVAL
        run.verdict = KILLED
        log.warning("Lua script killed by user with %s.", "SCRIPT KILL" if is_eval else "FUNCTION KILL")
        return OK

    def stats(self) -> dict[str, Any]:
        from vfsd.commands.scripting import function_stats

        return function_stats(self.node, self.active)

    def shutdown_now(self) -> None:
        log.warning("User requested shutdown while a script was busy (SHUTDOWN NOSAVE): exiting now")
        for handler in logging.getLogger().handlers + logging.getLogger("vfsd").handlers:
            try:
                handler.flush()
            except Exception:
                pass
        os._exit(0)

    # -- after the run ---------------------------------------------------------------------

    def finish(self) -> None:
        """The busy run returned: stop polling, hand new connections to the event loop."""
        run, self.active = self.active, None
        if run is None:
            return
        run.busy = False
        log.warning("Slow script finished after %d milliseconds", _monotonic_ms() - run.started_ms)
        for fd in list(self._watched):
            self._forget(fd)
        for sock in self._listeners:
            sock.close()
        self._listeners = []
        self._poll = None
        accepted, self._accepted = self._accepted, []
        loop = asyncio.get_running_loop()
        for client, transport in accepted:
            if transport.closed or client.closing:
                transport.close()
                self.node.clients.pop(client.id, None)
                continue
            loop.create_task(self._adopt(loop, client, transport))

    async def _adopt(self, loop: asyncio.AbstractEventLoop, client: "Client", raw: _RawTransport) -> None:
        try:
            await loop.connect_accepted_socket(lambda: client, raw.sock)
        except OSError:
            self.node.clients.pop(client.id, None)
            return
        if raw.pending and client.transport is not None:
            client.transport.write(bytes(raw.pending))
