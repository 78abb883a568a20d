"""What a blocking pop (BLPOP, BZPOPMIN, BLMOVE...) answers when it has to wait.

The handlers stay pure: a blocking command whose keys hold nothing returns a
``Block`` instead of a reply, naming the keys it waits on, its timeout and the
kind of value that can wake it. The node's shell (``vfsd.blocking``) parks the
client and runs the same command again when a change feeds one of those keys,
as Redis 7.2 re-processes a blocked command (blocked.c): so a woken client pops
from the first non-empty key in argument order, exactly as if it had just
arrived. Where a client cannot block (inside MULTI/EXEC) the shell answers
``null_reply`` at once, as Redis does for a client with CLIENT_DENY_BLOCKING.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from vfsd.commands.errors import INT64_MAX
from vfsd.resp.types import NULL_ARRAY, ErrorReply

NOT_A_FLOAT = ErrorReply("ERR timeout is not a float or out of range")
OUT_OF_RANGE = ErrorReply("ERR timeout is out of range")
NEGATIVE = ErrorReply("ERR timeout is negative")

#: What a timed-out blocking command answers (replyToBlockedClientTimedOut): a null array for
#: every list and sorted-set command, BLMOVE included.
TIMED_OUT = NULL_ARRAY
#: CLIENT UNBLOCK <id> ERROR.
UNBLOCKED = ErrorReply("UNBLOCKED client unblocked via CLIENT UNBLOCK")


class Block:
    """A blocking command that found nothing: wait on ``keys`` for a value of ``kind``."""

    __slots__ = ("keys", "timeout_ms", "kind", "null_reply")

    def __init__(self, keys: list[bytes], timeout_ms: int, kind: int, null_reply: Any = NULL_ARRAY) -> None:
        self.keys = keys
        #: Relative, in ms; 0 waits for ever.
        self.timeout_ms = timeout_ms
        self.kind = kind
        #: The reply where the client may not block (MULTI/EXEC).
        self.null_reply = null_reply

    def __repr__(self) -> str:
        return f"Block({self.keys!r}, timeout_ms={self.timeout_ms}, kind={self.kind})"


def parse_timeout(arg: bytes, now_ms: int) -> int:
    """A timeout in (fractional) seconds as getTimeoutFromObjectOrReply reads it; ms, 0 = for ever."""
    if not arg or arg[:1].isspace() or arg[-1:].isspace() or b"_" in arg:
        raise NOT_A_FLOAT
    try:
        seconds = Decimal(arg.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        raise NOT_A_FLOAT from None
    if seconds.is_nan():
        raise NOT_A_FLOAT
    if seconds.is_infinite():
        if seconds > 0:
            raise OUT_OF_RANGE
        raise NEGATIVE
    ms = seconds * 1000
    if ms > INT64_MAX:
        raise OUT_OF_RANGE
    timeout = int(ms.to_integral_value(ROUND_CEILING))
    if timeout < 0:
        raise NEGATIVE
    if timeout > INT64_MAX - now_ms:
        raise OUT_OF_RANGE
    return timeout
