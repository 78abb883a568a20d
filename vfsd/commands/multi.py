"""Transactions: MULTI EXEC DISCARD WATCH UNWATCH.

Commands queue on the connection; EXEC runs them atomically. On the local and
active planes that means back to back on the event loop. On the desired plane
the whole queue is one log entry, applied atomically on every node; WATCHed
keys travel in the entry with the revisions seen at WATCH time and are checked
again when it applies, so a concurrent write that commits first aborts it.

A blocking pop inside a transaction does not block (Redis's CLIENT_DENY_BLOCKING):
it answers its null reply. Clients blocked on keys the transaction feeds are
woken after EXEC, not between its commands: EXEC holds the Blocker while it
runs (on the desired plane the whole transaction is one entry, so that holds
by construction).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from vfsd.commands.blocking import Block
from vfsd.commands.observe import remember_reads
from vfsd.commands.table import command
from vfsd.resp.types import NULL_ARRAY, OK, ErrorReply

if TYPE_CHECKING:
    from vfsd.server import Client

EXECABORT = ErrorReply("EXECABORT Transaction discarded because of previous errors.")


def _end(client: "Client") -> None:
    client.multi = None
    client.multi_error = False
    client.multi_group = None
    client.unwatch_all()


@command("multi", arity=1, flags="noscript loading stale fast", acl="@transaction", group="transactions", scope="node",
         summary="Starts a transaction.")
def multi(client: "Client", argv: list[bytes]) -> Any:
    if client.multi is not None:  # returned, not raised: like Redis, this does not abort the transaction
        return ErrorReply("ERR MULTI calls can not be nested")
    client.multi = []
    client.multi_error = False
    client.multi_group = None
    return OK


@command("discard", arity=1, flags="noscript loading stale fast", acl="@transaction", group="transactions",
         scope="node", summary="Discards a transaction.")
def discard(client: "Client", argv: list[bytes]) -> Any:
    if client.multi is None:
        raise ErrorReply("ERR DISCARD without MULTI")
    _end(client)
    return OK


@command("exec", arity=1, flags="noscript loading stale", acl="@transaction", group="transactions", scope="node",
         summary="Executes all commands in a transaction.")
def exec_(client: "Client", argv: list[bytes]) -> Any:
    from vfsd.commands.dispatch import dispatch, refusal

    if client.multi is None:
        raise ErrorReply("ERR EXEC without MULTI")
    queued, group, failed = client.multi, client.multi_group, client.multi_error
    if failed:
        _end(client)
        raise EXECABORT
    dirty = client.watches_dirty()
    watches = client.watch_group_keys("log") if group == "log" else []
    _end(client)
    if dirty:
        return NULL_ARRAY
    if group != "log":
        blocking = client.node.blocking
        blocking.hold += 1
        try:
            replies = [dispatch(client, args) for _, args in queued]
        finally:
            blocking.hold -= 1
        if blocking.ready:
            blocking.serve()
        return replies
    # Key commands form one log entry; the others (PING, KEYS, VFS.STAT...) run once it has
    # applied, in their place, so they see the transaction's writes, and not at all if it aborted.
    # A key command whose arguments are wrong fails the same way whenever it runs (refusal), so it
    # stays out of the entry and its error takes its place in the reply.
    node = client.node
    now = node.now_ms()
    limit = node.settings.max_bulk_bytes
    refusals = [refusal(node, spec, args) if spec.scope == "key" else None for spec, args in queued]
    key_ops = [args for (spec, args), refused in zip(queued, refusals) if spec.scope == "key" and refused is None]
    # The key commands run inside the entry, not through dispatch: tracking remembers their reads here, as EXEC
    # hands them to the log, and MONITOR shows every queued command here, in order (the others, run through
    # dispatch once the entry has applied, are not shown again).
    monitors = node.monitors
    if monitors.clients or client.tracking is not None:
        for spec, args in queued:
            if monitors.clients and spec.monitor_feed:
                monitors.feed(client, args)
            if spec.scope == "key":
                remember_reads(client, spec, args)
    future = node.planes["log"].submit(key_ops, now, transaction=True, watches=watches, max_bulk_bytes=limit)
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def merge(f: asyncio.Future[Any]) -> None:
        result = f.result()
        if result is NULL_ARRAY or isinstance(result, ErrorReply):
            done.set_result(result)
            return
        replies = iter(result)
        monitors.hold += 1  # shown at EXEC already
        try:
            done.set_result([
                refused if refused is not None else _no_block(next(replies)) if spec.scope == "key"
                else dispatch(client, args)
                for (spec, args), refused in zip(queued, refusals)
            ])
        finally:
            monitors.hold -= 1

    future.add_done_callback(merge)
    return done


@command("watch", arity=-2, flags="noscript loading stale fast", keys=(1, -1, 1), acl="@transaction",
         group="transactions", scope="node", summary="Monitors changes to keys to determine the execution of a transaction.",
         since="2.2.0", arguments="key [key ...]")
def watch(client: "Client", argv: list[bytes]) -> Any:
    if client.multi is not None:  # Redis's text, and the transaction goes on
        return ErrorReply("ERR WATCH inside MULTI is not allowed")
    client.watch(argv[1:])
    return OK


@command("unwatch", arity=1, flags="noscript loading stale fast", acl="@transaction", group="transactions",
         scope="node", summary="Forgets about watched keys of a transaction.", since="2.2.0")
def unwatch(client: "Client", argv: list[bytes]) -> Any:
    client.unwatch_all()
    return OK


def _no_block(reply: Any) -> Any:
    """A blocking pop that found nothing inside a transaction answers its null reply."""
    return reply.null_reply if type(reply) is Block else reply
