"""The gossip agent: one sans-IO object per node, the only one the shell talks to.

It composes the clock (``vfsd.active.hlc``), membership (``vfsd.active.membership``)
and replication (``vfsd.active.gossip``), checks every incoming message before
either sees it, and gathers everything to do in a ``Ready`` (etcd-raft's pattern).

Driving it (what the asyncio shell does)::

    agent = GossipAgent(node_id, "host:peerport", store, hlc, random.Random(), now_ms(), profile=LAN)
    agent.join(["10.0.0.2:16379", ...], now_ms())          # seeds, by address
    # a frame of the gossip family arrived from peer `peer_id` (the id its HELLO gave):
    agent.receive(peer_id, msg_type, body, now_ms())
    # after every active-plane write (ActivePlane, right after the keyspace changed):
    agent.wrote(key, old_version_or_None, rev)              # marks the key; once per batch:
    agent.flush(now_ms())                                   # (loop.call_soon, coalesced)
    # (the shell's write path marks agent.replica.dirty itself, as wrote does; every input
    # below folds the marked keys into the digest and queue before anything else)
    rev = agent.deleted(key, old_version, now_ms())         # DEL: the tombstone's revision
    agent.expired(key, version, deadline_ms)                # the sweep or a lookup expired it
    # timers: call tick at next_deadline_ms() (it is cheap to call early)
    agent.tick(now_ms())
    # after any of the above:
    ready = agent.ready()
    if ready.persist_high_water_ms is not None: write it durably (fsync) FIRST
    for event in ready.events: add_peer(name, address) on "alive", remove_peer on "reaped";
                               write /itg/<event.name>
    for out in ready.messages: transport.send(out.to, GOSSIP_FAMILY, out.type, out.body)
                               # out.to is None: transport.send_to_address(out.address, ...)
    if ready.reset: republish this node's own documents (the replica dropped them)

Checks on every message, in order, each counted in ``counters`` by reason and the
message dropped whole (never applied, never gossiped on): it decodes under
``Limits`` (``vfsd.active.wire``); it is not from an identity we reaped (answered
with a ``Split``) nor from an older identity of its sender; no timestamp in it runs
more than ``max_drift_ms`` ahead of our wall clock; a message carrying records was
not overtaken by a later message from the same sender; records come only from
members we know by their current identity.

Stall detection: the agent knows when it expects to be called next (the deadline it
last returned). Called more than ``probe_interval_ms`` later than that, it concludes
its own event loop was blocked and tells membership so (Lifeguard: blame yourself).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from vfsd.active.gossip import ReplicaStore, Replicator
from vfsd.active.hlc import HLC, LOGICAL_BITS
from vfsd.active.lww import HLC_, Record
from vfsd.active.membership import MemberEvent, Membership
from vfsd.active.profile import LAN, GossipProfile
from vfsd.active.wire import (
    ALIVE,
    DATA_TYPES,
    Ack,
    Gossip,
    Header,
    Limits,
    Message,
    MsgType,
    Nack,
    Ping,
    PingReq,
    Records,
    Split,
    SyncDescend,
    SyncOpen,
    SyncRecords,
    SyncReply,
    SyncTree,
    SyncVersions,
    WireError,
    columns_of,
    decode,
    decode_header,
    encode,
    gossip_payload,
)

#: Bytes of a gossip message given to membership updates before records.
UPDATES_BUDGET = 4096


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: to member ``to`` (its peer id), or, when ``to`` is None, to
    ``address`` (a seed not yet known by name).

    ``shared``: the last ``shared`` fields of ``body`` are the very objects every message of
    one gossip round carries (the round's updates and records, after each peer's own
    header), so an encoder may pack them once for all its peers."""

    to: str | None
    address: str | None
    type: int
    body: list[Any]
    shared: int = 0


@dataclass
class Ready:
    """What the shell must do now, in this order.

    ``persist_high_water_ms``: durably store this HLC high-water mark before sending any
    of ``messages`` (they carry timestamps up to it); restart with ``HLC.resume(mark)``.
    ``events``: member state changes, for ``/itg/<name>`` and for the transport's peer list
    (add a peer on "alive" with its address, remove it on "reaped"): before the messages,
    which may be addressed to a member just learnt.
    ``messages``: send each; order per peer matters (FIFO), order across peers does not.
    ``reset``: the replica dropped its state to rejoin (it had been reaped by the
    cluster); the node's own documents must be written again.
    """

    persist_high_water_ms: int | None = None
    messages: list[Outgoing] = field(default_factory=list)
    events: list[MemberEvent] = field(default_factory=list)
    reset: bool = False


class GossipAgent:
    def __init__(self, name: str, address: str, store: ReplicaStore, hlc: HLC, rng: random.Random, now_ms: int,
                 *, profile: GossipProfile = LAN, limits: Limits | None = None, measure_bytes: bool = False) -> None:
        self.name = name
        self.address = address
        self.hlc = hlc
        self.profile = profile
        self.limits = limits if limits is not None else Limits(max_value_bytes=profile.max_message_bytes - 4096)
        self.rng = rng
        #: Our identity: the clock at start (strictly above anything a previous process of this
        #: node stamped, because the clock resumes above its persisted high-water mark).
        self.boot = hlc.now(now_ms)
        self.membership = Membership(name, address, self.boot, profile, rng, now_ms)
        self.replica = Replicator(name, store, hlc, self.membership, profile, rng, now_ms)
        self.counters: dict[str, int] = {}
        self.last_refusal = ""
        self.max_drift_ms_seen = 0
        self.measure_bytes = measure_bytes
        self.bytes_sent = 0
        self.messages_sent = 0
        self._seq = 0
        self._seen: dict[str, tuple[int, int]] = {}  # sender -> (boot, highest seq)
        self._outbox: list[Outgoing] = []
        self._events: list[MemberEvent] = []
        self._reset = False
        self._split_sent: dict[str, int] = {}
        self._seeds: list[str] = []
        self._joined = False
        self._seed_retry_ms = 0
        self.next_gossip_ms = now_ms + rng.randrange(max(1, profile.gossip_interval_ms))
        self._wake_ms: int | None = None

    # -- inputs ------------------------------------------------------------------------

    def join(self, seeds: Sequence[str], now_ms: int) -> None:
        """Join through seed addresses (``host:port``); retried by ``tick`` until one answers."""
        self.replica.fold()
        self._seeds = [s for s in seeds if s and s != self.address]
        self._joined = not self._seeds
        for address in self._seeds:
            self.replica.pull(None, now_ms, address=address, want_rows=True)
        self._after(now_ms)

    def leave(self, now_ms: int) -> None:
        """Announce a graceful leave; the shell sends ``ready().messages`` and then stops."""
        self.replica.fold()
        self.membership.leave(now_ms)
        self._gossip(now_ms, fresh_only=True)
        self._after(now_ms)

    def wrote(self, key: bytes, old: tuple[int, str] | None, hlc: int) -> None:
        self.replica.wrote(key, old, hlc)

    def deleted(self, key: bytes, old: tuple[int, str], now_ms: int) -> int:
        return self.replica.deleted(key, old, now_ms)

    def expired(self, key: bytes, version: tuple[int, str], deadline_ms: int) -> None:
        self.replica.expired(key, version, deadline_ms)

    def flush(self, now_ms: int) -> None:
        """Push what changed since the last push to ``push_nodes`` peers, now."""
        self.replica.fold(keep_reads=True)
        self._keep_gossip_schedule(now_ms)
        if self.replica.queue.fresh() or self.membership.updates.fresh():
            self._gossip(now_ms, fresh_only=True)
        self.replica._reads = None  # (not taken: no push that reached everyone)
        self._after(now_ms)

    def _keep_gossip_schedule(self, now_ms: int) -> None:
        """Gossip rounds fall every ``gossip_interval_ms`` whether or not there is anything to
        send; an idle node's next round is the next one on that schedule, so what it learns
        now is relayed then (memberlist's ticker), not at once."""
        if self.next_gossip_ms <= now_ms and not (self.replica.queue or self.membership.updates):
            interval = self.profile.gossip_interval_ms
            self.next_gossip_ms += ((now_ms - self.next_gossip_ms) // interval + 1) * interval

    def tick(self, now_ms: int) -> None:
        self.replica.fold()
        self._check_stall(now_ms)
        self.membership.tick(now_ms)
        if not self.membership.leaving:  # a node that left neither pulls nor collects
            self.replica.tick(now_ms)
        if now_ms >= self.next_gossip_ms:
            interval = self.profile.gossip_interval_ms
            self.next_gossip_ms += ((now_ms - self.next_gossip_ms) // interval + 1) * interval
            if self.replica.queue or self.membership.updates:
                self._gossip(now_ms, fresh_only=False)
        alone = self.membership.alive_count() == 1 and not self.membership.leaving
        if self._seeds and (not self._joined or alone) and not self.replica.pulls and now_ms >= self._seed_retry_ms:
            # No seed answered yet, or everyone we knew is gone: knock on the seeds again.
            self._seed_retry_ms = now_ms + self.profile.sync_interval_ms
            for address in self._seeds:
                self.replica.pull(None, now_ms, address=address, want_rows=True)
        self._after(now_ms)

    def next_deadline_ms(self) -> int:
        """When ``tick`` must next be called (wall-clock ms)."""
        t = min(self.membership.next_deadline_ms(), self.replica.next_deadline_ms())
        if (self.replica.queue or self.membership.updates) and self.next_gossip_ms < t:
            t = self.next_gossip_ms
        return t

    @property
    def wake_ms(self) -> int:
        """``next_deadline_ms()`` as of the last input (cached: the shell's timer reads it)."""
        return self._wake_ms if self._wake_ms is not None else self.next_deadline_ms()

    def receive(self, sender: str, msg_type: int, body: Any, now_ms: int) -> None:
        """A gossip-family frame from peer ``sender`` (its node id)."""
        self.replica.fold()
        self._check_stall(now_ms)
        self._keep_gossip_schedule(now_ms)
        try:
            header, payload = decode_header(body)
            msg = decode(msg_type, payload, self.limits)
        except WireError as exc:
            self._refuse(exc.reason, exc.detail)
            self._after(now_ms)
            return
        self._deliver(sender, header, msg, now_ms)
        self._after(now_ms)

    def _deliver(self, sender: str, header: Header, msg: Message, now_ms: int) -> None:
        membership = self.membership
        if sender == self.name:
            self._refuse("from_self", "a message from a peer using our own name")
            return
        reaped = membership.reaped.get(sender)
        if reaped is not None and reaped >= header.boot and not isinstance(msg, Split):
            self._refuse("from_reaped", f"{sender} was reaped; it must reset before it rejoins")
            self._send_split(sender, now_ms)
            return
        member = membership.get(sender)
        seen = self._seen.get(sender)
        if (member is not None and header.boot < member.boot) or (seen is not None and header.boot < seen[0]):
            self._refuse("stale_identity", f"{sender}: boot {header.boot} was replaced by a later one")
            return
        newest = header.hlc
        records = _records_of(msg)
        for rec in records:
            if rec[HLC_] > newest:
                newest = rec[HLC_]
        drift = (newest >> LOGICAL_BITS) - now_ms
        if drift > self.max_drift_ms_seen:
            self.max_drift_ms_seen = drift
        if self.hlc.update(newest, now_ms) is None:
            self._refuse("clock_drift", f"{sender}: a timestamp {drift} ms ahead of our clock")
            return
        if seen is not None and seen[0] == header.boot and header.seq <= seen[1]:
            if msg.TYPE in DATA_TYPES:
                self._refuse("overtaken", f"{sender}: message {header.seq} arrived after {seen[1]}")
                return
        else:
            self._seen[sender] = (header.boot, header.seq)
        self.count(_RECEIVED_NAMES[msg.TYPE])
        if msg.TYPE not in _SYNC_TYPES and (member is None or header.boot > member.boot):
            # A stranger, or a member restarted since we last heard: get to know it (its rows,
            # then its state) — this is how two clusters that meet, or a healed split, merge.
            if member is not None:
                membership.on_alive(sender, header.boot, 0, member.address, now_ms)
            self.replica.pull(sender, now_ms, want_rows=True)
        handler = _HANDLERS[msg.TYPE]
        handler(self, sender, header, msg, now_ms)
        member = membership.get(sender)
        if member is not None:
            member.heard_ms = now_ms
            if member.boot == header.boot and header.view == membership.view:
                self.replica.marks.acknowledge(sender, header.boot, header.seen)

    def _known(self, sender: str, header: Header) -> bool:
        member = self.membership.get(sender)
        if member is None or member.boot != header.boot:
            self._refuse("unknown_sender", f"{sender} (boot {header.boot}) is not a member we know")
            return False
        return True

    # -- handlers -------------------------------------------------------------------------

    def _on_ping(self, sender: str, header: Header, msg: Ping, now_ms: int) -> None:
        self._updates(msg.updates, now_ms)
        self.membership.on_ping(sender, msg, now_ms)

    def _on_ack(self, sender: str, header: Header, msg: Ack, now_ms: int) -> None:
        self._updates(msg.updates, now_ms)
        self.membership.on_ack(sender, msg, now_ms)

    def _on_ping_req(self, sender: str, header: Header, msg: PingReq, now_ms: int) -> None:
        self.membership.on_ping_req(sender, msg, now_ms)

    def _on_nack(self, sender: str, header: Header, msg: Nack, now_ms: int) -> None:
        self.membership.on_nack(sender, msg, now_ms)

    def _on_gossip(self, sender: str, header: Header, msg: Gossip, now_ms: int) -> None:
        self._updates(msg.updates, now_ms)
        if msg.records and self._known(sender, header) and self._settled():
            self.replica.stream_records += len(msg.records)
            self.replica.apply_all(msg.records, now_ms, relay=not self._pushes_reach_everyone())

    def _pushes_reach_everyone(self) -> bool:
        """In a cluster of at most ``push_nodes + 1`` members every push goes to every member:
        relaying what one brought would only send everybody a second copy."""
        return self.membership.alive_count() - 1 <= self.profile.push_nodes

    def _settled(self) -> bool:
        """Records pushed at a fresh replica wait for its first pull (vfsd.active.gossip)."""
        if self.replica.fresh:
            self._refuse("fresh", "records pushed before our first pull was answered")
            return False
        return True

    def _on_sync_open(self, sender: str, header: Header, msg: SyncOpen, now_ms: int) -> None:
        name, address, boot, inc, state, _ = msg.row
        if name != sender or boot != header.boot or state != ALIVE:
            self._refuse("malformed", f"sync_open.row: not the sender's own alive row ({name!r})")
            return
        self.membership.on_alive(name, boot, inc, address, now_ms)
        if self._known(sender, header):
            self.replica.on_sync_open(sender, msg, now_ms)

    def _on_sync_reply(self, sender: str, header: Header, msg: SyncReply, now_ms: int) -> None:
        pull = self.replica.pulls.get(msg.sid)
        if pull is None or (pull.peer is not None and pull.peer != sender):
            self.count("pull_unknown_session")
            return
        if pull.peer is None:  # a seed answered: learn it as a member first
            self._joined = True
        rejoining = self.replica.only_from == sender
        if msg.rows:
            self.membership.merge_rows(list(msg.rows), now_ms, adopt_reaped=rejoining)
        if not self._known(sender, header):
            return
        self.replica.on_sync_reply(sender, header.boot, msg, now_ms)
        if rejoining:
            self.replica.only_from = None

    def _on_sync_descend(self, sender: str, header: Header, msg: SyncDescend, now_ms: int) -> None:
        if self._known(sender, header):
            self.replica.on_sync_descend(sender, msg, now_ms)

    def _on_sync_tree(self, sender: str, header: Header, msg: SyncTree, now_ms: int) -> None:
        if self._known(sender, header):
            self.replica.on_sync_tree(sender, header.boot, msg, now_ms)

    def _on_sync_versions(self, sender: str, header: Header, msg: SyncVersions, now_ms: int) -> None:
        if self._known(sender, header):
            self.replica.on_sync_versions(sender, msg, now_ms)

    def _on_sync_records(self, sender: str, header: Header, msg: SyncRecords, now_ms: int) -> None:
        if self._known(sender, header):
            self.replica.on_sync_records(sender, header.boot, msg, now_ms)

    def _on_records(self, sender: str, header: Header, msg: Records, now_ms: int) -> None:
        if self._known(sender, header) and self._settled():
            self.replica.apply_all(msg.records, now_ms, relay=False)

    def _on_split(self, sender: str, header: Header, msg: Split, now_ms: int) -> None:
        membership = self.membership
        i_reaped_them = membership.reaped.get(sender, -1) >= header.boot
        they_reaped_me = msg.reaped_you == self.boot
        if not (i_reaped_them or they_reaped_me):
            return  # settled already (one of us has reset since, and is someone new)
        if they_reaped_me and not i_reaped_them:
            i_lose = True
        elif i_reaped_them and not they_reaped_me:
            i_lose = False
        else:  # each side reaped the other: the side with more live members keeps its state
            mine = (membership.alive_count(), membership.min_active_name(), self.name)
            theirs = (msg.alive, msg.min_name, sender)
            i_lose = mine[0] < theirs[0] or (mine[0] == theirs[0] and mine[1:] > theirs[1:])
        if i_lose:
            self._start_over(sender, header, msg.collected_max, now_ms)
        else:
            self._send_split(sender, now_ms)

    _HANDLERS_BY_NAME = {
        MsgType.PING: _on_ping, MsgType.ACK: _on_ack, MsgType.PING_REQ: _on_ping_req, MsgType.NACK: _on_nack,
        MsgType.GOSSIP: _on_gossip, MsgType.SYNC_OPEN: _on_sync_open, MsgType.SYNC_REPLY: _on_sync_reply,
        MsgType.SYNC_DESCEND: _on_sync_descend, MsgType.SYNC_TREE: _on_sync_tree,
        MsgType.SYNC_VERSIONS: _on_sync_versions, MsgType.SYNC_RECORDS: _on_sync_records,
        MsgType.RECORDS: _on_records, MsgType.SPLIT: _on_split,
    }

    def _updates(self, updates: Sequence[Any], now_ms: int) -> None:
        for update in updates:
            self.membership.apply(update, now_ms)

    def _send_split(self, to: str, now_ms: int) -> None:
        last = self._split_sent.get(to)
        if last is not None and now_ms - last < self.profile.probe_interval_ms:
            return
        self._split_sent[to] = now_ms
        m = self.membership
        self._emit(to, Split(m.alive_count(), m.min_active_name(), self.replica.collected_max, m.reaped.get(to, 0)),
                   now_ms)

    def _start_over(self, winner: str, header: Header, floor: int, now_ms: int) -> None:
        """We lost a split: drop what the other side may have collected, rejoin as a new identity."""
        self.count("splits_lost")
        kept = self.membership.get(winner)
        self.boot = self.hlc.now(now_ms)
        self.replica.reset(floor)
        self.membership.reset(self.boot, None, now_ms)
        self.membership.on_alive(winner, header.boot, kept.incarnation if kept else 0,
                                 kept.address if kept else "", now_ms)
        self._seen.clear()
        self._split_sent.clear()
        self._reset = True
        self.replica.only_from = winner
        self.replica.pull(winner, now_ms, want_rows=True)

    # -- outputs ------------------------------------------------------------------------------

    def _gossip(self, now_ms: int, fresh_only: bool) -> None:
        """One round: queued updates and records to ``gossip_nodes`` random members (a push of
        fresh news, ``fresh_only``: to ``push_nodes``)."""
        fanout = self.profile.push_nodes if fresh_only else self.profile.gossip_nodes
        peers = self.membership.sample(fanout, include_dead_ms=self.profile.gossip_to_the_dead_ms, now_ms=now_ms)
        if not peers:
            return
        k = len(peers)
        m = self.membership
        limit = self.profile.retransmit_limit(m.alive_count())
        updates = [u for _, u in m.updates.take(limit, UPDATES_BUDGET, _update_size, fresh_only=fresh_only,
                                                transmits=k)]
        budget = self.profile.gossip_max_bytes - sum(_update_size("", u) for u in updates)
        origins: list[str] = []
        columns: list[list[Any]] = []
        if not self.replica.fresh:
            # A message that reaches every live member leaves nobody to retransmit to: its records
            # are done (anti-entropy repairs one lost on the way). Otherwise each peer counts once.
            reached = sum(1 for p in peers if p in m.active)
            transmits = limit if reached >= m.alive_count() - 1 else k
            origins, columns = self.replica.take_wire(transmits, budget, fresh_only=fresh_only)
        if not updates and not (columns and columns[0]):
            return
        self.count("gossip_rounds")
        payload = gossip_payload(updates, origins, columns or columns_of(()))  # once, for every peer
        for peer in peers:
            self._emit_shared(peer, MsgType.GOSSIP, now_ms, payload)

    def _emit(self, to: str, msg: Message, now_ms: int) -> None:
        self._queue_out(Outgoing(to, None, int(msg.TYPE), self._header(to, now_ms) + msg.to_wire()))

    def _emit_shared(self, to: str, mtype: int, now_ms: int, payload: list[Any]) -> None:
        """A message whose fields after the header, ``payload``, go to every peer of a round."""
        self._queue_out(Outgoing(to, None, mtype, self._header(to, now_ms) + payload, len(payload)))

    def _header(self, to: str, now_ms: int) -> list[Any]:
        member = self.membership.get(to)
        seen = self.replica.marks.seen(to, member.boot) if member is not None else 0
        self._seq += 1
        return [self.boot, self._seq, self.hlc.now(now_ms), seen, self.membership.view]

    def _emit_to_address(self, address: str, msg: Message, now_ms: int) -> None:
        self._seq += 1
        header = Header(self.boot, self._seq, self.hlc.now(now_ms), 0, self.membership.view)
        self._queue_out(Outgoing(None, address, int(msg.TYPE), encode(header, msg)))

    def _queue_out(self, out: Outgoing) -> None:
        self._outbox.append(out)
        self.messages_sent += 1
        self.count(_SENT_NAMES[out.type])
        if self.measure_bytes:
            self.bytes_sent += len(msgpack.packb(out.body, use_bin_type=True))

    def _after(self, now_ms: int) -> None:
        """Act on membership changes, collect what the cores produced, and remember when we
        expect to be called next."""
        if self.membership.events:
            for event in self.membership.events:
                if event.state == "alive" and event.previous in (None, "suspect", "dead", "left"):
                    # A member appeared, or came back: repair now, not at the next interval. A
                    # suspect was still pushed to (it stayed active), so that pull gives way to a
                    # stream of writes, like a periodic one: under a load that delays its acks
                    # (suspicion, then its refutation), a comparison would chase the stream.
                    self.replica.cancel_pulls(event.name)
                    yields = self.replica.last_sync_ms if event.previous == "suspect" else None
                    self.replica.pull(event.name, now_ms, want_rows=True, yields_since=yields)
                elif event.state in ("dead", "left"):
                    self.replica.cancel_pulls(event.name)
                elif event.state == "reaped":
                    self.replica.cancel_pulls(event.name)
                    self.replica.marks.forget(event.name)
                    self._seen.pop(event.name, None)
            self._events.extend(self.membership.events)
            self.membership.events.clear()
        for to, msg in self.membership.out:
            if to != self.name:
                self._emit(to, msg, now_ms)
        self.membership.out.clear()
        for address, msg in self.membership.out_by_address:
            self._emit_to_address(address, msg, now_ms)
        self.membership.out_by_address.clear()
        for to, msg in self.replica.out:
            self._emit(to, msg, now_ms)
        self.replica.out.clear()
        for address, msg in self.replica.out_by_address:
            self._emit_to_address(address, msg, now_ms)
        self.replica.out_by_address.clear()
        self._wake_ms = max(self.next_deadline_ms(), now_ms)  # a deadline passed means "now"

    def _check_stall(self, now_ms: int) -> None:
        wake = self._wake_ms
        if wake is not None and now_ms - wake > self.profile.probe_interval_ms:
            self.membership.stalled(now_ms, now_ms - wake)
        self._wake_ms = None

    def ready(self) -> Ready:
        """Everything to do now (see ``Ready``); the agent forgets it once handed out."""
        ready = Ready(self.hlc.high_water_due(), self._outbox, self._events, self._reset)
        self._outbox = []
        self._events = []
        self._reset = False
        return ready

    # -- introspection -----------------------------------------------------------------------

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _refuse(self, reason: str, detail: str) -> None:
        self.count("refused_" + reason)
        self.last_refusal = detail

    def stats(self) -> dict[str, int]:
        """Counters for INFO gossip: members by state, keys and tombstones, traffic, refusals."""
        self.replica.fold()
        by_state = {"alive": 0, "suspect": 0, "dead": 0, "left": 0}
        for m in self.membership.members.values():
            by_state[("alive", "suspect", "dead", "left")[m.state]] += 1
        out = {f"members_{k}": v for k, v in by_state.items()}
        out.update(records=len(self.replica.digest), tombstones=len(self.replica.tombstones),
                   queued_paths=len(self.replica.queue), max_drift_ms_seen=self.max_drift_ms_seen,
                   messages_sent=self.messages_sent, bytes_sent=self.bytes_sent, health=self.membership.health,
                   incarnation=self.membership.incarnation)
        for source in (self.counters, self.membership.counters, self.replica.counters):
            out.update(source)
        return out


_HANDLERS = GossipAgent._HANDLERS_BY_NAME
_SENT_NAMES = {int(t): "sent_" + t.name.lower() for t in MsgType}
_RECEIVED_NAMES = {t: "received_" + t.name.lower() for t in MsgType}
_SYNC_TYPES = frozenset({MsgType.SYNC_OPEN, MsgType.SYNC_REPLY, MsgType.SYNC_DESCEND, MsgType.SYNC_TREE,
                         MsgType.SYNC_VERSIONS, MsgType.SYNC_RECORDS, MsgType.SPLIT})


def _records_of(msg: Message) -> Sequence[Record]:
    if isinstance(msg, (Gossip, Records, SyncRecords)):
        return msg.records
    return ()


def _update_size(_name: str, update: Any) -> int:
    return 24 + len(update[1]) + len(update[4])
