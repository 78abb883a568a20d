"""SWIM membership and failure detection, as hashicorp/memberlist does it, with Lifeguard.

Theory of operation
-------------------
Every member is an *identity* ``(name, boot)``: ``boot`` is the HLC of the process
when it started, so a restarted node is a new identity that supersedes the old one
at once (memberlist, which has no boot, needs the restarted node to out-bid its old
incarnation). Within one identity, the incarnation number orders what is said about
it (SWIM §4.2): ``alive`` at incarnation ``i`` overrides ``suspect``/``dead`` at an
incarnation below ``i``; ``suspect`` overrides ``alive`` at the same or a lower
incarnation; ``dead`` overrides both. Only the member itself raises its
incarnation, to refute a suspicion or a death it hears about itself.

**Probing** (SWIM §3.1, memberlist ``probeNode``). Every ``probe_interval_ms`` the
next member in a shuffled round-robin order gets a ``Ping``. No ``Ack`` within
``probe_timeout_ms`` → ``indirect_checks`` random members are sent a ``PingReq``;
each pings the target itself and relays the ``Ack``, or answers ``Nack`` when it got
none within its own timeout (Lifeguard's nack: proof the relay, and we, are working).
No ack by the end of the interval → the target becomes *suspect*.

**Suspicion** (Lifeguard §IV-B). A suspect is declared *dead* when its suspicion
timer runs out; the timer starts at ``suspicion_max`` and shrinks toward
``suspicion_min`` as independent members confirm the suspicion (formulas in
``vfsd.active.profile``). A suspect that is alive hears of it — piggybacked on the
probe we send it, or through gossip — and refutes with a higher incarnation.

**Local health** (Lifeguard §IV-A). A score ``h`` stretches this node's probe interval
and timeout by ``h + 1``. It rises when a probe fails without the nacks the relays
owed us (we may be the slow one), when we must refute a suspicion of ourselves, and
when ``stalled`` is told that our own event loop was blocked; a successful probe
lowers it. After a stall, the probe in flight is abandoned rather than blamed on its
target, and suspicion timers that ran out during the stall get one more probe interval,
so refutations that queued up while we were blocked are read before anyone is declared
dead: a 2 s stall costs at most one suspicion, refuted, and no flapping.

**Dissemination.** Every accepted change is queued (one slot per member, the newest
update replacing older ones) and piggybacked on pings, acks and gossip until sent
``retransmit_limit(n)`` times. Pull replies carry full rows (memberlist's push-pull);
unlike memberlist, rows about members we do not know are added in their state, dead
ones included, because tombstone collection needs every replica to know the same
identities.

**Life cycle.** alive → suspect → dead → (``horizon_ms`` later) reaped; leave() marks
this node *left* (a dead message from itself); left members and identities replaced
by a restart are reaped after ``left_grace_ms``. Reaped identities are remembered (a
bounded registry): one that comes back with the same boot has been away too long to
be merged and is handled as a split (``vfsd.active.gossip``).

Outputs: ``out`` (messages to send, by member name) and ``events`` (state changes the
shell writes to ``/itg/<node>``). Pure: time and randomness are parameters.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from vfsd.active.broadcast import TransmitQueue
from vfsd.active.digest import origin_hash, version_hash
from vfsd.active.profile import GossipProfile
from vfsd.active.wire import (
    ALIVE,
    ALIVE_OP,
    DEAD,
    DEAD_OP,
    LEFT,
    REAPED,
    STATE_NAMES,
    SUSPECT,
    SUSPECT_OP,
    Ack,
    Message,
    Nack,
    Ping,
    PingReq,
    Row,
    Update,
)

#: How many reaped identities are remembered (oldest forgotten first).
MAX_REAPED = 65_536
#: Piggybacked member updates per ping or ack, in bytes.
PIGGYBACK_BYTES = 1024


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A member's state changed: what the shell writes to ``/itg/<name>``."""

    name: str
    state: str  # alive | suspect | dead | left | reaped
    previous: str | None  # None: a member we had not heard of
    incarnation: int
    boot: int
    address: str
    at_ms: int
    flaps: int


class Member:
    __slots__ = ("name", "address", "boot", "incarnation", "state", "since_ms", "heard_ms", "flaps", "suspicion")

    def __init__(self, name: str, address: str, boot: int, incarnation: int, state: int, now_ms: int) -> None:
        self.name = name
        self.address = address
        self.boot = boot
        self.incarnation = incarnation
        self.state = state
        self.since_ms = now_ms
        self.heard_ms = 0
        self.flaps = 0
        self.suspicion: Suspicion | None = None

    def row(self, seen: int = 0) -> Row:
        return (self.name, self.address, self.boot, self.incarnation, self.state, seen)


class Suspicion:
    """Lifeguard's dynamic suspicion timer for one suspect (memberlist ``suspicion``)."""

    __slots__ = ("start_ms", "k", "min_ms", "max_ms", "confirmed", "deadline_ms")

    def __init__(self, by: str, start_ms: int, k: int, min_ms: int, max_ms: int) -> None:
        self.start_ms = start_ms
        self.k = k
        self.min_ms = min_ms
        self.max_ms = max_ms
        self.confirmed = {by}  # the first accuser is not a confirmation
        self.deadline_ms = start_ms + (max_ms if k > 0 else min_ms)

    @property
    def confirmations(self) -> int:
        return len(self.confirmed) - 1

    def confirm(self, by: str) -> bool:
        """A new, independent accuser: shrink the timer. False if not new or already enough."""
        if self.confirmations >= self.k or by in self.confirmed:
            return False
        self.confirmed.add(by)
        timeout = GossipProfile.suspicion_timeout_ms(self.min_ms, self.max_ms, self.k, self.confirmations)
        self.deadline_ms = self.start_ms + timeout
        return True


class _Probe:
    __slots__ = ("target", "boot", "seq", "timeout_ms", "deadline_ms", "indirect", "expected_nacks", "nacks", "acked")

    def __init__(self, target: Member, seq: int, timeout_ms: int, deadline_ms: int) -> None:
        self.target = target.name
        self.boot = target.boot
        self.seq = seq
        self.timeout_ms = timeout_ms
        self.deadline_ms = deadline_ms
        self.indirect = False
        self.expected_nacks = 0
        self.nacks = 0
        self.acked = False


class _Relay:
    __slots__ = ("requester", "probe", "nack_ms", "expires_ms", "done")

    def __init__(self, requester: str, probe: int, nack_ms: int, expires_ms: int) -> None:
        self.requester = requester
        self.probe = probe
        self.nack_ms = nack_ms
        self.expires_ms = expires_ms
        self.done = False


class ActiveSet:
    """The members alive or suspect, other than this node: O(1) add, remove and random choice."""

    __slots__ = ("names", "at")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.at

    def add(self, name: str) -> None:
        if name not in self.at:
            self.at[name] = len(self.names)
            self.names.append(name)

    def discard(self, name: str) -> None:
        at = self.at.pop(name, None)
        if at is None:
            return
        last = self.names.pop()
        if last != name:
            self.names[at] = last
            self.at[last] = at

    def sample(self, rng: random.Random, k: int, exclude: str | None = None, extra: list[str] | None = None) -> list[str]:
        """Up to ``k`` distinct random names (``extra`` ones join the draw, ``exclude`` never)."""
        pool = self.names
        if extra:
            pool = pool + extra
        if exclude is not None and exclude in self.at:
            pool = [n for n in pool if n != exclude]
        if len(pool) <= k:
            return list(pool)
        return rng.sample(pool, k)

    def order(self, rng: random.Random) -> Iterator[str]:
        """One round of probe targets: every member once, in a random order (memberlist)."""
        names = list(self.names)
        rng.shuffle(names)
        return iter(names)

    def smallest(self) -> str | None:
        return min(self.names) if self.names else None

    def clear(self) -> None:
        self.names.clear()
        self.at.clear()


def identity_hash(name: str, boot: int) -> int:
    return version_hash(origin_hash(name), boot, name)


class Membership:
    def __init__(self, name: str, address: str, boot: int, profile: GossipProfile, rng: random.Random,
                 now_ms: int) -> None:
        self.name = name
        self.address = address
        self.boot = boot
        self.profile = profile
        self.rng = rng
        self.me = Member(name, address, boot, 0, ALIVE, now_ms)
        self.members: dict[str, Member] = {name: self.me}
        #: Reaped identities: name -> boot (insertion order = reaping order).
        self.reaped: dict[str, int] = {}
        #: The recently reaped, for reconnection after a long partition: name -> (address, when).
        self._lost: dict[str, tuple[str, int]] = {}
        #: Identities superseded by a restart, or left: (name, boot) -> until when they still count.
        self.retired: dict[tuple[str, int], int] = {}
        self.health = 0
        self.updates: TransmitQueue[str, Update] = TransmitQueue(profile.max_queued_updates)
        self.out: list[tuple[str, Message]] = []
        self.out_by_address: list[tuple[str, Message]] = []
        self.events: list[MemberEvent] = []
        self.counters: dict[str, int] = {}
        self.leaving = False
        self.view = identity_hash(name, boot)
        self.active = ActiveSet()
        # Dicts used as ordered sets: iteration order must not depend on str hash randomisation.
        self._dead: dict[str, None] = {}
        self._suspects: dict[str, None] = {}
        self._probe: _Probe | None = None
        self._order: Iterator[str] = iter(())
        #: Members others suspect, to be probed before the round-robin resumes (ordered set).
        self._probe_first: dict[str, None] = {}
        self._seq = 0
        self._relays: dict[int, _Relay] = {}
        self._reconnects: dict[int, str] = {}
        jitter = rng.randrange(max(1, profile.probe_interval_ms))  # nodes started together do not probe in step
        self.next_probe_ms = now_ms + jitter
        self.next_reconnect_ms = now_ms + profile.reconnect_interval_ms + jitter
        self.next_reap_ms = now_ms + 1000

    # -- queries --------------------------------------------------------------------

    @property
    def incarnation(self) -> int:
        return self.me.incarnation

    def alive_count(self) -> int:
        """Members alive or suspect, this node included: the ``n`` of every formula."""
        return len(self.active) + 1

    def get(self, name: str) -> Member | None:
        return self.members.get(name)

    def sample(self, k: int, *, exclude: str | None = None, include_dead_ms: int | None = None,
               now_ms: int = 0) -> list[str]:
        """Up to ``k`` distinct random members (alive or suspect; plus dead ones that died
        within ``include_dead_ms``, memberlist's gossip-to-the-dead)."""
        extra = None
        if include_dead_ms is not None and self._dead:
            extra = [n for n in self._dead if now_ms - self.members[n].since_ms < include_dead_ms]
        return self.active.sample(self.rng, k, exclude, extra)

    def identities(self) -> Iterator[tuple[str, int]]:
        """Every identity that counts for tombstone collection, except ours."""
        for name, m in self.members.items():
            if name != self.name:
                yield name, m.boot
        yield from self.retired

    def min_active_name(self) -> str:
        other = self.active.smallest()
        return self.name if other is None or self.name < other else other

    def rows(self, limit: int, start: int) -> tuple[list[Row], int]:
        """Up to ``limit`` rows (reaped identities included), rotating from ``start``."""
        everything: list[Row] = [m.row() for m in self.members.values()]
        everything += [(name, "", boot, 0, REAPED, 0) for name, boot in self.reaped.items()]
        if len(everything) <= limit:
            return everything, 0
        start %= len(everything)
        window = everything[start:start + limit]
        if len(window) < limit:
            window += everything[: limit - len(window)]
        return window, start + limit

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- the probe cycle (tick) -----------------------------------------------------------

    def scaled(self, ms: int) -> int:
        return ms * (self.health + 1)

    def tick(self, now_ms: int) -> None:
        if self.leaving:
            return
        self._tick_relays(now_ms)
        probe = self._probe
        if probe is not None:
            if not probe.acked and not probe.indirect and now_ms >= probe.timeout_ms:
                self._indirect(probe)
            if now_ms >= probe.deadline_ms:
                self._finish_probe(probe, now_ms)
        if self._probe is None and now_ms >= self.next_probe_ms:
            self._start_probe(now_ms)
        for name in [n for n in self._suspects if self.members[n].suspicion.deadline_ms <= now_ms]:  # type: ignore[union-attr]
            m = self.members[name]
            self._declare(m, DEAD, m.incarnation, self.name, now_ms)
        if now_ms >= self.next_reconnect_ms:
            self.next_reconnect_ms = now_ms + self.profile.reconnect_interval_ms
            self._reconnect(now_ms)
        if now_ms >= self.next_reap_ms:
            self.next_reap_ms = now_ms + 1000
            self._reap(now_ms)

    def next_deadline_ms(self) -> int:
        if self.leaving:
            return 1 << 62
        probe = self._probe
        if probe is None:
            t = self.next_probe_ms
        else:
            t = probe.deadline_ms
            if not probe.indirect and not probe.acked and probe.timeout_ms < t:
                t = probe.timeout_ms
        if self.next_reap_ms < t and (self._dead or self.retired):
            t = self.next_reap_ms
        if (self._dead or self._lost) and self.next_reconnect_ms < t:
            t = self.next_reconnect_ms
        for relay in self._relays.values():
            r = relay.expires_ms if relay.done else relay.nack_ms
            if r < t:
                t = r
        for name in self._suspects:
            d = self.members[name].suspicion.deadline_ms  # type: ignore[union-attr]
            if d < t:
                t = d
        return t

    def stalled(self, now_ms: int, stalled_ms: int) -> None:
        """Our own event loop was blocked for ``stalled_ms``: blame ourselves, not our peers."""
        self.count("stalls")
        self._adjust_health(1)
        if self._probe is not None:
            self._probe = None  # its timeouts ran out while we were not looking
            self.next_probe_ms = now_ms + self.scaled(self.profile.probe_interval_ms)
        grace = now_ms + self.profile.probe_interval_ms
        for name in self._suspects:
            s = self.members[name].suspicion
            assert s is not None
            if s.deadline_ms < grace:
                s.deadline_ms = grace
        for relay in self._relays.values():
            relay.nack_ms = max(relay.nack_ms, grace)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _start_probe(self, now_ms: int) -> None:
        interval = self.scaled(self.profile.probe_interval_ms)
        self.next_probe_ms = now_ms + interval
        target = self._next_target()
        if target is None:
            return
        probe = _Probe(target, self._next_seq(), now_ms + self.scaled(self.profile.probe_timeout_ms), now_ms + interval)
        self._probe = probe
        updates = self.piggyback()
        if target.state == SUSPECT:  # memberlist: tell a suspect, so it can refute at once
            updates = [(SUSPECT_OP, target.name, target.boot, target.incarnation, self.name), *updates]
        self.out.append((target.name, Ping(probe.seq, target.name, updates)))

    def _next_target(self) -> Member | None:
        while self._probe_first:
            name = next(iter(self._probe_first))
            del self._probe_first[name]
            m = self.members.get(name)
            if m is not None and m.state == SUSPECT:
                return m
        for _ in range(2):
            for name in self._order:
                m = self.members.get(name)
                if m is not None and m.state in (ALIVE, SUSPECT) and name != self.name:
                    return m
            if not len(self.active):
                return None
            self._order = self.active.order(self.rng)
        return None

    def _indirect(self, probe: _Probe) -> None:
        probe.indirect = True
        target = self.members.get(probe.target)
        if target is None:
            return
        relays = [n for n in self.sample(self.profile.indirect_checks + 1, exclude=probe.target)
                  if self.members[n].state == ALIVE][: self.profile.indirect_checks]
        probe.expected_nacks = len(relays)
        for relay in relays:
            self.out.append((relay, PingReq(probe.seq, probe.target, target.address)))

    def _finish_probe(self, probe: _Probe, now_ms: int) -> None:
        self._probe = None
        if probe.acked:
            return
        # Lifeguard: missing nacks point at us; with no relays to ask, any failure counts once.
        self._adjust_health(probe.expected_nacks - probe.nacks if probe.expected_nacks else 1)
        target = self.members.get(probe.target)
        if target is None or target.boot != probe.boot or target.state not in (ALIVE, SUSPECT):
            return
        self.count("probe_failures")
        # A target already suspected by someone else: our failed probe is an independent
        # confirmation (memberlist suspectNode), counted here and gossiped to the others.
        self.on_suspect(target.name, target.boot, target.incarnation, self.name, now_ms)

    def _adjust_health(self, delta: int) -> None:
        self.health = max(0, min(self.profile.awareness_max_multiplier - 1, self.health + delta))

    def _tick_relays(self, now_ms: int) -> None:
        if not self._relays:
            return
        for seq in list(self._relays):
            relay = self._relays[seq]
            if not relay.done and now_ms >= relay.nack_ms:
                relay.done = True
                self.out.append((relay.requester, Nack(relay.probe)))
            if now_ms >= relay.expires_ms:
                del self._relays[seq]

    def _reconnect(self, now_ms: int) -> None:
        """Ping one random dead (or recently reaped) member now and then, so the two sides of a
        healed partition find each other quickly."""
        for name in [n for n, (_, at) in self._lost.items() if now_ms - at > self.profile.horizon_ms]:
            del self._lost[name]
        dead = [n for n in self._dead if self.members[n].state == DEAD]
        if not dead and not self._lost:
            return
        if self.rng.random() >= min(1.0, self.profile.reconnect_fanout / self.alive_count()):
            return
        pick = self.rng.randrange(len(dead) + len(self._lost))
        seq = self._next_seq()
        self._reconnects[seq] = ""
        if len(self._reconnects) > 64:
            self._reconnects.pop(next(iter(self._reconnects)))
        if pick >= len(dead):  # reaped: by address (the transport may have forgotten the name)
            name = list(self._lost)[pick - len(dead)]
            self.out_by_address.append((self._lost[name][0], Ping(seq, name, ())))
            return
        m = self.members[dead[pick]]
        updates = [(DEAD_OP, m.name, m.boot, m.incarnation, self.name), *self.piggyback()]
        self.out.append((m.name, Ping(seq, m.name, updates)))

    def _reap(self, now_ms: int) -> None:
        for (name, boot), until in list(self.retired.items()):
            if now_ms >= until:
                del self.retired[(name, boot)]
                self._remember_reaped(name, boot)
        for name in list(self._dead):
            m = self.members[name]
            limit = self.profile.horizon_ms if m.state == DEAD else self.profile.left_grace_ms
            if now_ms - m.since_ms >= limit:
                self._forget(m, now_ms)

    def _forget(self, m: Member, now_ms: int) -> None:
        previous = m.state
        self._dead.pop(m.name, None)
        self._untrack(m)
        del self.members[m.name]
        self.view ^= identity_hash(m.name, m.boot)
        self.updates.discard(m.name)
        self._remember_reaped(m.name, m.boot)
        if m.address:
            self._lost[m.name] = (m.address, now_ms)
        self.count("reaped")
        self.events.append(MemberEvent(m.name, "reaped", STATE_NAMES[previous], m.incarnation, m.boot, m.address,
                                       now_ms, m.flaps))

    def _remember_reaped(self, name: str, boot: int) -> None:
        if self.reaped.get(name, -1) >= boot:
            return
        self.reaped.pop(name, None)
        self.reaped[name] = boot
        while len(self.reaped) > MAX_REAPED:
            self.reaped.pop(next(iter(self.reaped)))

    # -- inputs: probes ---------------------------------------------------------------------

    def on_ping(self, sender: str, ping: Ping, now_ms: int) -> None:
        if ping.target != self.name:
            self.count("misdirected_pings")
            return
        self.out.append((sender, Ack(ping.probe, self.piggyback())))

    def on_ack(self, sender: str, ack: Ack, now_ms: int) -> None:
        probe = self._probe
        if probe is not None and ack.probe == probe.seq:
            if not probe.acked:
                probe.acked = True
                self._adjust_health(-1)
                self._probe = None
            return
        relay = self._relays.get(ack.probe)
        if relay is not None:
            if not relay.done:
                relay.done = True
                self.out.append((relay.requester, Ack(relay.probe)))
            return
        self._reconnects.pop(ack.probe, None)

    def on_ping_req(self, sender: str, req: PingReq, now_ms: int) -> None:
        if req.target == self.name:  # we are the target: just ack
            self.out.append((sender, Ack(req.probe)))
            return
        seq = self._next_seq()
        self._relays[seq] = _Relay(sender, req.probe, now_ms + self.scaled(self.relay_nack_ms()),
                                   now_ms + self.scaled(self.profile.probe_interval_ms))
        self.out.append((req.target, Ping(seq, req.target, ())))

    def relay_nack_ms(self) -> int:
        """How long a relay waits for the target's ack before it nacks (Lifeguard §IV-A).

        The requester asked ``probe_timeout_ms`` into its probe and gives up at the end of the
        interval, so it waits ``probe_interval_ms - probe_timeout_ms`` for relays' answers. A
        relay that waited a full ``probe_timeout_ms`` (memberlist) would nack at that very
        moment in the LAN profile: the nack lands after the probe is judged and the requester
        blames itself for nacks that were on their way. The relay nacks at 80% of the shorter
        of the two, so that a nack is there in time whatever the profile.
        """
        p = self.profile
        return max(1, min(p.probe_timeout_ms, p.probe_interval_ms - p.probe_timeout_ms) * 4 // 5)

    def on_nack(self, sender: str, nack: Nack, now_ms: int) -> None:
        probe = self._probe
        if probe is not None and nack.probe == probe.seq:
            probe.nacks += 1

    def heard(self, name: str, now_ms: int) -> None:
        m = self.members.get(name)
        if m is not None:
            m.heard_ms = now_ms

    # -- inputs: what others say about members ---------------------------------------------

    def apply(self, update: Update, now_ms: int) -> None:
        op, name, boot, inc, text = update
        if op == ALIVE_OP:
            self.on_alive(name, boot, inc, text, now_ms)
        elif op == SUSPECT_OP:
            self.on_suspect(name, boot, inc, text, now_ms)
        else:
            self.on_dead(name, boot, inc, text, now_ms)

    def on_alive(self, name: str, boot: int, inc: int, address: str, now_ms: int) -> bool:
        """Returns whether the update was news."""
        if name == self.name:
            if boot > self.boot:
                self.count("name_conflicts")  # another process claims our name with a later start
            elif boot == self.boot and inc > self.me.incarnation and not self.leaving:
                self._refute(inc)  # someone speaks for us with an incarnation we never used
            return False
        m = self.members.get(name)
        if m is None or boot > m.boot:
            if self.reaped.get(name, -1) >= boot or (name, boot) in self.retired:
                self.count("stale_identity")
                return False
            if m is not None:
                self._retire(m, now_ms)
            m = Member(name, address, boot, inc, ALIVE, now_ms)
            self.members[name] = m
            self.view ^= identity_hash(name, boot)
            self._track(m)
            self.reaped.pop(name, None)
            self._lost.pop(name, None)
            self.events.append(MemberEvent(name, "alive", None, inc, boot, address, now_ms, 0))
            self._queue((ALIVE_OP, name, boot, inc, address))
            return True
        if boot < m.boot or inc <= m.incarnation:
            return False
        previous = m.state
        m.incarnation = inc
        m.address = address or m.address
        self._set_state(m, ALIVE, now_ms)
        self._queue((ALIVE_OP, name, boot, inc, m.address))
        return previous != ALIVE

    def on_suspect(self, name: str, boot: int, inc: int, by: str, now_ms: int) -> None:
        if name == self.name:
            if boot == self.boot and inc >= self.me.incarnation and not self.leaving:
                self._refute(inc)
            return
        m = self.members.get(name)
        if m is None or m.boot != boot or inc < m.incarnation:
            return
        if m.state == SUSPECT and inc == m.incarnation:
            assert m.suspicion is not None
            if m.suspicion.confirm(by):
                self._queue((SUSPECT_OP, name, boot, inc, by))
            return
        if m.state in (DEAD, LEFT):
            return
        self._suspect(m, inc, by, now_ms)
        if by != self.name:
            # Probe it next rather than when the round-robin comes to it: our own failed probe
            # is the independent confirmation that brings its timer down to the minimum (and a
            # ping tells a live suspect to refute), within one interval instead of up to n.
            self._probe_first[name] = None

    def on_dead(self, name: str, boot: int, inc: int, by: str, now_ms: int) -> None:
        if name == self.name:
            if boot == self.boot and inc >= self.me.incarnation and not self.leaving:
                self._refute(inc)
            return
        m = self.members.get(name)
        if m is None or m.boot != boot or inc < m.incarnation:
            return
        if m.state in (DEAD, LEFT) and not (by == name and m.state == DEAD):
            return
        self._declare(m, LEFT if by == name else DEAD, inc, by, now_ms)

    def merge_rows(self, rows: list[Row], now_ms: int, *, adopt_reaped: bool = False) -> None:
        """A pull reply's rows (memberlist ``mergeState``): what we do not know is added in its
        state; a member reported dead is only suspected until we confirm it ourselves.

        ``adopt_reaped``: the rows come from the member we reset to rejoin: whom it reaped, we
        reap too, even if we have heard from them since (they have yet to reset themselves).
        """
        for name, address, boot, inc, state, _seen in rows:
            if state == REAPED:
                m = self.members.get(name)
                if name == self.name:
                    continue
                if m is not None and m.boot == boot and adopt_reaped:
                    self._forget(m, now_ms)
                elif m is None or m.boot < boot:
                    if m is not None:
                        self._retire(m, now_ms)
                    self._remember_reaped(name, boot)
                continue
            m = self.members.get(name)
            if name != self.name and (m is None or boot > m.boot):
                if self.reaped.get(name, -1) >= boot or (name, boot) in self.retired:
                    continue
                if state == ALIVE:
                    self.on_alive(name, boot, inc, address, now_ms)
                    continue
                if m is not None:
                    self._retire(m, now_ms)
                m = Member(name, address, boot, inc, ALIVE, now_ms)
                self.members[name] = m
                self.view ^= identity_hash(name, boot)
                self.reaped.pop(name, None)
                self.events.append(MemberEvent(name, "alive", None, inc, boot, address, now_ms, 0))
                self._track(m)
                if state == SUSPECT:
                    self._suspect(m, inc, self.name, now_ms)
                else:
                    self._declare(m, state, inc, name if state == LEFT else self.name, now_ms)
                continue
            if state == ALIVE:
                self.on_alive(name, boot, inc, address, now_ms)
            elif state in (SUSPECT, DEAD):
                self.on_suspect(name, boot, inc, self.name, now_ms)
            elif state == LEFT:
                self.on_dead(name, boot, inc, name, now_ms)

    def leave(self, now_ms: int) -> None:
        """Graceful leave: announce our own departure (a dead message from ourselves)."""
        if self.leaving:
            return
        self.leaving = True
        self.me.state = LEFT
        self.me.since_ms = now_ms
        self._queue((DEAD_OP, self.name, self.boot, self.me.incarnation, self.name))

    # -- state changes ---------------------------------------------------------------------

    def _refute(self, accused: int) -> None:
        self.me.incarnation = max(self.me.incarnation, accused) + 1
        self._adjust_health(1)
        self.count("refutations")
        self._queue((ALIVE_OP, self.name, self.boot, self.me.incarnation, self.address))

    def _suspect(self, m: Member, inc: int, by: str, now_ms: int) -> None:
        n = self.alive_count()
        k = self.profile.confirmations_wanted(n)
        m.incarnation = inc
        m.suspicion = Suspicion(by, now_ms, k, self.profile.suspicion_min_ms(n), self.profile.suspicion_max_ms(n))
        self._set_state(m, SUSPECT, now_ms)
        self._queue((SUSPECT_OP, m.name, m.boot, inc, by))

    def _declare(self, m: Member, state: int, inc: int, by: str, now_ms: int) -> None:
        m.incarnation = inc
        self._set_state(m, state, now_ms)
        self._queue((DEAD_OP, m.name, m.boot, inc, by))

    def _set_state(self, m: Member, state: int, now_ms: int) -> None:
        previous = m.state
        if previous == state:
            return
        if previous == ALIVE and state in (SUSPECT, DEAD):
            m.flaps += 1
        m.state = state
        m.since_ms = now_ms
        if state != SUSPECT:
            m.suspicion = None
            self._suspects.pop(m.name, None)
        else:
            self._suspects[m.name] = None
        if state in (ALIVE, SUSPECT):
            self._dead.pop(m.name, None)
            self._track(m)
        else:
            self._dead[m.name] = None
            self._untrack(m)
        self.events.append(MemberEvent(m.name, STATE_NAMES[state], STATE_NAMES[previous], m.incarnation, m.boot,
                                       m.address, now_ms, m.flaps))

    def _retire(self, m: Member, now_ms: int) -> None:
        """An identity superseded by a newer boot of the same name: it counts a little longer."""
        self._untrack(m)
        self._dead.pop(m.name, None)
        self._suspects.pop(m.name, None)
        self.view ^= identity_hash(m.name, m.boot)
        self.retired[(m.name, m.boot)] = now_ms + self.profile.left_grace_ms
        self.updates.discard(m.name)

    def _track(self, m: Member) -> None:
        if m.name != self.name and m.state in (ALIVE, SUSPECT):
            self.active.add(m.name)

    def _untrack(self, m: Member) -> None:
        self.active.discard(m.name)

    def _queue(self, update: Update) -> None:
        self.updates.push(update[1], update)

    def piggyback(self, budget_bytes: int = PIGGYBACK_BYTES) -> list[Update]:
        limit = self.profile.retransmit_limit(self.alive_count())
        return [u for _, u in self.updates.take(limit, budget_bytes, _update_size)]

    def reset(self, boot: int, keep: str | None, now_ms: int) -> None:
        """Start over as a new identity knowing only ``keep`` (the member that told us to reset)."""
        kept = self.members.get(keep) if keep is not None else None
        self.boot = boot
        self.me = Member(self.name, self.address, boot, 0, ALIVE, now_ms)
        self.members = {self.name: self.me}
        self.view = identity_hash(self.name, boot)
        self.reaped.clear()
        self._lost.clear()
        self.retired.clear()
        self.active.clear()
        self._dead.clear()
        self._suspects.clear()
        self._probe = None
        self._order = iter(())
        self._probe_first.clear()
        self._relays.clear()
        self._reconnects.clear()
        self.updates.clear()
        self.health = 0
        if kept is not None:
            fresh = Member(kept.name, kept.address, kept.boot, kept.incarnation, ALIVE, now_ms)
            self.members[kept.name] = fresh
            self.view ^= identity_hash(kept.name, kept.boot)
            self._track(fresh)
        self._queue((ALIVE_OP, self.name, boot, 0, self.address))


def _update_size(name: str, update: Update) -> int:
    return 24 + len(update[1]) + len(update[4])
