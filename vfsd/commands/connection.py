"""Connection commands: PING ECHO QUIT RESET SELECT HELLO AUTH CLIENT."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from vfsd import REDIS_VERSION, __version__
from vfsd.commands.errors import SYNTAX, parse_int
from vfsd.commands.table import command, container
from vfsd.resp.types import OK, PONG, ErrorReply, SimpleString, Verbatim

if TYPE_CHECKING:
    from vfsd.server import Client

WRONGPASS = ErrorReply("WRONGPASS invalid username-password pair or user is disabled.")


@command("ping", arity=-1, flags="fast", acl="@connection", group="connection", scope="node",
         summary="Returns the server's liveliness response.", arguments="[message]")
def ping(client: "Client", argv: list[bytes]) -> Any:
    if len(argv) > 2:
        raise ErrorReply("ERR wrong number of arguments for 'ping' command")
    if client.proto == 2 and client.subscriptions():
        return [b"pong", argv[1] if len(argv) == 2 else b""]
    return argv[1] if len(argv) == 2 else PONG


@command("echo", arity=2, flags="fast", acl="@connection", group="connection", scope="node",
         summary="Returns the given string.", arguments="message")
def echo(client: "Client", argv: list[bytes]) -> bytes:
    return argv[1]


@command("quit", arity=-1, flags="no_auth noscript fast", acl="@connection", group="connection", scope="node",
         summary="Closes the connection.")
def quit_(client: "Client", argv: list[bytes]) -> Any:
    client.close_after_write()
    return OK


@command("reset", arity=1, flags="no_auth noscript fast", acl="@connection", group="connection", scope="node",
         summary="Resets the connection.", since="6.2.0")
def reset(client: "Client", argv: list[bytes]) -> Any:
    from vfsd.commands.introspection import stop_monitoring
    from vfsd.commands.observe import refresh

    client.node.tracker.disable(client)
    stop_monitoring(client)
    client.modes.reset()
    refresh(client)
    client.multi = None
    client.multi_error = False
    client.multi_group = None
    client.unwatch_all()
    client.unsubscribe_all()
    client.name = b""
    client.proto = 2
    client.authenticated = not client.node.settings.requirepass
    client.readonly = False
    return SimpleString("RESET")


@command("readonly", arity=1, flags="fast loading stale", acl="@keyspace", group="cluster", scope="node",
         summary="Serves desired-path reads from this node's state without a linearizable read round.")
def readonly(client: "Client", argv: list[bytes]) -> Any:
    client.readonly = True
    return OK


@command("readwrite", arity=1, flags="fast loading stale", acl="@keyspace", group="cluster", scope="node",
         summary="Makes desired-path reads linearizable again (the default).")
def readwrite(client: "Client", argv: list[bytes]) -> Any:
    client.readonly = False
    return OK


@command("select", arity=2, flags="fast", acl="@connection", group="connection", scope="node",
         summary="Changes the selected database.", arguments="index")
def select(client: "Client", argv: list[bytes]) -> Any:
    try:
        index = parse_int(argv[1])
    except ErrorReply:
        raise ErrorReply("ERR value is not an integer or out of range") from None
    if index != 0:
        raise ErrorReply("ERR DB index is out of range")
    return OK


def check_password(client: "Client", username: bytes, password: bytes) -> None:
    required = client.node.settings.requirepass
    if username != b"default" or not required or not hmac.compare_digest(password, required.encode()):
        if not required and username == b"default":
            return
        raise WRONGPASS


@command("auth", arity=-2, flags="no_auth noscript fast", acl="@connection", group="connection", scope="node",
         summary="Authenticates the connection.", arguments="[username] password")
def auth(client: "Client", argv: list[bytes]) -> Any:
    if len(argv) > 3:
        raise SYNTAX
    if len(argv) == 2 and not client.node.settings.requirepass:
        raise ErrorReply(
            "ERR AUTH <password> called without any password configured for the default user. "
            "Are you sure your configuration is correct?"
        )
    username, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    check_password(client, username, password)
    client.authenticated = True
    return OK


@command("hello", arity=-1, flags="no_auth noscript fast", acl="@connection", group="connection", scope="node",
         summary="Handshakes with the server.", since="6.0.0", arguments="[protover [AUTH username password] [SETNAME clientname]]")
def hello(client: "Client", argv: list[bytes]) -> Any:
    proto = client.proto
    if len(argv) >= 2:
        try:
            proto = parse_int(argv[1])
        except ErrorReply:
            raise ErrorReply("ERR Protocol version is not an integer or out of range") from None
        if proto not in (2, 3):
            raise ErrorReply("NOPROTO unsupported protocol version")
    i = 2
    name: bytes | None = None
    credentials: tuple[bytes, bytes] | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            credentials = (argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            name = argv[i + 1]
            i += 2
        else:
            raise ErrorReply(f"ERR Syntax error in HELLO option '{argv[i].decode(errors='replace')}'")
    if credentials is not None:
        check_password(client, *credentials)
        client.authenticated = True
    if not client.authenticated:
        raise ErrorReply(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> "
            "AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol "
            "version at the same time"
        )
    if name is not None:
        validate_name(name)
        client.name = name
    client.proto = proto
    return {
        "server": "redis",
        "version": REDIS_VERSION,
        "proto": proto,
        "id": client.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
        "vfsd": __version__,
    }


def validate_name(name: bytes) -> None:
    if any(c <= 32 or c > 126 for c in name):
        raise ErrorReply("ERR Client names cannot contain spaces, newlines or special characters.")


container("client", group="connection", summary="A container for client connection commands.", acl="@connection")

#: Redis 7.2's text, word for word (clients and tests read it).
CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
    "HELP",
    "    Print this help.",
]


@command("help", arity=2, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Returns helpful text about the different subcommands.")
def client_help(client: "Client", argv: list[bytes]) -> Any:
    return [SimpleString(line) for line in CLIENT_HELP]


@command("id", arity=2, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Returns the unique client ID of the connection.")
def client_id(client: "Client", argv: list[bytes]) -> int:
    return client.id


@command("getname", arity=2, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Returns the name of the connection.")
def client_getname(client: "Client", argv: list[bytes]) -> bytes | None:
    return client.name or None


@command("setname", arity=3, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Sets the connection name.", arguments="connection-name")
def client_setname(client: "Client", argv: list[bytes]) -> Any:
    validate_name(argv[2])
    client.name = argv[2]
    return OK


@command("setinfo", arity=4, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Sets information specific to the client or connection.", since="7.2.0",
         arguments="LIB-NAME libname|LIB-VER libver")
def client_setinfo(client: "Client", argv: list[bytes]) -> Any:
    attr = argv[2].upper()
    if attr not in (b"LIB-NAME", b"LIB-VER"):
        raise ErrorReply(f"ERR Unrecognized option '{argv[2].decode(errors='replace')}'")
    if any(c < 33 or c > 126 for c in argv[3]):
        raise ErrorReply(f"ERR {attr.decode().lower()} cannot contain spaces, newlines or special characters.")
    if attr == b"LIB-NAME":
        client.lib_name = argv[3]
    else:
        client.lib_ver = argv[3]
    return OK


@command("info", arity=2, flags="fast noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Returns information about the connection.", since="6.2.0")
def client_info(client: "Client", argv: list[bytes]) -> Verbatim:
    client.last_argv = argv  # Redis names the command running now
    return Verbatim(client.info_line() + "\n")


@command("list", arity=-2, flags="admin noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Lists open connections.", arguments="[TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id ...]")
def client_list(client: "Client", argv: list[bytes]) -> Verbatim:
    client.last_argv = argv  # Redis names the command running now
    clients = list(client.node.clients.values())
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"TYPE" and i + 1 < len(argv):
            kind = argv[i + 1].lower()
            if kind not in (b"normal", b"pubsub", b"master", b"replica", b"slave"):
                raise ErrorReply(f"ERR Unknown client type '{argv[i + 1].decode(errors='replace')}'")
            pubsub = kind == b"pubsub"
            clients = [c for c in clients if bool(c.subscriptions()) == pubsub] if kind in (b"normal", b"pubsub") else []
            i += 2
        elif opt == b"ID" and i + 1 < len(argv):
            ids = set()
            for raw in argv[i + 1 :]:
                try:
                    ids.add(parse_int(raw))
                except ErrorReply:
                    raise ErrorReply("ERR Invalid client ID") from None
            clients = [c for c in clients if c.id in ids]
            break
        else:
            raise SYNTAX
    return Verbatim("".join(c.info_line() + "\n" for c in sorted(clients, key=lambda c: c.id)))


@command("kill", arity=-3, flags="admin noscript", acl="@connection", group="connection", scope="node", parent="client",
         summary="Terminates open connections.", arguments="ip:port | <filter> <value> ...")
def client_kill(client: "Client", argv: list[bytes]) -> Any:
    clients = client.node.clients
    if len(argv) == 3:  # old form: CLIENT KILL addr
        addr = argv[2].decode(errors="replace")
        for other in list(clients.values()):
            if other.addr == addr:
                other.kill()
                return OK
        raise ErrorReply("ERR No such client")
    if len(argv) % 2 != 0:
        raise SYNTAX
    matches = list(clients.values())
    skipme = True
    for i in range(2, len(argv), 2):
        opt, value = argv[i].upper(), argv[i + 1]
        if opt == b"ID":
            try:
                wanted = parse_int(value)
            except ErrorReply:
                raise ErrorReply("ERR client-id should be greater than 0") from None
            matches = [c for c in matches if c.id == wanted]
        elif opt == b"ADDR":
            matches = [c for c in matches if c.addr == value.decode(errors="replace")]
        elif opt == b"LADDR":
            matches = [c for c in matches if c.laddr == value.decode(errors="replace")]
        elif opt == b"USER":
            matches = [c for c in matches if value == b"default"]
        elif opt == b"TYPE":
            pubsub = value.lower() == b"pubsub"
            matches = [c for c in matches if bool(c.subscriptions()) == pubsub]
        elif opt == b"SKIPME":
            if value.lower() not in (b"yes", b"no"):
                raise SYNTAX
            skipme = value.lower() == b"yes"
        else:
            raise SYNTAX
    killed = 0
    for other in matches:
        if other is client and skipme:
            continue
        other.kill()
        killed += 1
    return killed


@command("no-evict", arity=3, flags="admin noscript loading stale", acl="@connection", group="connection", scope="node", parent="client",
         summary="Sets the client eviction mode of the connection.", since="7.0.0", arguments="ON|OFF")
def client_no_evict(client: "Client", argv: list[bytes]) -> Any:
    # vfsd never evicts clients (output limits disconnect, as they do in Redis whatever this mode); the mode
    # is remembered for CLIENT LIST (flag e) and RESET.
    value = argv[2].lower()
    if value not in (b"on", b"off"):
        raise SYNTAX
    client.modes.no_evict = value == b"on"
    return OK


@command("unblock", arity=-3, flags="admin noscript loading stale", acl="@connection", group="connection",
         scope="node", parent="client", summary="Unblocks a client blocked by a blocking command from a different "
         "connection.", since="5.0.0", arguments="client-id [TIMEOUT|ERROR]")
def client_unblock(client: "Client", argv: list[bytes]) -> int:
    if len(argv) > 4:
        raise ErrorReply(f"ERR unknown subcommand or wrong number of arguments for "
                         f"'{argv[1][:128].decode(errors='replace')}'. Try CLIENT HELP.")
    error = False
    if len(argv) == 4:
        reason = argv[3].lower()
        if reason not in (b"timeout", b"error"):
            raise ErrorReply("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
        error = reason == b"error"
    target = parse_int(argv[2])
    return int(client.node.blocking.unblock(target, error))
