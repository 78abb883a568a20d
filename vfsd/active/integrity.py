"""``/itg/<node>``: every member's health as the cluster sees it, and what a member leaves behind.

Every node writes ``/itg/<name>`` (a document) when membership tells it that member's
state changed, and ``/itg/<itself>`` when it starts, rejoins or leaves. The document
is an ordinary active-plane file: written through ``Node.write_document`` (so it raises
the same events a client's JSON.SET does: ``PSUBSCRIBE __keyspace@0__:/itg/*`` shows a
node dying) and replicated by gossip, last writer wins. Every observer writes what it
saw at the moment it saw it, so once membership has converged the newest write on
every node carries the converged state; ``observer`` says whose view a document is.

Fields: ``state`` (alive, suspect, dead or left), ``previous`` (the state before, null
for a member just learnt), ``incarnation`` (SWIM's refutation counter), ``boot`` (the
member's identity: its clock when its process started), ``address`` (its peer port),
``since_ms`` (when it entered this state, by the observer's clock), ``last_heard_ms``
(when the observer last heard from it; 0: never), ``flaps`` (how often the observer
saw it go from alive to suspect or dead), ``observer``.

A dead or departed member's documents. Its ``/hw/<name>`` and ``/sum/<name>`` files
(and everything under them) are kept while it is dead or left, marked stale by
``/itg/<name>`` saying so, so a reader still sees the last inventory and load of a node
that is down for a while (a reboot, a partition). When the member is *reaped* —
``horizon_ms`` after it died (an hour in the LAN profile), ``left_grace_ms`` after it
left gracefully (30 s) — every node deletes its ``/hw/<name>``, ``/sum/<name>`` and
``/itg/<name>`` subtrees. A member that comes back later writes its own again.

Pure: the shell passes time and the keyspace walk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from vfsd.active.membership import Member, MemberEvent
from vfsd.active.wire import STATE_NAMES

#: The roots under which a member owns ``<root>/<name>`` and everything below it.
OWNED_ROOTS = (b"/hw/", b"/sum/", b"/itg/")


def member_path(name: str) -> bytes:
    return b"/itg/" + name.encode()


def event_document(event: MemberEvent, heard_ms: int, observer: str) -> dict[str, Any]:
    """What ``observer`` writes to ``/itg/<event.name>`` on a membership event."""
    return {"state": event.state, "previous": event.previous, "incarnation": event.incarnation, "boot": event.boot,
            "address": event.address, "since_ms": event.at_ms, "last_heard_ms": heard_ms, "flaps": event.flaps,
            "observer": observer}


def self_document(me: Member, state: str, now_ms: int) -> dict[str, Any]:
    """What a node writes to its own ``/itg/<name>``: on start, on rejoining after a reset, on leaving."""
    return {"state": state, "previous": None if state == "alive" else "alive", "incarnation": me.incarnation,
            "boot": me.boot, "address": me.address, "since_ms": now_ms, "last_heard_ms": now_ms, "flaps": 0,
            "observer": me.name}


def member_row(m: Member, me: str, now_ms: int) -> dict[str, Any]:
    """One member for ``members()`` (``VFS.CLUSTER MEMBERS``, tests)."""
    return {"id": m.name, "address": m.address, "state": STATE_NAMES[m.state], "incarnation": m.incarnation,
            "boot": m.boot, "last_heard_ms": now_ms if m.name == me else m.heard_ms, "since_ms": m.since_ms,
            "flaps": m.flaps}


def owned_paths(name: str, prefixed: Callable[[bytes], Iterable[bytes]], exists: Callable[[bytes], bool]) -> list[bytes]:
    """Every path member ``name`` owns: ``/hw/<name>``, ``/sum/<name>``, ``/itg/<name>`` and below.

    ``prefixed(prefix)`` walks the keyspace's keys starting with ``prefix``; ``exists(key)``
    says whether a key is held.
    """
    segment = name.encode()
    out: list[bytes] = []
    for root in OWNED_ROOTS:
        top = root + segment
        if exists(top):
            out.append(top)
        out.extend(prefixed(top + b"/"))
    return out
