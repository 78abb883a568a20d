"""The core's view of the Raft log: snapshot point, entries, commit and apply marks.

Theory of operation
-------------------
The log is ``snapshot`` (the compaction point: index, term, time and configuration of
the last entry a snapshot covers) followed by ``entries`` (indexes ``snapshot.index
+ 1 .. last_index``), all in memory: the shell's write-ahead log holds the same
entries durably and hands them back on restart.

Entries travel to disk through Ready batches, so the log keeps three marks:

* ``handed_out``: the last index already given to the shell in a Ready (on its way
  to disk). Entries after it are *unstable* and go into the next Ready.
* ``stable``: the last index known durable (the shell called ``advance`` for the
  Ready that carried it).
* ``truncate_from``: when a conflicting leader (§5.3) makes the log drop entries
  that were already handed out, the lowest dropped index, so the next Ready tells
  the shell to cut its write-ahead log there before appending.

``commit`` is the highest index known committed; ``applied`` the highest index handed
out for applying. ``applied <= commit`` always, and ``commit`` never moves back.

Membership (thesis §4.1): every node uses the newest configuration in its log,
committed or not; ``configs`` lists the configuration entries after the snapshot
point so that a truncation can fall back to the one before.
"""

from __future__ import annotations

from collections.abc import Sequence

from vfsd.raft.config import MembershipConfig, decode_config_entry
from vfsd.raft.messages import Entry, EntryKind, SnapshotMeta

__all__ = ["RaftLog"]


class RaftLog:
    __slots__ = (
        "snapshot",
        "entries",
        "commit",
        "applied",
        "stable",
        "handed_out",
        "truncate_from",
        "pending_snapshot",
        "configs",
    )

    def __init__(self, snapshot: SnapshotMeta, entries: Sequence[Entry], commit: int, applied: int) -> None:
        self.snapshot = snapshot
        self.entries: list[Entry] = list(entries)
        self.commit = commit
        self.applied = applied
        self.stable = self.handed_out = self.last_index  # restored entries are durable
        self.truncate_from: int | None = None
        self.pending_snapshot: tuple[SnapshotMeta, bytes] | None = None
        self.configs: list[tuple[int, MembershipConfig]] = []
        for entry in self.entries:
            if entry.kind == EntryKind.CONFIG:
                self.configs.append((entry.index, decode_config_entry(entry.data)[1]))

    # -- reading ---------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    @property
    def last_time_ms(self) -> int:
        return self.entries[-1].time_ms if self.entries else self.snapshot.time_ms

    @property
    def config(self) -> MembershipConfig:
        """The newest configuration in the log (thesis §4.1: in force once appended)."""
        return self.configs[-1][1] if self.configs else self.snapshot.config

    @property
    def config_index(self) -> int:
        """Index of the configuration in force (the snapshot point's if none after it)."""
        return self.configs[-1][0] if self.configs else self.snapshot.index

    def config_at(self, index: int) -> MembershipConfig:
        config = self.snapshot.config
        for at, cfg in self.configs:
            if at > index:
                break
            config = cfg
        return config

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index`` (the snapshot point's at that index); None
        when it was compacted away or lies past the end."""
        snap = self.snapshot.index
        if index == snap:
            return self.snapshot.term
        if snap < index <= snap + len(self.entries):
            return self.entries[index - snap - 1].term
        return None

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.snapshot.index - 1]

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a log ending at (last_index, last_term) is at least as new as ours."""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries ``lo .. hi - 1`` (clipped to the log), at most ``max_bytes`` of
        them but always at least one when any exists."""
        base = self.snapshot.index + 1
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        out = self.entries[lo - base : hi - base]
        total = 0
        for n, e in enumerate(out):
            total += e.size_bytes
            if total > max_bytes and n > 0:
                return out[:n]
        return out

    def first_index_of_term_at(self, index: int) -> int:
        """The first index of the run of entries ending at ``index`` that share its term
        (not below the first entry held)."""
        term = self.term_at(index)
        first = self.first_index
        while index > first and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, at_most: int) -> int | None:
        """The highest index <= ``at_most`` holding ``term``, if the log holds that term."""
        index = min(at_most, self.last_index)
        while index >= self.snapshot.index:
            t = self.term_at(index)
            if t is None or t < term:
                return None
            if t == term:
                return index
            index -= 1
        return None

    def unstable(self) -> list[Entry]:
        return self.entries[self.handed_out - self.snapshot.index :]

    def committed_to_apply(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet handed out for applying, at most ``max_bytes`` of
        them (at least one)."""
        return self.slice(self.applied + 1, self.commit + 1, max_bytes)

    # -- writing ---------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Add entries right after the last one (the caller checked contiguity)."""
        self.entries.extend(entries)
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                self.configs.append((entry.index, decode_config_entry(entry.data)[1]))

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first of ``entries`` that the log lacks or holds with another
        term; 0 when the log already holds them all."""
        for entry in entries:
            if self.term_at(entry.index) != entry.term:
                return entry.index
        return 0

    def truncate(self, from_index: int) -> None:
        """Drop entries >= ``from_index`` (never committed ones: the caller checks)."""
        if from_index > self.last_index:
            return
        del self.entries[from_index - self.snapshot.index - 1 :]
        while self.configs and self.configs[-1][0] >= from_index:
            self.configs.pop()
        if from_index <= self.handed_out:
            self.truncate_from = from_index if self.truncate_from is None else min(self.truncate_from, from_index)
            self.handed_out = from_index - 1
        self.stable = min(self.stable, from_index - 1)

    def commit_to(self, index: int) -> bool:
        if index > self.commit:
            self.commit = index
            return True
        return False

    def install(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace the whole log by a snapshot from the leader (§7: the log does not
        hold the snapshot's last entry, so nothing of it can be kept)."""
        self.snapshot = meta
        self.entries = []
        self.configs = []
        self.commit = max(self.commit, meta.index)
        self.applied = meta.index
        self.handed_out = meta.index
        self.stable = min(self.stable, meta.index)
        self.truncate_from = None  # compacting the write-ahead log to the snapshot discards it all
        self.pending_snapshot = (meta, data)

    def compact(self, index: int) -> None:
        """Drop entries <= ``index``: a durable snapshot covers them (§7)."""
        entry = self.entry(index)
        meta = SnapshotMeta(index, entry.term, entry.time_ms, self.config_at(index))
        del self.entries[: index - self.snapshot.index]
        self.configs = [(at, cfg) for at, cfg in self.configs if at > index]
        self.snapshot = meta
