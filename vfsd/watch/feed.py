"""The desired plane's change sink: every applied change, stamped with its entry's revision and origin.

The state machine's handlers raise change events through ``Ctx.notify(flag,
event, key, entry)``, which knows nothing of log indexes; on the desired plane
the revision of every change is the index of the entry being applied and its
origin the node that proposed it (DESIGN.md §3a). This sink adds both, records
the change in the watch history (before anything else, so that a watcher
catching up and a live one see the same stream), and hands it on to the
notifier for pub/sub and live watches. A Raft follower applies entries through
the same state machine, so its changes arrive here exactly the same way.

During recovery (the log replay at start-up) only the history is fed
(``replay``): nobody is connected yet, and counting a replayed expiry again
would be wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from vfsd.store.keyspace import VALUE, Entry
from vfsd.watch.history import WatchHistory

if TYPE_CHECKING:
    from vfsd.desired.machine import StateMachine


class ChangePublisher(Protocol):
    def publish_change(self, flag: str, event: str, key: bytes, entry: Entry | None, revision: int,
                       origin: str, *, ordered_plane: bool) -> None: ...


class DesiredFeed:
    """``feed(flag, event, key, entry)``: the sink the desired plane's state machine calls."""

    __slots__ = ("history", "publisher", "machine")

    def __init__(self, history: WatchHistory, publisher: ChangePublisher) -> None:
        self.history = history
        self.publisher = publisher
        #: The state machine whose applies this sink receives (bound once the plane exists).
        self.machine: StateMachine | None = None

    def __call__(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
        machine = self.machine
        assert machine is not None, "DesiredFeed used before it was bound to its state machine"
        revision, origin = machine.applied_index, machine.ctx.origin
        if entry is not None and entry[VALUE] is None:  # a tombstone (Ctx.remove): a delete has no entry here
            entry = None
        self.history.record(revision, key, event, origin, entry)
        self.publisher.publish_change(flag, event, key, entry, revision, origin, ordered_plane=True)

    def replay(self, flag: str, event: str, key: bytes, entry: Entry | None = None) -> None:
        """The sink during recovery: the history only."""
        machine = self.machine
        assert machine is not None, "DesiredFeed used before it was bound to its state machine"
        if entry is not None and entry[VALUE] is None:
            entry = None
        self.history.record(machine.applied_index, key, event, machine.ctx.origin, entry)
