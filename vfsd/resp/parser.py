"""Sans-IO parser for client requests in the Redis serialization protocol.

Theory of operation
-------------------
A client sends commands in one of two forms (RESP spec, "Sending commands to a Redis
server" and "Inline commands",
https://redis.io/docs/latest/develop/reference/protocol-spec/):

* multibulk: ``*<n>\\r\\n`` then n times ``$<len>\\r\\n<len bytes>\\r\\n``;
* inline: anything not starting with ``*``, one line split into words like a shell.

We copy Redis 7.2's server-side reading (src/networking.c processMultibulkBuffer and
processInlineBuffer, sds.c sdssplitargs, util.c string2ll), quirks included, because
clients and tests depend on its exact error texts and because matching it is the
point of speaking its protocol:

* a header line ends at the first ``\\r``; the byte after it (meant to be ``\\n``) is
  skipped unchecked, and so are the two bytes after a bulk payload;
* counts and lengths are strict decimals (no ``+``, spaces or leading zeros);
* ``*0`` and negative counts are empty requests, skipped; so are blank inline lines;
* a length over the limit is refused from its header, before any payload arrives.

The parser is a pure object: `feed(bytes)` returns the commands completed so far.
Its result must not depend on how the byte stream was cut into segments. Every check
is therefore a function of the stream prefix, and "no terminator yet" limits are
stated as positions: a line longer than its limit is refused whether it arrived whole
or a byte at a time, and the query-buffer limit fires at the offset where a command
that is still incomplete reaches `max_query_buffer_bytes` bytes. When two checks
could fire, the one at the earlier offset wins (at the same offset, the line check).

Hot path: a feed that starts at a command boundary is parsed straight out of the
caller's bytes object, never copied into a buffer first. Whole multibulk commands
are taken by one ``split(b"\\r\\n")`` of the segment: a command is accepted when its
count and length lines are canonical (dictionary lookups of ``*3``, ``$5``) and each
payload line has exactly its declared length, which is what the exact path would
read. The first command that does not pass (a payload containing CRLF, a length
beyond the lookup table, an inline line, garbage, or the unfinished tail) goes to the
exact path, which uses ``bytes.find`` and slicing and carries every check above.
Only the unfinished tail is kept. While waiting for a large payload or a line
terminator, new segments are merely appended to a list (no re-parse, no join) until
they can make progress, so a 512 MB argument arriving in 64 KB segments costs O(n).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MAX_HEADER_LINE_BYTES", "LargeBulk", "ProtocolError", "RequestParser"]

# Redis's PROTO_INLINE_MAX_SIZE as applied to the `*<n>` and `$<len>` lines.
MAX_HEADER_LINE_BYTES: Final = 64 * 1024
_HEADER_SCAN: Final = MAX_HEADER_LINE_BYTES + 1

# Canonical headers decode by lookup; anything else goes through string2ll rules.
_CACHED_HEADER_COUNT: Final = 4096
_BULK_LEN_BY_HEADER: Final[dict[bytes, int]] = {
    b"$%d" % n: n for n in range(_CACHED_HEADER_COUNT)
}
_ARG_COUNT_BY_HEADER: Final[dict[bytes, int]] = {
    b"*%d" % n: n for n in range(-1, _CACHED_HEADER_COUNT)
}

_QUERY_LIMIT: Final = "query buffer limit exceeded"
_LONG_LONG_MIN: Final = -(1 << 63)
_LONG_LONG_MAX: Final = (1 << 63) - 1

# Inline lines without quotes, NUL, \v or \f split exactly like bytes.split().
_NEEDS_FULL_SPLIT: Final = re.compile(rb"[\"'\x00\x0b\x0c]").search
_ISSPACE: Final = frozenset(b" \t\n\v\f\r")
_TOKEN_END: Final = frozenset(b" \n\r\t")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid request (the remote's fault).

    `str(error)` is the text after ``Protocol error: ``, e.g. ``invalid bulk length``;
    the server replies ``-ERR Protocol error: <text>`` and closes that client only.
    """


def _string2ll(digits: bytes) -> int | None:
    """Redis util.c string2ll: canonical signed 64-bit decimal or None."""
    size = len(digits)
    if size == 0 or size >= 21:
        return None
    if digits == b"0":
        return 0
    magnitude = digits[1:] if digits[0] == 45 else digits  # 45 == '-'
    if not magnitude or magnitude[0] == 48 or not magnitude.isdigit():  # 48 == '0'
        return None
    value = int(digits)
    if value < _LONG_LONG_MIN or value > _LONG_LONG_MAX:
        return None
    return value


def _split_args(line: bytes) -> list[bytes]:
    """Redis sds.c sdssplitargs, byte for byte (only reached for quoted input).

    The C code reads a NUL as end of string, so everything after one is ignored.
    """
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    size = len(line)
    args: list[bytes] = []
    i = 0
    while True:
        while i < size and line[i] in _ISSPACE:
            i += 1
        if i >= size:
            return args
        current = bytearray()
        in_double = in_single = done = False
        while not done:
            char = line[i] if i < size else 0
            after = line[i + 1] if i + 1 < size else 0
            if in_double:
                if (char == 92 and after == 120 and i + 3 < size  # \xHH
                        and line[i + 2] in _HEX_DIGITS and line[i + 3] in _HEX_DIGITS):
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif char == 92 and after:  # backslash escape
                    i += 1
                    current.append(_ESCAPES.get(after, after))
                elif char == 34:  # closing '"' must be followed by a space or the end
                    if after and after not in _ISSPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    done = True
                elif not char:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(char)
            elif in_single:
                if char == 92 and after == 39:  # \'
                    i += 1
                    current.append(39)
                elif char == 39:
                    if after and after not in _ISSPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    done = True
                elif not char:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(char)
            elif not char or char in _TOKEN_END:
                done = True
            elif char == 34:
                in_double = True
            elif char == 39:
                in_single = True
            else:
                current.append(char)
            if i < size:
                i += 1
        args.append(bytes(current))


class LargeBulk:
    """A large argument whose bytes have arrived but are not yet joined into one object.

    With ``defer_bulk_bytes`` set, the parser hands these out (in ``deferred``) instead of
    copying a large payload on the spot: the shell joins them where the copy does not hold
    up other clients (``bytes.join`` releases the GIL for large joins), then ``resolve``s
    each into its place in the command.
    """

    __slots__ = ("parts", "size", "_args", "_index")

    def __init__(self, parts: list[bytes], size: int, args: list[bytes], index: int) -> None:
        self.parts = parts
        self.size = size
        self._args = args
        self._index = index

    def join(self) -> bytes:
        """The payload as one bytes object (the one copy it costs), releasing the received pieces;
        meant for a worker thread, so that neither the copy nor the frees hold up the event loop."""
        value = b"".join(self.parts)
        self.parts = []
        return value

    def resolve(self, value: bytes) -> None:
        """Put the joined payload in its command."""
        self._args[self._index] = value


class RequestParser:
    """Turns a client's byte stream into commands (lists of bytes arguments).

    Limits (Redis equivalents in brackets): `max_bulk_bytes` per argument
    [proto-max-bulk-len], `max_array_len` arguments per command [INT_MAX],
    `max_inline_bytes` per inline line [PROTO_INLINE_MAX_SIZE], and
    `max_query_buffer_bytes` held for one unfinished command [client-query-buffer-limit].
    """

    __slots__ = (
        "error",
        "_max_bulk_bytes",
        "_max_array_len",
        "_max_inline_bytes",
        "_max_query_buffer_bytes",
        "_bulk_len_by_header",
        "_arg_count_by_header",
        "_held",
        "_held_bytes",
        "_resume_at_bytes",
        "_resume_on",
        "_args",
        "_remaining",
        "_bulk_len",
        "_command_consumed_bytes",
        "_defer_bulk_bytes",
        "deferred",
    )

    def __init__(
        self,
        *,
        max_bulk_bytes: int = 512 * 1024 * 1024,
        max_array_len: int = 1024 * 1024,
        max_inline_bytes: int = 64 * 1024,
        max_query_buffer_bytes: int = 1024 * 1024 * 1024,
        defer_bulk_bytes: int = 0,
    ) -> None:
        assert max_bulk_bytes >= 0 and max_array_len >= 0
        assert max_inline_bytes >= 0 and max_query_buffer_bytes >= 1
        self._max_bulk_bytes = max_bulk_bytes
        self._max_array_len = max_array_len
        self._max_inline_bytes = max_inline_bytes
        self._max_query_buffer_bytes = max_query_buffer_bytes
        # Cached headers must not bypass a configured limit.
        self._bulk_len_by_header = (
            _BULK_LEN_BY_HEADER if max_bulk_bytes >= _CACHED_HEADER_COUNT
            else {k: v for k, v in _BULK_LEN_BY_HEADER.items() if v <= max_bulk_bytes})
        self._arg_count_by_header = (
            _ARG_COUNT_BY_HEADER if max_array_len >= _CACHED_HEADER_COUNT
            else {k: v for k, v in _ARG_COUNT_BY_HEADER.items() if v <= max_array_len})
        self.error: ProtocolError | None = None
        """Set once a protocol error is detected; every later feed returns []."""
        # Unparsed tail: segments not yet joined, starting where parsing stopped.
        self._held: list[bytes] = []
        self._held_bytes = 0
        # Parsing cannot progress until the tail holds this many bytes or a segment
        # brings `_resume_on` (the awaited line terminator).
        self._resume_at_bytes = 0
        self._resume_on: bytes | None = None
        # Multibulk command in progress: arguments so far, how many are still due,
        # the payload length once its `$` header is consumed (-1 before), and how many
        # of its bytes were consumed (they count towards the query-buffer limit).
        self._args: list[bytes] | None = None
        self._remaining = 0
        self._bulk_len = -1
        self._command_consumed_bytes = 0
        # Payloads at least this large (0: none) come out as LargeBulk placeholders, listed in
        # ``deferred`` until the caller takes them; smaller ones are joined at once.
        self._defer_bulk_bytes = defer_bulk_bytes
        self.deferred: list[LargeBulk] = []

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the command still incomplete (parsed arguments included)."""
        return self._command_consumed_bytes + self._held_bytes

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Take the next segment of the stream; return the commands it completes, in order.

        On a protocol error the commands before it are returned, `error` is set, and
        the parser is dead: this and every later call return nothing more.
        """
        if self.error is not None:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # arguments are sliced from it and must be immutable
        held = self._held
        if held:
            held.append(data)
            self._held_bytes += len(data)
            resume_on = self._resume_on
            if self._held_bytes < self._resume_at_bytes and (
                    resume_on is None or resume_on not in data):
                return []
            if self._bulk_len >= 0:
                # A payload is complete: take it from the held pieces (copied once, or not at all
                # for a payload that is one whole segment), and go on with what follows its CRLF.
                data = self._take_payload(held)
            else:
                data = b"".join(held)
            self._held = []
            self._held_bytes = 0
        elif not data:
            return []
        commands: list[list[bytes]] = []
        try:
            self._parse(data, commands)
        except ProtocolError as error:
            self.error = error
            self._args = None
            self._held = []
            self._held_bytes = self._command_consumed_bytes = 0
        return commands

    def _take_payload(self, held: list[bytes]) -> bytes:
        """Append the held payload (``_bulk_len`` bytes from the start of ``held``) to the command in
        progress; return the bytes after its CRLF (skipped unchecked, as Redis does)."""
        size = self._bulk_len
        # Every part stays immutable ``bytes`` (a partial last segment is sliced, at most one read's worth): only
        # then does ``bytes.join`` release the GIL while it copies, which is what LargeBulk is for.
        parts: list[bytes] = []
        need = size
        i = 0
        offset = 0  # where the rest starts within held[i]
        while need:
            segment = held[i]
            if len(segment) <= need:
                if segment:
                    parts.append(segment)
                need -= len(segment)
                i += 1
            else:
                parts.append(segment[:need])
                offset, need = need, 0
        skip = 2
        while skip:  # the CRLF after the payload may straddle segments
            step = min(skip, len(held[i]) - offset)
            skip -= step
            offset += step
            if offset == len(held[i]) and skip:
                i, offset = i + 1, 0
        rest_parts = [held[i][offset:]] + held[i + 1:] if i < len(held) else []
        args = self._args
        assert args is not None
        if self._defer_bulk_bytes and size >= self._defer_bulk_bytes:
            self.deferred.append(LargeBulk(parts, size, args, len(args)))
            args.append(b"")
        elif len(parts) == 1 and type(parts[0]) is bytes:
            args.append(parts[0])  # the whole segment is the payload: no copy at all
        else:
            args.append(b"".join(parts))
        self._remaining -= 1
        self._bulk_len = -1
        self._command_consumed_bytes += size + 2
        return b"".join(rest_parts)

    def _parse(self, buf: bytes, out: list[list[bytes]]) -> None:
        """Parse `buf` (the unparsed tail) from offset 0, appending commands to `out`.

        `limit` is the offset at which the current command reaches
        max_query_buffer_bytes; `bound` is min(end, limit), so one comparison tells
        whether a payload is both present and within the limit.
        """
        end = len(buf)
        find = buf.find
        bulk_len_of = self._bulk_len_by_header.get
        arg_count_of = self._arg_count_by_header.get
        max_query = self._max_query_buffer_bytes
        pos = 0
        split_at = 0  # first offset where the split fast path may run
        args = self._args
        remaining = self._remaining
        if args is not None:
            limit = max_query - self._command_consumed_bytes
            bound = end if end < limit else limit
            bulk_len = self._bulk_len
            if bulk_len >= 0:
                if bulk_len + 2 > end:
                    self._hold_payload(buf, 0, limit, bulk_len)
                    return
                args.append(buf[:bulk_len])
                pos = bulk_len + 2
                remaining -= 1
                self._bulk_len = -1
        else:
            limit = bound = 0
        while True:
            if not remaining:
                if args is not None:
                    out.append(args)
                    args = None
                if pos >= end:
                    self._args = None
                    self._remaining = 0
                    self._command_consumed_bytes = 0
                    return
                limit = pos + max_query
                bound = end if end < limit else limit
                if pos >= split_at and buf[pos] == 42 and bound == end:
                    # Whole commands ahead fit the query limit: take the fast path.
                    first = pos
                    pos, stopped_on_anomaly = self._parse_split(buf, pos, out)
                    # Re-split after the anomaly only if this run paid for itself
                    # (consumed at least half of what it split): total splitting
                    # stays O(len(buf)) however many anomalies there are.
                    split_at = (pos + 1 if stopped_on_anomaly and 2 * (pos - first) >= end - first
                                else end + 1)
                    continue
                if buf[pos] != 42:  # not '*': inline command
                    next_pos = self._parse_inline(buf, pos, end, limit, out)
                    if next_pos < 0:
                        self._hold_line(buf, pos, limit, None, 0, b"\n", self._max_inline_bytes)
                        return
                    pos = next_pos
                    continue
                cr = find(b"\r", pos, pos + _HEADER_SCAN)
                if cr < 0 or cr + 2 > bound:
                    if not self._header_complete(buf, pos, end, limit, cr,
                                                 "too big mbulk count string"):
                        self._hold_line(buf, pos, limit, None, 0, b"\r", MAX_HEADER_LINE_BYTES)
                        return
                count = arg_count_of(buf[pos:cr])
                if count is None:
                    value = _string2ll(buf[pos + 1:cr])
                    if value is None or value > self._max_array_len:
                        raise ProtocolError("invalid multibulk length")
                    count = value
                pos = cr + 2
                if count <= 0:
                    continue
                args = []
                remaining = count
            # Arguments: `$<len>\r\n<payload>\r\n`, `remaining` of them.
            assert args is not None  # remaining > 0 only inside a command
            while remaining:
                cr = find(b"\r", pos, pos + _HEADER_SCAN)
                if cr < 0:
                    if not self._header_complete(buf, pos, end, limit, cr,
                                                 "too big bulk count string"):
                        self._hold_line(buf, pos, limit, args, remaining, b"\r",
                                        MAX_HEADER_LINE_BYTES)
                        return
                size = bulk_len_of(buf[pos:cr])
                if size is None:
                    size = self._bulk_len_slow(buf, pos, end, limit, cr)
                    if size < 0:  # header not complete yet
                        self._hold_line(buf, pos, limit, args, remaining, b"\r",
                                        MAX_HEADER_LINE_BYTES)
                        return
                start = cr + 2
                stop = start + size
                if stop + 2 > bound:
                    # Refuse from the header alone a payload that cannot fit.
                    if stop + 2 > limit:
                        raise ProtocolError(_QUERY_LIMIT)
                    self._args = args
                    self._remaining = remaining
                    if start > end:  # the byte after '\r' has not arrived
                        self._hold_line(buf, pos, limit, args, remaining, b"\r",
                                        MAX_HEADER_LINE_BYTES)
                    else:
                        self._hold_payload(buf, start, limit, size)
                    return
                args.append(buf[start:stop])
                pos = stop + 2
                remaining -= 1

    def _parse_split(self, buf: bytes, pos: int, out: list[list[bytes]]) -> tuple[int, bool]:
        """Fast path: parse whole multibulk commands from `pos` by splitting on CRLF.

        One C-level split replaces a find and two slices per element. A command is
        accepted only if its count line and every header line are canonical (cache
        hits) and each payload line has exactly the declared length, which is the
        same as the exact path would read. Stops at the first command that does not
        pass (a payload containing CRLF, a big length, inline text, garbage) or is
        incomplete, and returns (offset reached, whether it stopped on such a command).
        """
        lines = (buf[pos:] if pos else buf).split(b"\r\n")
        last = len(lines) - 1  # lines[last] is not CRLF-terminated
        arg_count_of = self._arg_count_by_header.get
        bulk_len_of = self._bulk_len_by_header.get
        append = out.append
        anomaly = True
        i = 0
        while i < last:
            count = arg_count_of(lines[i])
            # The commonest arities are unrolled: no list building to check them.
            if count == 3:
                j = i + 7
                if j > last:
                    anomaly = False
                    break
                _, h1, a1, h2, a2, h3, a3 = lines[i:j]
                if bulk_len_of(h1) != len(a1) or bulk_len_of(h2) != len(a2) or (
                        bulk_len_of(h3) != len(a3)):
                    break
                append([a1, a2, a3])
            elif count == 2:
                j = i + 5
                if j > last:
                    anomaly = False
                    break
                _, h1, a1, h2, a2 = lines[i:j]
                if bulk_len_of(h1) != len(a1) or bulk_len_of(h2) != len(a2):
                    break
                append([a1, a2])
            elif count == 1:
                j = i + 3
                if j > last:
                    anomaly = False
                    break
                _, h1, a1 = lines[i:j]
                if bulk_len_of(h1) != len(a1):
                    break
                append([a1])
            elif count is None:
                break
            elif count <= 0:
                j = i + 1
            else:
                j = i + 1 + 2 * count
                if j > last:
                    anomaly = False
                    break
                args = lines[i + 2:j:2]
                if list(map(bulk_len_of, lines[i + 1:j:2])) != list(map(len, args)):
                    break
                append(args)
            i = j
        else:
            anomaly = False
        return pos + sum(map(len, lines[:i])) + 2 * i, anomaly

    def _header_complete(self, buf: bytes, pos: int, end: int, limit: int, cr: int,
                         too_big: str) -> bool:
        """Slow path for a `*`/`$` line: True once it is whole, False to wait, or raise."""
        if cr < 0:
            if end - pos > MAX_HEADER_LINE_BYTES:
                # Detected once 64 KiB + 1 bytes arrived without '\r'.
                line_error_at = pos + _HEADER_SCAN
                raise ProtocolError(_QUERY_LIMIT if line_error_at > limit else too_big)
            return False
        if cr + 2 > limit:  # still incomplete when the command reached the limit
            raise ProtocolError(_QUERY_LIMIT)
        return cr + 2 <= end

    def _bulk_len_slow(self, buf: bytes, pos: int, end: int, limit: int, cr: int) -> int:
        """Validate a `$` header the cache did not know; -1 means wait for its end."""
        if not self._header_complete(buf, pos, end, limit, cr, "too big bulk count string"):
            return -1
        if buf[pos] != 36:  # '$'
            raise ProtocolError("expected '$', got '%s'" % chr(buf[pos]))
        size = _string2ll(buf[pos + 1:cr])
        if size is None or size < 0 or size > self._max_bulk_bytes:
            raise ProtocolError("invalid bulk length")
        return size

    def _parse_inline(self, buf: bytes, pos: int, end: int, limit: int,
                      out: list[list[bytes]]) -> int:
        """Parse one inline line at `pos`; return the next offset, or -1 to wait."""
        max_inline = self._max_inline_bytes
        newline = buf.find(b"\n", pos, pos + max_inline + 1)
        if newline < 0:
            if end - pos > max_inline:
                line_error_at = pos + max_inline + 1
                raise ProtocolError(
                    _QUERY_LIMIT if line_error_at > limit else "too big inline request")
            return -1
        if newline + 1 > limit:
            raise ProtocolError(_QUERY_LIMIT)
        stop = newline - 1 if newline > pos and buf[newline - 1] == 13 else newline
        line = buf[pos:stop]
        args = _split_args(line) if _NEEDS_FULL_SPLIT(line) else line.split()
        if args:
            out.append(args)
        return newline + 1

    def _hold_line(self, buf: bytes, pos: int, limit: int, args: list[bytes] | None,
                   remaining: int, terminator: bytes, max_line_bytes: int) -> None:
        """Keep buf[pos:] until a line starting at `pos` can be finished."""
        end = len(buf)
        if end >= limit:  # the incomplete command has reached the limit
            raise ProtocolError(_QUERY_LIMIT)
        tail = buf[pos:] if pos else buf
        self._args = args
        self._remaining = remaining
        self._bulk_len = -1
        self._command_consumed_bytes = pos - (limit - self._max_query_buffer_bytes)
        self._held = [tail]
        self._held_bytes = len(tail)
        if terminator in tail:
            # Only the byte after '\r' is missing: any new byte makes progress.
            self._resume_on = None
            self._resume_at_bytes = len(tail) + 1
        else:
            self._resume_on = terminator
            # The line or query limit fires at these sizes even with no terminator.
            self._resume_at_bytes = min(max_line_bytes + 1, limit - pos)

    def _hold_payload(self, buf: bytes, start: int, limit: int, size: int) -> None:
        """Keep buf[start:] until the `size`-byte payload and its CRLF have arrived."""
        tail = buf[start:] if start else buf
        self._bulk_len = size
        self._command_consumed_bytes = start - (limit - self._max_query_buffer_bytes)
        self._held = [tail]
        self._held_bytes = len(tail)
        self._resume_on = None
        self._resume_at_bytes = size + 2
