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
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from vfsd.desired.log import write_file_atomically

LOCK_FILE_NAME = "LOCK"
IDENTITY_FILE_NAME = "identity.json"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this data dir is: the node it belongs to, this incarnation's member id, and how often it started.

    The member id is made when the data dir is created and never changes after: a node restarted
    with a wiped data dir comes back with a new one, so Raft does not take it for the voter it was
    (it could have lost entries that voter acknowledged). ``boots`` counts starts, so each run can
    number its proposals above every earlier run's.
    """

    node_id: str
    member_id: str
    boots: int


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

    def identity(self, node_id: str) -> Identity:
        """This data dir's identity, made on first use; every call counts one more start.

        A data dir belongs to one node: opening it as another node id is refused, since its log,
        member id and dump are that node's.
        """
        path = Path(self.path) / IDENTITY_FILE_NAME
        try:
            stored = json.loads(path.read_text())
            known = (stored["node_id"], stored["member_id"], int(stored["boots"]))
        except FileNotFoundError:
            known = (node_id, f"{node_id}-{secrets.token_hex(4)}", 0)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataDirError(f"{path} is damaged ({exc}); it names this data dir's node and member id") from None
        if known[0] != node_id:
            raise DataDirError(f"data dir {self.path} belongs to node {known[0]!r}, not {node_id!r}; "
                               "give each node its own data dir")
        identity = Identity(node_id, known[1], known[2] + 1)
        body = json.dumps({"node_id": identity.node_id, "member_id": identity.member_id, "boots": identity.boots})
        try:
            write_file_atomically(path, [body.encode() + b"\n"])
        except OSError as exc:
            raise DataDirError(f"cannot write {path}: {exc.strerror}") from None
        return identity

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
