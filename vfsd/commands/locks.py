"""Locks on lease paths: LOCK.ACQUIRE / EXTEND / RELEASE / INFO, sessions and waiters on this node.

The lease state itself is replicated (``vfsd.desired.leases``, applied from the log with the
leader's time); this module is the node's side of it:

* the commands, which propose ``vfs.lock`` entries and answer when they apply here;
* waiters: ``LOCK.ACQUIRE ... WAIT <ms>`` queues the request in the replicated table (so
  waiters are served in the order their entries committed, across nodes) and parks the
  client without blocking the node; the grant arrives as an applied entry, and a timeout or
  a disconnect proposes ``unwait`` (whichever commits first wins: a grant that committed
  before the unwait is the client's);
* sessions: a lease taken with ``SESSION`` is bound to the connection (``<node>:<client
  id>``); when it closes the node proposes the release of everything it held or waited
  for; when a node is declared dead, the leader proposes the release of every session lease
  held through it (``node_dead``);
* ``PEXPIRE``/``EXPIRE`` on a lease path extend only for the holder: the connection that was
  granted the lease here (by ``LOCK.ACQUIRE`` or ``SET ... NX``); from any other connection
  they answer 0 and change nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

from vfsd.commands.errors import parse_int
from vfsd.commands.table import command
from vfsd.paths import LEASE, PathError
from vfsd.resp.types import ErrorReply

if TYPE_CHECKING:
    from vfsd.server import Client

_seq = itertools.count(1)


class NodeLocks:
    """Per node: parked waiters by waiter id, and what each connection holds or waits for."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.waiting: dict[str, tuple[asyncio.Future[Any], Any]] = {}
        #: client id -> {path: owner} for leases granted to that connection here.
        self.held: dict[int, dict[bytes, bytes]] = {}
        self.sessions: set[int] = set()

    # -- called by the plane after every applied entry ---------------------------

    def after_apply(self) -> None:
        table = self.node.planes["log"].machine.leases
        if not table.granted:
            return
        grants, table.granted = table.granted, []
        for g in grants:
            parked = self.waiting.pop(g.waiter, None)
            if parked is None:
                continue
            future, client = parked
            if not future.done():
                self.held.setdefault(client.id, {})[g.key] = g.owner
                future.set_result(g.token)

    # -- connections and nodes --------------------------------------------------

    def client_closed(self, client: "Client") -> None:
        self.held.pop(client.id, None)
        mine = [w for w, (_, c) in self.waiting.items() if c is client]
        for w in mine:
            future, _ = self.waiting.pop(w)
            if not future.done():
                future.cancel()
        if client.id in self.sessions or mine:
            self.sessions.discard(client.id)
            self._propose([b"vfs.lock", b"sessions", self.session_of(client).encode()])

    def node_dead(self, name: str) -> None:
        """The gossip layer declared ``name`` dead: the leader releases its session leases."""
        plane = self.node.planes["log"]
        if getattr(plane, "may_expire", True) and name != self.node.settings.node_id:
            self._propose([b"vfs.lock", b"sessions", f"{name}:".encode()])

    def session_of(self, client: "Client") -> str:
        return f"{self.node.settings.node_id}:{client.id}"

    def _propose(self, op: list[bytes]) -> asyncio.Future[Any]:
        node = self.node
        return node.planes["log"].submit([op], node.now_ms())

    # -- PEXPIRE on lease paths -------------------------------------------------

    def rewrite_expire(self, client: "Client", argv: list[bytes]) -> list[bytes] | int | ErrorReply:
        """EXPIRE/PEXPIRE of a lease path: the holder's extension, or 0 for anyone else."""
        name = argv[0].lower()
        if name not in (b"expire", b"pexpire") or len(argv) != 3:
            return ErrorReply(f"ERR '{argv[0].decode(errors='replace')}' on a lease path: extend a lease with "
                              "PEXPIRE <path> <ms>, SET <path> <token> XX PX <ms> or LOCK.EXTEND")
        try:
            amount = parse_int(argv[2])
        except ErrorReply as err:
            return err
        ttl = amount * 1000 if name == b"expire" else amount
        owner = self.held.get(client.id, {}).get(argv[1])
        if owner is None or ttl <= 0:
            return 0
        return [b"vfs.lock", b"extend", argv[1], owner, b"%d" % ttl]

    def granted_here(self, client: "Client", key: bytes, owner: bytes) -> None:
        self.held.setdefault(client.id, {})[key] = owner


def is_lease_path(node: Any, key: bytes) -> bool:
    try:
        return key[:1] == b"/" and node.router.plane_of(key, node.keyspace.data) == LEASE
    except PathError:
        return False


def _path(client: "Client", arg: bytes) -> bytes:
    node = client.node
    try:
        plane = node.router.plane_of(arg)
    except PathError as exc:
        raise ErrorReply(str(exc)) from None
    if plane != LEASE:
        raise ErrorReply(f"ERR '{arg.decode(errors='replace')}' is not a lease path (locks live under /lk, or a "
                         "root configured 'lease')")
    return arg


def _ttl(arg: bytes, what: str = "ttl") -> int:
    try:
        value = parse_int(arg)
    except ErrorReply:
        raise ErrorReply(f"ERR {what} must be a positive integer of milliseconds") from None
    if value <= 0:
        raise ErrorReply(f"ERR {what} must be a positive integer of milliseconds")
    return value


@command("lock.acquire", arity=-4, flags="write", keys=(1, 1, 1), acl="@write", group="vfs", scope="node",
         summary="Acquires a lease on a lock path; returns its fencing token, or nil if another holds it.",
         arguments="path owner ttl_ms [WAIT ms] [SESSION]", since="0.1.0")
def lock_acquire(client: "Client", argv: list[bytes]) -> Any:
    path = _path(client, argv[1])
    owner = argv[2]
    if not owner:
        raise ErrorReply("ERR owner must not be empty")
    ttl = _ttl(argv[3])
    wait_ms: int | None = None
    session = False
    i = 4
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"WAIT" and wait_ms is None and i + 1 < len(argv):
            try:
                wait_ms = parse_int(argv[i + 1])
            except ErrorReply:
                raise ErrorReply("ERR WAIT must be a non-negative integer of milliseconds") from None
            if wait_ms < 0:
                raise ErrorReply("ERR WAIT must be a non-negative integer of milliseconds")
            i += 2
        elif opt == b"SESSION" and not session:
            session = True
            i += 1
        else:
            raise ErrorReply("ERR syntax error: LOCK.ACQUIRE <path> <owner> <ttl_ms> [WAIT <ms>] [SESSION]")
    node = client.node
    locks: NodeLocks = node.locks
    session_id = locks.session_of(client) if session else ""
    waiter = f"{locks.session_of(client)}:{next(_seq)}" if wait_ms else ""
    if session:
        locks.sessions.add(client.id)
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if waiter:
        locks.waiting[waiter] = (reply, client)
    entry = node.planes["log"].submit([[b"vfs.lock", b"acquire", path, owner, b"%d" % ttl, session_id.encode(),
                                        waiter.encode()]], node.clock_ms)

    def done(f: asyncio.Future[Any]) -> None:
        result = f.result()
        if reply.done():
            return
        if isinstance(result, ErrorReply) or result is not None:
            locks.waiting.pop(waiter, None)
            if type(result) is int:
                locks.granted_here(client, path, owner)
            reply.set_result(result)
            return
        if not waiter:
            reply.set_result(None)
            return
        # Queued: the grant arrives as an applied entry (NodeLocks.after_apply), or the wait ends.
        asyncio.get_running_loop().call_later(wait_ms / 1000, lambda: _give_up(locks, path, waiter, reply))

    entry.add_done_callback(done)
    return reply


def _give_up(locks: NodeLocks, path: bytes, waiter: str, reply: asyncio.Future[Any]) -> None:
    if reply.done() or waiter not in locks.waiting:
        return
    unwait = locks._propose([b"vfs.lock", b"unwait", path, waiter.encode()])

    def done(f: asyncio.Future[Any]) -> None:
        # Whatever committed first decided: a grant before this unwait answered the client already.
        locks.waiting.pop(waiter, None)
        if not reply.done():
            reply.set_result(None)

    unwait.add_done_callback(done)


@command("lock.extend", arity=4, flags="write", keys=(1, 1, 1), acl="@write", group="vfs", scope="node",
         summary="Extends a lease held by owner to ttl_ms from now; 1, or 0 if owner does not hold it.",
         arguments="path owner ttl_ms", since="0.1.0")
def lock_extend(client: "Client", argv: list[bytes]) -> Any:
    path = _path(client, argv[1])
    ttl = _ttl(argv[3])
    node = client.node
    return node.planes["log"].submit([[b"vfs.lock", b"extend", path, argv[2], b"%d" % ttl]], node.clock_ms)


@command("lock.release", arity=3, flags="write", keys=(1, 1, 1), acl="@write", group="vfs", scope="node",
         summary="Releases a lease held by owner; 1, or 0 if owner does not hold it.",
         arguments="path owner", since="0.1.0")
def lock_release(client: "Client", argv: list[bytes]) -> Any:
    path = _path(client, argv[1])
    node = client.node
    node.locks.held.get(client.id, {}).pop(path, None)
    return node.planes["log"].submit([[b"vfs.lock", b"release", path, argv[2]]], node.clock_ms)


@command("lock.info", arity=2, flags="readonly", keys=(1, 1, 1), acl="@read", group="vfs", scope="node",
         summary="The holder, fencing token, grant time, remaining time and waiters of a lease path.",
         arguments="path", since="0.1.0")
def lock_info(client: "Client", argv: list[bytes]) -> Any:
    path = _path(client, argv[1])
    node = client.node
    plane = node.planes["log"]

    def answer() -> Any:
        ctx = plane.ctx
        ctx.now_ms = node.now_ms()
        info = plane.machine.leases.info(ctx, path)
        if info is None:
            return None
        if info.get("holder") is None:
            return {b"holder": None, b"waiters": info["waiters"]}
        ttl = ctx.ttl_ms(path)
        return {b"holder": info["holder"], b"token": info["token"], b"granted_at_ms": info["granted_ms"],
                b"expires_in_ms": -1 if ttl is None else ttl, b"session": info["session"].encode(),
                b"waiters": info["waiters"]}

    if plane.linearizable and not client.readonly:
        return plane.read_then(lambda _later: answer())
    return answer()
