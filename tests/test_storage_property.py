"""Property: FileStorage, closed and reopened at any point, loads exactly what MemoryStorage holds.

Hypothesis generates sequences of writes - appends (some replacing a suffix of the log), leader
snapshots installed through save(), compactions, hard-state updates, empty saves - interleaved
with close-and-reopen. Both storages get the same calls; after every reopen the FileStorage's
load() must equal MemoryStorage.load(). Segments are small (4-8 KiB), so they rotate and get
deleted by compaction, and some reopens fsync.

Operations carry positions relative to the model's log (how far below the last index, ...) and
are resolved against it when they run, so every generated sequence is valid and shrinks well.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from storage_helpers import Lockstep, describe, ents, segments, snap

from raft_manager.core import HardState


@dataclass(frozen=True)
class Append:
    back: int  # the first new entry is this far below last + 1 (never at or below the snapshot)
    count: int  # 0: a save with no entries (only a hard state, or nothing at all)
    new_term: bool
    size: int  # bytes of payload per entry
    hard_state: bool


@dataclass(frozen=True)
class Install:
    delta: int  # the snapshot's index relative to the last index (always above the snapshot)
    same_term: bool  # at an index the log holds: the term of the entry there
    follow: int  # entries saved with the snapshot
    hard_state: bool
    size: int


@dataclass(frozen=True)
class Compact:
    back: int  # the compaction index is this far below the last index


@dataclass(frozen=True)
class SetHardState:
    new_term: bool
    vote: str | None
    commit_back: int


@dataclass(frozen=True)
class Reopen:
    fsync: bool


Op = Append | Install | Compact | SetHardState | Reopen

mostly_false = st.sampled_from([False] * 7 + [True])
appends = st.builds(
    Append,
    back=st.integers(0, 12),
    count=st.integers(0, 16),
    new_term=mostly_false,
    size=st.sampled_from([0, 10, 100, 400, 1000]),
    hard_state=st.booleans(),
)
operations: st.SearchStrategy[Op] = st.one_of(
    appends,
    appends,
    appends,
    st.builds(
        Install,
        delta=st.integers(-8, 8),
        same_term=st.booleans(),
        follow=st.integers(0, 6),
        hard_state=st.booleans(),
        size=st.integers(0, 600),
    ),
    st.builds(Compact, back=st.integers(0, 10)),
    st.builds(
        SetHardState,
        new_term=st.booleans(),
        vote=st.sampled_from([None, "n1", "n2", "nœud-3"]),
        commit_back=st.integers(0, 5),
    ),
    st.builds(Reopen, fsync=mostly_false),
)


@dataclass(frozen=True)
class Options:
    segment_bytes: int
    keep_snapshots: int
    fsync: bool


options = st.builds(
    Options,
    segment_bytes=st.sampled_from([4096, 4096, 8192]),
    keep_snapshots=st.sampled_from([1, 2, 3]),
    fsync=mostly_false,
)


class Run:
    """Plays operations on a Lockstep and checks every reopen against the model."""

    def __init__(self, directory: Path, opts: Options, record_events: bool = True) -> None:
        self.record_events = record_events
        self.pair = Lockstep(
            directory,
            segment_bytes=opts.segment_bytes,
            keep_snapshots=opts.keep_snapshots,
            fsync=opts.fsync,
        )
        self.term = 1
        self.reopens = 0
        self.check()

    @property
    def offset(self) -> int:
        return self.pair.memory.offset

    @property
    def last(self) -> int:
        return self.pair.memory.last_index

    def term_at(self, index: int) -> int:
        memory = self.pair.memory
        return memory.entries[index - memory.offset - 1].term

    def hard_state(self, vote: str | None = "n1", commit_back: int = 0) -> HardState:
        return HardState(self.term, vote, max(self.last - commit_back, 0))

    def play(self, op: Op) -> None:
        pair = self.pair
        if isinstance(op, Append):
            self.term += op.new_term
            first = max(self.offset + 1, self.last + 1 - op.back)
            entries = ents(first, op.count, self.term, op.size)
            hard_state = None
            if op.hard_state:
                hard_state = HardState(self.term, "n1", max(first + op.count - 1 - op.back, 0))
            pair.save(hard_state, entries, None)
        elif isinstance(op, Install):
            index = max(self.offset + 1, self.last + op.delta)
            term = self.term_at(index) if op.same_term and index <= self.last else self.term
            snapshot = snap(index, term, op.size)
            hard_state = HardState(self.term, None, index) if op.hard_state else None
            pair.save(hard_state, ents(index + 1, op.follow, self.term), snapshot)
        elif isinstance(op, Compact):
            if self.last == self.offset:
                return  # nothing to compact
            index = max(self.offset + 1, self.last - op.back)
            pair.compact(snap(index, self.term_at(index), 100 + index % 200))
        elif isinstance(op, SetHardState):
            self.term += op.new_term
            pair.save(self.hard_state(op.vote, op.commit_back), [], None)
        else:
            pair.reopen(fsync=op.fsync)
            self.reopens += 1
            self.check()

    def check(self) -> None:
        expected, found = self.pair.expected(), self.pair.loaded
        context = f"expected {describe(expected)}, found {describe(found)}"
        assert found.hard_state == expected.hard_state, context
        assert found.snapshot == expected.snapshot, context
        assert found.entries == expected.entries, context

    def finish(self) -> None:
        if self.record_events:
            files = segments(self.pair.directory)
            rotations = int(files[-1].stem, 16) - 1
            event(
                f"segment rotations: {'0' if not rotations else '1-3' if rotations < 4 else '4+'}"
            )
            event(f"oldest segments deleted: {files[0].name != '0000000000000001.wal'}")
            event(f"snapshot at the end: {self.pair.memory.snapshot is not None}")
            event(f"reopens: {min(self.reopens, 3)}+")
        self.play(Reopen(fsync=False))
        # Opening again without writing anything changes nothing.
        self.play(Reopen(fsync=False))
        self.pair.close()


def run(ops: list[Op], opts: Options) -> None:
    with tempfile.TemporaryDirectory(prefix="storage-property-") as name:
        state = Run(Path(name), opts)
        try:
            for op in ops:
                state.play(op)
            state.finish()
        finally:
            state.pair.close()


# Regression examples for a fixed bug: once the segment holding the entries was deleted, a
# surviving segment whose first marker is a compaction made recovery take that index as the log's
# end, so a later compaction failed to recover ('compaction to (i, t) of entries not held').
BACK_TO_BACK = [
    Append(back=0, count=15, new_term=False, size=270, hard_state=True),  # fills segment 1
    Compact(back=5),  # compact(10): its marker opens segment 2; segment 1 (entries 1..15) stays
    Compact(back=0),  # compact(15): segment 1 is deleted
    Reopen(fsync=False),
]
COMMITS_BETWEEN = [  # the same with commit-index updates around the compactions
    Append(back=0, count=15, new_term=False, size=270, hard_state=True),
    SetHardState(new_term=False, vote="n1", commit_back=5),
    Compact(back=5),
    SetHardState(new_term=False, vote="n1", commit_back=0),
    Compact(back=0),
    Reopen(fsync=True),
]
SMALL = Options(segment_bytes=4096, keep_snapshots=2, fsync=False)


@example(ops=BACK_TO_BACK, opts=SMALL)
@example(ops=COMMITS_BETWEEN, opts=SMALL)
@settings(
    deadline=None,
    max_examples=800,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(operations, min_size=10, max_size=80), opts=options)
def test_file_storage_reopens_to_the_memory_model(ops: list[Op], opts: Options) -> None:
    run(ops, opts)


def test_the_generated_runs_rotate_and_delete_segments() -> None:
    """The property's operations do reach segment rotation and deletion (a sanity check of the
    generator's ranges, on one hand-picked run)."""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        state = Run(directory, SMALL, record_events=False)
        for _ in range(6):
            state.play(Append(back=0, count=12, new_term=False, size=300, hard_state=True))
        assert len(segments(directory)) >= 3
        first_before = segments(directory)[0]
        state.play(Compact(back=0))
        assert segments(directory)[0] != first_before
        state.finish()
