"""Write-ahead log, snapshot store and hard-state store of the desired plane.

The log is checked through what its owner (the Raft shell) can observe: indexes, terms,
entries read back, what survives a reopen, and which damage refuses to start.
"""

from __future__ import annotations

import ast
import logging
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import vfsd.desired.log as log_module
import vfsd.desired.snapshot as snapshot_module
from vfsd.desired.log import LogCorruption, LogEntry, WriteAheadLog
from vfsd.desired.snapshot import (
    HardState,
    HardStateCorruption,
    HardStateStore,
    Snapshot,
    SnapshotCorruption,
    SnapshotStore,
)

SEGMENT_HEADER_BYTES = 20


def entry(index: int, term: int = 1) -> LogEntry:
    return LogEntry(index, term, f"payload-{index}-{term}".encode())


def fill(log: WriteAheadLog, upto: int, term: int = 1) -> list[LogEntry]:
    new = [entry(i, term) for i in range(log.last_index + 1, upto + 1)]
    log.append(new)
    log.sync()
    return new


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"))


def reopen(log: WriteAheadLog, directory: Path, **kwargs: int) -> WriteAheadLog:
    log.close()
    return WriteAheadLog.open(directory, **kwargs)


def all_entries(log: WriteAheadLog) -> list[LogEntry]:
    return log.entries(log.first_index, log.last_index + 1)


# -- basic round trip ---------------------------------------------------------------


def test_new_log_is_empty(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path / "wal")
    assert (log.first_index, log.last_index, log.last_term) == (1, 0, 0)
    assert log.term_at(0) == 0
    assert log.term_at(1) is None
    assert log.entries(1, 10) == []
    assert log.size_bytes == 0
    log.close()


def test_append_sync_reopen_round_trip(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    written = [entry(1, 1), entry(2, 1), entry(3, 2), LogEntry(4, 2, b"")]
    log.append(written[:2])
    log.append(written[2:])
    assert log.entries(2, 4) == written[1:3]
    log = reopen(log, tmp_path)
    assert (log.first_index, log.last_index, log.last_term) == (1, 4, 2)
    assert all_entries(log) == written
    assert [log.term_at(i) for i in range(0, 6)] == [0, 1, 1, 2, 2, None]
    assert log.entries(3, 100) == written[2:]
    log.append([entry(5, 3)])
    log = reopen(log, tmp_path)
    assert log.last_index == 5 and log.last_term == 3
    log.close()


def test_append_rejects_gaps_and_decreasing_terms(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    fill(log, 3, term=2)
    with pytest.raises(AssertionError):
        log.append([entry(5, 2)])
    with pytest.raises(AssertionError):
        log.append([entry(3, 2)])
    with pytest.raises(AssertionError):
        log.append([entry(4, 1)])
    log.close()


def test_segments_roll_and_reopen(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=128)
    written = fill(log, 40, term=3)
    files = segments(tmp_path)
    assert len(files) > 5
    assert files[0].name == "wal-00000000000000000001.log"
    assert all(path.stat().st_size <= 128 for path in files)
    # Earlier segments are exact; the active one may hold preallocated (zero) space past its records.
    earlier = sum(path.stat().st_size for path in files[:-1])
    used = log.size_bytes - earlier
    tail = files[-1].read_bytes()
    assert used <= len(tail) and not any(tail[used:])
    assert all(path.read_bytes()[-1] != 0 for path in files[:-1])
    log = reopen(log, tmp_path, segment_max_bytes=128)
    assert files[-1].stat().st_size == used  # a clean close cuts the preallocated space off
    assert all_entries(log) == written
    assert log.entries(17, 23) == written[16:22]
    log.close()


def test_oversized_record_gets_its_own_segment(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=64)
    log.append([entry(1), LogEntry(2, 1, b"x" * 500), entry(3)])
    log = reopen(log, tmp_path, segment_max_bytes=64)
    assert log.entries(2, 3)[0].data == b"x" * 500
    assert len(segments(tmp_path)) == 3
    log.close()


# -- torn tails and corruption -------------------------------------------------------


def test_torn_last_record_at_every_cut_point(tmp_path: Path) -> None:
    """A crash during append leaves any prefix of the last segment; all of it recovers."""
    origin = tmp_path / "origin"
    log = WriteAheadLog.open(origin, segment_max_bytes=150)
    fill(log, 7)
    last_segment = segments(origin)[-1]
    last_segment_first = int(last_segment.name[4:24])
    log.close()
    full = last_segment.read_bytes()
    earlier_bytes = sum(path.stat().st_size for path in segments(origin)[:-1])
    assert last_segment_first < 7  # the last segment holds at least two records
    # Where each record of the last segment ends, measured by replaying the appends.
    record_ends: list[int] = []
    probe = WriteAheadLog.open(tmp_path / "measure", segment_max_bytes=150)
    for i in range(1, 8):
        probe.append([entry(i)])
        if i >= last_segment_first:
            record_ends.append(probe.size_bytes - earlier_bytes)
    probe.close()
    assert record_ends[-1] == len(full)

    for cut in range(0, len(full)):
        case = tmp_path / f"cut-{cut}"
        shutil.copytree(origin, case)
        (case / last_segment.name).write_bytes(full[:cut])
        reopened = WriteAheadLog.open(case, segment_max_bytes=150)
        whole_records = sum(1 for end in record_ends if end <= cut)
        expected_last = last_segment_first - 1 + whole_records
        assert reopened.last_index == expected_last, cut
        assert all_entries(reopened) == [entry(i) for i in range(1, expected_last + 1)]
        valid_end = record_ends[whole_records - 1] if whole_records else SEGMENT_HEADER_BYTES
        # Cut back to the last whole record; a cut that leaves only zeros past it (a record
        # length's high bytes) is kept as space to write into.
        kept = valid_end if any(full[valid_end:cut]) else max(cut, valid_end)
        assert (case / last_segment.name).stat().st_size == kept, cut
        # It can append again, and that survives another reopen.
        reopened.append([entry(expected_last + 1, 2)])
        reopened = reopen(reopened, case, segment_max_bytes=150)
        assert reopened.last_index == expected_last + 1
        assert reopened.term_at(expected_last + 1) == 2
        reopened.close()
        shutil.rmtree(case)


def _log_with_records(directory: Path, count: int) -> tuple[Path, list[int]]:
    """One segment of ``count`` records; returns its path and each record's offset."""
    log = WriteAheadLog.open(directory)
    offsets = []
    for i in range(1, count + 1):
        offsets.append(log.size_bytes if i > 1 else SEGMENT_HEADER_BYTES)
        log.append([entry(i)])
    log.close()
    return segments(directory)[0], offsets


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["length", "crc", "body"])
def test_damaged_last_record_is_truncated(tmp_path: Path, where: str) -> None:
    path, offsets = _log_with_records(tmp_path, 5)
    _flip(path, offsets[-1] + {"length": 3, "crc": 5, "body": 12}[where])
    log = WriteAheadLog.open(tmp_path)
    assert log.last_index == 4
    assert path.stat().st_size == offsets[-1]
    log.append([entry(5, 2)])
    log = reopen(log, tmp_path)
    assert log.term_at(5) == 2
    log.close()


@pytest.mark.parametrize("where", ["length-high", "length-low", "crc", "body", "zeroed"])
def test_damaged_middle_record_refuses_to_start(tmp_path: Path, where: str) -> None:
    path, offsets = _log_with_records(tmp_path, 6)
    if where == "zeroed":
        data = bytearray(path.read_bytes())
        data[offsets[2] : offsets[3]] = bytes(offsets[3] - offsets[2])
        path.write_bytes(bytes(data))
    else:
        delta = {"length-high": 0, "length-low": 3, "crc": 5, "body": 12}[where]
        _flip(path, offsets[2] + delta)
    with pytest.raises(LogCorruption) as excinfo:
        WriteAheadLog.open(tmp_path)
    assert excinfo.value.path == path
    assert excinfo.value.offset == offsets[2]
    assert path.name in str(excinfo.value) and str(offsets[2]) in str(excinfo.value)


def test_damage_in_an_earlier_segment_refuses_to_start(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 12)
    log.close()
    first = segments(tmp_path)[0]
    size = first.stat().st_size
    first.write_bytes(first.read_bytes()[: size - 3])  # torn tail, but not the last segment
    with pytest.raises(LogCorruption) as excinfo:
        WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    assert excinfo.value.path == first


def test_missing_middle_segment_refuses_to_start(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 12)
    log.close()
    segments(tmp_path)[1].unlink()
    with pytest.raises(LogCorruption, match="previous one ends"):
        WriteAheadLog.open(tmp_path, segment_max_bytes=100)


def test_zero_filled_tail_is_space_to_write_into(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, offsets = _log_with_records(tmp_path, 4)
    good = path.read_bytes()
    path.write_bytes(good + bytes(4096))  # preallocated space (or a page allocated but never written)
    with caplog.at_level(logging.WARNING, logger="vfsd.desired.log"):
        log = WriteAheadLog.open(tmp_path)
    assert log.last_index == 4 and not caplog.records  # nothing was torn: no repair, no warning
    log.append([entry(5, 2)])
    log.sync()
    assert path.stat().st_size == len(good) + 4096  # written into the zeros, the file did not grow
    log = reopen(log, tmp_path)
    assert log.last_index == 5 and log.term_at(5) == 2
    log.close()
    good = path.read_bytes()
    # The last record itself zeroed (its page never reached the disk): the log ends before it.
    path.write_bytes(good[: offsets[-1]] + bytes(len(good) - offsets[-1]) + bytes(100))
    log = WriteAheadLog.open(tmp_path)
    assert log.last_index == 3
    log.append([entry(4, 3)])
    log = reopen(log, tmp_path)
    assert [e.term for e in all_entries(log)] == [1, 1, 1, 3]
    log.close()


def test_preallocated_active_segment_and_exact_rolled_ones(tmp_path: Path) -> None:
    """sync writes into space the file already has (so fdatasync has no size to commit); a rolled
    segment is cut to its records before the next one exists."""
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=1 << 20)
    fill(log, 3)
    (active,) = segments(tmp_path)
    size = active.stat().st_size
    assert size == 1 << 20 > log.size_bytes  # preallocated up to the segment's limit
    fill(log, 50)
    assert active.stat().st_size == size
    log.append([LogEntry(51, 1, b"x" * (1 << 20))])  # rolls: the old segment is cut to its records
    log.sync()
    first, second = segments(tmp_path)
    # The record larger than the limit has a segment of its own, allocated to just what it needs.
    assert first.stat().st_size + second.stat().st_size == log.size_bytes
    assert first.read_bytes()[-1] != 0
    log = reopen(log, tmp_path, segment_max_bytes=1 << 20)
    assert log.last_index == 51 and log.entries(51, 52)[0].data == b"x" * (1 << 20)
    log.close()


def test_zero_filled_segment_header_is_rewritten(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 10)
    log.close()
    last = segments(tmp_path)[-1]
    first_in_last = int(last.name[4:24])
    last.write_bytes(bytes(512))  # created by a roll, contents never written
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    assert log.last_index == first_in_last - 1
    fill(log, 12, term=2)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert log.last_index == 12 and log.term_at(12) == 2
    log.close()


def test_bad_segment_magic_refuses_to_start(tmp_path: Path) -> None:
    path, _ = _log_with_records(tmp_path, 2)
    path.write_bytes(b"NOTAWAL!" + path.read_bytes()[8:])
    with pytest.raises(LogCorruption, match="magic"):
        WriteAheadLog.open(tmp_path)


# -- truncate_suffix (Raft §5.3) -----------------------------------------------------


def test_truncate_suffix_inside_a_segment(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    fill(log, 10, term=1)
    log.truncate_suffix(7)
    assert log.last_index == 6 and log.last_term == 1
    log.append([entry(7, 2), entry(8, 2)])
    log = reopen(log, tmp_path)
    assert [log.term_at(i) for i in range(5, 10)] == [1, 1, 2, 2, None]
    assert log.entries(7, 9) == [entry(7, 2), entry(8, 2)]
    log.truncate_suffix(20)  # past the end: nothing to drop
    assert log.last_index == 8
    log.close()


def test_truncate_suffix_across_segments(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 30, term=1)
    before = segments(tmp_path)
    log.truncate_suffix(5)
    after = segments(tmp_path)
    assert len(after) < len(before) and after == before[: len(after)]
    assert log.last_index == 4
    log.truncate_suffix(5)  # idempotent
    fill(log, 9, term=4)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert all_entries(log) == [entry(i, 1) for i in range(1, 5)] + [
        entry(i, 4) for i in range(5, 10)
    ]
    log.close()


def test_truncate_suffix_at_a_segment_boundary_and_to_empty(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 20)
    boundary = int(segments(tmp_path)[1].name[4:24])
    log.truncate_suffix(boundary)
    assert len(segments(tmp_path)) == 1 and log.last_index == boundary - 1
    log.truncate_suffix(1)
    assert segments(tmp_path) == [] and log.last_index == 0
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert log.last_index == 0
    fill(log, 3, term=5)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert all_entries(log) == [entry(i, 5) for i in range(1, 4)]
    log.close()


def test_truncate_suffix_refuses_compacted_entries(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    fill(log, 10)
    log.compact(5, 1)
    with pytest.raises(AssertionError):
        log.truncate_suffix(5)
    log.truncate_suffix(6)
    assert log.last_index == 5 and log.first_index == 6
    log.close()


# -- compaction ----------------------------------------------------------------------


def test_compact_then_reopen(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 10, term=1)
    fill(log, 30, term=2)
    before = len(segments(tmp_path))
    log.compact(20, 2)
    assert len(segments(tmp_path)) < before
    assert (log.first_index, log.last_index, log.last_term) == (21, 30, 2)
    assert log.term_at(20) == 2 and log.term_at(19) is None
    with pytest.raises(AssertionError):
        log.entries(19, 25)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert (log.first_index, log.last_index, log.last_term) == (21, 30, 2)
    assert all_entries(log) == [entry(i, 2) for i in range(21, 31)]
    log.compact(10, 1)  # older than the compaction point: no-op
    assert log.first_index == 21
    log.close()


def test_compact_whole_log_then_reopen(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 15, term=3)
    log.compact(15, 3)
    assert segments(tmp_path) == [] and log.size_bytes == 0
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert (log.first_index, log.last_index, log.last_term) == (16, 15, 3)
    assert log.term_at(15) == 3 and log.entries(16, 20) == []
    fill(log, 17, term=4)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert (log.first_index, log.last_index, log.last_term) == (16, 17, 4)
    assert segments(tmp_path)[0].name == "wal-00000000000000000016.log"
    log.close()


@pytest.mark.parametrize("upto_index, upto_term", [(8, 7), (50, 7)])
def test_compact_to_a_snapshot_the_log_does_not_match_discards_everything(
    tmp_path: Path, upto_index: int, upto_term: int
) -> None:
    """Raft §7: an installed snapshot whose last entry the log lacks replaces the log."""
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 20, term=1)
    log.compact(upto_index, upto_term)
    assert (log.first_index, log.last_index, log.last_term) == (
        upto_index + 1,
        upto_index,
        upto_term,
    )
    fill(log, upto_index + 2, term=upto_term)
    log = reopen(log, tmp_path, segment_max_bytes=100)
    assert all_entries(log) == [entry(upto_index + 1, 7), entry(upto_index + 2, 7)]
    log.close()


@pytest.mark.parametrize("upto_index, upto_term", [(12, 1), (20, 1), (8, 7), (50, 7)])
def test_compaction_interrupted_before_deleting_segments_is_finished_on_open(
    tmp_path: Path, upto_index: int, upto_term: int
) -> None:
    """wal.meta is the commit point: segments that outlive a crash are dropped on open."""
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 20, term=1)
    log.close()
    saved = {path.name: path.read_bytes() for path in segments(tmp_path)}
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    log.compact(upto_index, upto_term)
    expected = (log.first_index, log.last_index, log.last_term, all_entries(log))
    log.close()
    for name, data in saved.items():  # as if no unlink had reached the disk
        (tmp_path / name).write_bytes(data)
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    assert (log.first_index, log.last_index, log.last_term, all_entries(log)) == expected
    assert log.first_index == upto_index + 1
    log.close()


def test_gap_after_the_compaction_point_refuses_to_start(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=100)
    fill(log, 20)
    log.close()
    segments(tmp_path)[0].unlink()  # nothing was compacted, yet the log starts later
    with pytest.raises(LogCorruption, match="compacted"):
        WriteAheadLog.open(tmp_path, segment_max_bytes=100)


def test_damaged_meta_refuses_to_start(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    fill(log, 5)
    log.compact(3, 1)
    log.close()
    _flip(tmp_path / "wal.meta", 18)
    with pytest.raises(LogCorruption):
        WriteAheadLog.open(tmp_path)


# -- the log against a plain list ------------------------------------------------------


class LogAgainstList(RuleBasedStateMachine):
    """Random append / truncate / compact / reopen, compared with a Python list."""

    def __init__(self) -> None:
        super().__init__()
        self.model: list[LogEntry] = []  # entries after the compaction point
        self.compact_index = 0
        self.compact_term = 0

    @initialize()
    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="vfsd-wal-"))
        self.log = WriteAheadLog.open(self.directory, segment_max_bytes=120)

    @property
    def last_index(self) -> int:
        return self.compact_index + len(self.model)

    @property
    def last_term(self) -> int:
        return self.model[-1].term if self.model else self.compact_term

    @rule(count=st.integers(1, 6), term_bump=st.integers(0, 1), size=st.integers(0, 40))
    def append(self, count: int, term_bump: int, size: int) -> None:
        term = self.last_term + term_bump
        new = [
            LogEntry(self.last_index + k, term, bytes([k % 256]) * size)
            for k in range(1, count + 1)
        ]
        self.log.append(new)
        self.model.extend(new)

    @rule()
    def sync(self) -> None:
        self.log.sync()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def truncate_suffix(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.compact_index + 1, self.last_index + 1))
        self.log.truncate_suffix(index)
        del self.model[index - self.compact_index - 1 :]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.compact_index + 1, self.last_index))
        term = self.model[index - self.compact_index - 1].term
        self.log.compact(index, term)
        del self.model[: index - self.compact_index]
        self.compact_index, self.compact_term = index, term

    @rule(beyond=st.integers(0, 5))
    def install_snapshot(self, beyond: int) -> None:
        index = self.last_index + beyond + 1
        term = self.last_term + 1
        self.log.compact(index, term)
        self.model = []
        self.compact_index, self.compact_term = index, term

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = WriteAheadLog.open(self.directory, segment_max_bytes=120)

    @invariant()
    def matches_the_list(self) -> None:
        if not hasattr(self, "log"):
            return
        assert self.log.first_index == self.compact_index + 1
        assert self.log.last_index == self.last_index
        assert self.log.last_term == self.last_term
        assert self.log.term_at(self.compact_index) == self.compact_term
        assert self.log.term_at(self.compact_index - 1) is None or self.compact_index == 0
        assert self.log.term_at(self.last_index + 1) is None
        assert self.log.entries(self.compact_index + 1, self.last_index + 1) == self.model

    def teardown(self) -> None:
        if hasattr(self, "log"):
            self.log.close()
            reopened = WriteAheadLog.open(self.directory, segment_max_bytes=120)
            assert reopened.entries(self.compact_index + 1, self.last_index + 1) == self.model
            assert reopened.last_term == self.last_term
            reopened.close()
            shutil.rmtree(self.directory, ignore_errors=True)


LogAgainstList.TestCase.settings = settings(
    max_examples=40, stateful_step_count=20, deadline=None
)
TestLogAgainstList = LogAgainstList.TestCase


# -- snapshots -------------------------------------------------------------------------


def test_snapshot_save_load(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    assert store.load() is None
    store.save(Snapshot(10, 2, b"state at 10"))
    assert SnapshotStore(tmp_path / "snaps").load() == Snapshot(10, 2, b"state at 10")
    store.save(Snapshot(20, 3, b""))
    assert store.load() == Snapshot(20, 3, b"")


def test_snapshot_keeps_newest_two(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for index in (5, 10, 15, 20):
        store.save(Snapshot(index, 1, bytes([index]) * 100))
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["snap-00000000000000000015.snap", "snap-00000000000000000020.snap"]


@pytest.mark.parametrize("damage", ["flip-data", "flip-index", "truncate", "empty"])
def test_damaged_newest_snapshot_falls_back(tmp_path: Path, damage: str) -> None:
    store = SnapshotStore(tmp_path)
    store.save(Snapshot(10, 2, b"older state"))
    store.save(Snapshot(20, 3, b"newer state"))
    newest = tmp_path / "snap-00000000000000000020.snap"
    if damage == "flip-data":
        _flip(newest, newest.stat().st_size - 2)
    elif damage == "flip-index":
        _flip(newest, 19)
    elif damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:-4])
    else:
        newest.write_bytes(b"")
    assert store.load() == Snapshot(10, 2, b"older state")


def test_every_snapshot_damaged_refuses_to_start(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(Snapshot(10, 2, b"only state"))
    _flip(tmp_path / "snap-00000000000000000010.snap", 45)
    with pytest.raises(SnapshotCorruption, match="snap-00000000000000000010"):
        store.load()


def test_leftover_snapshot_tmp_is_ignored_and_removed(tmp_path: Path) -> None:
    SnapshotStore(tmp_path).save(Snapshot(3, 1, b"kept"))
    (tmp_path / "snap-00000000000000000009.tmp").write_bytes(b"half written")
    store = SnapshotStore(tmp_path)
    assert store.load() == Snapshot(3, 1, b"kept")
    assert not (tmp_path / "snap-00000000000000000009.tmp").exists()


def test_stores_share_a_directory_with_the_log(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    fill(log, 5)
    SnapshotStore(tmp_path).save(Snapshot(3, 1, b"s"))
    HardStateStore(tmp_path).save(HardState(1, "n1", 3))
    log.compact(3, 1)
    log = reopen(log, tmp_path)
    assert (log.first_index, log.last_index) == (4, 5)
    assert SnapshotStore(tmp_path).load() == Snapshot(3, 1, b"s")
    assert HardStateStore(tmp_path).load() == HardState(1, "n1", 3)
    log.close()


# -- hard state -----------------------------------------------------------------------


def test_hard_state_round_trip(tmp_path: Path) -> None:
    store = HardStateStore(tmp_path / "raft")
    assert store.load() == HardState()
    store.save(HardState(term=4, voted_for="node-b", commit=17))
    assert HardStateStore(tmp_path / "raft").load() == HardState(4, "node-b", 17)
    store.save(HardState(term=5, voted_for=None, commit=17))
    assert store.load() == HardState(5, None, 17)
    assert not list((tmp_path / "raft").glob("*.tmp"))


def test_damaged_hard_state_refuses_to_start(tmp_path: Path) -> None:
    store = HardStateStore(tmp_path)
    store.save(HardState(term=4, voted_for="node-b", commit=17))
    _flip(tmp_path / "hardstate", 20)
    with pytest.raises(HardStateCorruption):
        store.load()


# -- shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", [log_module, snapshot_module])
def test_storage_is_synchronous(module: object) -> None:
    """Called from a writer thread: no asyncio."""
    source = Path(str(module.__file__)).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "asyncio" not in imported


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 70000, 1 << 20])
@pytest.mark.parametrize("index", [1, 127, 128, 70000, 1 << 40])
def test_records_are_framed_exactly_as_msgpack_packs_the_body(size: int, index: int) -> None:
    """The record is built in two pieces (framing, then the data uncopied); together they must be
    exactly the header and msgpack [index, term, data] that recovery parses."""
    import zlib

    import msgpack

    from vfsd.desired.log import _RECORD_HEADER, _encode_record

    entry = LogEntry(index, 3, bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    head, data = _encode_record(entry)
    body = msgpack.packb([entry.index, entry.term, entry.data], use_bin_type=True)
    assert head + data == _RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body
    assert data is entry.data


def test_large_entries_survive_a_restart(tmp_path: Path) -> None:
    log = WriteAheadLog.open(tmp_path)
    big = [LogEntry(i, 1, bytes([i]) * (3 << 20)) for i in range(1, 4)]
    log.append(big)
    log.append([LogEntry(4, 1, b"small")])
    log.sync()
    log.close()
    again = WriteAheadLog.open(tmp_path)
    assert again.entries(1, 5) == [*big, LogEntry(4, 1, b"small")]


def test_a_file_system_that_cannot_preallocate_just_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(log_module, "_posix_fallocate", refuse)
    log = WriteAheadLog.open(tmp_path, segment_max_bytes=1 << 20)
    written = fill(log, 20)
    (active,) = segments(tmp_path)
    assert active.stat().st_size == log.size_bytes
    log = reopen(log, tmp_path, segment_max_bytes=1 << 20)
    assert all_entries(log) == written
    log.close()
