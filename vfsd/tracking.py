"""Client-side caching: which clients may hold which keys, and the invalidations they are owed.

Theory of operation (Redis 6+ ``CLIENT TRACKING``, tracking.c; the same wire
messages, so client libraries work unmodified).

A tracking client is told when a key it may have cached changes. Two modes:

- **Default.** Every key a tracking client reads with a read-only command is
  remembered in the *table* (key -> ids of the clients that read it). The first
  change to the key sends each of them one invalidation and forgets the entry:
  a client that wants to hear of the next change reads the key again. OPTIN
  remembers only the command after ``CLIENT CACHING yes``, OPTOUT all but the one
  after ``CLIENT CACHING no``. The table is bounded by ``tracking-table-max-keys``
  (0: unbounded): past it the oldest entries are dropped, their clients told, as
  Redis evicts entries.
- **Broadcast (BCAST).** Nothing is remembered per read: the client names
  prefixes (none: every key) and hears of every change to a key under one of
  them. Changed keys are collected per prefix and sent once per event-loop
  iteration, one message per prefix (``schedule`` runs ``flush_broadcasts``),
  as Redis does in beforeSleep. A key matched against the prefixes costs one
  dict probe per distinct prefix length, not one comparison per prefix.

Invalidations come from the change-event stream (DESIGN.md §3a): the tracker is a
``Notifier`` listener, so every change invalidates, whatever made it — a client on
this node, a desired-log entry applied (proposed here or elsewhere), a replicated
merge, an expiry. While no client tracks, the listener is not registered and the
table is empty: a change costs nothing extra.

Where an invalidation goes: to the tracking client itself in RESP3 (a push,
``>2 invalidate [keys]``), or to the client it redirects to (``REDIRECT id``):
in RESP3 the same push, in RESP2 a ``message`` on ``__redis__:invalidate`` if
that client is subscribed. A RESP2 client that does not redirect gets nothing
(RESP2 has no out-of-band replies). A redirect to a client that has gone marks
the redirect broken and, in RESP3, tells the tracking client so
(``tracking-redir-broken``). FLUSHALL sends every tracking client one
invalidation whose key list is null.

The client whose command is running (``current``, set by dispatch for tracking
clients only) hears of its own changes after that command's reply, as Redis 7
does, so an invalidation never lands inside a reply; with NOLOOP it does not
hear of them at all. A change applied later than the command that asked for it
(a desired-plane write is applied when its log entry commits) has no current
client: the writer is told of it too, NOLOOP or not (an extra invalidation is
always safe, a missed one never is).

No I/O here: delivery is the client shell's ``deliver``, the clock is never read.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from vfsd.resp.pushes import Message, encoded_message
from vfsd.resp.types import Push

CHANNEL: Final = b"__redis__:invalidate"


class TrackingClient(Protocol):
    id: int
    proto: int
    tracking: "TrackingState | None"

    def deliver(self, message: Message) -> None: ...

    def subscriptions(self) -> int: ...


class TrackingState:
    """One client's CLIENT TRACKING options (None on the client when it does not track)."""

    __slots__ = ("redirect", "bcast", "optin", "optout", "noloop", "caching", "broken_redirect", "prefixes")

    def __init__(self, redirect: int, bcast: bool, optin: bool, optout: bool, noloop: bool) -> None:
        #: Client id invalidations go to instead (0: this client).
        self.redirect = redirect
        self.bcast = bcast
        self.optin = optin
        self.optout = optout
        self.noloop = noloop
        #: CLIENT CACHING yes (OPTIN) / no (OPTOUT) was given for the next command.
        self.caching = False
        self.broken_redirect = False
        #: BCAST prefixes, sorted (as Redis lists them, from its radix tree).
        self.prefixes: list[bytes] = []

    def flags(self) -> list[bytes]:
        """CLIENT TRACKINGINFO's flags, in Redis's order."""
        out = [b"on"]
        if self.bcast:
            out.append(b"bcast")
        if self.optin:
            out.append(b"optin")
            if self.caching:
                out.append(b"caching-yes")
        if self.optout:
            out.append(b"optout")
            if self.caching:
                out.append(b"caching-no")
        if self.noloop:
            out.append(b"noloop")
        if self.broken_redirect:
            out.append(b"broken_redirect")
        return out

    def remembers_reads(self) -> bool:
        """Whether the command now running has its keys remembered (default mode, OPTIN/OPTOUT with CACHING)."""
        if self.bcast:
            return False
        if self.optin:
            return self.caching
        if self.optout:
            return not self.caching
        return True


class _Prefix:
    """One BCAST prefix: who listens, and the keys changed under it since the last flush (key -> who changed it)."""

    __slots__ = ("clients", "changed")

    def __init__(self) -> None:
        self.clients: dict[Any, None] = {}
        self.changed: dict[bytes, Any] = {}


_PUSH_HEAD: Final = b">2\r\n$10\r\ninvalidate\r\n"
_MESSAGE_HEAD: Final = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"


def invalidation(keys: list[bytes] | None) -> Message:
    """One invalidation, encoded once for both protocols (written out here: this runs once per change of a
    tracked key): RESP3 the push ``>2 invalidate keys``, RESP2 the ``__redis__:invalidate`` pub/sub message a
    redirect target receives. ``keys`` None: a null, after a flush (``_`` in RESP3, ``$-1`` in RESP2)."""
    message = Message([b"invalidate", keys])
    if keys is None:
        frame3, frame2 = _PUSH_HEAD + b"_\r\n", _MESSAGE_HEAD + b"$-1\r\n"
    else:
        body = b"*%d\r\n" % len(keys) + b"".join([b"$%d\r\n%b\r\n" % (len(k), k) for k in keys])
        frame3, frame2 = _PUSH_HEAD + body, _MESSAGE_HEAD + body
    message.frames = (None, None, ((frame2,), len(frame2)), ((frame3,), len(frame3)))
    return message


def overlapping(a: bytes, b: bytes) -> bool:
    """Whether one prefix is a prefix of the other (Redis refuses such pairs for one client)."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class Tracker:
    """The node's tracking table and broadcast prefixes; see the module docstring."""

    def __init__(self, clients: Mapping[int, Any], listeners: list[Callable[[str, bytes, Any], None]],
                 schedule: Callable[[Callable[[], None]], None], *, max_keys: int = 1_000_000) -> None:
        self.clients = clients
        self._listeners = listeners
        self._schedule = schedule
        #: tracking-table-max-keys (0: no bound).
        self.max_keys = max_keys
        #: key -> ids of the clients that read it (default mode), oldest key first.
        self.table: dict[bytes, dict[int, None]] = {}
        self.items = 0
        self.prefixes: dict[bytes, _Prefix] = {}
        self._prefix_lengths: list[int] = []
        self.tracking_clients = 0
        #: The tracking client whose command is running, and the invalidations it gets after its reply.
        self.current: Any = None
        self.pending: list[bytes | None] = []
        self._flush_scheduled = False
        #: Set while FLUSHALL clears the immediate planes: their keys were covered by the null invalidation.
        self._flushing = False

    # -- enabling --------------------------------------------------------------

    def enable(self, client: TrackingClient, state: TrackingState, prefixes: Iterable[bytes]) -> None:
        """CLIENT TRACKING ON with checked options; on a client already tracking, the options are replaced
        and BCAST prefixes added (as Redis's enableTracking)."""
        old = client.tracking
        if old is None:
            self.tracking_clients += 1
            if self.tracking_clients == 1:
                self._listeners.append(self.on_change)
        else:
            state.prefixes = old.prefixes
        client.tracking = state
        if state.bcast:
            wanted = list(prefixes) or [b""]
            for prefix in wanted:
                entry = self.prefixes.get(prefix)
                if entry is None:
                    entry = self.prefixes[prefix] = _Prefix()
                    self._prefix_lengths = sorted({len(p) for p in self.prefixes})
                entry.clients[client] = None
                if prefix not in state.prefixes:
                    state.prefixes.append(prefix)
            state.prefixes.sort()

    def disable(self, client: TrackingClient) -> None:
        """CLIENT TRACKING OFF, RESET, or the connection closed. Its table entries are skipped from now on and
        go with the next change to their keys (or at once, when no client tracks any more)."""
        state = client.tracking
        if state is None:
            return
        for prefix in state.prefixes:
            entry = self.prefixes.get(prefix)
            if entry is None:
                continue
            entry.clients.pop(client, None)
            if not entry.clients:
                del self.prefixes[prefix]
                self._prefix_lengths = sorted({len(p) for p in self.prefixes})
        client.tracking = None
        self.tracking_clients -= 1
        if self.current is client:
            self.current = None
            self.pending.clear()
        if not self.tracking_clients:
            self._listeners.remove(self.on_change)
            self.table.clear()
            self.items = 0

    # -- reads -----------------------------------------------------------------

    def remember(self, client: TrackingClient, keys: Iterable[bytes]) -> None:
        """A read-only command of a tracking client read ``keys`` (see ``TrackingState.remembers_reads``)."""
        cid = client.id
        table = self.table
        added = False
        for key in keys:
            ids = table.get(key)
            if ids is None:
                table[key] = {cid: None}
                self.items += 1
                added = True
            elif cid not in ids:
                ids[cid] = None
                self.items += 1
        if added and self.max_keys and len(table) > self.max_keys:
            self._evict(len(table) - self.max_keys)

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest entries, telling their clients as if the keys had changed."""
        for key in list(itertools.islice(self.table, count)):
            self._invalidate(key)

    # -- changes ---------------------------------------------------------------

    def on_change(self, event: str, key: bytes, entry: Any) -> None:
        """Notifier listener: ``key`` changed (written, deleted, expired, renamed...)."""
        if self._flushing:
            return
        if self._prefix_lengths:
            self._broadcast_later(key)
        if key in self.table:
            self._invalidate(key)

    def _invalidate(self, key: bytes) -> None:
        ids = self.table.pop(key)
        self.items -= len(ids)
        message: Message | None = None
        clients = self.clients
        current = self.current
        for cid in ids:
            target = clients.get(cid)
            if target is None:
                continue
            state = target.tracking
            if state is None or state.bcast:  # stopped tracking, or switched to BCAST, since it read the key
                continue
            if target is current:  # its own change: after its reply, or not at all (NOLOOP)
                if state.noloop:
                    continue
                if not state.redirect:
                    if target.proto == 3:
                        self.pending.append(key)
                    continue
            if message is None:
                message = invalidation([key])
            self.send(target, message)

    def send(self, target: TrackingClient, message: Message) -> None:
        """Deliver one invalidation for the tracking client ``target`` (to its redirect, if it has one)."""
        state = target.tracking
        assert state is not None
        if state.redirect:
            redirected = self.clients.get(state.redirect)
            if redirected is None:
                state.broken_redirect = True
                if target.proto == 3:
                    target.deliver(encoded_message([b"tracking-redir-broken", state.redirect]))
                return
            if redirected.proto == 3 or redirected.subscriptions():
                redirected.deliver(message)
        elif target.proto == 3:
            target.deliver(message)

    def _broadcast_later(self, key: bytes) -> None:
        prefixes = self.prefixes
        size = len(key)
        found = False
        for length in self._prefix_lengths:
            if length > size:
                break
            entry = prefixes.get(key[:length])
            if entry is not None:
                entry.changed[key] = self.current
                found = True
        if found and not self._flush_scheduled:
            self._flush_scheduled = True
            self._schedule(self.flush_broadcasts)

    def flush_broadcasts(self) -> None:
        """Send each BCAST prefix's changed keys (sorted, once each) to its clients; NOLOOP clients without the
        keys they changed themselves."""
        self._flush_scheduled = False
        for entry in list(self.prefixes.values()):
            if not entry.changed:
                continue
            changed, entry.changed = entry.changed, {}
            keys = sorted(changed)
            shared: Message | None = None
            for client in list(entry.clients):
                if client.tracking is None:
                    continue
                if client.tracking.noloop:
                    own = [k for k in keys if changed[k] is not client]
                    if own:
                        self.send(client, invalidation(own))
                    continue
                if shared is None:
                    shared = invalidation(keys)
                self.send(client, shared)

    def flush_all(self) -> None:
        """FLUSHALL: every tracking client gets one null invalidation (the current one after its reply), and
        the table starts empty (as Redis's trackingInvalidateKeysOnFlush)."""
        if not self.tracking_clients:
            return
        message = invalidation(None)
        for client in list(self.clients.values()):
            if client.tracking is None:
                continue
            if client is self.current and not client.tracking.redirect:
                if client.proto == 3:
                    self.pending.append(None)
            else:
                self.send(client, message)
        self.table.clear()
        self.items = 0
        for entry in self.prefixes.values():
            entry.changed.clear()

    def flushing(self, on: bool) -> None:
        """Around FLUSHALL's removal of the immediate planes' keys: their per-key changes are already covered."""
        self._flushing = on

    # -- the running command ---------------------------------------------------

    def take_pending(self) -> list[Push]:
        """The invalidations the current (RESP3) client is owed after its reply, one push per key as Redis
        sends them; the caller queues them behind the reply."""
        pending, self.pending = self.pending, []
        return [Push([b"invalidate", None if key is None else [key]]) for key in pending]

    def info(self) -> dict[str, int]:
        """INFO's tracking counters."""
        return {"tracking_total_keys": len(self.table), "tracking_total_items": self.items,
                "tracking_total_prefixes": len(self.prefixes)}
