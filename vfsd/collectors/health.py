"""One collector's health: state, backoff and log rate limiting (pure).

Theory of operation. A collector is ``starting`` until its first run ends,
then ``ok`` or ``failed``. A run that overstays its timeout is ``hung``: its
thread cannot be killed (Python has no safe way to stop a thread), so the
runner stops scheduling that collector until the call returns, then treats it
as a failure. After ``n`` consecutive failures the next try waits
``min(backoff_max_s, backoff_initial_s * 2 ** (n - 1))`` (1 s, 2 s, 4 s, ...
up to a minute with the defaults), so a broken plugin costs little and a
transient failure heals quickly. The first success resets the count.

Logging is rate limited per collector: the first failure of a streak is
logged (with its traceback), later ones at most once per ``log_every_s`` with
a count of what was suppressed, and a recovery once.

The health document (``/itg/<node>/collectors/<name>``) is rewritten when
something a reader acts on changes (state, error, failure count, retry time,
document count), and otherwise at most every ``refresh_s``, so that timing
fields such as ``last_duration_ms`` do not turn /itg into a stream of writes.
Times come in as arguments: ``now_ms`` (wall, for the document) and ``now_s``
(monotonic, for rate limiting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STARTING = "starting"
OK = "ok"
FAILED = "failed"
HUNG = "hung"


def backoff_delay_s(failures: int, initial_s: float, max_s: float) -> float:
    """Delay before the next try after ``failures`` consecutive failures (``failures >= 1``)."""
    if failures < 1:
        return 0.0
    exponent = min(failures - 1, 62)  # 2**62 * anything already exceeds every cap
    return min(max_s, initial_s * (2.0 ** exponent))


@dataclass
class Health:
    name: str
    kind: str
    interval_s: float
    timeout_s: float
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    log_every_s: float = 60.0
    refresh_s: float = 60.0
    plugin: str = ""

    state: str = STARTING
    failures: int = 0
    failures_total: int = 0
    runs: int = 0
    last_error: str | None = None
    last_duration_ms: int | None = None
    last_success_ms: int | None = None
    next_retry_ms: int | None = None
    documents: int = 0

    _last_logged_s: float | None = field(default=None, repr=False)
    _suppressed: int = field(default=0, repr=False)
    _written_key: tuple[Any, ...] | None = field(default=None, repr=False)
    _written_s: float | None = field(default=None, repr=False)

    # -- transitions -------------------------------------------------------------

    def succeeded(self, now_ms: int, duration_ms: int, documents: int) -> bool:
        """Record a good run; True when this ends a failure streak (worth one log line)."""
        recovered = self.failures > 0
        self.state = OK
        self.runs += 1
        self.failures = 0
        self.last_error = None
        self.next_retry_ms = None
        self.last_duration_ms = duration_ms
        self.last_success_ms = now_ms
        self.documents = documents
        self._last_logged_s = None
        self._suppressed = 0
        return recovered

    def failed(self, now_ms: int, error: str, duration_ms: int | None = None) -> float:
        """Record a failed run; returns the backoff delay in seconds before the next try."""
        self.state = FAILED
        self.runs += 1
        self.failures += 1
        self.failures_total += 1
        self.last_error = error
        if duration_ms is not None:
            self.last_duration_ms = duration_ms
        delay_s = backoff_delay_s(self.failures, self.backoff_initial_s, self.backoff_max_s)
        self.next_retry_ms = now_ms + int(delay_s * 1000)
        return delay_s

    def hung(self, error: str) -> None:
        """The run overstayed its timeout and is still running; nothing is scheduled until it returns."""
        self.state = HUNG
        self.last_error = error
        self.next_retry_ms = None

    def hung_returned(self, now_ms: int, duration_ms: int) -> float:
        """The hung call finally returned (its result is discarded): a failure, with backoff from now."""
        return self.failed(now_ms, self.last_error or "timed out", duration_ms)

    # -- logging -----------------------------------------------------------------

    def should_log_failure(self, now_s: float) -> tuple[bool, int]:
        """(log this failure?, failures suppressed since the last logged one)."""
        if self._last_logged_s is None or now_s - self._last_logged_s >= self.log_every_s:
            suppressed, self._suppressed = self._suppressed, 0
            self._last_logged_s = now_s
            return True, suppressed
        self._suppressed += 1
        return False, 0

    # -- the document ------------------------------------------------------------

    def doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "plugin": self.plugin,
            "state": self.state,
            "interval_s": self.interval_s,
            "timeout_s": self.timeout_s,
            "documents": self.documents,
            "runs": self.runs,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "last_error": self.last_error,
            "last_duration_ms": self.last_duration_ms,
            "last_success_ms": self.last_success_ms,
            "next_retry_ms": self.next_retry_ms,
        }

    def due_for_write(self, now_s: float) -> bool:
        """Whether the health document should be rewritten now (see the module docstring)."""
        key = (self.state, self.last_error, self.failures, self.next_retry_ms, self.documents)
        if key != self._written_key or self._written_s is None or now_s - self._written_s >= self.refresh_s:
            self._written_key = key
            self._written_s = now_s
            return True
        return False
