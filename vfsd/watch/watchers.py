"""VFS.WATCH subscriptions: catch-up from the watch history, then live changes with no gap and no duplicate.

Theory of operation
-------------------
A watch is a glob pattern over paths held by one subscriber (a client
connection). Its pattern decides its kind, once, when it is made:

* **ordered**: the pattern can match only desired-plane paths (consensus and
  lease roots), whose changes have one global order, the log index. The watch
  has a ``position``: every matching change with a revision up to it has been
  delivered, none above it. ``FROM r`` sets the position to ``r``; without it
  the position is the revision the plane has applied now. While the position
  is behind the history's head the watch is *catching up*: the shell calls
  ``catch_up`` whenever the subscriber can take more output, which reads the
  next changes from the history (paced by the subscriber's socket, so a long
  replay never floods its output buffer), and once the position reaches the
  head the watch is *live*: each change is delivered as it is applied. Changes
  recorded while a watch catches up land in the history first and are read
  from there, and a live watch only takes changes above its position, so the
  stream has no gap and no duplicate by construction (everything runs on one
  event loop; an entry's apply is never interleaved with a catch-up step).
* **live**: the pattern can match active-plane paths, which have no global
  order (each node stamps its own hybrid-logical-clock revisions), so there is
  no history to resume from: changes are delivered as they happen, and the
  first reply says ``live`` so the watcher knows. ``FROM`` is refused for such
  a pattern.

Messages, in the order of the revisions they carry::

    vfs.event <pattern> <revision> <origin> [[<path> <op> (<value>)] ...]

One message per revision per watch: all the matching changes of one log
entry (an MSET, an EXEC, a FLUSHALL) arrive together, so a watcher that
records the revision of the last message it handled can resume ``FROM`` it
and lose nothing, even if the connection broke in the middle of a stream.
``op`` is the Redis event name (``set``, ``del``, ``expired``, ``json.set``,
``incrby``...); ``value`` is present with ``VALUES``: the bytes GET would
return after the change (nil after a delete).

Live changes of one revision are grouped as they are applied and *sealed*
into a message when the next revision starts or when the shell flushes
output at the end of the event-loop iteration (``seal``); ``on_open`` tells
the shell that a group is waiting. A watch whose position falls below the
history's floor (it caught up too slowly and the window moved on, or a
snapshot replaced the state) is cancelled through its subscriber's
``watch_compacted``, naming the oldest revision still available, so the
watcher reads the state again and watches from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from vfsd.codec import RAW, doc_to_json
from vfsd.glob import Matcher, compile_glob
from vfsd.resp.pushes import Message, encoded_message
from vfsd.store.keyspace import KIND, VALUE, Entry
from vfsd.watch.history import Compacted, WatchHistory
from vfsd.watch.patterns import PatternIndex

__all__ = ["Watch", "WatchSubscriber", "Watchers"]

EVENT: bytes = b"vfs.event"


class WatchSubscriber(Protocol):
    def deliver(self, message: Message) -> None: ...

    def watch_compacted(self, watch: Watch, oldest: int) -> None: ...


class Watch:
    __slots__ = ("subscriber", "pattern", "match", "values", "ordered", "position", "live", "cancelled", "group",
                 "group_revision", "group_origin")

    def __init__(self, subscriber: WatchSubscriber, pattern: bytes, *, values: bool, ordered: bool,
                 position: int) -> None:
        self.subscriber = subscriber
        self.pattern = pattern
        self.match: Matcher = compile_glob(pattern)
        self.values = values
        self.ordered = ordered
        #: Ordered watches: the revision up to which every matching change has been delivered.
        self.position = position
        self.live = True
        #: Ended by the watchers (compacted), not by its subscriber.
        self.cancelled = False
        self.group: list[list[bytes | None]] | None = None  # changes of the revision not yet sealed
        self.group_revision = 0
        self.group_origin = ""

    def __repr__(self) -> str:
        state = "live" if self.live else f"catching up from {self.position}"
        return f"Watch({self.pattern!r}, {'ordered' if self.ordered else 'unordered'}, {state})"


def _change(path: bytes, op: str, entry: Entry | None, values: bool) -> list[bytes | None]:
    if not values:
        return [path, op.encode()]
    if entry is None:
        return [path, op.encode(), None]
    return [path, op.encode(), entry[VALUE] if entry[KIND] == RAW else doc_to_json(entry[VALUE])]


class Watchers:
    """Every VFS.WATCH of the node, indexed by pattern."""

    def __init__(self, history: WatchHistory) -> None:
        self.history = history
        self._index: PatternIndex[dict[Watch, None]] = PatternIndex()
        #: How many watches exist: the change path checks this before doing anything.
        self.count = 0
        self._open: list[Watch] = []
        self._open_revision = -1
        #: Called when a live group opens and waits for ``seal``; the shell schedules a flush.
        self.on_open: Callable[[], None] = lambda: None

    # -- subscribing -----------------------------------------------------------

    def watch(self, subscriber: WatchSubscriber, pattern: bytes, *, ordered: bool, after: int | None,
              values: bool, current_revision: int) -> Watch:
        """A new watch; raises Compacted when ``after`` is older than the history holds."""
        if after is not None:
            assert ordered, "FROM applies to ordered watches only"
            self.history.check(after)
        watch = Watch(subscriber, pattern, values=values, ordered=ordered,
                      position=current_revision if after is None else after)
        watch.live = not ordered or watch.position >= self.history.head
        watches = self._index.get(pattern)
        if watches is None:
            watches = {}
            self._index.add(pattern, watches)
        watches[watch] = None
        self.count += 1
        return watch

    def unwatch(self, watch: Watch) -> None:
        watches = self._index.get(watch.pattern)
        if watches is None or watch not in watches:
            return
        del watches[watch]
        if not watches:
            self._index.remove(watch.pattern)
        self.count -= 1
        if watch.group is not None:
            watch.group = None
            self._open.remove(watch)

    # -- live changes ------------------------------------------------------------

    def changed(self, path: bytes, op: str, revision: int, origin: str, entry: Entry | None, *,
                ordered_plane: bool) -> None:
        """One applied change; ``ordered_plane`` when it comes from the desired plane (revision = log index)."""
        matches = self._index.match(path)
        if not matches:
            return
        if not ordered_plane:  # its own revision: deliver at once, keeping order with the writer's replies
            for pattern, watches in matches:
                for watch in list(watches):
                    watch.subscriber.deliver(encoded_message(
                        [EVENT, pattern, revision, origin.encode(), [_change(path, op, entry, watch.values)]]))
            return
        if revision != self._open_revision:
            self.seal()
            self._open_revision = revision
        for _, watches in matches:
            for watch in watches:
                if not watch.live or (watch.ordered and revision <= watch.position):
                    continue
                if watch.group is None:
                    if not self._open:
                        self.on_open()
                    watch.group = []
                    watch.group_revision = revision
                    watch.group_origin = origin
                    self._open.append(watch)
                watch.group.append(_change(path, op, entry, watch.values))

    def seal(self) -> None:
        """Turn every open group into its message (the end of a revision, or of an event-loop iteration)."""
        open_watches, self._open = self._open, []
        self._open_revision = -1
        for watch in open_watches:
            group, watch.group = watch.group, None
            if watch.ordered:
                watch.position = watch.group_revision
            watch.subscriber.deliver(encoded_message(
                [EVENT, watch.pattern, watch.group_revision, watch.group_origin.encode(), group]))

    # -- catching up ------------------------------------------------------------------

    def catch_up(self, watch: Watch, max_changes: int, max_bytes: int) -> bool:
        """Deliver the next changes from the history; True once the watch is live (or gone).

        Reads at most about ``max_changes`` changes and stops after the revision
        that brings the delivered bytes past ``max_bytes``, so one step of a long
        replay is short and its output bounded.
        """
        if watch.live or watch.cancelled:
            return True
        try:
            changes = self.history.read_after(watch.position, max_changes)
        except Compacted as exc:
            self._cancel(watch, exc.oldest)
            return True
        match, values, subscriber = watch.match, watch.values, watch.subscriber
        group: list[list[bytes | None]] = []
        sent = 0
        for i, (revision, path, op, origin, entry) in enumerate(changes):
            if match(path) is not None:
                change = _change(path, op, entry, values)
                group.append(change)
                if values and change[2] is not None:
                    sent += len(change[2])
            last_of_revision = i + 1 == len(changes) or changes[i + 1][0] != revision
            if last_of_revision:
                if group:
                    subscriber.deliver(encoded_message([EVENT, watch.pattern, revision, origin.encode(), group]))
                    sent += 64
                    group = []
                watch.position = revision
                if sent >= max_bytes:
                    break
        if watch.position >= self.history.head:
            watch.live = True
        return watch.live

    # -- the history replaced -----------------------------------------------------

    def history_reset(self, index: int) -> None:
        """State up to ``index`` was installed without its changes (a snapshot): ordered watches
        behind it cannot be served and are cancelled as compacted."""
        self.seal()
        self.history.reset(index)
        for _, watches in list(self._index.items()):
            for watch in list(watches):
                if watch.ordered and watch.position < index:
                    self._cancel(watch, self.history.oldest)

    def _cancel(self, watch: Watch, oldest: int) -> None:
        self.unwatch(watch)
        watch.cancelled = True
        watch.subscriber.watch_compacted(watch, oldest)
