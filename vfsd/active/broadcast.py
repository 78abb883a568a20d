"""A bounded queue of things to gossip, each sent a limited number of times.

After hashicorp/memberlist's ``TransmitLimitedQueue``: an item is piggybacked on
outgoing gossip until it has been transmitted ``limit`` times, where the caller
passes ``limit = retransmit_mult * ceil(log10(n + 1))`` for a cluster of ``n``
(``vfsd.active.profile``), enough for an epidemic to reach every node with high
probability (SWIM §4.1). Items go out fewest-transmissions first: items never sent,
newest first, so fresh news overtakes news most nodes already have; then, among items
sent equally often, the one waiting longest, so none starves.

Items are keyed: queueing an item under a key already queued replaces it and
resets its count. The replication core queues *paths* (no value is copied; the
value is read from the keyspace when a message is built), so a path rewritten
a thousand times a second by a collector costs one queue slot and only its newest
value travels. Membership queues one update per member (a newer incarnation
replaces an older one). The queue holds at most ``max_items``; beyond that the
items sent most often, then the oldest, are dropped — the repair path
(anti-entropy) makes up for anything that loses its place.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

#: Items that did not fit a nearly full message tried before ``take`` gives up looking for smaller ones.
MAX_MISFITS = 8

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TransmitQueue(Generic[K, V]):
    __slots__ = ("tiers", "where", "max_items", "dropped")

    def __init__(self, max_items: int = 4096) -> None:
        #: tiers[t] holds the items transmitted t times, oldest first. OrderedDicts, not dicts:
        #: items leave from the front, and a dict with many deleted entries at its front makes
        #: every walk from the front pay for them (quadratic under churn).
        self.tiers: list[OrderedDict[K, V]] = [OrderedDict()]
        self.where: dict[K, int] = {}
        self.max_items = max_items
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.where)

    def __bool__(self) -> bool:
        return bool(self.where)

    def __contains__(self, key: object) -> bool:
        return key in self.where

    def push(self, key: K, value: V) -> None:
        """Queue ``value`` under ``key`` with no transmissions yet, replacing what was there."""
        where = self.where
        tier = where.get(key)
        fresh = self.tiers[0]
        if tier == 0:  # rewritten before it was sent: the newest value, and newest in line
            fresh[key] = value
            fresh.move_to_end(key)
            return
        if tier is not None:
            del self.tiers[tier][key]
        fresh[key] = value
        where[key] = 0
        if len(where) > self.max_items:
            self._drop_one()

    def discard(self, key: K) -> None:
        tier = self.where.pop(key, None)
        if tier is not None:
            del self.tiers[tier][key]

    def fresh(self) -> bool:
        """Whether any item has not been sent yet."""
        return bool(self.tiers[0])

    def take(self, limit: int, budget_bytes: int, size_of: Callable[[K, V], int | None],
             fresh_only: bool = False, transmits: int = 1) -> list[tuple[K, V]]:
        """Items for one message, within ``budget_bytes``, each counted ``transmits`` times
        (the message goes to that many peers).

        ``size_of(key, value)`` is the item's encoded size, or None when it is gone (for
        a path: deleted and collected meanwhile), which removes it. An item larger than
        the whole budget goes alone. Items that reach ``limit`` transmissions leave the queue.
        """
        chosen: list[tuple[K, V]] = []
        gone: list[K] = []
        used = 0
        misfits = 0
        tiers = self.tiers
        last = 1 if fresh_only else min(limit, len(tiers))
        for t in range(last):
            tier = tiers[t]
            if not tier:
                continue
            # Never sent: newest first (fresh news overtakes); sent before: longest waiting first.
            for key in (reversed(tier) if t == 0 else tier):
                value = tier[key]
                size = size_of(key, value)
                if size is None:
                    gone.append(key)
                    continue
                if used + size > budget_bytes and chosen:
                    # Try smaller items, but only a few: the message is nearly full, and walking a
                    # long queue (each size_of reads a value) would cost more than the room is worth.
                    misfits += 1
                    if misfits >= MAX_MISFITS:
                        break
                    continue
                used += size
                chosen.append((key, value))
                if used >= budget_bytes:
                    break
            if used >= budget_bytes or misfits >= MAX_MISFITS:
                break
        for key in gone:
            self.discard(key)
        where = self.where
        for key, value in chosen:
            t = where[key]
            del tiers[t][key]
            after = t + transmits
            if after >= limit:
                del where[key]
                continue
            while after >= len(tiers):
                tiers.append(OrderedDict())
            tiers[after][key] = value
            where[key] = after
        # Items left in tiers at or beyond a limit that shrank (the cluster got smaller) are done.
        for t in range(limit, len(tiers)):
            for key in tiers[t]:
                del where[key]
            tiers[t].clear()
        return chosen

    def _drop_one(self) -> None:
        for tier in reversed(self.tiers):
            if tier:
                key, _ = tier.popitem(last=False)  # the oldest of the most-sent
                del self.where[key]
                self.dropped += 1
                return

    def clear(self) -> None:
        self.tiers = [OrderedDict()]
        self.where.clear()
