"""Reply value types for the RESP encoder.

Command handlers return plain Python values (bytes, int, list, dict, None, ...). The
wrappers here exist only where a Python type cannot say which RESP type is meant:
a status reply versus a bulk string, an error, a null *array* versus a null bulk,
verbatim text, and an out-of-band push. See the RESP3 spec
(https://github.com/redis/redis-specifications/blob/master/protocol/RESP3.md).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "NULL_ARRAY",
    "OK",
    "PONG",
    "QUEUED",
    "BigNumber",
    "ErrorReply",
    "NullArray",
    "Pairs",
    "Push",
    "SimpleString",
    "Verbatim",
]


class SimpleString(str):
    """A status reply (`+OK`): text sent as a RESP simple string rather than a bulk."""

    __slots__ = ()


OK: Final = SimpleString("OK")
QUEUED: Final = SimpleString("QUEUED")
PONG: Final = SimpleString("PONG")


class ErrorReply(Exception):
    """An error reply (`-ERR ...`); raise or return it from a handler.

    `message` is the whole error text including its code prefix (`ERR`, `WRONGTYPE`,
    `NOPERM`, ...), because clients dispatch on that first word.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message: str = message


class NullArray:
    """Type of the `NULL_ARRAY` singleton: RESP2 distinguishes `*-1` from `$-1`."""

    __slots__ = ()
    _instance: NullArray | None = None

    def __new__(cls) -> NullArray:
        # One instance only, so `value is NULL_ARRAY` works even after copy/pickle.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NULL_ARRAY"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = NullArray()


class Verbatim(str):
    """Human-readable text (INFO, CLIENT LIST): RESP3 `=` with `txt:`, RESP2 a bulk."""

    __slots__ = ()
    format_code = "txt"

    @staticmethod
    def with_format(text: str, format_code: str) -> "Verbatim":
        """Verbatim text of another three-letter format (``mkd``), as a script may return."""
        if format_code == "txt":
            return Verbatim(text)
        value = _FormattedVerbatim(text)
        value.format_code = format_code
        return value


class _FormattedVerbatim(Verbatim):
    format_code: str


class BigNumber(str):
    """A big number (`(1234...`): RESP3 `(`, RESP2 a bulk string of its digits."""

    __slots__ = ()


class Push(list[object]):
    """An out-of-band message (pub/sub, invalidation): RESP3 `>`, RESP2 a plain array."""

    __slots__ = ()


class Pairs(list[object]):
    """Two-element rows (``ZRANGE ... WITHSCORES``, ``HRANDFIELD ... WITHVALUES``): RESP3 sends
    an array of ``[a, b]`` arrays, RESP2 one flat array, as Redis 7.2 does."""

    __slots__ = ()
