"""Reconnect delays: capped exponential backoff with equal jitter (sans-IO).

The n-th retry (n = 0, 1, ...) after a failure waits

    d_n   = min(max_ms, base_ms * 2**n)
    delay = d_n / 2 + U(0, d_n / 2)

"Equal jitter" (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog,
2015): the random half spreads the retries of many nodes that lost the same peer
at once, so they do not all dial it in the same instant, while the fixed half
keeps every delay at least d_n / 2, so a peer that refuses at once is never
retried in a tight loop. ``reset()`` after a connection is established (not
merely accepted by TCP): a peer that completes TCP and then refuses the
handshake keeps backing off. The randomness is an injected ``random.Random``, so a
seed reproduces every delay.
"""

from __future__ import annotations

import random


class Backoff:
    __slots__ = ("base_ms", "max_ms", "rng", "attempt")

    def __init__(self, base_ms: float, max_ms: float, rng: random.Random) -> None:
        if not 0 < base_ms <= max_ms:
            raise ValueError(f"backoff needs 0 < base_ms <= max_ms, got {base_ms} and {max_ms}")
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.rng = rng
        #: Retries since the last reset.
        self.attempt = 0

    def next_ms(self) -> float:
        """The delay before the next retry, and count it."""
        # 2**n is capped before it is computed, so a long outage never overflows a float.
        ceiling = self.max_ms if self.attempt >= 62 else min(self.max_ms, self.base_ms * (1 << self.attempt))
        self.attempt += 1
        half = ceiling / 2
        return half + self.rng.random() * half

    def reset(self) -> None:
        self.attempt = 0
