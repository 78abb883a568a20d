"""The node's data directory: created on first start, then held under an exclusive lock.

Two processes writing one data dir would interleave their logs and each lose the
other's acknowledged writes, so a node takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on
``<data dir>/LOCK`` before it reads anything and holds it until the process exits
(the kernel drops the lock with the last descriptor, so a ``kill -9`` leaves no stale
lock behind). The lock file records the holder's pid, which the refusal names.
"""

from __future__ import annotations

import errno
import fcntl
import os

LOCK_FILE_NAME = "LOCK"


class DataDirError(Exception):
    """The data dir cannot be used; the message names it and says why."""


class DataDir:
    """``DataDir(path).acquire()`` creates the directory if needed and locks it; ``release()`` unlocks."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    def acquire(self) -> "DataDir":
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise DataDirError(f"data dir {self.path} is not a directory")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create data dir {self.path}: {exc.strerror}") from None
        lock_path = os.path.join(self.path, LOCK_FILE_NAME)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataDirError(f"cannot open {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise DataDirError(f"data dir {self.path} is in use by another vfsd ({who}); "
                                   "each node needs a data dir of its own") from None
            raise DataDirError(f"cannot lock {lock_path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
