"""Pub/sub: channels, patterns, and keyspace notifications.

Every applied change reaches the ``Notifier`` (a ``Ctx.notify`` sink) once on every node (the
change-event stream of DESIGN.md §3a). It publishes what Redis's
``notify-keyspace-events`` selects — ``__keyspace@0__:<key>`` carries the event
name, ``__keyevent@0__:<event>`` carries the key — and, for VFS paths, a
``__vfs__:<path>`` message whose JSON payload carries op, revision, origin and
the new value, so a watcher need not GET. Local keys follow
``notify-keyspace-events`` (off by default, as in Redis); VFS paths follow
``notify-vfs-events`` (all events by default).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Protocol

from vfsd import codec
from vfsd.glob import compile_glob
from vfsd.resp.types import ErrorReply
from vfsd.store.keyspace import KIND, ORIGIN, REV, VALUE, Entry
from vfsd.store.values import json_view


class Subscriber(Protocol):
    def deliver(self, message: list[bytes]) -> None: ...


class PubSub:
    def __init__(self) -> None:
        self.channels: dict[bytes, dict[Subscriber, None]] = {}
        self.patterns: dict[bytes, dict[Subscriber, None]] = {}
        self._matchers: dict[bytes, Callable[[bytes], Any]] = {}
        #: True while nobody is subscribed to anything: the change path skips notifications entirely.
        self.idle = True

    def _update_idle(self) -> None:
        self.idle = not self.channels and not self.patterns

    def subscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.channels.setdefault(channel, {})
        added = sub not in subs
        subs[sub] = None
        self.idle = False
        return added

    def unsubscribe(self, sub: Subscriber, channel: bytes) -> bool:
        subs = self.channels.get(channel)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        if not subs:
            del self.channels[channel]
            self._update_idle()
        return True

    def psubscribe(self, sub: Subscriber, pattern: bytes) -> bool:
        subs = self.patterns.setdefault(pattern, {})
        added = sub not in subs
        subs[sub] = None
        self._matchers[pattern] = compile_glob(pattern)
        self.idle = False
        return added

    def punsubscribe(self, sub: Subscriber, pattern: bytes) -> bool:
        subs = self.patterns.get(pattern)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        if not subs:
            del self.patterns[pattern]
            del self._matchers[pattern]
            self._update_idle()
        return True

    def publish(self, channel: bytes, message: bytes) -> int:
        receivers = 0
        subs = self.channels.get(channel)
        if subs:
            for sub in list(subs):
                sub.deliver([b"message", channel, message])
                receivers += 1
        if self.patterns:
            for pattern, psubs in list(self.patterns.items()):
                if self._matchers[pattern](channel) is not None:
                    for sub in list(psubs):
                        sub.deliver([b"pmessage", pattern, channel, message])
                        receivers += 1
        return receivers

    def wanted(self, channel: bytes) -> bool:
        if channel in self.channels:
            return True
        return any(m(channel) is not None for m in self._matchers.values())

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
    """Turns change events into pub/sub messages."""

    def __init__(self, pubsub: PubSub, local_flags: str = "", vfs_flags: str = "KEA") -> None:
        self.pubsub = pubsub
        self.local_flags = parse_notify_flags(local_flags)
        self.vfs_flags = parse_notify_flags(vfs_flags)
        self.listeners: list[Callable[[str, bytes, Entry | None], None]] = []
        self.expired_keys = 0

    def __call__(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
        """The change-event sink every plane's Ctx calls (see ``Ctx.notify``)."""
        if flag == "x":
            self.expired_keys += 1
        for listener in self.listeners:
            listener(event, key, entry)
        pubsub = self.pubsub
        if pubsub.idle:
            return
        is_path = key[:1] == b"/"
        flags = self.vfs_flags if is_path else self.local_flags
        ev = event.encode()
        if flag in flags:
            if "K" in flags:
                pubsub.publish(b"__keyspace@0__:" + key, ev)
            if "E" in flags:
                pubsub.publish(b"__keyevent@0__:" + ev, key)
        if is_path:
            channel = b"__vfs__:" + key
            if pubsub.wanted(channel):
                pubsub.publish(channel, vfs_payload(event, key, entry))


def vfs_payload(event: str, key: bytes, entry: Entry | None) -> bytes:
    body: dict[str, Any] = {"op": event, "path": key.decode("utf-8", "replace")}
    if entry is not None:  # a tombstone (delete, expiry) carries its revision and origin, and no value
        body["rev"] = entry[REV]
        body["origin"] = entry[ORIGIN]
        kind = entry[KIND]
        if entry[VALUE] is None:
            pass
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
