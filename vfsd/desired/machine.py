"""The desired-state machine: applies committed log entries to the keyspace.

An entry's payload is a msgpack map:

    t   time in ms stamped by the node that proposed it (Raft: the leader), so
        applying an entry never reads a clock and every replica computes the
        same TTL deadlines
    o   origin node id
    ops list of commands (argv lists), run in order by the same handlers the
        local and active planes use
    w   optional [[key, revision-or-nil], ...]: a WATCHed transaction; if any
        key's revision differs at apply time the entry aborts (EXEC → nil)
    x   true for a MULTI/EXEC transaction: the reply is the list of replies
    p   true for pipelined writes of one connection carried in one entry: the reply is
        the list of their replies, each answered on its own (applied together, in order)
    m   optional string limit in bytes (APPEND, SETRANGE...) when the proposer's
        proto-max-bulk-len is not the default: limits are the proposer's, carried in
        the entry, so that applying depends on the entry and the state alone and
        replicas with different settings cannot diverge

Script entries (``vfs.eval``, ``vfs.fcall``, ``vfs.function``) are ops like any
other; ``vfsd.scripting.engine`` documents them and runs them deterministically.

The revision of every change an entry makes is the entry's log index, as in
etcd. Applying is deterministic: same entries in the same order, same state,
same replies — which is what lets Raft replicate this module unchanged.
Randomness (SPOP) comes from a generator seeded with the entry's index, drawing
from members in sorted order (``Ctx.deterministic``).

Snapshots: ``snapshot_rows`` runs on the event loop and turns every value into
its wire form (vfsd.store.values.to_wire), a copy that later writes cannot
touch, because the rows are packed on the log's writer thread while the loop
goes on changing collections in place. A snapshot's data is
``{"v": WIRE_VERSION, "rows": rows}``; a bare list of rows is the format from
before collections (strings and documents only) and still restores.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from vfsd import codec
from vfsd.commands import (  # noqa: F401  (the handlers entries apply)
    bits,
    hashes,
    json,
    keys,
    lists,
    sets,
    sort,
    strings,
    vfs,
    zsets,
)
from vfsd.commands.context import DEFAULT_MAX_BULK_BYTES, ChangeSink, Ctx
from vfsd.commands.table import TABLE
from vfsd.desired.leases import LeaseTable
from vfsd.paths import LEASE, Router
from vfsd.resp.types import NULL_ARRAY, ErrorReply
from vfsd.scripting.engine import DesiredScripting, split_keys
from vfsd.scripting.sandbox import Sandbox
from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE, Keyspace
from vfsd.store.values import WIRE_VERSION, from_wire, to_wire


def entry_body(ops: list[list[bytes]], time_ms: int, origin: str, *, transaction: bool = False,
               watches: list[tuple[bytes, int | None]] | None = None,
               max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES, pipeline: bool = False) -> dict[str, Any]:
    """An entry's payload as the state machine reads it (``encode_entry`` packs it)."""
    body: dict[str, Any] = {"t": time_ms, "o": origin, "ops": ops}
    if transaction:
        body["x"] = True
    elif pipeline:
        body["p"] = True
    if watches:
        body["w"] = [[k, r] for k, r in watches]
    if max_bulk_bytes != DEFAULT_MAX_BULK_BYTES:
        body["m"] = max_bulk_bytes
    return body


#: Arguments at least this large are packed by ``pack_body`` with one copy (msgpack's growing
#: buffer would copy them several times on the event loop).
LARGE_ARGUMENT_BYTES = 1 << 20


def encode_entry(ops: list[list[bytes]], time_ms: int, origin: str, *, transaction: bool = False,
                 watches: list[tuple[bytes, int | None]] | None = None,
                 max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES, pipeline: bool = False) -> bytes:
    return pack_body(entry_body(ops, time_ms, origin, transaction=transaction, watches=watches,
                                max_bulk_bytes=max_bulk_bytes, pipeline=pipeline))


def pack_body(body: dict[str, Any]) -> bytes:
    """msgpack of an entry's payload, the same bytes ``codec.pack`` makes; an entry with a large
    argument is framed by hand and joined once, so the value is copied exactly one time."""
    packed = pack_pieces(body)
    return packed if type(packed) is bytes else b"".join(packed)


def pack_pieces(body: dict[str, Any]) -> bytes | list[bytes]:
    """``pack_body``'s bytes, or, for an entry with a large argument, the pieces that join into
    them (the arguments themselves among them, uncopied): joining those on a worker thread,
    where ``bytes.join`` of large buffers runs without the interpreter lock, keeps the copy
    off the event loop."""
    ops = body["ops"]
    if not any(len(arg) >= LARGE_ARGUMENT_BYTES for op in ops for arg in op):
        return codec.pack(body)
    pieces: list[bytes] = [_map_header(len(body))]
    for key, value in body.items():
        pieces.append(codec.pack(key))
        if key != "ops":
            pieces.append(codec.pack(value))
            continue
        pieces.append(_array_header(len(ops)))
        for op in ops:
            pieces.append(_array_header(len(op)))
            for arg in op:
                pieces.append(_bin_header(len(arg)))
                pieces.append(arg)
    return pieces


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else \
        b"\xdd" + n.to_bytes(4, "big")


def _bin_header(n: int) -> bytes:
    return (b"\xc4" + n.to_bytes(1, "big") if n < 1 << 8 else b"\xc5" + n.to_bytes(2, "big") if n < 1 << 16
            else b"\xc6" + n.to_bytes(4, "big"))


class StateMachine:
    """Applies entries in index order; ``applied_index`` is the last one applied."""

    def __init__(self, db: Keyspace, log_roots: list[bytes], sink: ChangeSink, *, router: Router | None = None,
                 script_max_memory_bytes: int = 256 << 20) -> None:
        self.db = db
        self.log_roots = log_roots
        self.applied_index = 0
        self._index = 0
        #: Handler bugs met while applying, ``(index, command, exception)``: the shell logs and clears
        #: them (this core has no logger: logging would pull in threading).
        self.failures: list[tuple[int, bytes, BaseException]] = []
        self.ctx = Ctx(db, "log", "", self._rev, sink, lazy_delete=False, rng=SeededPerEntry(), deterministic=True)
        #: Scripts and function libraries on the desired plane (the libraries are state: snapshotted).
        self.scripting = DesiredScripting(router or Router(),
                                          lambda: Sandbox(max_memory_bytes=script_max_memory_bytes))
        self._special = {b"vfs.eval": self.scripting.apply_eval, b"vfs.fcall": self.scripting.apply_fcall,
                         b"vfs.function": self.scripting.apply_function, b"vfs.lock": self._apply_lock}
        #: Who holds each lease path, its fencing token, who waits (vfsd.desired.leases).
        self.leases = LeaseTable()
        roots = (router or Router()).roots
        self._lease_roots = tuple(r.encode() for r, plane in roots.items() if plane == LEASE)

    def _rev(self) -> int:
        return self._index

    def apply(self, index: int, data: bytes, time_ms: int | None = None, body: dict[str, Any] | None = None) -> object:
        """Apply the entry at ``index``. ``time_ms``: the time its Raft leader stamped (kept
        non-decreasing across leaders), which replaces the proposer's ``t`` when given. ``body``:
        the payload ``data`` packs, when the caller holds it already (the node that proposed the
        entry), so a large value is not unpacked into one more copy."""
        assert index == self.applied_index + 1, f"apply out of order: {index} after {self.applied_index}"
        if body is None:
            body = codec.unpack(data)
        ctx = self.ctx
        self._index = index
        ctx.now_ms = body["t"] if time_ms is None else time_ms
        ctx.origin = body["o"]
        ctx.max_bulk_bytes = body.get("m", DEFAULT_MAX_BULK_BYTES)
        ctx.random.reseed(index)
        self.applied_index = index
        watches = body.get("w")
        if watches and any(self.revision(k, ctx.now_ms) != r for k, r in watches):
            return NULL_ARRAY
        replies = [self._run(ctx, op) for op in body["ops"]]
        return replies if body.get("x") or body.get("p") else replies[0]

    def skip(self, index: int) -> None:
        """An entry that changes no data (a Raft no-op or membership entry) was applied at ``index``."""
        assert index == self.applied_index + 1, f"apply out of order: {index} after {self.applied_index}"
        self._index = self.applied_index = index

    def is_lease(self, key: bytes) -> bool:
        for root in self._lease_roots:
            if key == root or (key[: len(root)] == root and key[len(root): len(root) + 1] == b"/"):
                return True
        return False

    def _lease_keys(self, argv: list[bytes]) -> list[bytes]:
        """The lease paths a command touches (its declared keys that are on a lease root)."""
        prefixes = self._lease_roots  # every lease path starts with its root
        if not prefixes or len(argv) < 2:
            return []
        for arg in argv[1:]:  # cheap first: no argument looks like a lease path at all
            if arg.startswith(prefixes):
                break
        else:
            return []
        name = argv[0]
        if name in (b"vfs.eval", b"vfs.fcall"):
            try:
                keys = split_keys(argv[2:], fcall=name == b"vfs.fcall")[0]
            except ErrorReply:
                return []
        elif name == b"vfs.lock":
            return []  # the lease table's own operations keep it up to date
        else:
            spec = TABLE.get(argv[0].decode(errors="replace").lower())
            if spec is None or "container" in spec.flags:
                return []
            try:
                keys = spec.keys(argv)
            except Exception:
                return []
        return [k for k in keys if self.is_lease(k)]

    def _run(self, ctx: Ctx, argv: list[bytes]) -> object:
        leased = self._lease_keys(argv)
        if not leased:
            return self._run_plain(ctx, argv)
        table = self.leases
        for key in leased:
            table.before(ctx, key)
        if argv[0].lower() == b"set" and len(argv) > 3 and _extends(argv):
            entry = ctx.db.data.get(argv[1])
            if entry is None or ctx.db.is_expired(argv[1], ctx.now_ms) or entry[VALUE] != argv[2]:
                return None  # on a lease path SET ... XX extends only for the holder (its token is the value)
        reply = self._run_plain(ctx, argv)
        for key in leased:
            table.after(ctx, key, self._index)
        return reply

    def _apply_lock(self, ctx: Ctx, argv: list[bytes], index: int) -> object:
        """``vfs.lock <op> ...``: the lease table's operations (vfsd.commands.locks proposes them)."""
        op = argv[1]
        table = self.leases
        if op == b"acquire":  # acquire <path> <owner> <ttl_ms> <session> <waiter>
            token = table.acquire(ctx, argv[2], argv[3], int(argv[4]), index, session=argv[5].decode(),
                                  waiter=argv[6].decode())
            return token
        if op == b"extend":  # extend <path> <owner> <ttl_ms>
            return 1 if table.extend(ctx, argv[2], argv[3], int(argv[4])) else 0
        if op == b"release":  # release <path> <owner>
            return 1 if table.release(ctx, argv[2], argv[3], index) else 0
        if op == b"sessions":  # sessions <prefix>: release what a closed connection or a dead node held
            return table.release_sessions(ctx, argv[2].decode(), index)
        if op == b"tick":  # the leader's clock moving on while leases exist (changes nothing)
            return 0
        if op == b"unwait":  # unwait <path> <waiter>
            return 1 if table.unwait(argv[2], argv[3].decode()) else 0
        return ErrorReply(f"ERR unknown lease operation '{op.decode(errors='replace')}'")

    def _run_plain(self, ctx: Ctx, argv: list[bytes]) -> object:
        special = self._special.get(argv[0])
        if special is not None:
            try:
                return special(ctx, argv, self._index)
            except ErrorReply as err:
                return err
            except Exception as exc:  # same on every replica: answer it rather than diverge
                self.failures.append((self._index, argv[0], exc))
                return ErrorReply(f"ERR internal error applying '{argv[0].decode(errors='replace')}': {exc}")
        spec = TABLE.get(argv[0].decode().lower())
        if spec is not None and "container" in spec.flags and len(argv) > 1:  # OBJECT ENCODING ...
            spec = spec.subcommands.get(argv[1].decode(errors="replace").lower())
        if spec is None or spec.scope != "key":
            return ErrorReply(f"ERR command '{argv[0].decode(errors='replace')}' cannot be applied on the desired plane")
        try:
            return spec.handler(ctx, argv)
        except ErrorReply as err:
            return err
        except Exception as exc:  # a handler bug: same on every replica, so answer it rather than diverge
            self.failures.append((self._index, argv[0], exc))
            return ErrorReply(f"ERR internal error applying '{argv[0].decode(errors='replace')}': {exc}")

    def revision(self, key: bytes, now_ms: int) -> int | None:
        entry = self.db.data.get(key)
        if entry is None or self.db.is_expired(key, now_ms):
            return None
        return entry[REV]

    def keys(self) -> Iterator[bytes]:
        for root in self.log_roots:
            if root in self.db.data:
                yield root
            yield from self.db.prefixed(root + b"/")

    def snapshot_rows(self) -> dict[str, Any]:
        """The desired keys as plain rows of wire forms; taken on the event loop, packed elsewhere."""
        data, expires = self.db.data, self.db.expires
        rows = []
        for key in self.keys():
            e = data[key]
            kind = e[KIND]
            rows.append([key, to_wire(kind, e[VALUE]), kind, e[REV], e[ORIGIN], e[CTIME], e[MTIME], expires.get(key)])
        return {"v": WIRE_VERSION, "rows": rows}

    def snapshot_state(self) -> dict[str, Any]:
        """Everything a snapshot keeps: the desired keys (as wire forms), the function libraries and
        the lease table."""
        return {**self.snapshot_rows(), "functions": self.scripting.snapshot(), "leases": self.leases.snapshot()}

    def restore_state(self, index: int, state: Any) -> None:
        """Install a snapshot. Older formats restore too: a plain list of rows (strings and
        documents only), and ``{"rows", "functions"}`` from before collections."""
        if isinstance(state, dict):
            self.restore(index, {"v": state.get("v", WIRE_VERSION), "rows": state["rows"]})
            self.scripting.restore(state.get("functions", []))
            self.leases.restore(state.get("leases"))
        else:
            self.restore(index, state)
            self.scripting.restore([])
            self.leases.restore(None)

    def restore(self, index: int, snapshot: dict[str, Any] | list[list[Any]]) -> None:
        if isinstance(snapshot, dict):
            version, rows = snapshot["v"], snapshot["rows"]
        else:
            version, rows = WIRE_VERSION, snapshot  # before collections: strings and documents only
        for key in list(self.keys()):
            self.db.delete(key)
        for key, wire, kind, rev, origin, ctime_ms, mtime_ms, expire_at in rows:
            self.db.put(key, (from_wire(kind, wire, version), kind, rev, origin, ctime_ms, mtime_ms))
            if expire_at is not None:
                self.db.set_expire(key, expire_at)
        self.applied_index = index


class SeededPerEntry:
    """The desired plane's generator: seeded from each entry's index, but only when an entry
    draws from it (SPOP, SRANDMEMBER...): most entries never do, and seeding costs microseconds."""

    __slots__ = ("_rng", "_pending")

    def __init__(self) -> None:
        self._rng = random.Random(0)
        self._pending: int | None = None

    def reseed(self, seed: int) -> None:
        self._pending = seed

    def __getattr__(self, name: str) -> Any:
        rng = self._rng
        if self._pending is not None:
            rng.seed(self._pending)
            self._pending = None
        return getattr(rng, name)


def _extends(argv: list[bytes]) -> bool:
    """``SET key value XX`` with a new expiry (PX, EX, PXAT, EXAT) and without IFEQ: an extension,
    which on a lease path only the holder may make. (With IFEQ the comparison names the holder
    already; a SET XX with no expiry overwrites, as a plain SET does: an administrative act.)"""
    opts = [a.upper() for a in argv[3:]]
    return b"XX" in opts and b"IFEQ" not in opts and any(o in opts for o in (b"PX", b"EX", b"PXAT", b"EXAT"))
