"""Server commands: COMMAND, INFO, CONFIG, DBSIZE, TIME, FLUSHALL/FLUSHDB, KEYS, SCAN."""

from __future__ import annotations

import itertools
import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

from vfsd import REDIS_VERSION, __version__
from vfsd.commands.errors import SYNTAX, parse_int
from vfsd.commands.introspection import OrderedSetReply
from vfsd.commands.keyflags import has_keys as has_key_args
from vfsd.commands.keyflags import key_flags, keys_countable
from vfsd.commands.keys import type_name
from vfsd.commands.table import TABLE, CommandSpec, command, container
from vfsd.config import ALIASES, BY_REDIS_NAME, ConfigError, coerce
from vfsd.glob import compile_glob, literal_prefix
from vfsd.resp.types import OK, ErrorReply, SimpleString, Verbatim
from vfsd.store.keyspace import prefix_end

if TYPE_CHECKING:
    from vfsd.server import Client


# -- COMMAND ---------------------------------------------------------------------


def _visible(spec: CommandSpec) -> bool:
    return "internal" not in spec.flags


def command_info(spec: CommandSpec) -> list[Any]:
    flags = {SimpleString(f.replace("_", "-")) for f in spec.flags if f != "container"}
    if spec.parent is None and spec.subcommands:
        flags = set()
    return [
        spec.full_name,
        spec.arity,
        flags,
        spec.first_key,
        spec.last_key,
        spec.step,
        {SimpleString(c) for c in spec.acl},
        [],
        [],
        [command_info(s) for s in spec.subcommands.values()],
    ]


def command_docs(spec: CommandSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": spec.summary, "since": spec.since, "group": spec.group,
                           "complexity": spec.complexity}
    if spec.arguments:
        doc["arguments"] = [{"name": a.strip("[]").split("|")[0].lower() or a, "type": "string",
                             "display_text": a} for a in spec.arguments]
    if spec.subcommands:
        doc["subcommands"] = {s.full_name: command_docs(s) for s in spec.subcommands.values()}
    return doc


def _find(name: bytes) -> CommandSpec | None:
    text = name.decode(errors="replace").lower()
    if "|" in text:
        parent, _, sub = text.partition("|")
        spec = TABLE.get(parent)
        return spec.subcommands.get(sub) if spec else None
    spec = TABLE.get(text)
    return spec if spec is not None and _visible(spec) else None


container("command", group="server", summary="Returns detailed information about all commands.")
TABLE["command"].arity = -1


def _command_bare(client: "Client", argv: list[bytes]) -> list[Any]:
    return [command_info(s) for s in TABLE.values() if _visible(s)]


TABLE["command"].handler = _command_bare


@command("count", arity=2, flags="loading stale", group="server", scope="node", parent="command",
         summary="Returns a count of commands.", since="2.8.13")
def command_count(client: "Client", argv: list[bytes]) -> int:
    return sum(1 for s in TABLE.values() if _visible(s))


@command("info", arity=-2, flags="loading stale", group="server", scope="node", parent="command",
         summary="Returns information about one, multiple or all commands.", since="2.8.13", arguments="[command-name ...]")
def command_info_cmd(client: "Client", argv: list[bytes]) -> list[Any]:
    if len(argv) == 2:
        return [command_info(s) for s in TABLE.values() if _visible(s)]
    return [None if (s := _find(a)) is None else command_info(s) for a in argv[2:]]


@command("docs", arity=-2, flags="loading stale", group="server", scope="node", parent="command",
         summary="Returns documentary information about one, multiple or all commands.", since="7.0.0",
         arguments="[command-name ...]")
def command_docs_cmd(client: "Client", argv: list[bytes]) -> dict[str, Any]:
    specs = [s for s in TABLE.values() if _visible(s)] if len(argv) == 2 else [s for a in argv[2:] if (s := _find(a))]
    return {s.full_name: command_docs(s) for s in specs}


@command("list", arity=-2, flags="loading stale", group="server", scope="node", parent="command",
         summary="Returns a list of command names.", since="7.0.0")
def command_list(client: "Client", argv: list[bytes]) -> list[str]:
    return [s.name for s in TABLE.values() if _visible(s)]


def _keys_of_call(argv: list[bytes]) -> tuple[CommandSpec, list[int]]:
    """COMMAND GETKEYS[ANDFLAGS] <command> ...: the command's spec and the positions of its keys, with
    Redis's errors (server.c, getKeysSubcommandImpl)."""
    call = argv[2:]
    spec = TABLE.get(call[0].decode(errors="replace").lower())
    if spec is not None and "container" in spec.flags and len(call) > 1:
        spec = spec.subcommands.get(call[1].decode(errors="replace").lower())
    if spec is None or "internal" in spec.flags:
        raise ErrorReply("ERR Invalid command specified")
    has_keys = (spec.first_key > 0 or spec.key_positions is not None) and has_key_args(spec.full_name)
    if "container" in spec.flags or not has_keys:
        raise ErrorReply("ERR The command has no key arguments")
    if not spec.arity_ok(len(call)):
        raise ErrorReply("ERR Invalid number of arguments specified for command")
    if not keys_countable(spec.full_name, call):
        positions = []
    elif spec.key_positions is not None:
        positions = spec.key_positions(call)
    else:
        last = spec.last_key if spec.last_key >= 0 else len(call) + spec.last_key
        positions = list(range(spec.first_key, last + 1, spec.step))
    if not positions and "no_mandatory_keys" not in spec.flags:
        raise ErrorReply("ERR Invalid arguments specified for command")
    return spec, positions


@command("getkeys", arity=-3, flags="loading stale", group="server", scope="node", parent="command",
         summary="Extracts the key names from an arbitrary command.", since="2.8.13", arguments="command [arg ...]")
def command_getkeys(client: "Client", argv: list[bytes]) -> list[bytes]:
    _, positions = _keys_of_call(argv)
    return [argv[2 + i] for i in positions]


@command("getkeysandflags", arity=-3, flags="loading stale", group="server", scope="node", parent="command",
         summary="Extracts the key names and access flags for an arbitrary command.", since="7.0.0",
         arguments="command [arg ...]")
def command_getkeysandflags(client: "Client", argv: list[bytes]) -> list[list[Any]]:
    spec, positions = _keys_of_call(argv)
    flags = key_flags(spec.full_name, argv[2:], len(positions), readonly="readonly" in spec.flags)
    return [[argv[2 + i], OrderedSetReply([SimpleString(f) for f in group])] for i, group in zip(positions, flags)]


@command("help", arity=2, flags="loading stale", group="server", scope="node", parent="command",
         summary="Returns helpful text about the different subcommands.")
def command_help(client: "Client", argv: list[bytes]) -> list[SimpleString]:
    return [SimpleString(s) for s in (
        "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "(no subcommand)", "    Return details about all commands.",
        "COUNT", "    Return the total number of commands.",
        "INFO [<command-name> ...]", "    Return details about the named commands, or all with no name.",
        "DOCS [<command-name> ...]", "    Return documentation about the named commands, or all with no name.",
        "LIST", "    Return a list of all command names.",
        "GETKEYS <full-command>", "    Return the keys from a full command.",
        "GETKEYSANDFLAGS <full-command>", "    Return the keys and the access flags from a full command.",
        "HELP", "    Print this help.",
    )]


# -- INFO ------------------------------------------------------------------------

INFO_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu", "errorstats",
                 "cluster", "keyspace", "vfsd", "raft", "gossip")
#: Keys with a TTL sampled for INFO keyspace's avg_ttl (an estimate, as Redis's is).
AVG_TTL_SAMPLE = 1000


def info_text(client: "Client", wanted: set[str]) -> str:
    node = client.node
    settings = node.settings
    sections: list[str] = []
    everything = not wanted or "all" in wanted or "everything" in wanted or "default" in wanted

    def want(name: str) -> bool:
        return everything or name in wanted

    if want("server"):
        uptime = int(time.monotonic() - node.started_monotonic)
        sections.append("# Server\r\n" + _fields({
            "redis_version": REDIS_VERSION, "redis_git_sha1": "00000000", "redis_git_dirty": 0,
            "redis_build_id": "vfsd", "redis_mode": "standalone", "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits": 64 if sys.maxsize > 2**32 else 32, "multiplexing_api": "epoll",
            "process_id": os.getpid(), "run_id": node.run_id, "tcp_port": settings.port,
            "hz": node.HZ, "configured_hz": node.HZ,
            "server_time_usec": int(time.time() * 1e6), "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400, "executable": sys.argv[0], "config_file": node.config.source,
            "vfsd_version": __version__, "python_version": platform.python_version(),
        }))
    if want("clients"):
        pubsub_clients = sum(1 for c in node.clients.values() if c.subscriptions())
        sections.append("# Clients\r\n" + _fields({
            "connected_clients": len(node.clients), "maxclients": settings.maxclients,
            "client_recent_max_output_buffer": max((c.output_bytes() for c in node.clients.values()), default=0),
            "pubsub_clients": pubsub_clients, "blocked_clients": node.blocking.blocked_clients() + node.pause.held_clients,
            "tracking_clients": node.tracker.tracking_clients,
            "watching_clients": sum(1 for c in node.clients.values() if c.watches),
        }))
    if want("memory"):
        rss = node.rss_bytes()
        peak = max(rss, node.stats.used_memory_peak)
        sections.append("# Memory\r\n" + _fields({
            "used_memory": rss, "used_memory_human": _human(rss), "used_memory_rss": rss,
            "used_memory_rss_human": _human(rss), "used_memory_peak": peak, "used_memory_peak_human": _human(peak),
            "maxmemory": 0, "maxmemory_policy": "noeviction",
            "mem_clients_normal": sum(c.output_bytes() + c.parser.buffered_bytes for c in node.clients.values()),
            "mem_clients_slaves": 0,
            "mem_allocator": "pymalloc",
        }))
    if want("persistence"):
        sections.append("# Persistence\r\n" + _fields({
            "loading": 0, "async_loading": 0, **node.saver.info(), "aof_enabled": 0,
        }))
    if want("stats"):
        stats = node.stats
        sections.append("# Stats\r\n" + _fields({
            "total_connections_received": stats.total_connections_received,
            "total_commands_processed": stats.total_commands_processed,
            "instantaneous_ops_per_sec": round(stats.ops_rate.per_second()),
            "total_net_input_bytes": stats.net_input_bytes, "total_net_output_bytes": stats.net_output_bytes,
            "instantaneous_input_kbps": f"{stats.input_rate.per_second() / 1024:.2f}",
            "instantaneous_output_kbps": f"{stats.output_rate.per_second() / 1024:.2f}",
            "rejected_connections": stats.rejected_connections,
            "expired_keys": node.notifier.expired_keys, "evicted_keys": 0,
            "keyspace_hits": sum(plane.ctx.hits for plane in node.planes.values()),
            "keyspace_misses": sum(plane.ctx.misses for plane in node.planes.values()),
            "pubsub_channels": len(node.pubsub.channels), "pubsub_patterns": node.pubsub.numpat(),
            "pubsubshard_channels": len(node.pubsub.shard_channels),
            **node.tracker.info(),
            "total_error_replies": stats.error_replies, "protocol_errors": stats.protocol_errors,
            # Redis 7.4's name, and vfsd's earlier one: clients cut off at their output buffer limit.
            "client_output_buffer_limit_disconnections": stats.client_output_limit_disconnections,
            "client_output_limit_disconnections": stats.client_output_limit_disconnections,
            # Times a normal client's commands were held back because its unsent replies passed the soft limit.
            "client_output_pauses": stats.client_output_pauses,
        }))
    if want("replication"):
        sections.append("# Replication\r\n" + _fields({"role": "master", "connected_slaves": 0}))
    if want("cpu"):
        t = os.times()
        sections.append("# CPU\r\n" + _fields({
            "used_cpu_sys": f"{t.system:.6f}", "used_cpu_user": f"{t.user:.6f}",
        }))
    if want("errorstats"):
        sections.append("# Errorstats\r\n" + _fields({
            f"errorstat_{code}": f"count={n}" for code, n in sorted(node.stats.error_codes.items())}))
    if want("cluster"):
        sections.append("# Cluster\r\n" + _fields({"cluster_enabled": 0}))
    if want("keyspace"):
        db = node.keyspace
        body = f"db0:keys={len(db)},expires={len(db.expires)},avg_ttl={_avg_ttl_ms(db, node.now_ms())}\r\n" if len(db) else ""
        sections.append("# Keyspace\r\n" + body)
    if want("vfsd"):
        fields: dict[str, Any] = {"node_id": settings.node_id, "peer_port": settings.peer_port,
                                  "data_dir": settings.data_dir}
        counts = node.plane_counts()
        for plane, n in counts.items():
            fields[f"files_{plane}"] = n
        fields.update(node.planes["log"].info())
        history = node.history
        fields.update({"watch_history_oldest_revision": history.oldest, "watch_history_changes": len(history),
                       "watch_history_bytes": history.bytes, "watch_history_dropped_revisions": history.dropped_revisions,
                       "vfs_watches": node.watchers.count})
        sections.append("# Vfsd\r\n" + _fields(fields))
    if want("raft"):
        sections.append("# Raft\r\n" + _fields(raft_fields(node)))
    if want("gossip"):
        # The active plane's replication (vfsd.active.shell): members, state, traffic, refusals.
        gossip = node.gossip
        sections.append("# Gossip\r\n" + _fields(gossip.info() if gossip is not None else {"gossip_enabled": 0}))
    return "\r\n".join(sections)


def raft_fields(node: Any) -> dict[str, Any]:
    """INFO raft: this member's view of the desired plane's Raft group (a standalone node is a
    one-voter group that always leads)."""
    plane = node.planes["log"]
    if not node.raft_member:
        applied = plane.machine.applied_index
        return {"raft_enabled": 0, "node_name": node.settings.node_id, "role": "leader", "term": 1, "leader_id": node.settings.node_id,
                "commit_index": applied, "applied_index": applied, "last_log_index": applied,
                "snapshot_index": plane.snapshot_index, "voters": 1, "learners": 0}
    st = plane.status()
    leader = st.get("leader_id")
    names = {m.member_id: m.name for m in plane.members()}
    fields: dict[str, Any] = {
        "raft_enabled": 1, "node_name": node.settings.node_id, "member_id": st["member_id"], "cluster_id": st["cluster_id"], "role": st["role"],
        "term": st["term"], "leader_id": leader or "", "leader_name": names.get(leader, "") if leader else "",
        "commit_index": st["commit_index"], "applied_index": st["applied_index"], "last_log_index": st["last_index"],
        "snapshot_index": st["snapshot_index"], "voters": len(st["voters"]), "learners": len(st["learners"]),
    }
    for key, value in plane.stats.items():
        fields[f"raft_{key}"] = value
    for i, m in enumerate(sorted(plane.members(), key=lambda m: m.name)):
        fields[f"member{i}"] = f"id={m.member_id},name={m.name},address={m.address},role={plane.role_of(m.member_id)}"
    for member_id, pr in st.get("progress", {}).items():
        fields[f"peer_{names.get(member_id, member_id)}"] = (f"id={member_id},state={pr['state']},match={pr['match']},"
                                                             f"lag={pr['lag']}")
    return fields


def _avg_ttl_ms(db: Any, now_ms: int) -> int:
    """Mean remaining TTL of keys that have one, over a bounded sample (INFO stays O(1) in the keyspace)."""
    sample = [at - now_ms for at in itertools.islice(db.expires.values(), AVG_TTL_SAMPLE) if at > now_ms]
    return sum(sample) // len(sample) if sample else 0


def _fields(values: dict[str, Any]) -> str:
    return "".join(f"{k}:{v}\r\n" for k, v in values.items())


def _human(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.2f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.2f}T"


@command("info", arity=-1, flags="loading stale", acl="@dangerous", group="server", scope="node",
         summary="Returns information and statistics about the server.", arguments="[section ...]")
def info(client: "Client", argv: list[bytes]) -> Verbatim:
    wanted = {a.decode(errors="replace").lower() for a in argv[1:]}
    return Verbatim(info_text(client, wanted))


# -- CONFIG ----------------------------------------------------------------------

container("config", group="server", summary="A container for server configuration commands.")

# Read-only answers for settings that Redis tools ask for on start-up.
COMPAT_CONFIG = {"save": "", "appendonly": "no", "databases": "1", "maxmemory": "0",
                 "maxmemory-policy": "noeviction", "cluster-enabled": "no"}


@command("get", arity=-3, flags="admin noscript loading stale", acl="@dangerous", group="server", scope="node",
         parent="config", summary="Returns the effective values of configuration parameters.", arguments="parameter [parameter ...]")
def config_get(client: "Client", argv: list[bytes]) -> dict[str, str]:
    """As Redis's configGetCommand: a name without glob characters is looked up as given (and answered under
    the name given: ``CONFIG GET MAXCLIENTS``), a pattern is matched without case against every name, aliases
    included; each setting once."""
    values = client.node.config_values()
    values.update({k: v for k, v in COMPAT_CONFIG.items() if k not in values})
    out: dict[str, str] = {}
    seen: set[str] = set()  # Redis's reply dict compares names without case
    for raw in argv[2:]:
        pattern = raw.decode(errors="replace")
        if not any(c in pattern for c in "[*?"):
            if pattern.lower() not in seen and pattern.lower() in values:
                seen.add(pattern.lower())
                out[pattern] = values[pattern.lower()]
            continue
        match = compile_glob(raw.lower())
        for name, value in values.items():
            if name not in seen and match(name.encode()) is not None:
                seen.add(name)
                out[name] = value
    return out


@command("set", arity=-4, flags="admin noscript loading stale", acl="@dangerous", group="server", scope="node",
         parent="config", summary="Sets configuration parameters in-flight.", arguments="parameter value [parameter value ...]")
def config_set(client: "Client", argv: list[bytes]) -> Any:
    """As Redis's configSetCommand: all or nothing. The first problem with the names wins (unknown, immutable,
    given twice); then each value is checked in turn; then all are applied, and if one cannot take effect
    (a port nothing can listen on) every one goes back (``Node.apply_settings``)."""
    if len(argv) % 2 != 0:
        raise SYNTAX
    raw: dict[str, bytes] = {}  # the name as Redis knows it (an alias stays an alias) -> value
    error: str | None = None
    for i in range(2, len(argv), 2):
        given = argv[i].decode(errors="replace")
        name = given.lower()
        setting = BY_REDIS_NAME.get(ALIASES.get(name, name))
        if setting is None and name not in COMPAT_CONFIG:
            error = error or f"ERR Unknown option or number of arguments for CONFIG SET - '{given}'"
        elif error is not None:
            continue
        elif setting is None or not setting.live:
            error = f"ERR CONFIG SET failed (possibly related to argument '{given}') - can't set immutable config"
        elif name in raw:
            error = f"ERR CONFIG SET failed (possibly related to argument '{given}') - duplicate parameter"
        else:
            raw[name] = argv[i + 1]
    if error is not None:
        raise ErrorReply(error)
    changes: dict[str, Any] = {}
    for name, value in raw.items():  # in order: a setting given under two names takes the later value
        setting = BY_REDIS_NAME[ALIASES.get(name, name)]
        try:
            changes[setting.name] = coerce(setting, value.decode(errors="replace"))
        except ConfigError as exc:
            raise ErrorReply(f"ERR CONFIG SET failed (possibly related to argument '{name}') - "
                             f"{exc.reason}") from None
    client.node.apply_settings(changes)
    return OK


@command("resetstat", arity=2, flags="admin noscript loading stale", acl="@dangerous", group="server", scope="node",
         parent="config", summary="Resets the server's statistics.", since="2.0.0")
def config_resetstat(client: "Client", argv: list[bytes]) -> Any:
    client.node.reset_stats()
    return OK


@command("rewrite", arity=2, flags="admin noscript loading stale", acl="@dangerous", group="server", scope="node",
         parent="config", summary="Persists the effective configuration to file.", since="2.8.0")
def config_rewrite(client: "Client", argv: list[bytes]) -> Any:
    raise ErrorReply("ERR CONFIG REWRITE is not supported: edit the vfsd.toml file (settings changed live are lost on restart)")


# -- keyspace-wide ---------------------------------------------------------------


@command("dbsize", arity=1, flags="readonly fast", acl="@keyspace", group="server", scope="node",
         summary="Returns the number of keys in the database.")
def dbsize(client: "Client", argv: list[bytes]) -> int:
    return len(client.node.keyspace)


@command("time", arity=1, flags="loading stale fast", group="server", scope="node",
         summary="Returns the server time.", since="2.6.0")
def time_(client: "Client", argv: list[bytes]) -> list[bytes]:
    now_us = time.time_ns() // 1000
    return [str(now_us // 1_000_000).encode(), str(now_us % 1_000_000).encode()]


def _flush(client: "Client", argv: list[bytes]) -> Any:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
        raise SYNTAX
    return client.node.flush_all()


@command("flushall", arity=-1, flags="write noscript no_multi", acl="@keyspace @dangerous", group="server", scope="node",
         summary="Removes all keys from all databases (each plane through its own write path).", arguments="[ASYNC|SYNC]")
def flushall(client: "Client", argv: list[bytes]) -> Any:
    return _flush(client, argv)


@command("flushdb", arity=-1, flags="write noscript no_multi", acl="@keyspace @dangerous", group="server", scope="node",
         summary="Remove all keys from the current database.", arguments="[ASYNC|SYNC]")
def flushdb(client: "Client", argv: list[bytes]) -> Any:
    return _flush(client, argv)


@command("keys", arity=2, flags="readonly", acl="@keyspace @dangerous", group="generic", scope="node",
         summary="Returns all key names that match a pattern.", complexity="O(N)", arguments="pattern")
def keys(client: "Client", argv: list[bytes]) -> list[bytes]:
    node = client.node
    db = node.keyspace
    now = node.now_ms()
    match = compile_glob(argv[1])
    prefix = literal_prefix(argv[1])
    return [k for k in db.prefixed(prefix) if match(k) is not None and not db.is_expired(k, now)]


def parse_cursor(raw: bytes) -> int:
    """Redis accepts any unsigned 64-bit cursor; anything else is 'invalid cursor'."""
    if not raw.isdigit() or len(raw) > 20:
        raise ErrorReply("ERR invalid cursor")
    value = int(raw)
    if value >= 1 << 64:
        raise ErrorReply("ERR invalid cursor")
    return value


@command("scan", arity=-2, flags="readonly", acl="@keyspace", group="generic", scope="node",
         summary="Iterates over the key names in the database, in path order.",
         complexity="O(1) for every call", since="2.8.0", arguments="cursor [MATCH pattern] [COUNT count] [TYPE type]")
def scan(client: "Client", argv: list[bytes]) -> list[Any]:
    cursor = parse_cursor(argv[1])
    pattern: bytes | None = None
    count = 10
    want_type: str | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise SYNTAX
        if opt == b"MATCH":
            pattern = argv[i + 1]
        elif opt == b"COUNT":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise SYNTAX
        elif opt == b"TYPE":
            want_type = argv[i + 1].decode(errors="replace").lower()
        else:
            raise SYNTAX
        i += 2
    node = client.node
    db = node.keyspace
    keys = db.keys
    now = node.now_ms()
    match = compile_glob(pattern) if pattern is not None else None
    prefix = literal_prefix(pattern) if pattern is not None else b""
    stop = prefix_end(prefix) if prefix else None
    if cursor == 0:
        walk = keys.irange(prefix, stop, inclusive=(True, False))
    else:
        after, rank = node.scan_cursors.resume(cursor)
        if after is None:
            after = keys[rank - 1] if 0 < rank <= len(keys) else (keys[-1] if keys and rank else b"")
        if after < prefix:
            walk = keys.irange(prefix, stop, inclusive=(True, False))
        else:
            walk = keys.irange(after, stop, inclusive=(False, False))
    found: list[bytes] = []
    last: bytes | None = None
    examined = 0
    for key in walk:
        last = key
        examined += 1
        if (match is None or match(key) is not None) and not db.is_expired(key, now):
            if want_type is None or type_name(db.data[key]).lower() == want_type:
                found.append(key)
        if examined >= count:
            break
    else:
        last = None
    if last is None:
        return [b"0", found]
    return [str(node.scan_cursors.issue(last, keys.bisect_right(last))).encode(), found]

