"""The compat scenarios as data, so every client runs the same steps.

A ``Step`` is one command and the reply a client library hands back for it
with no reply post-processing (redis-py with its response callbacks cleared and
``decode_responses=True``): ``"OK"`` for a status, an ``int``, a ``str``,
``None`` for a nil, a ``list``, or an ``Err`` carrying the full error text. The
same reply also fixes what ``redis-cli`` prints (``render_raw``).

Keys are written with ``{k}`` for the scenario's key on one plane: a local key,
an active-plane path (``/run``) and a desired-plane path (``/ctx``) run the
same steps, because a Redis client must not be able to tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Err:
    """An error reply; ``text`` is the whole line after '-' (``ERR ...``, ``WRONGTYPE ...``)."""

    text: str


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    reply: Any

    def bind(self, key: str) -> "Step":
        return Step(tuple(a.replace("{k}", key) for a in self.args), _bind(self.reply, key))


def _bind(reply: Any, key: str) -> Any:
    if isinstance(reply, str):
        return reply.replace("{k}", key)
    if isinstance(reply, list):
        return [_bind(r, key) for r in reply]
    return reply


def steps(table: list[tuple[str, Any]], key: str) -> list[Step]:
    """A table of ``("CMD arg ...", reply)`` rows with ``{k}`` bound to ``key`` (arguments hold no spaces)."""
    return [Step(tuple(line.split()), reply).bind(key) for line, reply in table]


#: One key per plane; each scenario derives its other keys by suffix (``{k}-a``).
PLANE_KEYS = {
    "local": "compat:str",
    "active": "/run/compat/str",
    "desired": "/ctx/compat/str",
}

#: An absolute deadline far enough ahead (2100-01-01) to read back exactly.
FAR_FUTURE_S = 4_102_444_800

NOT_INTEGER = Err("ERR value is not an integer or out of range")
WRONGTYPE = Err("WRONGTYPE Operation against a key holding the wrong kind of value")

#: Scenario (a): the string family, the expiry family and the generic key commands.
STRINGS: list[tuple[str, Any]] = [
    ("SET {k} v1", "OK"),
    ("GET {k}", "v1"),
    ("SET {k} v2 NX", None),
    ("GET {k}", "v1"),
    ("SET {k} v2 XX", "OK"),
    ("SET {k}-none v XX", None),
    ("EXISTS {k}-none", 0),
    ("SET {k}-nx v NX", "OK"),
    ("SET {k} v3 GET", "v2"),
    ("SET {k}-new v GET", None),
    ("GET {k}", "v3"),
    # Relative TTLs (EX, PX, EXPIRE) read back as TTL depend on how long the round trips took, so the
    # table checks that they were set (PERSIST answers 1) and reads exact values only for absolute
    # deadlines (EXAT, PEXPIREAT -> EXPIRETIME); the client modules check TTL ranges through their APIs.
    ("SET {k} v4 EX 100", "OK"),
    ("PERSIST {k}", 1),
    ("SET {k} v5 PX 200000", "OK"),
    ("PERSIST {k}", 1),
    ("TTL {k}", -1),
    ("PERSIST {k}", 0),
    (f"SET {{k}} v5 EXAT {FAR_FUTURE_S}", "OK"),
    ("EXPIRETIME {k}", FAR_FUTURE_S),
    ("SET {k} v6 KEEPTTL", "OK"),
    ("PEXPIRETIME {k}", FAR_FUTURE_S * 1000),
    ("SET {k} v7", "OK"),
    ("TTL {k}", -1),
    ("EXPIRE {k} 50", 1),
    ("PERSIST {k}", 1),
    (f"PEXPIREAT {{k}} {FAR_FUTURE_S * 1000 + 123}", 1),
    ("PEXPIRETIME {k}", FAR_FUTURE_S * 1000 + 123),
    ("EXPIRE {k}-none 50", 0),
    ("TTL {k}-none", -2),
    ("EXPIRETIME {k}-none", -2),
    ("SET {k}-n 10", "OK"),
    ("INCR {k}-n", 11),
    ("INCRBY {k}-n 5", 16),
    ("DECR {k}-n", 15),
    ("DECRBY {k}-n 20", -5),
    ("INCR {k}-counter", 1),
    ("GET {k}-n", "-5"),
    ("INCR {k}", NOT_INTEGER),
    ("MSET {k}-a 1 {k}-b 2", "OK"),
    ("MGET {k}-a {k}-b {k}-none", ["1", "2", None]),
    ("APPEND {k}-a xyz", 4),
    ("APPEND {k}-fresh abc", 3),
    ("STRLEN {k}-a", 4),
    ("GET {k}-a", "1xyz"),
    ("STRLEN {k}-none", 0),
    ("EXISTS {k} {k}-a {k}-none", 2),
    ("TYPE {k}", "string"),
    ("TYPE {k}-none", "none"),
    ("DEL {k} {k}-a {k}-none", 2),
    ("EXISTS {k} {k}-a", 0),
    ("GET {k}", None),
    ("TTL {k}", -2),
]

#: Scenario (f): errors, with Redis's exact texts (vfsd adds its own for bad paths).
ERRORS: list[tuple[tuple[str, ...], Err]] = [
    (("GET",), Err("ERR wrong number of arguments for 'get' command")),
    (("SET", "x"), Err("ERR wrong number of arguments for 'set' command")),
    (("NOSUCHCMD", "a", "b"), Err("ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ")),
    (("SET", "/ctx//x", "1"), Err("ERR invalid path '/ctx//x': empty segment")),
    (("GET", "/ctx/x/"), Err("ERR invalid path '/ctx/x/': trailing slash (directories are implicit)")),
    (("SET", "/ctx/../x", "1"), Err("ERR invalid path '/ctx/../x': '.' and '..' segments are not allowed")),
    (("SET", "/nope/x", "1"),
     Err("ERR no plane for root '/nope' in path '/nope/x' (roots: /ctx /hw /itg /lk /mid /run /sum /sys /ztb)")),
    (("SET", "k", "v", "EX", "0"), Err("ERR invalid expire time in 'set' command")),
    (("SET", "k", "v", "NX", "XX"), Err("ERR syntax error")),
]

#: The prefix of the error a command whose keys span planes gets (the rest names the keys).
SPANS_PLANES = "spans planes"


def render_raw(reply: Any) -> str:
    """What ``redis-cli`` prints for ``reply`` when its output is not a terminal (``--raw``, the default then)."""
    if isinstance(reply, Err):
        return reply.text + "\n\n"  # redis-cli --raw follows an error with an empty line
    if reply is None:
        return "\n"
    if isinstance(reply, list):
        return "".join(render_raw(item) if item is not None else "\n" for item in reply) if reply else ""
    return f"{reply}\n"
