"""SAVE, BGSAVE, LASTSAVE and SHUTDOWN: dumping the local and active planes, and stopping the node.

The desired plane needs none of this (every write is in its log before it is
acknowledged); these commands concern the planes Redis would keep in dump.rdb.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from vfsd.commands.errors import SYNTAX
from vfsd.commands.table import command
from vfsd.resp.types import OK, ErrorReply, SimpleString

if TYPE_CHECKING:
    from vfsd.server import Client

log = logging.getLogger(__name__)

IN_PROGRESS = ErrorReply("ERR Background save already in progress")


def _when_saved(client: "Client", then: Any) -> asyncio.Future[Any]:
    """Run a save; the future resolves with ``then()`` or the save's error reply."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.get_running_loop().create_task(client.node.saver.save())

    def finished(t: asyncio.Task[int]) -> None:
        if t.cancelled() or t.exception() is not None:
            done.set_result(ErrorReply(f"ERR saving failed: {t.exception() if not t.cancelled() else 'cancelled'}"))
        else:
            done.set_result(then())

    task.add_done_callback(finished)
    return done


@command("save", arity=1, flags="admin noscript no_async_loading no_multi", acl="@admin", group="server",
         scope="node", summary="Synchronously saves the local and active planes to disk.")
def save(client: "Client", argv: list[bytes]) -> Any:
    if client.node.saver.in_progress:
        return IN_PROGRESS
    return _when_saved(client, lambda: OK)


@command("bgsave", arity=-1, flags="admin noscript no_async_loading", acl="@admin", group="server", scope="node",
         summary="Asynchronously saves the local and active planes to disk.", arguments="[SCHEDULE]")
def bgsave(client: "Client", argv: list[bytes]) -> Any:
    schedule = False
    if len(argv) == 2:
        if argv[1].upper() != b"SCHEDULE":
            raise SYNTAX
        schedule = True
    elif len(argv) > 2:
        raise SYNTAX
    saver = client.node.saver
    if saver.bgsave():
        return SimpleString("Background saving started")
    if not schedule:
        return IN_PROGRESS
    saver.schedule_after_current()
    return SimpleString("Background saving scheduled")


@command("lastsave", arity=1, flags="loading stale fast", acl="@admin @dangerous", group="server", scope="node",
         summary="Returns the Unix timestamp of the last successful save to disk.")
def lastsave(client: "Client", argv: list[bytes]) -> int:
    return client.node.saver.last_save_ms // 1000


@command("shutdown", arity=-1, flags="admin noscript loading stale no_multi allow_busy", acl="@admin",
         group="server", scope="node", summary="Synchronously saves the local and active planes and stops the node.",
         arguments="[NOSAVE|SAVE] [NOW] [FORCE] [ABORT]")
def shutdown(client: "Client", argv: list[bytes]) -> Any:
    save_mode: bytes | None = None
    force = abort = False
    for arg in argv[1:]:
        opt = arg.upper()
        if opt in (b"NOSAVE", b"SAVE") and save_mode is None:
            save_mode = opt
        elif opt == b"NOW":
            pass  # nothing to wait for: no replicas lag behind a Redis-style primary here
        elif opt == b"FORCE":
            force = True
        elif opt == b"ABORT":
            abort = True
        else:
            raise SYNTAX
    if abort:
        if save_mode is not None or force or len(argv) > 2:
            raise SYNTAX
        return ErrorReply("ERR No shutdown in progress.")
    node = client.node
    must_save = save_mode == b"SAVE" or (save_mode is None and bool(node.save_points))
    if not must_save:
        node.request_shutdown(save=False)
        return asyncio.get_running_loop().create_future()  # never answered: the connection closes with the node

    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.get_running_loop().create_task(node.saver.save())

    def saved(t: asyncio.Task[int]) -> None:
        if t.cancelled() or t.exception() is not None:
            if not force:
                log.warning("SHUTDOWN refused: saving the local and active planes failed")
                done.set_result(ErrorReply("ERR Errors trying to SHUTDOWN. Check logs."))
                return
            log.warning("SHUTDOWN FORCE: stopping although saving failed")
        node.request_shutdown(save=False)  # the dump is fresh: stop() need not save again

    task.add_done_callback(saved)
    return done
