"""A request parser that lets hiredis (C) parse the common case and ``RequestParser`` the rest.

hiredis parses a pipelined batch of well-formed multibulk requests about ten
times faster than Python can, but it has no notion of Redis's request limits or
exact error texts, and it cannot say where an unfinished request starts. So it
only gets chunks that need none of that: a chunk that starts a fresh request
with ``*``, is no larger than ``max_bulk_bytes``, and parses into complete
requests whose arguments are all bulk strings. Anything else — an inline
command, a request split across reads, an odd type, a limit — makes us throw
the hiredis result away and feed the same chunk to ``RequestParser``, which
parses it from the same clean starting point and so gives exactly the same
commands plus Redis's verdict on the rest. Nor does hiredis see a chunk holding
an array or bulk header with enough digits to break a limit: it would allocate
the array before any limit is checked. A property test checks that both
parsers agree on arbitrary byte streams.
"""

from __future__ import annotations

import re

import hiredis

from vfsd.resp.parser import ProtocolError, RequestParser

# Decimal digits of small numbers, to size a canonical request without formatting it.
_DIGITS = tuple(len(str(n)) for n in range(10000))


class FastRequestParser:
    """Same interface as ``RequestParser``: ``feed``, ``error``, ``buffered_bytes``."""

    __slots__ = ("_strict", "_reader", "_max_array_len", "_fast_max_bytes", "_clean", "_oversize_header", "error",
                 "deferred")

    def __init__(self, *, max_bulk_bytes: int = 512 * 1024 * 1024, max_array_len: int = 1024 * 1024,
                 max_inline_bytes: int = 64 * 1024, max_query_buffer_bytes: int = 1024 * 1024 * 1024,
                 defer_bulk_bytes: int = 0) -> None:
        self._strict = RequestParser(max_bulk_bytes=max_bulk_bytes, max_array_len=max_array_len,
                                     max_inline_bytes=max_inline_bytes, max_query_buffer_bytes=max_query_buffer_bytes,
                                     defer_bulk_bytes=defer_bulk_bytes)
        #: Large payloads waiting to be joined (see ``parser.LargeBulk``): the strict parser's own list.
        self.deferred = self._strict.deferred
        self._reader = hiredis.Reader()
        self._max_array_len = max_array_len
        self._fast_max_bytes = min(max_bulk_bytes, max_query_buffer_bytes)
        self._clean = True  # the strict parser holds nothing and has seen no error
        # hiredis sizes an array from its header before anything checks it (``*2147483648`` would
        # allocate 16 GiB and stall every client): a chunk with a header long enough to break a
        # limit goes to the strict parser, which checks limits first. A value that merely looks
        # like such a header costs the slower path, never a wrong answer.
        self._oversize_header = re.compile(rb"\*[0-9]{%d,}|\$[0-9]{%d,}" % (
            len(str(max_array_len)), len(str(max_bulk_bytes))))
        #: The protocol error, once one is met (a plain attribute: the shell reads it every batch).
        self.error: ProtocolError | None = None

    @property
    def buffered_bytes(self) -> int:
        return self._strict.buffered_bytes

    def feed(self, data: bytes) -> list[list[bytes]]:
        if (self._clean and data and data[0] == 42 and len(data) <= self._fast_max_bytes  # 42: '*'
                and self._oversize_header.search(data) is None):
            commands = self._fast(data)
            if commands is not None:
                return commands
            self._reader = hiredis.Reader()
        strict = self._strict
        commands = strict.feed(data)
        self.error = strict.error
        self._clean = not strict.buffered_bytes and strict.error is None
        return commands

    def _fast(self, data: bytes) -> list[list[bytes]] | None:
        """The chunk's commands, or None when hiredis's answer cannot be trusted to match Redis's."""
        reader = self._reader
        reader.feed(data)
        gets = reader.gets
        out: list[list[bytes]] = []
        max_args = self._max_array_len
        digits = _DIGITS
        # The canonical size of what hiredis returned must be the whole chunk: a shortfall is an
        # unfinished request (hiredis keeps it internally and cannot hand it over), a mismatch
        # a non-canonical one (say "$03"); both go to the strict parser.
        size = 0
        try:
            cmd = gets()
            while cmd is not False:
                if type(cmd) is not list or len(cmd) > max_args or not cmd:
                    return None
                n = len(cmd)
                size += 3 + (digits[n] if n < 10000 else len(str(n)))
                for arg in cmd:
                    if type(arg) is not bytes:
                        return None
                    n = len(arg)
                    size += n + 5 + (digits[n] if n < 10000 else len(str(n)))
                out.append(cmd)
                cmd = gets()
        except hiredis.ProtocolError:
            return None
        if size != len(data):
            return None
        return out
