"""The tracking core (vfsd.tracking) against a naive model: which client is told of which change, and when.

No sockets: clients are stand-ins that record what they are delivered, and the event loop is a list of
scheduled callbacks run at "the end of the iteration" (the model's flush step)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vfsd.resp.pushes import Message
from vfsd.tracking import Tracker, TrackingState, invalidation, overlapping

KEYS = [b"a:1", b"a:2", b"b:1", b"b:22", b"c"]
PREFIXES = [b"a:", b"b:", b"b:2", b""]


class FakeClient:
    def __init__(self, cid: int, proto: int = 3) -> None:
        self.id = cid
        self.proto = proto
        self.tracking: TrackingState | None = None
        self.got: list[list[bytes] | None] = []
        self.subscribed = 0

    def deliver(self, message: Message) -> None:
        assert message[0] == b"invalidate"
        self.got.append(message[1])  # type: ignore[arg-type]

    def subscriptions(self) -> int:
        return self.subscribed


class Loop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def schedule(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def run(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


class Model:
    """Redis's tracking.c, written the obvious way."""

    def __init__(self, ids: list[int]) -> None:
        self.mode: dict[int, dict[str, Any] | None] = {i: None for i in ids}
        self.table: dict[bytes, set[int]] = {}
        self.prefix_order: list[bytes] = []  # prefixes in the order they came to exist
        self.changed: dict[bytes, dict[bytes, int | None]] = {}
        self.got: dict[int, list[list[bytes] | None]] = {i: [] for i in ids}
        self.pending: list[bytes | None] = []

    def _listeners(self, prefix: bytes) -> list[int]:
        return [c for c, m in self.mode.items() if m is not None and m["bcast"] and prefix in m["prefixes"]]

    def enable(self, cid: int, bcast: bool, optin: bool, optout: bool, noloop: bool, prefixes: list[bytes]) -> None:
        old = self.mode[cid]
        kept = old["prefixes"] if old is not None else []
        caching = old["caching"] if old is not None else False
        new_prefixes = list(kept)
        if bcast:
            for p in prefixes or [b""]:
                if p not in self.prefix_order:
                    self.prefix_order.append(p)
                if p not in new_prefixes:
                    new_prefixes.append(p)
        self.mode[cid] = {"bcast": bcast, "optin": optin, "optout": optout, "noloop": noloop, "caching": caching,
                          "prefixes": new_prefixes}

    def disable(self, cid: int) -> None:
        self.mode[cid] = None
        for p in list(self.prefix_order):
            if not self._listeners(p):
                self.prefix_order.remove(p)
                self.changed.pop(p, None)
        if all(m is None for m in self.mode.values()):
            self.table.clear()

    def read(self, cid: int, keys: list[bytes]) -> None:
        m = self.mode[cid]
        if m is None or m["bcast"]:
            return
        if (m["optin"] and not m["caching"]) or (m["optout"] and m["caching"]):
            return
        for k in keys:
            self.table.setdefault(k, set()).add(cid)

    def change(self, key: bytes, current: int | None) -> None:
        for p in self.prefix_order:
            if key.startswith(p):
                self.changed.setdefault(p, {})[key] = current
        for cid in sorted(self.table.pop(key, set()), key=lambda c: c):
            m = self.mode[cid]
            if m is None or m["bcast"]:
                continue
            if cid == current:
                if not m["noloop"]:
                    self.pending.append(key)
                continue
            self.got[cid].append([key])

    def flush(self) -> None:
        for p in self.prefix_order:
            changed = self.changed.pop(p, {})
            if not changed:
                continue
            keys = sorted(changed)
            for cid in self._listeners(p):
                m = self.mode[cid]
                assert m is not None
                shown = [k for k in keys if not (m["noloop"] and changed[k] == cid)]
                if shown:
                    self.got[cid].append(shown)


OPS = st.lists(st.one_of(
    st.tuples(st.just("enable"), st.integers(0, 2), st.booleans(), st.sampled_from(["", "optin", "optout"]),
              st.booleans(), st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True)),
    st.tuples(st.just("disable"), st.integers(0, 2)),
    st.tuples(st.just("caching"), st.integers(0, 2)),
    st.tuples(st.just("read"), st.integers(0, 2), st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)),
    st.tuples(st.just("change"), st.sampled_from(KEYS), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("flush")),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_the_tracker_tells_whom_the_model_tells(ops: list[tuple[Any, ...]]) -> None:
    clients = {i: FakeClient(i) for i in range(3)}
    listeners: list[Any] = []
    loop = Loop()
    tracker = Tracker(clients, listeners, loop.schedule, max_keys=0)
    model = Model(list(clients))
    for op in ops:
        kind = op[0]
        if kind == "enable":
            _, cid, bcast, opt, noloop, prefixes = op
            client = clients[cid]
            old = client.tracking
            optin, optout = opt == "optin" and not bcast, opt == "optout" and not bcast
            # The command's own checks (CLIENT TRACKING refuses these): skip them here.
            if old is not None and (old.bcast != bcast or optin and old.optout or optout and old.optin):
                continue
            if bcast and any(overlapping(a, b) for i, a in enumerate(prefixes) for b in prefixes[i + 1:]):
                continue
            if bcast and old is not None and any(overlapping(a, b) for a in prefixes for b in old.prefixes):
                continue
            state = TrackingState(0, bcast, optin, optout, noloop)
            if old is not None:
                state.caching = old.caching
            tracker.enable(client, state, prefixes)
            model.enable(cid, bcast, optin, optout, noloop, prefixes)
        elif kind == "disable":
            _, cid = op
            tracker.disable(clients[cid])
            model.disable(cid)
        elif kind == "caching":
            state = clients[op[1]].tracking
            if state is not None and (state.optin or state.optout):
                state.caching = True
                model.mode[op[1]]["caching"] = True  # type: ignore[index]
        elif kind == "read":
            _, cid, keys = op
            state = clients[cid].tracking
            if state is not None and state.remembers_reads():
                tracker.remember(clients[cid], keys)
            model.read(cid, keys)
            if state is not None:
                state.caching = False
            if model.mode[cid] is not None:
                model.mode[cid]["caching"] = False  # type: ignore[index]
        elif kind == "change":
            _, key, current = op
            tracker.current = clients[current] if current is not None and clients[current].tracking else None
            model_current = current if tracker.current is not None else None
            for listener in listeners:
                listener("set", key, None)
            model.change(key, model_current)
            if tracker.current is not None:
                assert [p[1] for p in tracker.take_pending()] == [[k] for k in model.pending]
                model.pending.clear()
            tracker.current = None
        else:
            loop.run()
            model.flush()
        assert listeners == ([tracker.on_change] if tracker.tracking_clients else [])
    loop.run()
    model.flush()
    assert {cid: c.got for cid, c in clients.items()} == model.got
    assert tracker.items == sum(len(ids) for ids in tracker.table.values())


def test_the_table_bound_drops_the_oldest_and_tells_its_readers() -> None:
    clients = {1: FakeClient(1), 2: FakeClient(2)}
    tracker = Tracker(clients, [], lambda cb: None, max_keys=2)
    for c in clients.values():
        tracker.enable(c, TrackingState(0, False, False, False, False), [])
    tracker.remember(clients[1], [b"k1", b"k2"])
    tracker.remember(clients[2], [b"k1"])
    tracker.remember(clients[2], [b"k3"])
    assert list(tracker.table) == [b"k2", b"k3"]
    assert clients[1].got == [[b"k1"]] and clients[2].got == [[b"k1"]]
    assert tracker.info() == {"tracking_total_keys": 2, "tracking_total_items": 2, "tracking_total_prefixes": 0}


def test_redirects_resp2_and_broken_redirects() -> None:
    tracker_client, target = FakeClient(1), FakeClient(2, proto=2)
    clients: dict[int, FakeClient] = {1: tracker_client, 2: target}
    tracker = Tracker(clients, [], lambda cb: None)
    tracker.enable(tracker_client, TrackingState(2, False, False, False, False), [])
    tracker.remember(tracker_client, [b"k"])
    tracker.on_change("set", b"k", None)
    assert target.got == []  # a RESP2 redirect target must be subscribed to get anything
    target.subscribed = 1
    tracker.remember(tracker_client, [b"k"])
    tracker.on_change("set", b"k", None)
    assert target.got == [[b"k"]] and tracker_client.got == []
    del clients[2]
    tracker.remember(tracker_client, [b"k"])
    broken: list[Message] = []
    tracker_client.deliver = broken.append  # type: ignore[method-assign]
    tracker.on_change("set", b"k", None)
    assert tracker_client.tracking is not None and tracker_client.tracking.broken_redirect
    assert [list(m) for m in broken] == [[b"tracking-redir-broken", 2]]


def test_invalidation_frames() -> None:
    one = invalidation([b"k"])
    frame = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"
    assert one.frames[3] == ((frame,), len(frame))
    assert one.frames[2][0] == (b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n",)
    null = invalidation(None)
    assert null.frames[3][0] == (b">2\r\n$10\r\ninvalidate\r\n_\r\n",)
    assert null.frames[2][0] == (b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n",)
