"""A raw RESP client for byte-exact comparisons: one command out, one whole reply back as bytes."""

from __future__ import annotations

import socket


def encode_command(args: list[str | bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class RawConnection:
    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _line(self, at: int) -> int:
        while True:
            end = self.buf.find(b"\r\n", at)
            if end >= 0:
                return end
            self._fill()

    def _reply_end(self, at: int) -> int:
        """The offset just past the reply starting at ``at`` (reading more as needed)."""
        end = self._line(at)
        kind, header = self.buf[at:at + 1], self.buf[at + 1:end]
        after = end + 2
        if kind in (b"$", b"=", b"!"):
            n = int(header)
            if n < 0:
                return after
            while len(self.buf) < after + n + 2:
                self._fill()
            return after + n + 2
        if kind in (b"*", b"~", b">", b"%", b"|"):
            n = int(header)
            if n < 0:
                return after
            if kind in (b"%", b"|"):
                n *= 2
            for _ in range(n):
                after = self._reply_end(after)
            if kind == b"|":  # an attribute precedes the real reply
                after = self._reply_end(after)
            return after
        return after

    def call(self, args: list[str | bytes]) -> bytes:
        self.sock.sendall(encode_command(args))
        end = self._reply_end(0)
        reply, self.buf = self.buf[:end], self.buf[end:]
        return reply

    def read(self) -> bytes:
        """The next whole reply or push, as its bytes."""
        end = self._reply_end(0)
        frame, self.buf = self.buf[:end], self.buf[end:]
        return frame

    def send(self, *args: str | bytes) -> None:
        self.sock.sendall(encode_command(list(args)))

    def quiet(self, wait_s: float = 0.2) -> bool:
        """Nothing arrives within ``wait_s`` (a PING round trip then proves the connection is idle)."""
        if self.buf:
            return False
        timeout = self.sock.gettimeout()
        self.sock.settimeout(wait_s)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(timeout)
        self.buf += chunk
        return not chunk
