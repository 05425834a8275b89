"""Crash recovery of FileStorage: torn writes, flipped bits and damaged directory structure.

A history is a series of fsynced batches (one save() each: entries, some replacing a suffix, and
hard states) followed by a last batch that the tests treat as unsynced. Damage is done to a copy
of the data directory, which is then reopened:

- a torn tail (the file cut anywhere inside the last batch's record, or zeros after it) must give
  exactly the state before the last batch, be logged with the bytes dropped, be cut off the file,
  and leave a log that takes new appends;
- a cut anywhere else in the last segment must give the state after a prefix of the batches;
- a flipped bit must raise CorruptionError naming the file and the offset (inside the last,
  unsynced batch, the state before that batch would also do), never yield another state;
- a missing segment, a segment carrying another's header, a missing snapshot file must raise
  CorruptionError; stray temporary files must not stop the storage from opening.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from storage_helpers import (
    Lockstep,
    append_bytes,
    describe,
    ents,
    flip_bit,
    open_load,
    segments,
    snap,
    snapshot_files,
)

from raft_manager.core import Entry, EntryType, HardState, RestoredState
from raft_manager.storage import CorruptionError, FileStorage, MemoryStorage
from raft_manager.storage.records import HEADER
from raft_manager.storage.wal import scan_segment

LOGGER = "raft_manager.storage"
SEGMENT_HEADER_MAX = 13 + 8 + 8 + 8 + 2 + 64  # frame header, sequence, hard state, a short vote


@dataclass(frozen=True)
class Written:
    """Where one batch's record went: the segment and its byte range."""

    path: Path
    start: int
    end: int


@dataclass
class History:
    directory: Path
    states: list[RestoredState]  # states[k]: the model after k batches
    records: list[Written]  # records[k]: batch k + 1
    segment_bytes: int
    keep_snapshots: int

    @property
    def last(self) -> Written:
        return self.records[-1]

    def survivors(self, path: Path, offset: int) -> int:
        """How many batches' records survive cutting `path` at `offset`."""
        survivors = 0
        for record in self.records:
            if record.path == path and record.end > offset:
                break
            survivors += 1
        return survivors

    def open_load(self, directory: Path | None = None) -> RestoredState:
        return open_load(
            directory or self.directory,
            segment_bytes=self.segment_bytes,
            keep_snapshots=self.keep_snapshots,
        )


def write_history(
    directory: Path,
    seed: int,
    *,
    batches: int = 12,
    segment_bytes: int = 1 << 20,
    min_segments: int = 1,
    compact_every: int = 0,
    keep_snapshots: int = 2,
) -> History:
    """Fsynced batches (and every `compact_every` batches a compaction, which is not counted as a
    batch and must not come after the last one) until there are at least `batches` batches and
    `min_segments` segments; the last batch's record lies in the newest segment, after at least
    two others."""
    rng = random.Random(seed)
    pair = Lockstep(
        directory, segment_bytes=segment_bytes, keep_snapshots=keep_snapshots, fsync=True
    )
    states = [pair.expected()]
    records: list[Written] = []
    term = 1
    for _ in range(5000):
        memory = pair.memory
        if compact_every and len(records) % compact_every == compact_every - 1:
            margin = 40 if segment_bytes <= 4096 else 2  # small segments: keep a few
            if memory.last_index > memory.offset + margin:
                index = rng.randint(memory.offset + 1, memory.last_index - margin)
                term_there = memory.entries[index - memory.offset - 1].term
                pair.compact(snap(index, term_there, rng.randint(10, 300)))
                states[-1] = pair.expected()  # the compaction is part of the batch before it
        if rng.random() < 0.2:
            term += 1
        count = rng.choice([0, 1, 3, 8])
        back = rng.choice([0, 0, 0, 1, 2])
        first = max(memory.offset + 1, memory.last_index + 1 - back)
        hard_state: HardState | None
        hard_state = HardState(term, rng.choice([None, "n1", "n2"]), max(first - 2, 0))
        if count and rng.random() < 0.4:
            hard_state = None
        current = segments(directory)[-1]
        start = current.stat().st_size
        pair.save(hard_state, ents(first, count, term, rng.choice([0, 5, 40, 200])), None)
        states.append(pair.expected())
        records.append(Written(current, start, current.stat().st_size))
        rotated = segments(directory)[-1] != current
        in_last = sum(record.path == current for record in records)
        enough = len(records) >= batches and len(segments(directory)) >= min_segments
        enough = enough and in_last >= min(3, batches)  # the newest segment holds a few batches
        if enough and count and not rotated:
            break
    else:
        raise AssertionError("the history never reached the shape asked for")
    pair.close()
    assert records[-1].path == segments(directory)[-1]
    history = History(directory, states, records, segment_bytes, keep_snapshots)
    assert_state(history.open_load(), states[-1], "undamaged")
    # That open changed nothing (there was no torn tail to cut).
    assert records[-1].path.stat().st_size == records[-1].end
    return history


def assert_state(found: RestoredState, expected: RestoredState, context: str) -> None:
    message = f"{context}: expected {describe(expected)}, found {describe(found)}"
    assert found.hard_state == expected.hard_state, message
    assert found.snapshot == expected.snapshot, message
    assert found.entries == expected.entries, message


class Copies:
    """Fresh copies of a pristine data directory, one per damage."""

    def __init__(self, pristine: Path, scratch: Path) -> None:
        self.pristine = pristine
        self.scratch = scratch
        self.count = 0

    def __call__(self) -> Path:
        self.count += 1
        copy = self.scratch / f"copy-{self.count}"
        shutil.copytree(self.pristine, copy)
        return copy

    def same(self, path: Path, copy: Path) -> Path:
        """`path` (in the pristine directory) inside `copy`."""
        return copy / path.relative_to(self.pristine)


@pytest.fixture
def copies(tmp_path: Path) -> Iterator[Copies]:
    scratch = tmp_path / "copies"
    scratch.mkdir()
    yield Copies(tmp_path / "pristine", scratch)


def torn_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and "torn" in record.getMessage()
    ]


# -- torn writes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "segment_bytes", "min_segments"),
    [(1, 1 << 20, 1), (2, 1 << 20, 1), (3, 4096, 3)],
    ids=["one-segment", "one-segment-b", "rotated"],
)
def test_a_cut_inside_the_last_batch_gives_exactly_the_state_before_it(
    copies: Copies,
    caplog: pytest.LogCaptureFixture,
    seed: int,
    segment_bytes: int,
    min_segments: int,
) -> None:
    history = write_history(
        copies.pristine, seed, segment_bytes=segment_bytes, min_segments=min_segments
    )
    last = history.last
    before, after = history.states[-2], history.states[-1]
    assert before != after
    assert_state(history.open_load(copies()), after, "undamaged")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for offset in range(last.start, last.end):
        directory = copies()
        segment = copies.same(last.path, directory)
        os.truncate(segment, offset)
        caplog.clear()
        assert_state(history.open_load(directory), before, f"cut at {offset}")
        dropped = offset - last.start
        warnings = torn_warnings(caplog)
        if dropped:
            assert len(warnings) == 1, warnings
            assert f"torn tail of {dropped} bytes" in warnings[0]
            assert str(segment) in warnings[0]
        else:
            assert warnings == []  # a cut at a record boundary is no torn tail
        assert segment.stat().st_size == last.start  # the torn tail was cut off the file


@pytest.mark.parametrize("segment_bytes", [1 << 20, 4096])
def test_after_a_torn_tail_new_appends_work_and_survive_reopening(
    copies: Copies, segment_bytes: int
) -> None:
    history = write_history(
        copies.pristine,
        7,
        segment_bytes=segment_bytes,
        min_segments=1 if segment_bytes > 4096 else 2,
    )
    last = history.last
    rng = random.Random(7)
    for offset in sorted(rng.sample(range(last.start + 1, last.end), 5)):
        directory = copies()
        os.truncate(copies.same(last.path, directory), offset)
        pair = Lockstep(directory, segment_bytes=segment_bytes, fsync=True)
        assert_state(pair.loaded, history.states[-2], f"cut at {offset}")
        # Rebuild the model from what was loaded, then keep writing both.
        pair.memory = memory_holding(pair.loaded)
        last_index = pair.memory.last_index
        pair.save(HardState(50, "n3", last_index), ents(last_index + 1, 5, 50, 300), None)
        pair.save(None, ents(last_index + 3, 2, 51), None)
        assert_state(pair.reopen(), pair.expected(), "after appending to a cut log")
        pair.save(HardState(52, None, last_index + 4), ents(last_index + 5, 20, 52, 250), None)
        assert_state(pair.reopen(), pair.expected(), "after appending again")
        pair.close()


def memory_holding(state: RestoredState) -> MemoryStorage:
    memory = MemoryStorage()
    if state.snapshot is not None:
        memory.install_snapshot(state.snapshot)
    memory.save(state.hard_state, state.entries, None)
    return memory


@pytest.mark.parametrize(
    ("seed", "segment_bytes", "min_segments"),
    [(11, 1 << 20, 1), (12, 4096, 3)],
    ids=["one-segment", "rotated"],
)
def test_a_cut_anywhere_in_the_last_segment_gives_the_state_after_a_prefix_of_the_batches(
    copies: Copies, seed: int, segment_bytes: int, min_segments: int
) -> None:
    history = write_history(
        copies.pristine, seed, batches=30, segment_bytes=segment_bytes, min_segments=min_segments
    )
    path = history.last.path
    size = path.stat().st_size
    header_end = min(
        (record.start for record in history.records if record.path == path), default=size
    )
    rng = random.Random(seed)
    offsets = {
        header_end,
        size - 1,
        *rng.sample(range(header_end, size), min(150, size - header_end)),
    }
    offsets |= {record.start for record in history.records if record.path == path}
    outcomes = set()
    for offset in sorted(offsets):
        directory = copies()
        os.truncate(copies.same(path, directory), offset)
        survivors = history.survivors(path, offset)
        expected = history.states[survivors]
        assert_state(history.open_load(directory), expected, f"cut at {offset}")
        outcomes.add(survivors)
    # The cuts did land in every batch of the segment (each record's start is among them).
    assert outcomes == {k for k, record in enumerate(history.records) if record.path == path}
    assert len(outcomes) >= 3


def test_a_segment_header_cut_short_is_corruption_not_a_torn_write(copies: Copies) -> None:
    """Segments are created whole (temporary name, fsync, rename), so a cut inside the SEGMENT
    record that opens one is not a crash's doing: it is reported, not repaired."""
    history = write_history(copies.pristine, 13, segment_bytes=4096, min_segments=2)
    path = history.last.path
    header_end = min(record.start for record in history.records if record.path == path)
    assert header_end < SEGMENT_HEADER_MAX
    for offset in range(header_end):
        directory = copies()
        segment = copies.same(path, directory)
        os.truncate(segment, offset)
        with pytest.raises(CorruptionError) as caught:
            history.open_load(directory)
        assert str(segment) in str(caught.value)


def test_a_cut_in_an_older_segment_is_corruption(copies: Copies) -> None:
    """Only the end of the newest segment may be torn: older ones were complete and fsynced."""
    history = write_history(copies.pristine, 14, segment_bytes=4096, min_segments=3)
    older = segments(copies.pristine)[:-1]
    rng = random.Random(14)
    for path in older:
        size = path.stat().st_size
        for offset in {size - 1, *rng.sample(range(1, size), 10)}:
            directory = copies()
            segment = copies.same(path, directory)
            os.truncate(segment, offset)
            with pytest.raises(CorruptionError) as caught:
                history.open_load(directory)
            assert str(segment) in str(caught.value), caught.value
            assert "offset" in str(caught.value)


@pytest.mark.parametrize("zeros", [1, 12, 13, 100, 4096, 70_000])
def test_zeros_after_the_last_record_are_a_runway_not_a_torn_write(
    copies: Copies, caplog: pytest.LogCaptureFixture, zeros: int
) -> None:
    """Zeros after the records are the space a writer with fsync on keeps ahead of them (see
    wal.py): the same state, nothing reported or cut, and the next record lands right after the
    last one, over the zeros."""
    history = write_history(copies.pristine, 21, segment_bytes=4096, min_segments=2)
    directory = copies()
    segment = copies.same(history.last.path, directory)
    append_bytes(segment, bytes(zeros))
    size = segment.stat().st_size
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert_state(history.open_load(directory), history.states[-1], f"{zeros} zeros appended")
    assert segment.stat().st_size == size
    assert torn_warnings(caplog) == []
    before = history.states[-1]
    storage = FileStorage(directory, segment_bytes=4096, preallocate_bytes=0)
    storage.load()
    new = ents(before.entries[-1].index + 1, 1, before.entries[-1].term, 40)
    storage.save(None, new, None)
    storage.close()
    after = history.open_load(directory)
    assert after.entries == [*before.entries, *new] and torn_warnings(caplog) == []
    if segments(directory)[-1] == segment:  # not rotated: the record went over the zeros
        assert segment.read_bytes()[history.last.end] != 0


def test_the_last_batch_cut_short_then_zero_filled_is_the_state_before_it(copies: Copies) -> None:
    history = write_history(copies.pristine, 22)
    last = history.last
    directory = copies()
    segment = copies.same(last.path, directory)
    # The whole last record replaced by zeros: a write whose blocks never reached the disk.
    with segment.open("r+b") as file:
        file.seek(last.start)
        file.write(bytes(last.end - last.start))
    assert_state(history.open_load(directory), history.states[-2], "last record zeroed")


@pytest.mark.parametrize("extra_zeros", [0, 1, 4096])
@pytest.mark.parametrize(
    ("seed", "segment_bytes", "min_segments"), [(23, 1 << 20, 1), (24, 4096, 3)]
)
def test_a_prefix_of_the_last_batch_followed_by_zeros_is_a_torn_write(
    copies: Copies, seed: int, segment_bytes: int, min_segments: int, extra_zeros: int
) -> None:
    """The crash model: an unsynced write leaves some prefix of its bytes, possibly followed by
    zeros up to the length the file had reached (or beyond, to a block boundary).

    Regression test for a fixed bug: such a record was reported as a checksum mismatch
    (CorruptionError) instead of being cut off as a torn tail."""
    history = write_history(
        copies.pristine, seed, segment_bytes=segment_bytes, min_segments=min_segments
    )
    last = history.last
    record = last.path.read_bytes()[last.start : last.end]
    failures = []
    tested = 0
    for kept in range(1, len(record)):
        if not any(record[kept:]):
            continue  # the bytes zeroed were zeros: the whole record made it to the disk
        tested += 1
        directory = copies()
        segment = copies.same(last.path, directory)
        with segment.open("r+b") as file:  # the tail from `kept` on reads as zeros
            file.seek(last.start + kept)
            file.write(bytes(last.end - last.start - kept + extra_zeros))
        try:
            found = history.open_load(directory)
        except CorruptionError as error:
            failures.append(f"{kept} bytes kept: {error.reason}")
            continue
        if found != history.states[-2]:
            failures.append(f"{kept} bytes kept: loaded {describe(found)}")
        elif segment.stat().st_size != last.start:
            failures.append(f"{kept} bytes kept: the torn tail was not cut off")
    assert failures == []
    assert tested > len(record) // 2


def test_a_torn_compaction_marker_leaves_the_state_before_or_after_the_compaction(
    copies: Copies,
) -> None:
    """compact() writes the snapshot file, then the marker: a torn marker leaves the snapshot
    file, which recovery lays over the log: the compacted state."""
    directory = copies.pristine
    pair = Lockstep(directory, fsync=True)
    pair.save(HardState(1, "n1", 10), ents(1, 20, 1, 50), None)
    before = pair.expected()
    path = segments(directory)[-1]
    start = path.stat().st_size
    pair.compact(snap(12, 1))
    after = pair.expected()
    end = path.stat().st_size
    pair.close()
    for offset in range(start, end):
        copy = copies()
        os.truncate(copies.same(path, copy), offset)
        found = open_load(copy)
        assert found in (before, after), f"cut at {offset}: {describe(found)}"


def test_a_torn_install_record_leaves_the_snapshot_laid_over_the_old_log(copies: Copies) -> None:
    """save(snapshot=...) writes the snapshot file, then the record with the install marker. A torn
    record leaves the file: recovery keeps the old log above the snapshot if the log holds the
    snapshot's last entry (as a compaction would), and restarts the log at it otherwise."""
    for matching in (True, False):
        directory = copies.scratch / f"matching-{matching}"
        pair = Lockstep(directory, fsync=True)
        pair.save(HardState(1, "n1", 10), ents(1, 20, 1, 50), None)
        snapshot = snap(15, 1 if matching else 2)
        model = memory_holding(pair.expected())
        if matching:
            model.compact(snapshot)
        else:
            model.install_snapshot(snapshot)
        path = segments(directory)[-1]
        start = path.stat().st_size
        pair.save(HardState(2, "n2", 15), ents(16, 3, 2), snapshot)
        end = path.stat().st_size
        pair.close()
        for offset in range(start, end):
            cut = copies.scratch / f"cut-{matching}-{offset}"
            shutil.copytree(directory, cut)
            os.truncate(cut / path.relative_to(directory), offset)
            assert_state(open_load(cut), model.load(), f"matching={matching}, cut at {offset}")


# -- bit flips -------------------------------------------------------------------------------


def test_a_flipped_bit_in_the_last_batch_never_yields_another_state(copies: Copies) -> None:
    history = write_history(copies.pristine, 31, segment_bytes=4096, min_segments=3)
    last = history.last
    rng = random.Random(31)
    for position in range(last.start, last.end):
        directory = copies()
        segment = copies.same(last.path, directory)
        flip_bit(segment, position, rng.randrange(8))
        try:
            found = history.open_load(directory)
        except CorruptionError as error:
            assert str(segment) in str(error) and "offset" in str(error), error
            continue
        assert_state(found, history.states[-2], f"bit flipped at {position}")


def test_a_flipped_bit_in_fsynced_wal_data_is_corruption(copies: Copies) -> None:
    """Headers, payloads, older segments, the newest segment's earlier records: all raise."""
    history = write_history(
        copies.pristine, 32, batches=40, segment_bytes=4096, min_segments=4, compact_every=6
    )
    last = history.last
    rng = random.Random(32)
    files = segments(copies.pristine)
    assert len(files) >= 3
    positions: list[tuple[Path, int]] = []
    for path in files:
        size = path.stat().st_size if path != last.path else last.start
        positions += [(path, position) for position in range(min(size, 60))]  # headers
        positions += [(path, rng.randrange(size)) for _ in range(40)]
    for path, position in positions:
        directory = copies()
        segment = copies.same(path, directory)
        flip_bit(segment, position, rng.randrange(8))
        with pytest.raises(CorruptionError) as caught:
            history.open_load(directory)
        message = str(caught.value)
        assert str(segment) in message and "offset" in message, (position, message)


def test_a_flipped_bit_in_the_newest_snapshot_file_is_corruption(copies: Copies) -> None:
    history = write_history(copies.pristine, 33, batches=20, compact_every=4)
    files = snapshot_files(copies.pristine)
    assert len(files) == 2
    newest = files[-1]
    rng = random.Random(33)
    size = newest.stat().st_size
    for position in sorted({*range(0, size, max(size // 200, 1)), size - 1}):
        directory = copies()
        path = copies.same(newest, directory)
        flip_bit(path, position, rng.randrange(8))
        with pytest.raises(CorruptionError) as caught:
            history.open_load(directory)
        assert str(path) in str(caught.value) and "offset" in str(caught.value)


def test_a_flipped_bit_in_an_older_snapshot_file_does_not_change_the_state(
    copies: Copies,
) -> None:
    """Only the newest snapshot is read on open; an older one (kept as a spare) is not verified
    then, but damage to it must not change what is loaded."""
    history = write_history(copies.pristine, 34, batches=20, compact_every=4)
    older = snapshot_files(copies.pristine)[0]
    rng = random.Random(34)
    for position in rng.sample(range(older.stat().st_size), 20):
        directory = copies()
        flip_bit(copies.same(older, directory), position, rng.randrange(8))
        try:
            found = history.open_load(directory)
        except CorruptionError as error:
            assert older.name in str(error)
            continue
        assert_state(found, history.states[-1], f"older snapshot flipped at {position}")


# -- structure -------------------------------------------------------------------------------


def test_a_missing_middle_segment_is_corruption_naming_it(copies: Copies) -> None:
    history = write_history(copies.pristine, 41, segment_bytes=4096, min_segments=4)
    files = segments(copies.pristine)
    for missing in files[1:-1]:
        directory = copies()
        copies.same(missing, directory).unlink()
        with pytest.raises(CorruptionError) as caught:
            history.open_load(directory)
        assert missing.name in str(caught.value)
        assert "missing" in str(caught.value)


def test_missing_oldest_segments_without_a_snapshot_are_corruption(copies: Copies) -> None:
    history = write_history(copies.pristine, 42, segment_bytes=4096, min_segments=3)
    directory = copies()
    copies.same(segments(copies.pristine)[0], directory).unlink()
    with pytest.raises(CorruptionError, match="missing"):
        history.open_load(directory)


def test_a_missing_newest_segment_is_not_silently_accepted_when_it_held_entries(
    copies: Copies,
) -> None:
    """Deleting the newest segment loses fsynced entries. Nothing on disk can tell (segments are
    numbered from 1 and the newest is whichever is last), so the state is that of a prefix."""
    history = write_history(copies.pristine, 43, segment_bytes=4096, min_segments=3)
    directory = copies()
    newest = segments(copies.pristine)[-1]
    copies.same(newest, directory).unlink()
    found = history.open_load(directory)
    assert found in history.states


def test_a_segment_with_another_segments_header_is_corruption(copies: Copies) -> None:
    history = write_history(copies.pristine, 44, segment_bytes=4096, min_segments=3)
    files = segments(copies.pristine)
    for source, target in [(files[0], files[1]), (files[1], files[-1]), (files[-1], files[0])]:
        directory = copies()
        shutil.copyfile(source, copies.same(target, directory))
        with pytest.raises(CorruptionError) as caught:
            history.open_load(directory)
        message = str(caught.value)
        assert str(copies.same(target, directory)) in message, message
        assert re.search(rf"names segment {int(source.stem, 16)}\b", message), message


@pytest.mark.parametrize("keep", [1, 2])
@pytest.mark.parametrize("segment_bytes", [1 << 20, 4096])
def test_a_deleted_newest_snapshot_file_with_a_marker_in_the_wal_is_corruption(
    tmp_path: Path, keep: int, segment_bytes: int
) -> None:
    pair = Lockstep(tmp_path, segment_bytes=segment_bytes, keep_snapshots=keep, fsync=True)
    for first in range(1, 41, 10):
        pair.save(HardState(1, "n1", first), ents(first, 10, 1, 200), None)
    pair.compact(snap(10, 1))
    pair.save(None, ents(41, 5, 1), None)
    pair.compact(snap(20, 1))
    pair.save(HardState(1, "n1", 45), [], None)
    pair.close()
    assert_state(open_load(tmp_path, segment_bytes=segment_bytes), pair.expected(), "whole")
    newest = snapshot_files(tmp_path)[-1]
    assert newest.name == f"{20:020d}-{1:020d}.snap"
    newest.unlink()
    with pytest.raises(CorruptionError, match="missing"):
        open_load(tmp_path, segment_bytes=segment_bytes, keep_snapshots=keep)


def test_a_deleted_installed_snapshot_file_is_corruption(copies: Copies) -> None:
    directory = copies.pristine
    pair = Lockstep(directory, fsync=True)
    pair.save(HardState(1, "n1", 3), ents(1, 5, 1), None)
    pair.save(HardState(2, None, 100), ents(101, 3, 2), snap(100, 2))
    pair.close()
    snapshot_files(directory)[-1].unlink()
    with pytest.raises(CorruptionError, match="missing"):
        open_load(directory)


def test_a_snapshot_file_named_for_another_snapshot_is_corruption(copies: Copies) -> None:
    directory = copies.pristine
    pair = Lockstep(directory, fsync=True)
    pair.save(HardState(1, "n1", 3), ents(1, 30, 1), None)
    pair.compact(snap(10, 1))
    pair.close()
    (newest,) = snapshot_files(directory)
    renamed = newest.with_name(f"{10:020d}-{7:020d}.snap")
    newest.rename(renamed)
    with pytest.raises(CorruptionError) as caught:
        open_load(directory)
    assert str(renamed) in str(caught.value)


def test_a_stray_temporary_snapshot_file_is_removed_on_open(
    copies: Copies, caplog: pytest.LogCaptureFixture
) -> None:
    history = write_history(copies.pristine, 51, batches=10, compact_every=4)
    directory = copies()
    stray = directory / "snap" / f"{99:020d}-{9:020d}.snap.tmp"
    stray.write_bytes(b"RMSNAP1\nhalf a snapshot")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert_state(history.open_load(directory), history.states[-1], "with a stray .tmp")
    assert not stray.exists()
    assert any(str(stray) in record.getMessage() for record in caplog.records)


def test_a_stray_temporary_segment_file_does_not_break_opening(copies: Copies) -> None:
    """A crash while rotating can leave `<next>.wal.tmp`, whole or partial: it is not a segment."""
    history = write_history(copies.pristine, 52, segment_bytes=4096, min_segments=2)
    newest = segments(copies.pristine)[-1]
    following = newest.with_name(f"{int(newest.stem, 16) + 1:016x}.wal.tmp")
    for content in (b"", b"\x01\x02garbage", newest.read_bytes()[:20], bytes(100)):
        directory = copies()
        stray = copies.same(following, directory)
        stray.write_bytes(content)
        copies.same(segments(copies.pristine)[0], directory).with_suffix(".wal.tmp").write_bytes(
            b"junk"
        )
        pair = Lockstep(directory, segment_bytes=4096, fsync=True)
        assert_state(pair.loaded, history.states[-1], f"stray {content[:8]!r}")
        # Rotating into the sequence the stray file was made for still works.
        pair.memory = memory_holding(pair.loaded)
        last_index = pair.memory.last_index
        for k in range(3):
            pair.save(HardState(9, "n1", last_index), ents(last_index + 1 + 8 * k, 8, 9, 400), None)
        assert copies.same(following, directory).with_suffix("").exists()
        assert_state(pair.reopen(), pair.expected(), "after rotating past the stray file")
        pair.close()


def test_an_unrelated_file_in_the_wal_directory_is_ignored(copies: Copies) -> None:
    history = write_history(copies.pristine, 53, batches=5)
    directory = copies()
    (directory / "wal" / "README").write_text("not a segment")
    (directory / "wal" / "1.wal").write_bytes(b"not a segment name either")
    assert_state(history.open_load(directory), history.states[-1], "with unrelated files")


def test_opening_a_damaged_directory_changes_nothing_on_disk(copies: Copies) -> None:
    """A refused open must not 'repair' anything: the operator needs the evidence."""
    history = write_history(copies.pristine, 54, segment_bytes=4096, min_segments=3)
    directory = copies()
    segment = copies.same(segments(copies.pristine)[1], directory)
    flip_bit(segment, segment.stat().st_size // 2, 3)
    newest = copies.same(history.last.path, directory)
    append_bytes(newest, b"\x07" * 5)  # a torn tail that a successful open would cut
    snapshot_of_bytes = {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}
    with pytest.raises(CorruptionError):
        FileStorage(directory, segment_bytes=4096)
    after = {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}
    assert after == snapshot_of_bytes


def test_a_flipped_bit_in_a_big_batch_or_a_header_before_the_runway_is_corruption(
    tmp_path: Path,
) -> None:
    """With the runway (zeros kept ahead of the records) and batches of thousands of entries,
    a flipped bit in fsynced data, the newest record's included, is corruption: never taken for
    a torn write and cut off with the acknowledged entries after it. It once was, twice: a
    batch of NORMAL entries stored its types as that many zero bytes (an all-zero sector, as an
    unwritten page leaves), and an unreadable header was judged by the rest of the file (the
    runway's zeros)."""
    pristine = tmp_path / "pristine"
    storage = FileStorage(pristine, fsync=True, preallocate_bytes=1 << 20)
    storage.load()
    data = [b'{"op":"memory.put","value":%d}' % k for k in range(4000)]
    batches = [
        [Entry(k, 1, EntryType.NORMAL, data[k]) for k in range(1, 2001)],
        [Entry(k, 1, EntryType.CHECKPOINT, b"") for k in range(2001, 2301)],  # empty data
        [Entry(2301, 1, EntryType.NOOP, b""), *ents(2302, 1500, 1)],
        *([Entry(k, 1, EntryType.NORMAL, data[k % 4000])] for k in range(3802, 3806)),
    ]
    for batch in batches:
        storage.save(HardState(1, "n1", batch[0].index - 1), batch, None)
    storage.close()
    [segment] = segments(pristine)
    records = scan_segment(segment, 1, is_last=True).records
    rng = random.Random(34)
    positions = [record.offset + k for record in records for k in range(13)]  # headers
    positions += [rng.randrange(records[0].offset, records[-1].offset + 40) for _ in range(60)]
    for position in positions:
        directory = tmp_path / f"flip-{position}"
        shutil.copytree(pristine, directory)
        copy = segments(directory)[0]
        flip_bit(copy, position, rng.randrange(8))
        with pytest.raises(CorruptionError) as caught:
            FileStorage(directory, preallocate_bytes=1 << 20).load()
        assert str(copy) in str(caught.value), position
        shutil.rmtree(directory)


@pytest.mark.parametrize("into_sector", [509, 510, 511])
def test_a_flipped_bit_in_a_record_starting_at_a_sectors_end_is_corruption(
    tmp_path: Path, into_sector: int
) -> None:
    """A record whose first 1-3 bytes end a sector: that part is the length's low bytes, zero
    for a length that is a multiple of 256, and once counted as a sector of it never written
    (a flipped bit anywhere in it then cut it and everything after off as a torn tail)."""

    def build(directory: Path, first: int, second: int) -> int:
        storage = FileStorage(directory, fsync=True, preallocate_bytes=1 << 20)
        storage.load()
        storage.save(HardState(1, "n1", 0), [Entry(1, 1, EntryType.NORMAL, b"x" * first)], None)
        start = storage._writer.current.end
        storage.save(HardState(1, "n1", 1), [Entry(2, 1, EntryType.NORMAL, b"y" * second)], None)
        storage.save(HardState(1, "n1", 2), [Entry(3, 1, EntryType.NORMAL, b"z" * 10)], None)
        storage.close()
        return start

    first = next(n for n in range(1, 600) if build(tmp_path / f"a{n}", n, 10) % 512 == into_sector)
    second = next(
        n
        for n in range(1, 600)
        if _length_at(tmp_path / f"b{n}", build(tmp_path / f"b{n}", first, n)) % 256 == 0
    )
    pristine = tmp_path / f"b{second}"
    start = build(tmp_path / "check", first, second)
    length = _length_at(tmp_path / "check", start)
    for position in [start + 13 + length // 2, *range(start, start + 13)]:
        directory = tmp_path / f"flip-{position}"
        shutil.copytree(pristine, directory)
        copy = segments(directory)[0]
        for bit in range(8):
            flip_bit(copy, position, bit)
            with pytest.raises(CorruptionError):
                FileStorage(directory, preallocate_bytes=1 << 20).load()
            flip_bit(copy, position, bit)  # back


def _length_at(directory: Path, offset: int) -> int:
    data = segments(directory)[0].read_bytes()
    length: int = HEADER.unpack_from(data, offset)[0]
    return length
