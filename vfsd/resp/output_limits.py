"""``client-output-buffer-limit``: how much unsent output one client may hold, by class.

Theory of operation
-------------------
The setting is Redis's (redis.conf, "CLIENT OUTPUT BUFFER LIMITS"): for each
class of client, ``<class> <hard> <soft> <soft-seconds>``, several classes in
one value, sizes in Redis's memory units (``64mb``, ``1gb``, ``1000``), 0
meaning "no limit". A client whose queued output passes ``hard`` is
disconnected at once; one whose queue stays past ``soft`` for longer than
``soft-seconds`` is disconnected too. The classes are ``normal`` (request and
reply), ``pubsub`` (subscribed to a channel, a pattern, a shard channel or a
VFS.WATCH) and ``replica`` (also spelt ``slave``; accepted and shown for
compatibility: vfsd replicates over its peer port, so no client is in it).
``CONFIG SET`` of a value naming some classes changes only those, as in Redis.

Where vfsd differs, on purpose:

* Redis's default for ``normal`` is ``0 0 0``, which lets a client that
  pipelines requests without reading the replies grow the server without
  bound. vfsd's default is ``normal 1gb 64mb 60``, and for normal clients the
  soft limit is also a *pause point*: a client's commands stop running (and
  its socket stops being read) while its queued replies are past ``soft``,
  and resume once the queue has drained. A client pipelining GETs it never
  reads therefore holds at most about ``soft`` plus one reply, and is never
  disconnected merely for being slow to read; ``hard`` still cuts off a
  single reply that would be larger. ``normal 0 0 0`` restores Redis's
  behaviour exactly (no limit, no pause before the socket's own backpressure).
* Subscribers (``pubsub``) cannot be paused (their output is other clients'
  messages), so they keep Redis's rule and default exactly:
  ``pubsub 32mb 8mb 60``.

Checks happen whenever output is queued for a client (as Redis's
``closeClientOnOutputBufferLimitReached``), so a client to which nothing is
being sent is never cut off. This module is the pure part: parsing,
formatting, and the soft-limit clock (``LimitClock``); the client shell
measures the queue and acts on the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

__all__ = ["DEFAULT", "ClassLimit", "LimitClock", "OutputLimits", "OutputLimitError", "parse_memory"]

HARD: Final = "hard"
SOFT: Final = "soft"

_WRONG_ARGS: Final = "Wrong number of arguments in buffer limit configuration."
_BAD_CLASS: Final = "Invalid client class specified in buffer limit configuration."
_BAD_VALUE: Final = "Error in hard, soft or soft_seconds setting in buffer limit configuration."

# Redis's memtoll units: a bare number is bytes; k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_UNITS: Final = (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 10**9), ("m", 10**6), ("k", 1000),
                 ("b", 1))
_CLASS_NAMES: Final = {"normal": "normal", "pubsub": "pubsub", "replica": "replica", "slave": "replica"}
_SHOWN_AS: Final = (("normal", "normal"), ("replica", "slave"), ("pubsub", "pubsub"))  # CONFIG GET order and names


class OutputLimitError(ValueError):
    """A malformed ``client-output-buffer-limit`` value; the text is Redis's own."""


def parse_memory(text: str) -> int:
    """``64mb`` → 67108864; OutputLimitError for anything that is not a non-negative size."""
    t = text.strip().lower()
    mult = 1
    for suffix, factor in _UNITS:
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], factor
            break
    if not t.isdigit():
        raise OutputLimitError(_BAD_VALUE)
    return int(t) * mult


@dataclass(frozen=True, slots=True)
class ClassLimit:
    hard_bytes: int = 0
    soft_bytes: int = 0
    soft_seconds: int = 0
    #: The smallest queue that needs a look (infinite when the class has no limit); derived, read per push.
    check_at_bytes: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        limits = [n for n in (self.hard_bytes, self.soft_bytes) if n]
        object.__setattr__(self, "check_at_bytes", min(limits) if limits else float("inf"))

    def verdict(self, queued_bytes: int, now_ms: int, clock: LimitClock) -> str | None:
        """``"hard"`` or ``"soft"`` when a client holding ``queued_bytes`` must go, else None.

        Redis's rule (networking.c, checkClientOutputBufferLimits): past the hard limit at
        once; past the soft limit only if it has stayed past it, continuously, for more
        than soft-seconds. ``clock`` remembers when the soft limit was first passed.
        """
        if self.hard_bytes and queued_bytes >= self.hard_bytes:
            return HARD
        if self.soft_bytes and queued_bytes >= self.soft_bytes:
            if clock.soft_since_ms is None:
                clock.soft_since_ms = now_ms
                return None
            if now_ms - clock.soft_since_ms > self.soft_seconds * 1000:
                return SOFT
            return None
        clock.soft_since_ms = None
        return None


class LimitClock:
    """Per client: since when its queue has been past the soft limit (None: it is not)."""

    __slots__ = ("soft_since_ms",)

    def __init__(self) -> None:
        self.soft_since_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OutputLimits:
    normal: ClassLimit
    replica: ClassLimit
    pubsub: ClassLimit

    def updated(self, text: str) -> OutputLimits:
        """These limits with the classes ``text`` names replaced (CONFIG SET semantics)."""
        words = text.split()
        if len(words) % 4 != 0:
            raise OutputLimitError(_WRONG_ARGS)
        changes: dict[str, ClassLimit] = {}
        for i in range(0, len(words), 4):
            name = _CLASS_NAMES.get(words[i].lower())
            if name is None:
                raise OutputLimitError(_BAD_CLASS)
            hard, soft = parse_memory(words[i + 1]), parse_memory(words[i + 2])
            seconds = words[i + 3]
            if not seconds.isdigit():
                raise OutputLimitError(_BAD_VALUE)
            changes[name] = ClassLimit(hard, soft, int(seconds))
        return replace(self, **changes)

    def format(self) -> str:
        """As CONFIG GET shows it: every class, in bytes, Redis's order and names."""
        return " ".join(f"{shown} {c.hard_bytes} {c.soft_bytes} {c.soft_seconds}"
                        for name, shown in _SHOWN_AS for c in (getattr(self, name),))

    @classmethod
    def parse(cls, text: str) -> OutputLimits:
        """A value as written in a config file: classes it does not name keep their defaults."""
        return DEFAULT.updated(text)


#: vfsd's defaults: Redis's for replica and pubsub; a bounded normal class (see the module docstring).
DEFAULT: Final = OutputLimits(
    normal=ClassLimit(1 << 30, 64 << 20, 60),
    replica=ClassLimit(256 << 20, 64 << 20, 60),
    pubsub=ClassLimit(32 << 20, 8 << 20, 60),
)
