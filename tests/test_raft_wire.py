"""Raft messages on the wire, and entries and snapshots in the desired plane's files.

A peer's message is trusted for nothing: every malformed message is refused with a
reason naming what is wrong, counted, and changes nothing; the core never raises.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.raft_harness import CLUSTER, SETTINGS, member
from vfsd.desired.log import LogEntry, WriteAheadLog
from vfsd.desired.snapshot import Snapshot, SnapshotStore
from vfsd.raft import ConfChange, Entry, EntryKind, HardState, MembershipConfig, RaftCore, WireError, message_from_wire
from vfsd.raft import messages as m
from vfsd.raft.config import ChangeOp, ConfigWireError, encode_change, encode_config_entry
from vfsd.raft.records import RecordError, decode_entry, decode_snapshot, encode_entry, encode_snapshot

ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
uints = st.integers(0, (1 << 63) - 1)
small = st.integers(0, 1000)
configs = st.lists(ids, min_size=1, max_size=5, unique=True).map(
    lambda names: MembershipConfig([member(n) for n in names[:3]], [member(n) for n in names[3:]]))
metas = st.builds(m.SnapshotMeta, st.integers(1, 1000), st.integers(1, 50), uints, configs)


@st.composite
def entry_runs(draw: Any, term: int, prev_index: int, prev_term: int) -> list[Entry]:
    out = []
    index, t = prev_index, prev_term
    for _ in range(draw(st.integers(0, 4))):
        index += 1
        t = draw(st.integers(max(t, 1), term)) if t <= term else term
        kind = draw(st.sampled_from([EntryKind.NORMAL, EntryKind.NOOP, EntryKind.CONFIG]))
        data = (encode_config_entry(None, draw(configs)) if kind == EntryKind.CONFIG
                else draw(st.binary(max_size=20)))
        out.append(Entry(index, t, int(kind), draw(uints), draw(st.sampled_from(["", "n1", "n2"])),
                         draw(small), data))
    return out


@st.composite
def messages(draw: Any) -> m.Message:
    head = (CLUSTER, draw(ids), draw(ids), draw(st.integers(1, 60)))
    term = head[3]
    kind = draw(st.sampled_from(list(m.MessageType)))
    t = m.MessageType
    if kind == t.PRE_VOTE:
        return m.PreVote(*head, draw(small), draw(small))
    if kind == t.VOTE:
        return m.Vote(*head, draw(small), draw(small), draw(st.booleans()))
    if kind in (t.PRE_VOTE_RESPONSE, t.VOTE_RESPONSE):
        cls = m.PreVoteResponse if kind == t.PRE_VOTE_RESPONSE else m.VoteResponse
        return cls(*head, draw(st.booleans()))
    if kind == t.APPEND:
        prev_index, prev_term = draw(small), draw(st.integers(0, term))
        return m.Append(*head, prev_index, prev_term, draw(small), draw(entry_runs(term, prev_index, prev_term)))
    if kind == t.APPEND_RESPONSE:
        return m.AppendResponse(*head, draw(small), draw(st.booleans()), draw(small), draw(small))
    if kind == t.HEARTBEAT:
        return m.Heartbeat(*head, draw(small), draw(small), draw(small))
    if kind == t.HEARTBEAT_RESPONSE:
        return m.HeartbeatResponse(*head, draw(small))
    if kind == t.SNAPSHOT_CHUNK:
        meta = draw(metas.filter(lambda x: x.term <= term))
        data = draw(st.binary(max_size=30))
        offset = draw(st.integers(0, 10))
        return m.SnapshotChunk(*head, meta, offset + len(data) + draw(st.integers(0, 5)), offset, data)
    if kind == t.SNAPSHOT_CHUNK_RESPONSE:
        return m.SnapshotChunkResponse(*head, draw(small), draw(small))
    if kind == t.TIMEOUT_NOW:
        return m.TimeoutNow(*head)
    if kind == t.PROPOSE:
        proposals = draw(st.lists(st.one_of(
            st.builds(m.Proposal, st.integers(1, 99), st.just(int(EntryKind.NORMAL)), st.binary(max_size=10)),
            st.builds(lambda s, n: m.Proposal(s, int(EntryKind.CONFIG), encode_change(ConfChange.remove_voter(n))),
                      st.integers(1, 99), ids)), max_size=3))
        return m.Propose(*head, proposals)
    if kind == t.PROPOSE_REJECT:
        return m.ProposeReject(*head, draw(st.lists(st.integers(1, 99), max_size=3)), draw(st.text(max_size=20)))
    if kind == t.READ_INDEX:
        return m.ReadIndex(*head, draw(st.lists(st.binary(max_size=8), max_size=3)))
    if kind == t.READ_INDEX_RESPONSE:
        reject = draw(st.booleans())
        return m.ReadIndexResponse(*head, draw(st.lists(st.binary(max_size=8), max_size=3)),
                                   draw(small if reject else st.integers(1, 1000)), reject, draw(st.text(max_size=20)))
    return m.TransferLeadership(*head, draw(ids))


def over_the_wire(message: m.Message) -> Any:
    return msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True), raw=False)


@settings(max_examples=200, deadline=None)
@given(messages())
def test_every_message_survives_msgpack_unchanged(message: m.Message) -> None:
    assert message_from_wire(over_the_wire(message)) == message


def _valid(kind: str) -> list[Any]:
    cfg = MembershipConfig([member("n1")])
    samples = {
        "append": m.Append(CLUSTER, "n1", "n2", 3, 1, 1, 1, [Entry(2, 3, 0, 5, "n1", 1, b"x")]),
        "vote": m.Vote(CLUSTER, "n1", "n2", 3, 1, 1, False),
        "chunk": m.SnapshotChunk(CLUSTER, "n1", "n2", 3, m.SnapshotMeta(4, 2, 0, cfg), 10, 0, b"abc"),
        "heartbeat": m.Heartbeat(CLUSTER, "n1", "n2", 3, 1, 0),
    }
    return over_the_wire(samples[kind])  # type: ignore[no-any-return]


def _with(kind: str, position: int, value: Any) -> list[Any]:
    wire = _valid(kind)
    wire[position] = value
    return wire


MALFORMED = [
    ("not a list", "expected [type"),
    ([], "expected [type"),
    ([99, CLUSTER, "a", "b", 1], "unknown type 99"),
    ([True, CLUSTER, "a", "b", 1], "unknown type"),
    ([7, CLUSTER, "a", "b", -1, 0, 0], "term"),
    ([7, CLUSTER, "", "b", 1, 0, 0], "sender"),
    ([7, CLUSTER, "a" * 300, "b", 1, 0, 0], "sender"),
    ([7, 5, "a", "b", 1, 0, 0], "cluster_id"),
    ([7, CLUSTER, "a", "b", 1, 0], "expected 2 or 3 fields"),
    ([7, CLUSTER, "a", "b", 1, 0, 0, 0], "commit_term"),
    ([7, CLUSTER, "a", "b", 1, 0, 0, "1"], "commit_term"),
    ([7, CLUSTER, "a", "b", 1, 0, 0, 1, 0], "expected 2 or 3 fields"),
    ([7, CLUSTER, "a", "b", 1, "0", 0], "commit"),
    ([7, CLUSTER, "a", "b", 1, 0, 1 << 64], "read_round"),
    (_with("heartbeat", 5, 1.5), "commit"),
    (_with("vote", 7, 1), "transfer: expected true or false"),
    (_with("append", 8, "entries"), "entries: expected a list"),
    (_with("append", 8, [[2, 3, 0, 5, "n1", 1]]), "entry: expected"),
    (_with("append", 8, [[3, 3, 0, 5, "n1", 1, b"x"]]), "entry index 3, expected 2"),
    (_with("append", 8, [[2, 9, 0, 5, "n1", 1, b"x"]]), "outside 1..3"),
    (_with("append", 8, [[2, 3, 7, 5, "n1", 1, b"x"]]), "unknown kind 7"),
    (_with("append", 8, [[2, 3, 0, 5, "n1", 1, "text"]]), "data must be bytes"),
    (_with("append", 8, [[2, 3, 2, 5, "n1", 1, b"\xc1"]]), "configuration entry"),
    (_with("append", 6, 9), "prev_term 9 is above the message term 3"),
    (_with("chunk", 6, 2), "lie past the total"),
    (_with("chunk", 5, [4, 2, 0, [[["n1", "n1"]], []]]), "member: expected"),
    (_with("chunk", 5, [0, 2, 0, [[], []]]), "bad snapshot point"),
    ([12, CLUSTER, "a", "b", 1, [[0, 0, b""]]], "proposal seq"),
    ([12, CLUSTER, "a", "b", 1, [[1, 1, b""]]], "kind must be NORMAL or CONFIG"),
    ([12, CLUSTER, "a", "b", 1, [[1, 2, msgpack.packb([9, "x", "", ""])]]], "unknown operation 9"),
    ([14, CLUSTER, "a", "b", 1, ["ctx"]], "every item must be bytes"),
    ([13, CLUSTER, "a", "b", 1, [1], "x" * 600], "reason"),
    ([16, CLUSTER, "a", "b", 1, ""], "target"),
    ([15, CLUSTER, "a", "b", 1, [b"r"], 0, False, ""], "index: expected an integer in 1.."),
]


@pytest.mark.parametrize(("wire", "reason"), MALFORMED)
def test_malformed_messages_are_refused_with_the_reason(wire: Any, reason: str) -> None:
    with pytest.raises(WireError, match=None) as caught:
        message_from_wire(wire)
    assert reason in str(caught.value), str(caught.value)


def _core() -> RaftCore:
    class NoSnapshots:
        def snapshot_data(self, index: int) -> bytes | None:
            return None

    core = RaftCore.bootstrap(SETTINGS, cluster_id=CLUSTER, member_id="n2", members=[member("n1"), member("n2")],
                              rng=random.Random(0), now_ms=0, snapshots=NoSnapshots())
    core.advance(core.ready())
    return core


@pytest.mark.parametrize(("wire", "reason"), MALFORMED[:12])
def test_the_core_refuses_garbage_counts_it_and_changes_nothing(wire: Any, reason: str) -> None:
    core = _core()
    before = (core.term, core.voted_for, core.commit_index, core.last_index)
    refused = core.step_wire(wire, 0)
    assert refused is not None and reason in refused
    assert core.stats == {"refused: malformed": 1}
    assert (core.term, core.voted_for, core.commit_index, core.last_index) == before and not core.has_ready()


wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 17), st.booleans(), st.integers(0, 5), st.lists(wire_values, max_size=6))
def test_no_input_from_a_peer_makes_the_core_raise(kind: int, addressed: bool, term: int, body: list[Any]) -> None:
    """Garbage, and well-formed headers with garbage bodies (which reach the core's own
    checks when they happen to decode): the answer is None or a reason, never an exception."""
    core = _core()
    head: list[Any] = [CLUSTER, "n1", "n2", term] if addressed else body[:4]
    result = core.step_wire([kind, *head, *body], 0)
    assert result is None or isinstance(result, str)
    core.has_ready() and core.advance(core.ready())


@settings(max_examples=100, deadline=None)
@given(messages(), st.data())
def test_a_valid_message_with_one_field_replaced_decodes_or_is_refused(message: m.Message, data: Any) -> None:
    wire = list(over_the_wire(message))
    position = data.draw(st.integers(0, len(wire) - 1))
    wire[position] = data.draw(wire_values)
    try:
        decoded = message_from_wire(wire)
    except WireError as exc:
        assert str(exc)
    else:
        assert isinstance(decoded, m.Message)


def test_configurations_and_changes_check_what_they_are_given() -> None:
    cfg = MembershipConfig([member("n1"), member("n2")], [member("n3")])
    assert MembershipConfig.from_wire(cfg.to_wire()) == cfg
    with pytest.raises(ConfigWireError, match="listed twice"):
        MembershipConfig.from_wire([[member("n1").to_wire()], [member("n1").to_wire()]])
    with pytest.raises(ConfigWireError, match="unknown operation"):
        ConfChange.from_wire([0, "n1", "", ""])
    assert cfg.apply(ConfChange.promote("n3")).voter_ids == {"n1", "n2", "n3"}
    assert cfg.apply(ConfChange.remove_learner("n3")).learner_ids == frozenset()
    assert cfg.apply(ConfChange(ChangeOp.ADD_LEARNER, "n4", "n4", "h:1")).members["n4"].address == "h:1"


# -- records: the write-ahead log and snapshot files --------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**6), st.sampled_from([0, 1, 2]), uints, st.text(max_size=10),
       uints, st.binary(max_size=40))
def test_an_entry_survives_its_log_record(index: int, term: int, kind: int, time_ms: int, origin: str, seq: int,
                                          data: bytes) -> None:
    if kind == EntryKind.CONFIG:
        data = encode_config_entry(None, MembershipConfig([member("n1")]))
    entry = Entry(index, term, kind, time_ms, origin, seq, data)
    assert decode_entry(index, term, encode_entry(entry)) == entry


def test_a_record_written_before_raft_reads_as_a_normal_entry_with_its_time() -> None:
    legacy = msgpack.packb({"t": 1234, "o": "n1", "ops": [[b"SET", b"/ctx/a", b"1"]]}, use_bin_type=True)
    entry = decode_entry(7, 1, legacy)
    assert (entry.kind, entry.time_ms, entry.data, entry.origin) == (EntryKind.NORMAL, 1234, legacy, "")
    for bad in (b"\xc1", msgpack.packb([2, 0, 0, "", 0, b""]), msgpack.packb("text")):
        with pytest.raises(RecordError):
            decode_entry(7, 1, bad)


def test_a_snapshot_file_holds_its_meta_and_state() -> None:
    meta = m.SnapshotMeta(9, 3, 777, MembershipConfig([member("n1")], [member("n2")]))
    assert decode_snapshot(9, 3, encode_snapshot(meta, b"state")) == (meta, b"state")
    legacy_rows = msgpack.packb([[b"/ctx/a", b"1", 0, 3, "n1", 0, 0, None]], use_bin_type=True)
    assert decode_snapshot(9, 1, legacy_rows) == (None, legacy_rows)
    with pytest.raises(RecordError, match="meta"):
        decode_snapshot(8, 3, encode_snapshot(meta, b"state"))


def test_a_core_restarts_from_the_write_ahead_log_and_snapshot_store(tmp_path: Path) -> None:
    """The mapping end to end, with the desired plane's real files: the entries of the
    Readies go through records into WriteAheadLog, a snapshot into SnapshotStore; a new
    core restored from what they read back has the same log, commit and members."""

    class Source:
        def __init__(self) -> None:
            self.data: dict[int, bytes] = {}

        def snapshot_data(self, index: int) -> bytes | None:
            return self.data.get(index)

    source = Source()
    core = RaftCore.bootstrap(SETTINGS, cluster_id=CLUSTER, member_id="n1", members=[member("n1")],
                              rng=random.Random(3), now_ms=5, snapshots=source)
    wal = WriteAheadLog.open(tmp_path)
    snapshots = SnapshotStore(tmp_path)
    hard = HardState()

    def carry_out() -> None:
        nonlocal hard
        while core.has_ready():
            rd = core.ready()
            if rd.truncate_from is not None:
                wal.truncate_suffix(rd.truncate_from)
            wal.append([LogEntry(e.index, e.term, encode_entry(e)) for e in rd.entries])
            wal.sync()
            if rd.hard_state is not None:
                hard = rd.hard_state
            core.advance(rd)

    carry_out()
    for _ in range(core.randomized_election_ticks):
        core.tick(10)
    carry_out()
    for i in range(5):
        core.propose(b"w%d" % i, 20 + i)
        carry_out()
    meta = core.snapshot_meta_at(4)
    snapshots.save(Snapshot(meta.index, meta.term, encode_snapshot(meta, b"machine state at 4")))
    wal.compact(*core.compact(4))
    core.propose(b"w5", 30)
    carry_out()
    wal.close()

    reopened = WriteAheadLog.open(tmp_path)
    saved = SnapshotStore(tmp_path).load()
    assert saved is not None
    loaded_meta, state = decode_snapshot(saved.index, saved.term, saved.data)
    entries = [decode_entry(e.index, e.term, e.data) for e in reopened.entries(reopened.first_index,
                                                                            reopened.last_index + 1)]
    again = RaftCore.restore(SETTINGS, cluster_id=CLUSTER, member_id="n1", hard_state=hard, snapshot=loaded_meta,
                             entries=entries, applied_index=loaded_meta.index if loaded_meta else 0,
                             rng=random.Random(4), now_ms=40, snapshots=source)
    assert state == b"machine state at 4"
    assert again.log.entries == core.log.entries and again.commit_index == core.commit_index == core.last_index
    assert again.config == core.config and again.term == core.term
    rd = again.ready()
    # Entries 3.. are w0..; the snapshot covers 1-4, so w2.. are replayed.
    assert [e.data for e in rd.committed_entries] == [b"w2", b"w3", b"w4", b"w5"]
    reopened.close()


def test_a_one_voter_data_dir_from_before_raft_comes_up_as_a_one_voter_cluster(tmp_path: Path) -> None:
    """Today's desired plane writes machine payloads straight into the log (term 1, no
    configuration anywhere). The shell restores it with the configuration supplied in
    the snapshot meta (index 0 when there is no snapshot): the node elects itself and
    its existing entries stay committed; new entries follow them."""
    wal = WriteAheadLog.open(tmp_path)
    legacy = [msgpack.packb({"t": 1000 + i, "o": "n1", "ops": [[b"SET", b"/ctx/k", b"%d" % i]]}, use_bin_type=True)
              for i in range(3)]
    wal.append([LogEntry(i + 1, 1, data) for i, data in enumerate(legacy)])
    wal.close()
    wal = WriteAheadLog.open(tmp_path)
    entries = [decode_entry(e.index, e.term, e.data) for e in wal.entries(1, wal.last_index + 1)]

    class NoSnapshots:
        def snapshot_data(self, index: int) -> bytes | None:
            return None

    core = RaftCore.restore(SETTINGS, cluster_id=CLUSTER, member_id="n1-1a2b", hard_state=HardState(),
                            snapshot=m.SnapshotMeta(0, 0, 0, MembershipConfig([member("n1-1a2b")])),
                            entries=entries, applied_index=3, rng=random.Random(0), now_ms=2000,
                            snapshots=NoSnapshots())
    assert [e.time_ms for e in entries] == [1000, 1001, 1002]
    for _ in range(2 * SETTINGS.election_ticks):
        core.tick(2000)
        while core.has_ready():
            core.advance(core.ready())
    assert core.role_name == "leader" and core.commit_index == 4  # the legacy entries and the no-op
    core.propose(b"new", 2001)
    rd = core.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(5, core.term)] and rd.entries[0].time_ms >= 2001
    wal.close()
