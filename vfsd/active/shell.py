"""The gossip shell: the asyncio driver that replicates the active plane across nodes.

Theory of operation
-------------------
A clustered node (``--peers``, ``--join`` or ``--seeds`` set) is a gossip member, voter
or not. Its ``GossipShell`` owns the sans-IO ``GossipAgent`` (vfsd.active.agent), feeds it
every input and carries out every ``Ready`` it hands back, in the order the agent asks:

1. **Persist the clock's high-water mark** (``<data dir>/gossip-clock.json``, written to a
   temporary file, fsynced and renamed) *before* any message stamped since leaves. A
   restarted node resumes its hybrid logical clock above the mark, so its new writes win
   over its old ones even when its wall clock went backwards. The mark is reserved ten
   seconds ahead, so this costs one small fsync about every five seconds. If it fails,
   that round's messages are dropped (the protocol retransmits) and it is tried again.
2. **Membership events**: a member that is alive becomes a transport peer (dialled and
   kept connected); a reaped one stops being one (unless it is a Raft peer, which the
   Raft shell owns); ``/itg/<name>`` is written (vfsd.active.integrity); a reaped
   member's ``/hw``, ``/sum`` and ``/itg`` subtrees are deleted.
3. **Messages**, to a member by its node id, or to a seed's address before its id is
   known. A member the transport does not know (a Raft shell removed it, say) is added
   back and the message sent again.
4. **Reset** (the cluster had reaped this node, and it rejoins as a new identity): its
   own documents are written again (``/itg/<itself>``, the collectors' last documents).

Inputs: gossip frames from the transport (``register(GOSSIP, ...)``); a timer armed at
the agent's next deadline (``wake_ms``); and the active plane's write hooks
(``vfsd.active.plane.ReplicationHooks``): each write only marks its path written (the
replication core updates its digest and queue once per path when it next runs), and the
first write of a batch schedules one flush — at the end of the event-loop iteration
(``loop.call_soon``), or, after a push of ``STREAM_RECORDS`` paths or more (a stream of
writes), ``FLUSH_GAP_S`` after it — which pushes every path changed since to ``push_nodes`` random peers at once; the
fields a round sends every peer are packed once (``Outgoing.shared``). Gossip work stays off the client's
path: no write waits for the network.

Replicated changes land in the keyspace through ``KeyspaceStore`` and raise the same
events as local ones; they are announced after each call into the agent. Every
``ITG_RESTORE_S`` the shell writes the ``/itg`` document of any known member that has
none (a client's DEL, or a FLUSHALL, which replicates, removed it).

At start the clock resumes above the persisted mark, the dump's clock and every revision
of this node's own entries; what the dump brought back keeps its versions (only writes
made after the start and before the first pull is answered are re-stamped), so a delete
made elsewhere while this node was away wins over its dump.

Seeds: ``--seeds``, the other nodes of ``--peers`` and ``--join`` (one flag set forms
both the Raft cluster and the gossip one). Graceful leave (SIGTERM, SHUTDOWN,
``Node.stop``): ``/itg/<itself>`` becomes ``left``, the leave is announced, and the shell
waits (at most ``LEAVE_DRAIN_S``) for the transport to hand those frames to the sockets,
before the node stops the transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path
from typing import Any

from vfsd.active.agent import GossipAgent, Outgoing, Ready
from vfsd.active.hlc import HLC, LOGICAL_BITS
from vfsd.active.integrity import event_document, member_path, member_row, owned_paths, self_document
from vfsd.active.keyspace_store import REPLICATED_KINDS, KeyspaceStore, check_wire_value
from vfsd.active.membership import MemberEvent
from vfsd.active.profile import PROFILES, GossipProfile
from vfsd.active.wire import STATE_NAMES, Limits, MsgType, on_roots
from vfsd.config import parse_address, parse_peers
from vfsd.desired.log import write_file_atomically
from vfsd.peers.frame import GOSSIP, LocalProtocolError
from vfsd.peers.transport import PeerTransport
from vfsd.store.keyspace import ORIGIN, REV, Entry

log = logging.getLogger(__name__)

HIGH_WATER_FILE = "gossip-clock.json"
#: Under a stream of writes, the least time between two pushes of local writes; a push of
#: fewer than ``STREAM_RECORDS`` paths is no stream, and leaves no gap before the next (see
#: ``GossipShell._schedule_flush``).
FLUSH_GAP_S = 0.005
STREAM_RECORDS = 32
#: How often the ``/itg`` documents of known members are checked, and written again if missing
#: (a client's DEL or a FLUSHALL removed them; membership only writes on a change).
ITG_RESTORE_S = 5.0
#: How long stop() waits for the leave announcement to reach the sockets.
LEAVE_DRAIN_S = 1.0
#: Why the agent refuses a message (vfsd.active.wire's WireError reasons and the agent's own):
#: INFO gossip shows each, zero included.
REFUSAL_REASONS = ("malformed", "bad_key", "bad_value", "out_of_range", "too_large", "unknown_kind", "unknown_type",
                   "clock_drift", "fresh", "from_reaped", "from_self", "overtaken", "stale_identity",
                   "unknown_sender", "bad_range")


class HighWaterError(Exception):
    """The persisted clock mark cannot be read; the message names the file."""


def read_high_water(path: Path) -> int | None:
    """The persisted high-water mark (ms), or None when there is none yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HighWaterError(f"cannot read {path}: {exc.strerror}") from None
    try:
        mark = json.loads(text)["high_water_ms"]
    except (ValueError, KeyError, TypeError) as exc:
        raise HighWaterError(f"{path} is damaged ({exc!r}); it holds the active plane's clock mark") from None
    if type(mark) is not int or mark < 0:
        raise HighWaterError(f"{path} is damaged (high_water_ms {mark!r}); it holds the active plane's clock mark")
    return mark


def write_high_water(path: Path, mark_ms: int) -> None:
    write_file_atomically(path, [json.dumps({"high_water_ms": mark_ms}).encode() + b"\n"])


def seed_addresses(config: Any) -> list[str]:
    """``--seeds``, then the other nodes of ``--peers``, then ``--join``: ``host:port`` each, once."""
    found: list[tuple[str, int]] = []
    if config.seeds:
        found += [parse_address(item, "seeds") for item in config.seeds.split(",") if item.strip()]
    if config.peers:
        found += [address for node_id, address in parse_peers(config.peers).items() if node_id != config.node_id]
    if config.join:
        found.append(parse_address(config.join, "join"))
    out: list[str] = []
    for host, port in found:
        text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if text not in out:
            out.append(text)
    return out


def _split_address(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    return host, int(port)


class GossipShell:
    """The gossip member of one node (see the module docstring); ``node.gossip``."""

    def __init__(self, node: Any, transport: PeerTransport, *, rng: random.Random | None = None) -> None:
        config = node.config
        self.node = node
        self.transport = transport
        self.name: str = config.node_id
        self.address = transport.advertised_address
        self.profile: GossipProfile = PROFILES[config.gossip_profile]
        self.plane = node.planes["eventual"]
        self.high_water_path = Path(config.data_dir) / HIGH_WATER_FILE
        #: Raft's peers: the transport peers this shell must not remove.
        self.raft_peers = set(parse_peers(config.peers)) if config.peers else set()
        self.seeds = seed_addresses(config)
        now = node.now_ms()
        self.hlc = self._resumed_clock(now)
        self.plane.hlc = self.hlc  # local writes and replication stamp from one clock
        accepts = on_roots(config.roots)
        self.store = KeyspaceStore(node.keyspace, self.plane, accepts, self.plane.ctx.notify)
        self.store.now_ms = now
        limits = Limits(kinds=REPLICATED_KINDS, accepts_key=accepts, check_value=check_wire_value,
                        max_value_bytes=self.profile.max_message_bytes - 4096)
        self.agent = GossipAgent(self.name, self.address, self.store, self.hlc, rng or random.Random(), now,
                                 profile=self.profile, limits=limits)
        self.store.tombstone_of = self.agent.replica.tombstones.get
        # What the dump brought back was published before this node stopped: it keeps its versions,
        # so a delete made meanwhile on another node wins. Only what is written from here until the
        # first pull is answered counts as written alone, to be re-stamped then (vfsd.active.gossip).
        self.agent.replica.fresh_since = self.hlc.last + 1
        self.plane.ctx.max_value_bytes = limits.max_value_bytes  # what peers accept: refuse more at the write
        self._replica = self.agent.replica
        #: ReplicationHooks.written: the replication core's own mark of written keys.
        self.written = self._replica.dirty
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._restorer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._flush_scheduled = False
        self._last_flush = 0.0  # loop time of the last push
        self._gap = 0.0  # the least time from it to the next (FLUSH_GAP_S after a stream's push)
        self._stopped = False
        self.started_ms = now
        self.persist_failures = 0
        self.send_failures = 0
        #: The fields of the gossip round last sent, and their msgpack (``_send_to``).
        self._shared_first: Any = None
        self._shared_packed = b""

    def _resumed_clock(self, now_ms: int) -> HLC:
        """The clock above everything this node stamped before: the persisted mark, the dump's
        clock (already in the plane's) and the revisions of its own entries."""
        mark = read_high_water(self.high_water_path)
        hlc = HLC() if mark is None else HLC.resume(mark)
        top = self.plane.hlc.last
        name = self.name
        accepts = on_roots(self.node.config.roots)
        for key, entry in self.node.keyspace.data.items():
            if entry[ORIGIN] == name and entry[REV] > top and key[:1] == b"/" and accepts(key):
                top = entry[REV]
        if top >= hlc.last:
            hlc.last = top + 1
        return hlc

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Register on the transport, hook the active plane, announce ourselves, join the seeds."""
        self._loop = asyncio.get_running_loop()
        self.transport.register(GOSSIP, self._on_message)
        self.plane.ctx.hooks = self
        now = self.node.now_ms()
        self._write_self("alive", now)
        self.agent.join(self.seeds, now)
        self._settle()
        self._restorer = self._loop.call_later(ITG_RESTORE_S, self._restore_itg)
        log.info("gossip member %s at %s (profile %s), seeds: %s", self.name, self.address, self.profile.name,
                 ", ".join(self.seeds) or "none")

    async def stop(self) -> None:
        """Leave gracefully: /itg/<me> = left, the leave announced and handed to the sockets."""
        if self._stopped or self._loop is None:
            self._stopped = True
            return
        now = self.node.now_ms()
        self._write_self("left", now)  # rides on the leave's gossip round (a fresh path)
        self.store.now_ms = now
        self.agent.leave(now)
        peers = {out.to for out in self._settle(final=True) if out.to is not None}
        self._stopped = True
        self.plane.ctx.hooks = None  # what is written from here on stays on this node
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._restorer is not None:
            self._restorer.cancel()
            self._restorer = None
        if peers:
            try:
                async with asyncio.timeout(LEAVE_DRAIN_S):
                    await asyncio.gather(*(self.transport.drain(p) for p in peers))
            except TimeoutError:
                log.info("gossip leave: not every peer took the announcement within %.1f s", LEAVE_DRAIN_S)
        log.info("gossip member %s left", self.name)

    # -- inputs -----------------------------------------------------------------------------

    def _on_message(self, peer_id: str, mtype: int, body: Any) -> None:
        if self._stopped:
            return
        now = self.node.now_ms()
        self.store.now_ms = now
        self.agent.receive(peer_id, mtype, body, now)
        self._settle()

    def _tick(self) -> None:
        self._timer = None
        if self._stopped:
            return
        now = self.node.now_ms()
        self.store.now_ms = now
        self.agent.tick(now)
        self._settle()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._stopped:
            return
        self._last_flush = self._loop.time()  # type: ignore[union-attr]
        self._gap = FLUSH_GAP_S if len(self.written) >= STREAM_RECORDS else 0.0
        now = self.node.now_ms()
        self.store.now_ms = now
        self.agent.flush(now)
        self._settle()

    # -- ReplicationHooks (the active plane marks every write, calls these on other changes) ---

    def schedule(self) -> None:
        if not self._flush_scheduled:
            self._schedule_flush()

    def deleted(self, key: bytes, old: Entry, now_ms: int) -> int:
        self.plane.changes += 1
        rev = self._replica.deleted(key, (old[REV], old[ORIGIN]), now_ms)
        if not self._flush_scheduled:
            self._schedule_flush()
        return rev

    def _schedule_flush(self) -> None:
        """One push per batch of writes: at the end of this loop iteration, unless the last push
        was a stream's (``STREAM_RECORDS`` paths or more) and less than ``FLUSH_GAP_S`` ago: then
        that long after it. A lone write goes out at once; under a stream, pushes carry many
        records each: fewer messages and system calls on every node (on these machines a push
        costs each end a wakeup and a few system calls, whatever it carries), for at most
        ``FLUSH_GAP_S`` of extra latency."""
        self._flush_scheduled = True
        loop = self._loop
        assert loop is not None
        due = self._last_flush + self._gap
        if loop.time() >= due:
            loop.call_soon(self._flush)
        else:
            loop.call_at(due, self._flush)

    def expired(self, key: bytes, old: Entry, deadline_ms: int) -> None:
        # Every replica expires the entry at the same deadline by itself: nothing to push.
        self.plane.changes += 1
        self._replica.expired(key, (old[REV], old[ORIGIN]), deadline_ms)

    # -- carrying out a Ready ------------------------------------------------------------------

    def _settle(self, *, final: bool = False) -> list[Outgoing]:
        """Announce what was applied, then do what the agent's Ready says (module docstring)."""
        self.store.emit()
        ready: Ready = self.agent.ready()
        messages = ready.messages
        if ready.persist_high_water_ms is not None and not self._persist(ready.persist_high_water_ms):
            messages = []
        for event in ready.events:
            self._on_member_event(event)
        for out in messages:
            self._send(out)
        self._shared_first = None  # (and the round's objects are not kept alive)
        if ready.reset and not final:
            self._republish()
        self.store.emit()  # (anything the steps above had the agent apply)
        if not final:
            self._arm()
        return messages

    def _persist(self, mark_ms: int) -> bool:
        try:
            write_high_water(self.high_water_path, mark_ms)
            return True
        except OSError as exc:
            self.persist_failures += 1
            self.hlc.reserved_ms = -1  # ask again at the next Ready
            log.error("cannot persist the gossip clock mark to %s (%s): holding this round's messages",
                      self.high_water_path, exc.strerror)
            return False

    def _send(self, out: Outgoing) -> None:
        transport = self.transport
        try:
            if out.to is not None:
                if self._send_to(out):
                    return
                member = self.agent.membership.get(out.to)
                where = _split_address(member.address) if member is not None else None
                if where is not None and not transport.connected(out.to):
                    transport.add_peer(out.to, *where)  # a peer the transport forgot: keep it again
                    if self._send_to(out):
                        return
                self.send_failures += 1
                return
            where = _split_address(out.address or "")
            if where is None or not transport.send_to_address(*where, GOSSIP, out.type, out.body):
                self.send_failures += 1
        except LocalProtocolError:  # a message this node cannot encode: a bug, logged, not fatal
            self.send_failures += 1
            log.exception("gossip: could not send a %s message", MsgType(out.type).name)

    def _send_to(self, out: Outgoing) -> bool:
        """Send ``out`` to its member; the fields a gossip round shares are packed once for every
        peer of the round (``Outgoing.shared``), the rest of each body per peer."""
        assert out.to is not None
        n = out.shared
        if not n:
            return self.transport.send(out.to, GOSSIP, out.type, out.body)
        body = out.body
        first = body[-n]
        if first is not self._shared_first:  # a new round (its fields are new objects)
            self._shared_first = first
            self._shared_packed = self.transport.encoder.pack_fields(body[-n:])
        return self.transport.send_joined(out.to, GOSSIP, out.type, body[:-n], self._shared_packed, n)

    def _on_member_event(self, event: MemberEvent) -> None:
        name = event.name
        if name == self.name:
            return
        if event.state == "alive":
            where = _split_address(event.address)
            if where is not None:
                self.transport.add_peer(name, *where)
        elif event.state in ("dead", "left"):
            # Session leases held through a node that is gone are released (by the Raft leader).
            locks = getattr(self.node, "locks", None)
            if locks is not None:
                locks.node_dead(name)
        elif event.state == "reaped":
            if name not in self.raft_peers:
                self.transport.remove_peer(name)
            self._delete_owned(name)
            return
        member = self.agent.membership.get(name)
        heard = member.heard_ms if member is not None else 0
        try:
            self.node.write_document(member_path(name), event_document(event, heard, self.name))
        except Exception:  # a path the roots table does not give the active plane: nowhere to write
            log.exception("gossip: cannot write %s", member_path(name).decode(errors="replace"))

    def _delete_owned(self, name: str) -> None:
        keyspace = self.node.keyspace
        paths = owned_paths(name, lambda prefix: list(keyspace.prefixed(prefix)), lambda key: key in keyspace.data)
        for path in paths:
            try:
                self.node.delete_document(path)
            except ValueError:  # not on the active plane (an operator's roots table): not ours to delete
                pass
        if paths:
            log.info("gossip: %s was reaped; deleted its %d documents", name, len(paths))

    def _write_self(self, state: str, now_ms: int) -> None:
        try:
            self.node.write_document(member_path(self.name), self_document(self.agent.membership.me, state, now_ms))
        except Exception:
            log.exception("gossip: cannot write %s", member_path(self.name).decode(errors="replace"))

    def _republish(self) -> None:
        """The replica dropped our documents to rejoin: write them again."""
        now = self.node.now_ms()
        self._write_self("alive", now)
        collectors = getattr(self.node, "collectors", None)
        if collectors is not None:
            collectors.restore()
        log.warning("gossip: %s had been reaped by the cluster and rejoined as a new member", self.name)

    def _restore_itg(self) -> None:
        """Write the ``/itg`` document of every known member that has none (see ``ITG_RESTORE_S``)."""
        if self._stopped:
            return
        self._restorer = self._loop.call_later(ITG_RESTORE_S, self._restore_itg)  # type: ignore[union-attr]
        data = self.node.keyspace.data
        now = self.node.now_ms()
        membership = self.agent.membership
        for m in list(membership.members.values()):
            path = member_path(m.name)
            if path in data:
                continue
            if m.name == self.name:
                self._write_self("left" if membership.leaving else "alive", now)
                continue
            event = MemberEvent(m.name, STATE_NAMES[m.state], None, m.incarnation, m.boot, m.address, m.since_ms,
                                m.flaps)
            try:
                self.node.write_document(path, event_document(event, m.heard_ms, self.name))
            except Exception:
                log.exception("gossip: cannot write %s", path.decode(errors="replace"))

    def _arm(self) -> None:
        wake = self.agent.wake_ms
        if self._timer is not None:
            if self._timer_at <= wake:
                return  # it fires no later than needed (calling tick early is cheap)
            self._timer.cancel()
        loop = self._loop
        assert loop is not None
        delay_ms = max(0, wake - self.node.now_ms())
        self._timer = loop.call_later(delay_ms / 1000, self._tick)
        self._timer_at = wake

    # -- introspection ------------------------------------------------------------------------

    def members(self) -> list[dict[str, Any]]:
        """Every member this node knows, itself included: id, address, state, incarnation, boot,
        last heard (ms, this node's clock; 0: never), since when in that state, flap count."""
        now = self.node.now_ms()
        rows = [member_row(m, self.name, now) for m in self.agent.membership.members.values()]
        return sorted(rows, key=lambda row: row["id"])

    def info(self) -> dict[str, Any]:
        """The ``INFO gossip`` fields."""
        stats = self.agent.stats()
        counters = self.transport.counters
        out: dict[str, Any] = {
            "gossip_enabled": 1, "gossip_node": self.name, "gossip_address": self.address,
            "gossip_profile": self.profile.name, "gossip_incarnation": stats["incarnation"],
            "gossip_health": stats["health"],
        }
        for state in ("alive", "suspect", "dead", "left"):
            out[f"members_{state}"] = stats[f"members_{state}"]
        out.update({
            "keys": stats["records"] - stats["tombstones"], "tombstones": stats["tombstones"],
            # The hash over every record held (entries and tombstones): replicas that agree hold the same.
            "digest_root": f"0x{self._replica.digest.root():016x}",
            "queued_paths": stats["queued_paths"],
            "pushes": stats.get("gossip_rounds", 0),
            "anti_entropy_rounds": stats.get("pulls_completed", 0),
            "anti_entropy_served": stats.get("pulls_served", 0),
            "anti_entropy_timeouts": stats.get("pull_timeouts", 0),
            # Periodic pulls put off under a stream of writes, and those given up when one began.
            "anti_entropy_deferred": stats.get("pulls_deferred", 0),
            "anti_entropy_yielded": stats.get("pulls_yielded", 0),
            "records_applied": stats.get("records_applied", 0),
            "tombstones_collected": stats.get("tombstones_collected", 0),
            "messages_sent": counters.frames_out.get(GOSSIP, 0), "messages_received": counters.frames_in.get(GOSSIP, 0),
            "bytes_sent": counters.bytes_out.get(GOSSIP, 0), "bytes_received": counters.bytes_in.get(GOSSIP, 0),
            "send_failures": self.send_failures, "clock_persist_failures": self.persist_failures,
            "max_hlc_drift_ms": stats["max_drift_ms_seen"],
            "hlc_ms": self.hlc.last >> LOGICAL_BITS,
        })
        refused = {reason: stats.get("refused_" + reason, 0) for reason in REFUSAL_REASONS}
        for key, n in stats.items():
            if key.startswith("refused_") and key[8:] not in refused:
                refused[key[8:]] = n
        out["refused_total"] = sum(refused.values())
        out.update({f"refused_{reason}": n for reason, n in refused.items()})
        out.update({f"peer_refused_{reason}": n for reason, n in counters.protocol_errors.items()})
        out["last_refusal"] = _one_line(self.agent.last_refusal)
        return out


def _one_line(text: str) -> str:
    """An INFO value: one line, nothing a client's INFO parser splits on (spaces, commas and
    equals signs become underscores)."""
    return "_".join(text.replace(",", " ").replace("=", " ").split())[:200] or "none"


__all__ = ["GossipShell", "HighWaterError", "read_high_water", "seed_addresses", "write_high_water"]
