"""Who waits on which key: the registry behind blocking pops (pure: no loop, no clock).

Redis serves blocked clients FIFO per key (blocked.c: each key has a list of
clients in the order they blocked) and handles ready keys in the order they
were signalled. Here each waiter carries a sequence number taken when it first
blocked; a key's waiters are kept sorted by it, so a waiter that is put back
(its pop lost a race on the desired plane) returns to its old place rather than
the end of the queue.

``signal(key)`` marks a key that has waiters as ready; the shell takes ready
keys with ``pop_ready`` after a command (or a log entry) has run.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from typing import Any


class BlockedKeys:
    __slots__ = ("by_key", "ready", "_keys_of")

    def __init__(self) -> None:
        #: key -> waiters on it, ordered by ``waiter.seq``.
        self.by_key: dict[bytes, list[Any]] = {}
        #: Keys signalled since the last serve, in signal order (a dict used as an ordered set).
        self.ready: dict[bytes, None] = {}
        self._keys_of: dict[Any, tuple[bytes, ...]] = {}

    def __len__(self) -> int:
        return len(self._keys_of)

    def __contains__(self, waiter: object) -> bool:
        return waiter in self._keys_of

    def add(self, waiter: Any, keys: Iterable[bytes]) -> None:
        unique = tuple(dict.fromkeys(keys))
        self._keys_of[waiter] = unique
        for key in unique:
            insort(self.by_key.setdefault(key, []), waiter, key=_seq)

    def remove(self, waiter: Any) -> None:
        for key in self._keys_of.pop(waiter, ()):
            waiters = self.by_key.get(key)
            if waiters is None:
                continue
            try:
                waiters.remove(waiter)
            except ValueError:
                pass
            if not waiters:
                del self.by_key[key]
                self.ready.pop(key, None)

    def waiting_on(self, key: bytes) -> list[Any]:
        """The waiters on ``key``, first come first (a copy: serving changes the registry)."""
        return list(self.by_key.get(key, ()))

    def signal(self, key: bytes) -> None:
        if key in self.by_key:
            self.ready[key] = None

    def pop_ready(self) -> bytes | None:
        ready = self.ready
        if not ready:
            return None
        key = next(iter(ready))
        del ready[key]
        return key


def _seq(waiter: Any) -> int:
    return waiter.seq
