"""Pub/sub: channels, patterns, shard channels, and keyspace notifications.

Every applied change reaches the ``Notifier`` once on every node (the
change-event stream of DESIGN.md §3a): local and active planes call it as
their ``Ctx.notify`` sink, the desired plane through ``watch.feed.DesiredFeed``,
which adds the entry's revision and origin. It publishes what Redis's
``notify-keyspace-events`` selects — ``__keyspace@0__:<key>`` carries the event
name, ``__keyevent@0__:<event>`` carries the key — and, for VFS paths, a
``__vfs__:<path>`` message whose JSON payload carries op, revision, origin and
the new value, so a watcher need not GET; it also hands path changes to live
``VFS.WATCH``es. Local keys follow ``notify-keyspace-events`` (off by default,
as in Redis); VFS paths follow ``notify-vfs-events`` (all events by default).

Cost model. A publish costs one dict probe for channel subscribers plus the
pattern index (``watch.patterns``: O(distinct prefix lengths + candidates),
not O(patterns) as in Redis), and each message is encoded once for all its
subscribers (``resp.pushes``). A change nobody could hear costs next to
nothing: with no subscription at all the notifier returns at once, and the
index says in O(1) whether any channel or pattern could want a
``__keyspace@0__:``, ``__keyevent@0__:`` or ``__vfs__:`` name before one is
built. Shard channels (SSUBSCRIBE, SPUBLISH) are a namespace of their own,
as in a single-shard Redis cluster: no pattern ever matches them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Final, Protocol

from vfsd import codec
from vfsd.resp.pushes import Message, PatternTail, channel_message, pattern_message
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, ORIGIN, REV, VALUE, Entry
from vfsd.store.values import json_view
from vfsd.watch.patterns import PatternIndex
from vfsd.watch.watchers import Watchers

KEYSPACE: Final = b"__keyspace@0__:"
KEYEVENT: Final = b"__keyevent@0__:"
VFS: Final = b"__vfs__:"
_FAMILIES: Final = (KEYSPACE, KEYEVENT, VFS)


class Subscriber(Protocol):
    def deliver(self, message: Message) -> None: ...


Subscribers = dict[Subscriber, None]  # insertion-ordered set


class PubSub:
    def __init__(self) -> None:
        self.channels: dict[bytes, Subscribers] = {}
        self.patterns: PatternIndex[Subscribers] = PatternIndex(families=_FAMILIES)
        self.shard_channels: dict[bytes, Subscribers] = {}
        #: True while nobody is subscribed to any channel or pattern: the change path skips notifications.
        self.idle = True
        #: Whether any channel or pattern could hear a ``__keyspace@0__:`` / ``__keyevent@0__:`` / ``__vfs__:``
        #: name: plain attributes, kept current on every (un)subscribe, read on every change.
        self.keyspace_wanted = self.keyevent_wanted = self.vfs_wanted = False
        self._pattern_count = 0
        self._channels_in_family: dict[bytes, int] = dict.fromkeys(_FAMILIES, 0)

    def _changed(self) -> None:
        self._pattern_count = len(self.patterns)
        self.idle = not self.channels and not self._pattern_count
        self.keyspace_wanted = self.wants_family(KEYSPACE)
        self.keyevent_wanted = self.wants_family(KEYEVENT)
        self.vfs_wanted = self.wants_family(VFS)

    def wants_family(self, family: bytes) -> bool:
        """Whether any channel or pattern subscription could hear a channel that starts with ``family``."""
        return bool(self._channels_in_family[family]) or self.patterns.could_match_prefix(family)

    def subscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.channels.get(channel)
        if subs is None:
            subs = self.channels[channel] = {}
            for family in _FAMILIES:
                if channel.startswith(family):
                    self._channels_in_family[family] += 1
        added = sub not in subs
        subs[sub] = None
        self._changed()
        return added

    def unsubscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.channels.get(channel)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        if not subs:
            del self.channels[channel]
            for family in _FAMILIES:
                if channel.startswith(family):
                    self._channels_in_family[family] -= 1
            self._changed()
        return True

    def psubscribe(self, sub: Subscriber, pattern: bytes) -> bool:
        subs = self.patterns.get(pattern)
        if subs is None:
            subs = {}
            self.patterns.add(pattern, subs)
            self._changed()
        added = sub not in subs
        subs[sub] = None
        return added

    def punsubscribe(self, sub: Subscriber, pattern: bytes) -> bool:
        subs = self.patterns.get(pattern)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        if not subs:
            self.patterns.remove(pattern)
            self._changed()
        return True

    def ssubscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.shard_channels.setdefault(channel, {})
        added = sub not in subs
        subs[sub] = None
        return added

    def sunsubscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.shard_channels.get(channel)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        if not subs:
            del self.shard_channels[channel]
        return True

    def publish(self, channel: bytes, payload: bytes) -> int:
        """Deliver to the channel's subscribers and every matching pattern's; returns how many received it."""
        receivers = 0
        subs = self.channels.get(channel)
        if subs:
            message = channel_message(b"message", channel, payload)
            for sub in list(subs):  # a delivery may disconnect a subscriber (output limit)
                sub.deliver(message)
            receivers = len(subs)
        if self._pattern_count:
            matches = self.patterns.match(channel)
            if matches:
                tail = PatternTail(channel, payload)
                for pattern, psubs in matches:
                    message = pattern_message(pattern, tail)
                    for sub in list(psubs):
                        sub.deliver(message)
                    receivers += len(psubs)
        return receivers

    def spublish(self, channel: bytes, payload: bytes) -> int:
        subs = self.shard_channels.get(channel)
        if not subs:
            return 0
        message = channel_message(b"smessage", channel, payload)
        for sub in list(subs):
            sub.deliver(message)
        return len(subs)

    def wanted(self, channel: bytes) -> bool:
        return channel in self.channels or self.patterns.any_match(channel)

    def numpat(self) -> int:
        return len(self.patterns)


# Redis's notify-keyspace-events letters; 'A' stands for every event class.
_CLASSES = "g$lshzxetdnm"
_ALL = "g$lshzxetd"


def parse_notify_flags(text: str) -> str:
    """Validate a notify-keyspace-events value; returns it normalised (A expanded)."""
    out = set()
    for ch in text:
        if ch == "A":
            out.update(_ALL)
        elif ch in _CLASSES or ch in "KE":
            out.add(ch)
        else:
            raise ErrorReply(f"ERR Invalid event class character '{ch}' for notify-keyspace-events")
    return "".join(sorted(out))


class Notifier:
    """Turns change events into pub/sub messages and live VFS.WATCH deliveries."""

    def __init__(self, pubsub: PubSub, watchers: Watchers, local_flags: str = "", vfs_flags: str = "KEA",
                 max_value_bytes: int = 1 << 20) -> None:
        self.pubsub = pubsub
        self.watchers = watchers
        #: __vfs__ events leave out larger values (vfs-event-max-value-bytes).
        self.max_value_bytes = max_value_bytes
        self.local_flags = parse_notify_flags(local_flags)
        self.vfs_flags = parse_notify_flags(vfs_flags)
        self.expired_keys = 0
        #: Called with ``(event, key, entry)`` for every change on every plane, before pub/sub
        #: (blocking pops wait on them); kept empty when nothing waits, so it costs one check.
        self.listeners: list[Callable[[str, bytes, Entry | None], None]] = []

    def __call__(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
        """The change-event sink of the local and active planes (see ``Ctx.notify``).

        Their revision and origin are the entry's; a delete or expiry passes its tombstone
        (``Ctx.remove``: value None), which carries both and goes on as "no entry".
        """
        if flag == "x":
            self.expired_keys += 1
        if self.listeners:
            for listener in self.listeners:
                listener(event, key, entry)
        if self.pubsub.idle and not self.watchers.count:
            return
        if entry is None:
            self._publish(flag, event, key, None, 0, "", False)
        else:
            self._publish(flag, event, key, None if entry[VALUE] is None else entry, entry[REV], entry[ORIGIN], False)

    def unheard(self) -> bool:
        """Whether a change event raised now would reach nobody: no listener, no subscriber, no
        watch (a replica merging a stream of records then holds no events for them:
        ``vfsd.active.keyspace_store``). Expiries are counted here, but replicas raise none."""
        return not self.listeners and self.pubsub.idle and not self.watchers.count

    def publish_change(self, flag: str, event: str, key: bytes, entry: Entry | None, revision: int, origin: str,
                       *, ordered_plane: bool) -> None:
        """A change whose revision and origin the caller knows (the desired plane's ``DesiredFeed``)."""
        if flag == "x":
            self.expired_keys += 1
        if self.listeners:
            for listener in self.listeners:
                listener(event, key, entry)
        if self.pubsub.idle and not self.watchers.count:
            return
        self._publish(flag, event, key, entry, revision, origin, ordered_plane)

    def _publish(self, flag: str, event: str, key: bytes, entry: Entry | None, revision: int, origin: str,
                 ordered_plane: bool) -> None:
        is_path = key[:1] == b"/"
        if is_path and self.watchers.count:
            self.watchers.changed(key, event, revision, origin, entry, ordered_plane=ordered_plane)
        pubsub = self.pubsub
        if pubsub.idle:
            return
        flags = self.vfs_flags if is_path else self.local_flags
        if flag in flags:
            if pubsub.keyspace_wanted and "K" in flags:
                pubsub.publish(KEYSPACE + key, event.encode())
            if pubsub.keyevent_wanted and "E" in flags:
                ev = event.encode()
                pubsub.publish(KEYEVENT + ev, key)
        if is_path and pubsub.vfs_wanted:
            channel = VFS + key
            if pubsub.wanted(channel):
                pubsub.publish(channel, vfs_payload(event, key, entry, revision, origin, self.max_value_bytes))


def vfs_payload(event: str, key: bytes, entry: Entry | None, revision: int = 0, origin: str = "",
                max_value_bytes: int = 1 << 20) -> bytes:
    """``{"op","path","rev","origin","value"}``; a delete carries the revision and origin when they are known;
    a value larger than ``max_value_bytes`` is left out (``"value_omitted": true, "size": n``)."""
    body: dict[str, Any] = {"op": event, "path": key.decode("utf-8", "replace")}
    if revision:
        body["rev"] = revision
        body["origin"] = origin
    if entry is not None:
        kind = entry[KIND]
        if kind in (codec.RAW, codec.DOC) and len(entry[VALUE]) > max_value_bytes:
            body["value_omitted"] = True
            body["size"] = len(entry[VALUE])
        elif kind == codec.DOC:
            body["value"] = codec.unpack(entry[VALUE])
        elif kind != codec.RAW:  # a collection: its JSON view (O(n): only built when someone listens)
            name, view = json_view(kind, entry[VALUE])
            body[name] = view
        else:
            try:
                body["value"] = entry[VALUE].decode("utf-8")
            except UnicodeDecodeError:
                body["value_base64"] = base64.b64encode(entry[VALUE]).decode()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
