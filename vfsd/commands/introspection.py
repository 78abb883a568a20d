"""Connection modes and introspection: CLIENT TRACKING CACHING TRACKINGINFO GETREDIR REPLY PAUSE UNPAUSE NO-TOUCH,
and MONITOR.

Replies and error texts are Redis 7.2's (networking.c clientCommand, tracking.c,
replication.c monitorCommand). The machinery lives beside: ``vfsd.tracking``
(the tracking table), ``vfsd.monitor`` (MONITOR's lines), ``vfsd.pause`` (held
commands) and ``vfsd.commands.observe`` (what runs around an observed client's
commands).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vfsd.commands import connection  # noqa: F401  (registers the CLIENT container first)
from vfsd.commands.errors import SYNTAX, parse_int
from vfsd.commands.observe import refresh
from vfsd.commands.pubsub import Replies
from vfsd.commands.table import TABLE, command
from vfsd.resp.types import OK, ErrorReply
from vfsd.tracking import TrackingState, overlapping

if TYPE_CHECKING:
    from vfsd.server import Client


class OrderedSetReply(frozenset):  # type: ignore[type-arg]
    """A RESP3 set sent in a fixed order (the encoder iterates it): CLIENT TRACKINGINFO's flags."""

    def __new__(cls, items: list[Any]) -> "OrderedSetReply":
        obj = super().__new__(cls, items)
        obj._order = list(dict.fromkeys(items))  # type: ignore[attr-defined]
        return obj

    def __iter__(self) -> Any:
        return iter(self._order)  # type: ignore[attr-defined]


def _subcommand_error(argv: list[bytes]) -> ErrorReply:
    return ErrorReply(f"ERR unknown subcommand or wrong number of arguments for "
                      f"'{argv[1][:128].decode(errors='replace')}'. Try CLIENT HELP.")


def _on_off(argv: list[bytes]) -> bool:
    value = argv[2].lower()
    if value == b"on":
        return True
    if value == b"off":
        return False
    raise SYNTAX


# -- client-side caching --------------------------------------------------------------


@command("tracking", arity=-3, flags="noscript loading stale", acl="@connection", group="connection", scope="node",
         parent="client", summary="Controls server-assisted client-side caching for the connection.", since="6.0.0",
         complexity="O(1). Some options may introduce additional complexity.",
         arguments="ON|OFF [REDIRECT client-id] [PREFIX prefix ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]")
def client_tracking(client: "Client", argv: list[bytes]) -> Any:
    node = client.node
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        more = len(argv) - 1 - j
        if opt == b"redirect" and more:
            j += 1
            if redirect:
                raise ErrorReply("ERR A client can only redirect to a single other client")
            redirect = parse_int(argv[j])
            if redirect not in node.clients:
                raise ErrorReply("ERR The client ID you want redirect to does not exist")
        elif opt == b"bcast":
            bcast = True
        elif opt == b"optin":
            optin = True
        elif opt == b"optout":
            optout = True
        elif opt == b"noloop":
            noloop = True
        elif opt == b"prefix" and more:
            j += 1
            prefixes.append(argv[j])
        else:
            raise SYNTAX
        j += 1
    mode = argv[2].lower()
    if mode == b"off":
        node.tracker.disable(client)
        refresh(client)
        return OK
    if mode != b"on":
        raise SYNTAX
    old = client.tracking
    if not bcast and prefixes:
        raise ErrorReply("ERR PREFIX option requires BCAST mode to be enabled")
    if old is not None and old.bcast != bcast:
        raise ErrorReply("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and "
                         "then re-enabling it with a different mode.")
    if bcast and (optin or optout):
        raise ErrorReply("ERR OPTIN and OPTOUT are not compatible with BCAST")
    if optin and optout:
        raise ErrorReply("ERR You can't use both OPTIN and OPTOUT")
    if old is not None and (optin and old.optout or optout and old.optin):
        raise ErrorReply("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and "
                         "then re-enabling it with a different mode.")
    if bcast:
        _check_prefixes(prefixes, old.prefixes if old is not None else [])
    state = TrackingState(redirect, bcast, optin, optout, noloop)
    if old is not None:
        state.caching = old.caching
    node.tracker.enable(client, state, prefixes)
    refresh(client)
    return OK


def _check_prefixes(prefixes: list[bytes], existing: list[bytes]) -> None:
    """Redis's checkPrefixCollisionsOrReply: a client's prefixes must not overlap."""
    for i, prefix in enumerate(prefixes):
        for old in existing:
            if overlapping(old, prefix):
                raise ErrorReply(f"ERR Prefix '{_text(prefix)}' overlaps with an existing prefix '{_text(old)}'. "
                                 "Prefixes for a single client must not overlap.")
        for other in prefixes[i + 1 :]:
            if overlapping(prefix, other):
                raise ErrorReply(f"ERR Prefix '{_text(prefix)}' overlaps with another provided prefix "
                                 f"'{_text(other)}'. Prefixes for a single client must not overlap.")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


@command("caching", arity=3, flags="noscript loading stale", acl="@connection", group="connection", scope="node",
         parent="client", summary="Instructs the server whether to track the keys in the next request.",
         since="6.0.0", arguments="YES|NO")
def client_caching(client: "Client", argv: list[bytes]) -> Any:
    state = client.tracking
    if state is None:
        raise ErrorReply("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or "
                         "OPTOUT mode enabled")
    value = argv[2].lower()
    if value == b"yes":
        if not state.optin:
            raise ErrorReply("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
    elif value == b"no":
        if not state.optout:
            raise ErrorReply("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
    else:
        raise SYNTAX
    state.caching = True
    return OK


@command("trackinginfo", arity=2, flags="noscript loading stale", acl="@connection", group="connection",
         scope="node", parent="client", summary="Returns information about server-assisted client-side caching for "
         "the connection.", since="6.2.0")
def client_trackinginfo(client: "Client", argv: list[bytes]) -> dict[bytes, Any]:
    state = client.tracking
    if state is None:
        return {b"flags": OrderedSetReply([b"off"]), b"redirect": -1, b"prefixes": []}
    return {b"flags": OrderedSetReply(state.flags()), b"redirect": state.redirect, b"prefixes": list(state.prefixes)}


@command("getredir", arity=2, flags="noscript loading stale", acl="@connection", group="connection", scope="node",
         parent="client", summary="Returns the client ID to which the connection's tracking notifications are "
         "redirected.", since="6.0.0")
def client_getredir(client: "Client", argv: list[bytes]) -> int:
    return client.tracking.redirect if client.tracking is not None else -1


# -- replies and touch ---------------------------------------------------------------------


@command("reply", arity=3, flags="noscript loading stale", acl="@connection", group="connection", scope="node",
         parent="client", summary="Instructs the server whether to reply to commands.", since="3.2.0",
         arguments="ON|OFF|SKIP")
def client_reply(client: "Client", argv: list[bytes]) -> Any:
    modes = client.modes
    value = argv[2].lower()
    if value == b"on":
        modes.reply_off = modes.reply_skip = False
        refresh(client)
        return OK
    if value == b"off":
        modes.reply_off = True
    elif value == b"skip":
        if not modes.reply_off:
            modes.reply_skip_next = True
    else:
        raise SYNTAX
    refresh(client)
    return Replies()  # no reply, to this command either


@command("no-touch", arity=3, flags="noscript loading stale", acl="@connection", group="connection", scope="node",
         parent="client", summary="Controls whether commands sent by the client affect the LRU/LFU of accessed "
         "keys.", since="7.2.0", arguments="ON|OFF")
def client_no_touch(client: "Client", argv: list[bytes]) -> Any:
    # vfsd keeps no access times (OBJECT IDLETIME counts from the last write), so reads never touch a key;
    # the mode is remembered for CLIENT LIST (flag T) and RESET.
    client.modes.no_touch = _on_off(argv)
    return OK


# -- CLIENT PAUSE ------------------------------------------------------------------------------


@command("pause", arity=-3, flags="admin noscript loading stale", acl="@connection", group="connection",
         scope="node", parent="client", summary="Suspends commands processing.", since="3.0.0",
         arguments="timeout [WRITE|ALL]")
def client_pause(client: "Client", argv: list[bytes]) -> Any:
    if len(argv) > 4:
        raise _subcommand_error(argv)
    all_commands = True
    if len(argv) == 4:
        mode = argv[3].lower()
        if mode == b"write":
            all_commands = False
        elif mode != b"all":
            raise ErrorReply("ERR CLIENT PAUSE mode must be WRITE or ALL")
    try:
        timeout = parse_int(argv[2])
    except ErrorReply:
        raise ErrorReply("ERR timeout is not an integer or out of range") from None
    if timeout < 0:
        raise ErrorReply("ERR timeout is negative")
    node = client.node
    if timeout > (1 << 63) - 1 - node.clock_ms:
        raise ErrorReply("ERR timeout is out of range")
    node.pause.pause(node.clock_ms + timeout if timeout else 0, all_commands)
    return OK


@command("unpause", arity=2, flags="admin noscript loading stale", acl="@connection", group="connection",
         scope="node", parent="client", summary="Resumes processing of clients that were paused.", since="6.2.0")
def client_unpause(client: "Client", argv: list[bytes]) -> Any:
    client.node.pause.unpause()
    return OK


# -- MONITOR -----------------------------------------------------------------------------------


@command("monitor", arity=1, flags="admin noscript loading stale", group="server", scope="node",
         summary="Listens for all requests received by the server in real-time.")
def monitor(client: "Client", argv: list[bytes]) -> Any:
    node = client.node
    if node.blocking.hold:  # inside EXEC (Redis: a client that denies blocking expects one reply per command)
        raise ErrorReply("ERR MONITOR isn't allowed for DENY BLOCKING client")
    if client.modes.monitor:
        return Replies()  # already monitoring: ignored, as Redis does
    client.modes.monitor = True
    node.monitors.add(client)
    refresh(client)
    return OK


def stop_monitoring(client: "Client") -> None:
    if client.modes.monitor:
        client.modes.monitor = False
        client.node.monitors.remove(client)
        refresh(client)


# -- shell hooks -------------------------------------------------------------------------------


def connection_closed(client: "Client") -> None:
    """The connection went away: it no longer tracks or monitors."""
    client.node.tracker.disable(client)
    stop_monitoring(client)


def last_command_name(argv: list[bytes]) -> str:
    """CLIENT LIST's ``cmd``: the full name of the last command (``client|list``), ``NULL`` if none or unknown."""
    if not argv:
        return "NULL"
    spec = TABLE.get(argv[0].decode(errors="replace").lower())
    if spec is None or "internal" in spec.flags:
        return "NULL"
    if "container" in spec.flags:
        if len(argv) < 2:
            return spec.name if spec.arity == -1 else "NULL"
        sub = spec.subcommands.get(argv[1].decode(errors="replace").lower())
        return sub.full_name if sub is not None else "NULL"
    return spec.name
