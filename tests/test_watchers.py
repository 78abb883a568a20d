"""VFS.WATCH delivery, simulated: whatever the interleaving of applies, catch-up steps, loop-iteration ends and
new watches, each watcher receives exactly the matching changes after its start revision, each revision once,
whole, in order (kubernetes_asyncio #135/#327: no missed or replayed events on resume)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.glob import glob_match
from vfsd.resp.pushes import Message
from vfsd.watch.history import WatchHistory
from vfsd.watch.watchers import EVENT, Watch, Watchers

PATHS = [b"/ctx/a", b"/ctx/b", b"/ctx/app/x", b"/ctx/app/y", b"/lk/l"]
PATTERNS = [b"/ctx/*", b"/ctx/app/*", b"/ctx/a", b"*", b"/ctx/?"]


class FakeSubscriber:
    def __init__(self) -> None:
        self.messages: list[list[object]] = []
        self.compacted: list[tuple[bytes, int]] = []

    def deliver(self, message: Message) -> None:
        self.messages.append(list(message))

    def watch_compacted(self, watch: Watch, oldest: int) -> None:
        self.compacted.append((watch.pattern, oldest))


def expected_stream(log: list[tuple[int, str, list[tuple[bytes, str, bytes | None]]]], pattern: bytes, after: int,
                    values: bool) -> list[list[object]]:
    out: list[list[object]] = []
    for revision, origin, changes in log:
        if revision <= after:
            continue
        group: list[list[bytes | None]] = []
        for path, op, value in changes:
            if glob_match(pattern, path):
                group.append([path, op.encode(), value] if values else [path, op.encode()])
        if group:
            out.append([EVENT, pattern, revision, origin.encode(), group])
    return out


@settings(max_examples=250, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 40), st.integers(3, 60))
def test_every_watch_gets_exactly_its_changes(seed: int, max_revisions: int, steps: int) -> None:
    rng = random.Random(seed)
    history = WatchHistory(max_revisions=max_revisions)
    watchers = Watchers(history)
    opened = []
    watchers.on_open = lambda: opened.append(True)
    log: list[tuple[int, str, list[tuple[bytes, str, bytes | None]]]] = []
    revision = 0
    made: list[tuple[FakeSubscriber, Watch, int, bool]] = []
    for _ in range(steps):
        action = rng.random()
        if action < 0.45:  # apply one entry: one or more changes at the next revision
            revision += 1
            origin = rng.choice(["n1", "n2"])
            changes = []
            for _ in range(rng.choice([0, 1, 1, 2, 3])):  # 0: a no-op entry (SET NX that failed)
                path = rng.choice(PATHS)
                if rng.random() < 0.2:
                    changes.append((path, "del", None))
                    entry = None
                else:
                    value = b"v%d" % rng.randrange(1000)
                    changes.append((path, "set", value))
                    entry = (value, 0, revision, origin, 0, 0)
                history.record(revision, path, changes[-1][1], origin, entry)
                watchers.changed(path, changes[-1][1], revision, origin, entry, ordered_plane=True)
            log.append((revision, origin, changes))
        elif action < 0.6:  # a new watch, from now or from some earlier revision
            sub = FakeSubscriber()
            after = rng.choice([None, rng.randrange(0, revision + 2)])
            values = rng.random() < 0.5
            if after is not None and after < history.floor:
                try:
                    watchers.watch(sub, rng.choice(PATTERNS), ordered=True, after=after, values=values,
                                   current_revision=revision)
                except Exception as exc:  # Compacted: the command answers it as an error
                    assert getattr(exc, "oldest", None) == history.floor + 1
                continue
            watch = watchers.watch(sub, rng.choice(PATTERNS), ordered=True, after=after, values=values,
                                   current_revision=revision)
            made.append((sub, watch, revision if after is None else after, values))
        elif action < 0.85 and made:  # one catch-up step of some watch
            _, watch, _, _ = rng.choice(made)
            watchers.catch_up(watch, rng.choice([1, 2, 5]), rng.choice([1, 64, 1 << 20]))
        else:  # the end of an event-loop iteration
            watchers.seal()
    watchers.seal()
    for _, watch, _, _ in made:  # let every watch finish catching up
        while not watchers.catch_up(watch, 3, 1 << 20):
            pass
    for sub, watch, start, values in made:
        if sub.compacted:
            (pattern, oldest), = sub.compacted
            assert oldest == history.floor + 1 or oldest > start + 1
            # What it got before it was cancelled is the start of its stream, in order.
            assert sub.messages == expected_stream(log, watch.pattern, start, values)[:len(sub.messages)]
            continue
        assert sub.messages == expected_stream(log, watch.pattern, start, values), (watch, start)


def test_live_groups_seal_at_the_next_revision_or_the_end_of_the_iteration() -> None:
    history = WatchHistory()
    watchers = Watchers(history)
    scheduled = []
    watchers.on_open = lambda: scheduled.append(True)
    sub = FakeSubscriber()
    watchers.watch(sub, b"/ctx/*", ordered=True, after=None, values=False, current_revision=0)
    for path in (b"/ctx/a", b"/ctx/b"):  # one MSET: two changes, one revision
        history.record(1, path, "set", "n1", (b"v", 0, 1, "n1", 0, 0))
        watchers.changed(path, "set", 1, "n1", None, ordered_plane=True)
    assert sub.messages == [] and scheduled == [True]  # held until the revision is known to be complete
    history.record(2, b"/ctx/a", "del", "n1", None)
    watchers.changed(b"/ctx/a", "del", 2, "n1", None, ordered_plane=True)
    assert sub.messages == [[EVENT, b"/ctx/*", 1, b"n1", [[b"/ctx/a", b"set"], [b"/ctx/b", b"set"]]]]
    watchers.seal()
    assert sub.messages[-1] == [EVENT, b"/ctx/*", 2, b"n1", [[b"/ctx/a", b"del"]]]


def test_unordered_changes_go_out_at_once() -> None:
    watchers = Watchers(WatchHistory())
    sub = FakeSubscriber()
    watchers.watch(sub, b"/run/*", ordered=False, after=None, values=True, current_revision=5)
    watchers.changed(b"/run/x", "set", 1 << 40, "n2", (b"up", 0, 1 << 40, "n2", 0, 0), ordered_plane=False)
    assert sub.messages == [[EVENT, b"/run/*", 1 << 40, b"n2", [[b"/run/x", b"set", b"up"]]]]
    watchers.changed(b"/hw/x", "set", 1, "n2", None, ordered_plane=False)
    assert len(sub.messages) == 1


def test_a_snapshot_cancels_watches_behind_it() -> None:
    history = WatchHistory()
    watchers = Watchers(history)
    behind, ahead = FakeSubscriber(), FakeSubscriber()
    w1 = watchers.watch(behind, b"/ctx/*", ordered=True, after=None, values=False, current_revision=3)
    watchers.watch(ahead, b"/ctx/*", ordered=True, after=None, values=False, current_revision=3)
    w1.position = 3
    watchers.history_reset(10)
    assert behind.compacted == [(b"/ctx/*", 11)] and ahead.compacted == [(b"/ctx/*", 11)]
    assert watchers.count == 0
