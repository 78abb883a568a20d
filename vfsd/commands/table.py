"""The declarative command table.

Command metadata is data (as in Redis's commands.def): name, arity, flags, key
positions, ACL categories and docs. Dispatch checks arity, auth, plane and
transaction state centrally from this table, so a handler never re-checks; the
``COMMAND`` family is served from the same table.

Two kinds of handler:
- ``scope="key"``: ``handler(ctx, argv) -> reply``, a pure function of one
  plane's keyspace (see ``context.Ctx``). Reads run where the client is; writes
  run wherever the plane applies them (at once on the local and active planes,
  when the log entry commits on the desired plane), so they must be
  deterministic given ``ctx`` and ``argv``.
- ``scope="node"``: ``handler(conn, argv) -> reply``, for commands about the
  connection or the node (``PING``, ``CLIENT``, ``INFO``, ``SUBSCRIBE``...).

A write may also declare ``check(argv, settings)``: the checks of its
arguments that need no keyspace (syntax, numbers, limits such as
proto-max-bulk-len). Dispatch runs it before proposing the command to the
desired plane's log, so an entry never fails at apply time for a reason known
in advance, and limits are judged by the proposing node's settings rather than
each replica's. The handler repeats the same checks (it runs alone on the
local and active planes), so a check only raises what the handler would raise
first, in Redis's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[..., Any]

MONITOR_NEVER, MONITOR_AFTER, MONITOR_BEFORE = 0, 1, 2


@dataclass(slots=True)
class CommandSpec:
    name: str
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    step: int
    acl: tuple[str, ...]
    handler: Handler
    scope: str
    group: str
    summary: str
    since: str = "1.0.0"
    complexity: str = "O(1)"
    arguments: tuple[str, ...] = ()
    key_positions: Callable[[list[bytes]], list[int]] | None = None
    check: Callable[[list[bytes], Any], None] | None = None
    subcommands: dict[str, "CommandSpec"] = field(default_factory=dict)
    parent: "CommandSpec | None" = None

    @property
    def full_name(self) -> str:
        return f"{self.parent.name}|{self.name}" if self.parent else self.name

    is_write: bool = False
    #: A blocking pop: its handler may return ``vfsd.commands.blocking.Block``.
    is_blocking: bool = False
    #: When MONITOR shows the command: ``MONITOR_AFTER`` it ran (most), ``MONITOR_BEFORE`` (scripts, so that the
    #: commands they call come after them; Redis's skip_monitor commands feed monitors themselves), or never
    #: (admin commands, as in Redis).
    monitor_feed: int = 0

    def __post_init__(self) -> None:
        self.is_write = "write" in self.flags
        self.is_blocking = "blocking" in self.flags
        self.monitor_feed = (MONITOR_NEVER if "admin" in self.flags else
                             MONITOR_BEFORE if "skip_monitor" in self.flags else MONITOR_AFTER)

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments of a call whose arity has been checked."""
        if self.key_positions is not None:
            return [argv[i] for i in self.key_positions(argv)]
        if self.first_key <= 0:
            return []
        last = self.last_key if self.last_key >= 0 else len(argv) + self.last_key
        return argv[self.first_key : last + 1 : self.step]

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity >= 0 else argc >= -self.arity


TABLE: dict[str, CommandSpec] = {}


def parses(parse: Callable[[list[bytes]], Any]) -> Callable[[list[bytes], Any], None]:
    """A ``check`` that runs the command's own argument parser and drops what it returns."""

    def check(argv: list[bytes], settings: Any) -> None:
        parse(argv)

    return check


def command(
    name: str,
    *,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (0, 0, 0),
    acl: str = "",
    group: str,
    summary: str,
    scope: str = "key",
    since: str = "1.0.0",
    complexity: str = "O(1)",
    arguments: str = "",
    key_positions: Callable[[list[bytes]], list[int]] | None = None,
    parent: str | None = None,
    check: Callable[[list[bytes], Any], None] | None = None,
) -> Callable[[Handler], Handler]:
    """Register a handler in the table (or as a subcommand of ``parent``)."""

    def register(handler: Handler) -> Handler:
        flag_set = frozenset(flags.split())
        categories = list(acl.split())
        if "write" in flag_set and "@write" not in categories:
            categories.insert(0, "@write")
        if "readonly" in flag_set and "@read" not in categories:
            categories.insert(0, "@read")
        if "fast" in flag_set and "@fast" not in categories:
            categories.append("@fast")
        if "fast" not in flag_set and "@slow" not in categories:
            categories.append("@slow")
        if "admin" in flag_set:
            categories += ["@admin", "@dangerous"]
        spec = CommandSpec(
            name=name,
            arity=arity,
            flags=flag_set,
            first_key=keys[0],
            last_key=keys[1],
            step=keys[2],
            acl=tuple(dict.fromkeys(categories)),
            handler=handler,
            scope=scope,
            group=group,
            summary=summary,
            since=since,
            complexity=complexity,
            arguments=tuple(arguments.split()),
            key_positions=key_positions,
            check=check,
        )
        if parent is None:
            existing = TABLE.get(name)
            if existing is not None:
                spec.subcommands = existing.subcommands
            TABLE[name] = spec
        else:
            container = TABLE[parent]
            spec.parent = container
            container.subcommands[name] = spec
        return handler

    return register


def container(name: str, *, group: str, summary: str, acl: str = "", since: str = "1.0.0") -> None:
    """Register a command that only dispatches to subcommands (``CLIENT``, ``CONFIG``)."""

    def dispatch(conn: Any, argv: list[bytes]) -> Any:  # replaced by the dispatcher's subcommand lookup
        raise AssertionError("container commands are dispatched by subcommand")

    command(name, arity=-2, flags="", acl=acl, group=group, summary=summary, scope="node", since=since)(dispatch)
    TABLE[name].flags = frozenset({"container"})
