"""CLIENT PAUSE and UNPAUSE: hold clients' commands for a while, as Redis's pauseActions does.

``CLIENT PAUSE <ms> WRITE`` holds every command that writes or may publish
(``write`` or ``may_replicate``: SET, PUBLISH, EVAL, FCALL..., and EXEC of a
transaction holding one), and the expiry sweep; ``ALL`` (the default) holds every
command, CLIENT UNPAUSE included, so only the timeout ends it. A held command
*waits*, it does not fail: dispatch hands the client shell a Future, so the
client's later commands wait behind it, and when the pause ends every held
command runs again from dispatch, in arrival order (and may be held again by a
newer pause). As in Redis, a second pause keeps the later end time and the more
restrictive mode (ALL over WRITE); UNPAUSE ends it at once. A monitoring client
is never held (Redis never pauses replicas), nor a command run by EXEC (its
transaction was let through, or held, as a whole).

While a pause is on, every command takes dispatch's general path, where pauses
are checked (``hold_general_path``).

Differences: a key found expired by a read during a WRITE pause is still deleted
(Redis only hides it until the pause ends); the sweep waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from vfsd.commands.dispatch import dispatch, hold_general_path
from vfsd.resp.types import ErrorReply

if TYPE_CHECKING:
    from vfsd.commands.table import CommandSpec
    from vfsd.node import Node
    from vfsd.server import Client


class ClientPause:
    def __init__(self, node: "Node") -> None:
        self.node = node
        #: A pause is on; ``all`` says whether it holds every command or only writes.
        self.active = False
        self.all = False
        self.end_ms = 0
        self._timer: asyncio.TimerHandle | None = None
        self._held: deque[tuple["Client", list[bytes], asyncio.Future[Any]]] = deque()

    @property
    def held_clients(self) -> int:
        """Clients waiting for the pause to end (INFO's blocked_clients counts them, as Redis does)."""
        return sum(1 for client, _, future in self._held if not future.done() and not client.closing)

    def is_holding(self, client: "Client") -> bool:
        return any(held is client and not future.done() for held, _, future in self._held)

    def pause(self, end_ms: int, all_commands: bool) -> None:
        """Pause until ``end_ms`` (wall clock); keeps a later end and ALL over WRITE."""
        now = self.node.now_ms()
        if self.active:
            all_commands = all_commands or self.all
            end_ms = max(end_ms, self.end_ms)
        if end_ms <= now:
            return
        was_active = self.active
        self.active, self.all, self.end_ms = True, all_commands, end_ms
        if not was_active:
            hold_general_path(True)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later((end_ms - now) / 1000, self._expired)

    def unpause(self) -> None:
        """End the pause now; every held command runs again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.active:
            self.active = False
            self.all = False
            self.end_ms = 0
            hold_general_path(False)
        self._release()

    def _expired(self) -> None:
        self._timer = None
        now = self.node.now_ms()
        if self.end_ms > now:  # the clock moved back: wait the rest
            self._timer = asyncio.get_running_loop().call_later((self.end_ms - now) / 1000, self._expired)
            return
        self.unpause()

    def holds(self, client: "Client", spec: "CommandSpec") -> bool:
        """Whether a command must wait (only asked while ``active``)."""
        if client.modes.monitor or self.node.blocking.hold:  # a monitor, or a command EXEC runs
            return False
        if self.all:
            return True
        if spec.is_write or "may_replicate" in spec.flags:
            return True
        if spec.name == "exec" and client.multi is not None:
            return any(s.is_write or "may_replicate" in s.flags for s, _ in client.multi)
        return False

    def postpone(self, client: "Client", argv: list[bytes]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._held.append((client, argv, future))
        return future

    def _release(self) -> None:
        held, self._held = self._held, deque()
        if not held:
            return
        self.node.tick()
        for client, argv, future in held:
            if future.done() or client.closing:
                continue
            reply = dispatch(client, argv)  # may be held again, by a pause that started meanwhile
            if isinstance(reply, asyncio.Future):
                reply.add_done_callback(lambda f, out=future: _chain(f, out))
            else:
                future.set_result(reply)

    def sweep_allowed(self) -> bool:
        """Whether the expiry sweep may delete keys now (not during any pause: Redis pauses expiry for both)."""
        return not self.active


def _chain(inner: asyncio.Future[Any], outer: asyncio.Future[Any]) -> None:
    if not outer.done():
        outer.set_result(inner.result() if not inner.cancelled() else ErrorReply("ERR request cancelled"))
