"""MONITOR: every command this node runs, as one line per command, to every monitoring client.

The line is Redis's (replication.c, replicationFeedMonitors), so ``redis-cli
monitor`` and log tools read it unchanged::

    +1700000000.123456 [0 127.0.0.1:5555] "set" "k" "v"

a status reply: the time the command ran (seconds.microseconds), the database
and the client's address (``lua`` for a command a script called), then every
argument as received, quoted and escaped as Redis's ``sdscatrepr`` does
(``\\"`` ``\\\\`` ``\\n`` ``\\r`` ``\\t`` ``\\a`` ``\\b``, other bytes outside
printable ASCII as ``\\xhh``).

What is shown, as Redis 7 shows it: a command once it has run (whatever it
answered), not one refused before it could run (unknown, wrong arity, not
authenticated, queued in MULTI: the queued commands appear when EXEC runs
them, followed by EXEC); never an admin command (CLIENT LIST, CONFIG, MONITOR
...). EVAL, EVALSHA and FCALL are shown before the commands their script calls,
which follow as ``[0 lua]`` lines. The secrets of AUTH and HELLO ... AUTH are
shown as ``(redacted)``.

Lines are delivered as pushes already encoded (``resp.pushes.Message``), so a
monitoring client's output is bounded like a subscriber's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from vfsd.resp.pushes import Message
from vfsd.resp.types import SimpleString

REDACTED: Final = b"(redacted)"
_PLAIN = re.compile(rb'[^\x20-\x7e]|["\\]')
_ESCAPES: Final = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n", ord("\r"): b"\\r", ord("\t"): b"\\t",
                   7: b"\\a", 8: b"\\b"}
_BYTE: Final = [_ESCAPES.get(i, bytes([i]) if 0x20 <= i <= 0x7E else b"\\x%02x" % i) for i in range(256)]


def quoted(arg: bytes) -> bytes:
    """One argument as Redis's sdscatrepr writes it."""
    if _PLAIN.search(arg) is None:
        return b'"' + arg + b'"'
    return b'"' + b"".join([_BYTE[c] for c in arg]) + b'"'


def redacted(argv: list[bytes]) -> list[bytes]:
    """The arguments MONITOR may show: AUTH's and HELLO ... AUTH's credentials replaced (as Redis's
    redactClientCommandArgument: AUTH with too many arguments is refused before it redacts)."""
    name = argv[0].lower()
    if name == b"auth" and len(argv) <= 3:
        return [argv[0], *[REDACTED] * (len(argv) - 1)]
    if name == b"hello":
        out = list(argv)
        j = 2
        while j < len(out):
            opt = out[j].lower()
            more = len(out) - 1 - j
            if opt == b"auth" and more >= 2:
                out[j + 1] = out[j + 2] = REDACTED
                j += 3
            elif opt == b"setname" and more:
                j += 2
            else:
                break
        return out
    return argv


def line(now_ns: int, source: str, argv: list[bytes]) -> bytes:
    seconds, rest = divmod(now_ns, 1_000_000_000)
    head = b"+%d.%06d [0 %b] " % (seconds, rest // 1000, source.encode())
    return head + b" ".join([quoted(a) for a in argv]) + b"\r\n"


class Monitors:
    """The monitoring clients of one node. ``clock_ns`` gives the wall-clock time of a line (an argument, so
    tests can fix it); ``on_change(True)`` when the first client starts monitoring, ``False`` when the last
    stops (dispatch then sends every command through the path that feeds monitors)."""

    def __init__(self, clock_ns: Callable[[], int], on_change: Callable[[bool], None]) -> None:
        self.clients: dict[Any, None] = {}
        #: While above 0, nothing is fed (commands of a desired-plane transaction, shown when EXEC ran).
        self.hold = 0
        self._clock_ns = clock_ns
        self._on_change = on_change

    def add(self, client: Any) -> None:
        if client in self.clients:
            return
        self.clients[client] = None
        if len(self.clients) == 1:
            self._on_change(True)

    def remove(self, client: Any) -> None:
        if client not in self.clients:
            return
        del self.clients[client]
        if not self.clients:
            self._on_change(False)

    def feed(self, client: Any, argv: list[bytes]) -> None:
        """A command of ``client`` ran (or is about to, for a script)."""
        if self.hold:
            return
        self._send(line(self._clock_ns(), client.addr, redacted(argv)), client)

    def feed_script(self, argv: list[bytes]) -> None:
        """A command a script called (``redis.call``/``redis.pcall``)."""
        self._send(line(self._clock_ns(), "lua", argv))

    def _send(self, data: bytes, source: Any = None) -> None:
        message = Message((data,))
        frame = ((data,), len(data))
        message.frames = (None, None, frame, frame)
        for monitor in list(self.clients):  # a delivery may cut a slow monitor off
            if monitor is source and monitor.modes.running:  # its own command: the line follows its reply
                monitor.modes.own_lines.append(SimpleString(data[1:-2].decode("latin-1")))
            else:
                monitor.deliver(message)
