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
from vfsd.paths import Router
from vfsd.resp.types import NULL_ARRAY, ErrorReply
from vfsd.scripting.engine import DesiredScripting
from vfsd.scripting.sandbox import Sandbox
from vfsd.store.keyspace import CTIME, KIND, MTIME, ORIGIN, REV, VALUE, Keyspace
from vfsd.store.values import WIRE_VERSION, from_wire, to_wire


def encode_entry(ops: list[list[bytes]], time_ms: int, origin: str, *, transaction: bool = False,
                 watches: list[tuple[bytes, int | None]] | None = None,
                 max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES, pipeline: bool = False) -> bytes:
    body: dict[str, Any] = {"t": time_ms, "o": origin, "ops": ops}
    if transaction:
        body["x"] = True
    elif pipeline:
        body["p"] = True
    if watches:
        body["w"] = [[k, r] for k, r in watches]
    if max_bulk_bytes != DEFAULT_MAX_BULK_BYTES:
        body["m"] = max_bulk_bytes
    return codec.pack(body)


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
        self.ctx = Ctx(db, "log", "", self._rev, sink, lazy_delete=False, rng=random.Random(0), deterministic=True)
        #: Scripts and function libraries on the desired plane (the libraries are state: snapshotted).
        self.scripting = DesiredScripting(router or Router(),
                                          lambda: Sandbox(max_memory_bytes=script_max_memory_bytes))
        self._special = {b"vfs.eval": self.scripting.apply_eval, b"vfs.fcall": self.scripting.apply_fcall,
                         b"vfs.function": self.scripting.apply_function}

    def _rev(self) -> int:
        return self._index

    def apply(self, index: int, data: bytes, time_ms: int | None = None) -> object:
        """Apply the entry at ``index``. ``time_ms``: the time its Raft leader stamped (kept
        non-decreasing across leaders), which replaces the proposer's ``t`` when given."""
        assert index == self.applied_index + 1, f"apply out of order: {index} after {self.applied_index}"
        body = codec.unpack(data)
        ctx = self.ctx
        self._index = index
        ctx.now_ms = body["t"] if time_ms is None else time_ms
        ctx.origin = body["o"]
        ctx.max_bulk_bytes = body.get("m", DEFAULT_MAX_BULK_BYTES)
        ctx.random.seed(index)
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

    def _run(self, ctx: Ctx, argv: list[bytes]) -> object:
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
        """Everything a snapshot keeps: the desired keys (as wire forms) and the function libraries."""
        return {**self.snapshot_rows(), "functions": self.scripting.snapshot()}

    def restore_state(self, index: int, state: Any) -> None:
        """Install a snapshot. Older formats restore too: a plain list of rows (strings and
        documents only), and ``{"rows", "functions"}`` from before collections."""
        if isinstance(state, dict):
            self.restore(index, {"v": state.get("v", WIRE_VERSION), "rows": state["rows"]})
            self.scripting.restore(state.get("functions", []))
        else:
            self.restore(index, state)
            self.scripting.restore([])

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
