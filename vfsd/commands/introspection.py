"""Connection modes and introspection: CLIENT TRACKING CACHING TRACKINGINFO GETREDIR REPLY PAUSE UNPAUSE NO-TOUCH,
MONITOR, SLOWLOG, LATENCY and MEMORY.

Replies and error texts are Redis 7.2's (networking.c clientCommand, tracking.c,
replication.c monitorCommand). The machinery lives beside: ``vfsd.tracking``
(the tracking table), ``vfsd.monitor`` (MONITOR's lines), ``vfsd.pause`` (held
commands) and ``vfsd.commands.observe`` (what runs around an observed client's
commands).
"""

from __future__ import annotations

import gc
import itertools
import sys
from typing import TYPE_CHECKING, Any

from vfsd.commands import connection  # noqa: F401  (registers the CLIENT container first)
from vfsd.commands.errors import SYNTAX, parse_int
from vfsd.commands.observe import refresh
from vfsd.commands.pubsub import Replies
from vfsd.commands.table import TABLE, command, container
from vfsd.resp.types import OK, ErrorReply, SimpleString, Verbatim
from vfsd.store.keyspace import VALUE
from vfsd.store.zset import ZSet
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
        raise ErrorReply("ERR You can't specify both OPTIN mode and OPTOUT mode")
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


# -- SLOWLOG -----------------------------------------------------------------------------------

container("slowlog", group="server", summary="A container for slow log commands.", since="2.2.12")


def _help(name: str, lines: list[str]) -> list[SimpleString]:
    """Redis's addReplyHelp: a heading, the lines, then HELP."""
    head = f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [SimpleString(line) for line in (head, *lines, "HELP", "    Print this help.")]


@command("get", arity=-2, flags="admin loading stale", group="server", scope="node", parent="slowlog",
         summary="Returns the slow log's entries.", since="2.2.12", complexity="O(N) where N is the number of "
         "entries returned", arguments="[count]")
def slowlog_get(client: "Client", argv: list[bytes]) -> list[Any]:
    if len(argv) > 3:
        raise _container_error(argv, "SLOWLOG")
    count = 10
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except ErrorReply:
            raise ErrorReply("ERR count should be greater than or equal to -1") from None
        if count < -1:
            raise ErrorReply("ERR count should be greater than or equal to -1")
    return client.node.slowlog.get(count)


@command("len", arity=2, flags="admin loading stale", group="server", scope="node", parent="slowlog",
         summary="Returns the number of entries in the slow log.", since="2.2.12")
def slowlog_len(client: "Client", argv: list[bytes]) -> int:
    return len(client.node.slowlog.entries)


@command("reset", arity=2, flags="admin loading stale", group="server", scope="node", parent="slowlog",
         summary="Clears all entries from the slow log.", since="2.2.12")
def slowlog_reset(client: "Client", argv: list[bytes]) -> Any:
    client.node.slowlog.reset()
    return OK


@command("help", arity=2, flags="loading stale", group="server", scope="node", parent="slowlog",
         summary="Show helpful text about the different subcommands", since="6.2.0")
def slowlog_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return _help("SLOWLOG", [
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
    ])


def _container_error(argv: list[bytes], name: str) -> ErrorReply:
    return ErrorReply(f"ERR unknown subcommand or wrong number of arguments for "
                      f"'{argv[1][:128].decode(errors='replace')}'. Try {name} HELP.")


# -- LATENCY -----------------------------------------------------------------------------------

container("latency", group="server", summary="A container for latency diagnostics commands.", since="2.8.13")


@command("latest", arity=2, flags="admin noscript loading stale", group="server", scope="node", parent="latency",
         summary="Returns the latest latency samples for all events.", since="2.8.13")
def latency_latest(client: "Client", argv: list[bytes]) -> list[Any]:
    return client.node.latency.latest()


@command("history", arity=3, flags="admin noscript loading stale", group="server", scope="node",
         parent="latency", summary="Returns timestamp-latency samples for an event.", since="2.8.13",
         arguments="event")
def latency_history(client: "Client", argv: list[bytes]) -> list[Any]:
    return client.node.latency.history(argv[2].decode(errors="replace"))


@command("reset", arity=-2, flags="admin noscript loading stale", group="server", scope="node", parent="latency",
         summary="Resets the latency data for one or more events.", since="2.8.13", arguments="[event ...]")
def latency_reset(client: "Client", argv: list[bytes]) -> int:
    events = [a.decode(errors="replace") for a in argv[2:]]
    return client.node.latency.reset(events or None)


@command("doctor", arity=2, flags="admin noscript loading stale", group="server", scope="node", parent="latency",
         summary="Returns a human-readable latency analysis report.", since="2.8.13")
def latency_doctor(client: "Client", argv: list[bytes]) -> Verbatim:
    return Verbatim(client.node.latency.doctor())


@command("graph", arity=3, flags="admin noscript loading stale", group="server", scope="node", parent="latency",
         summary="Returns a latency graph for an event.", since="2.8.13", arguments="event")
def latency_graph(client: "Client", argv: list[bytes]) -> Verbatim:
    event = argv[2].decode(errors="replace")
    samples = client.node.latency.history(event)
    if not samples:
        raise ErrorReply(f"ERR No samples available for event '{event}'")
    values = [ms for _, ms in samples]
    lines = [f"{event} - high {max(values)} ms, low {min(values)} ms "
             f"(all time high {client.node.latency.events[event].max_ms} ms)", "-" * 80]
    lines += [f"{t} {ms} ms" for t, ms in samples]
    return Verbatim("\n".join(lines) + "\n")


@command("histogram", arity=-2, flags="admin noscript loading stale", group="server", scope="node",
         parent="latency", summary="Returns the cumulative distribution of latencies of a subset or all commands "
         "(vfsd keeps none: an empty map).", since="7.0.0", arguments="[command ...]")
def latency_histogram(client: "Client", argv: list[bytes]) -> dict[bytes, Any]:
    return {}


@command("help", arity=2, flags="loading stale", group="server", scope="node", parent="latency",
         summary="Returns helpful text about the different subcommands.", since="2.8.13")
def latency_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return _help("LATENCY", [
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HISTOGRAM [COMMAND ...]",
        "    Return a cumulative distribution of latencies in the format of a histogram for the specified command "
        "names.",
        "    If no commands are specified then all histograms are replied.",
    ])


# -- MEMORY ------------------------------------------------------------------------------------

container("memory", group="server", summary="A container for memory diagnostics commands.", since="4.0.0")

#: Elements MEMORY USAGE looks at in a collection before it extrapolates (Redis's default SAMPLES).
USAGE_SAMPLES = 5


@command("usage", arity=-3, flags="readonly", keys=(2, 2, 1), group="server", parent="memory",
         summary="Estimates the memory usage of a key.", since="4.0.0", complexity="O(N) where N is the number of "
         "samples.", arguments="key [SAMPLES count]")
def memory_usage(ctx: Any, argv: list[bytes]) -> int | None:
    samples = USAGE_SAMPLES
    j = 3
    while j < len(argv):
        if argv[j].lower() == b"samples" and j + 1 < len(argv):
            samples = parse_int(argv[j + 1])
            if samples < 0:
                raise SYNTAX
            if samples == 0:
                samples = 1 << 62
            j += 2
        else:
            raise SYNTAX
    entry = ctx.lookup(argv[2])
    if entry is None:
        return None
    return entry_usage_bytes(argv[2], entry, samples)


def entry_usage_bytes(key: bytes, entry: Any, samples: int) -> int:
    """An estimate of what a key and its value hold in this process: the key, the entry, and the value, a
    collection's elements sampled (``samples`` of them, then extrapolated, as Redis's objectComputeSize)."""
    value = entry[VALUE]
    total = sys.getsizeof(key) + sys.getsizeof(entry) + sys.getsizeof(value)
    if isinstance(value, (bytes, bytearray)):
        return total
    if isinstance(value, ZSet):
        members = value.scores
        total += sys.getsizeof(members) + sys.getsizeof(value._order)
        items = list(itertools.islice(members, samples))
        per = sum(sys.getsizeof(m) * 2 + 32 + 24 for m in items)  # member (dict and order key) and score
    elif isinstance(value, dict):
        items = list(itertools.islice(value.items(), samples))
        per = sum(sys.getsizeof(f) + sys.getsizeof(v) for f, v in items)
    else:  # a list (deque) or set
        items = list(itertools.islice(value, samples))
        per = sum(sys.getsizeof(e) for e in items)
    size = len(value)
    if items:
        total += per * size // len(items)
    return total


@command("stats", arity=2, flags="loading stale", group="server", scope="node", parent="memory",
         summary="Returns details about memory usage.", since="4.0.0")
def memory_stats(client: "Client", argv: list[bytes]) -> dict[bytes, Any]:
    node = client.node
    rss = node.rss_bytes()
    peak = max(rss, node.stats.used_memory_peak)
    startup = node.startup_rss_bytes
    clients = sum(c.output_bytes() + c.parser.buffered_bytes for c in node.clients.values())
    keys = len(node.keyspace)
    dataset = max(0, rss - startup - clients)
    return {
        b"peak.allocated": peak,
        b"total.allocated": rss,
        b"startup.allocated": startup,
        b"replication.backlog": 0,
        b"clients.slaves": 0,
        b"clients.normal": clients,
        b"cluster.links": 0,
        b"aof.buffer": 0,
        b"lua.caches": 0,
        b"functions.caches": 0,
        b"overhead.total": startup + clients,
        b"keys.count": keys,
        b"keys.bytes-per-key": dataset // keys if keys else 0,
        b"dataset.bytes": dataset,
        b"dataset.percentage": float(100 * dataset / rss) if rss else 0.0,
        b"peak.percentage": float(100 * rss / peak) if peak else 0.0,
        b"fragmentation": 1.0,
        b"fragmentation.bytes": 0,
    }


@command("doctor", arity=2, flags="loading stale", group="server", scope="node", parent="memory",
         summary="Outputs a memory problems report.", since="4.0.0")
def memory_doctor(client: "Client", argv: list[bytes]) -> Verbatim:
    node = client.node
    if node.rss_bytes() < 5 << 20 or not len(node.keyspace):
        return Verbatim("Hi Sam, this instance is empty or is using very little memory, my issues detector can't "
                        "be used in these conditions. Please, leave for your mission on Earth and fill it with some "
                        "data. The new Sam and I will be back to our programming as soon as I finished rebooting.")
    return Verbatim("Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs "
                    "on this base.")


@command("malloc-stats", arity=2, flags="loading stale", group="server", scope="node", parent="memory",
         summary="Returns the allocator statistics.", since="4.0.0")
def memory_malloc_stats(client: "Client", argv: list[bytes]) -> Verbatim:
    return Verbatim("Stats not supported for the current allocator")


@command("purge", arity=2, flags="loading stale", group="server", scope="node", parent="memory",
         summary="Asks the allocator to release memory (vfsd: a full garbage collection).", since="4.0.0")
def memory_purge(client: "Client", argv: list[bytes]) -> Any:
    gc.collect()
    return OK


@command("help", arity=2, flags="loading stale", group="server", scope="node", parent="memory",
         summary="Outputs helpful text about the different subcommands.", since="4.0.0")
def memory_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return _help("MEMORY", [
        "DOCTOR",
        "    Return memory problems reports.",
        "MALLOC-STATS",
        "    Return internal statistics report from the memory allocator.",
        "PURGE",
        "    Attempt to purge dirty pages for reclamation by the allocator.",
        "STATS",
        "    Return information about the memory usage of the server.",
        "USAGE <key> [SAMPLES <count>]",
        "    Return memory in bytes used by <key> and its value. Nested values are",
        "    sampled up to <count> times (default: 5, 0 means sample all).",
    ])
