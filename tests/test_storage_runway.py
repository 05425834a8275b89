"""The WAL's runway: zeros a writer with fsync on keeps ahead of the records (storage/wal.py).

A record lands inside the file, so its fsync need not write the file's size. These tests check
that the layout is read back exactly (over rotations, and mixed with the append layout of
`preallocate_bytes=0`), that the file's size changes only when the runway is topped up, and the
crash model over it: an unsynced last record leaves a prefix of its bytes, the rest of the
runway's zeros, in any order of its pages, which is a torn tail (the state before that record);
a whole record that fails its checksum is corruption.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from pathlib import Path

import pytest
from storage_helpers import Lockstep, ents, segments

from raft_manager.core import HardState
from raft_manager.storage import CorruptionError, FileStorage
from raft_manager.storage.inspect import inspect_storage
from raft_manager.storage.wal import PREALLOCATE_BYTES, RUNWAY_RECORD_BYTES

SEGMENT_BYTES = 3 * PREALLOCATE_BYTES
RECORD_PAYLOAD = 2000  # bytes per entry: a half runway is about 260 records


def _records_end(directory: Path) -> int:
    """Where the records stop in the newest segment (read-only)."""
    end: int = inspect_storage(directory).segments[-1]["bytes"]
    return end


def _write(pair: Lockstep, count: int, first: int = 1) -> None:
    for index in range(first, first + count):
        pair.save(HardState(1, "n1", index - 1), ents(index, 1, 1, RECORD_PAYLOAD), None)


def test_records_go_into_the_runway_and_read_back_over_rotations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = Lockstep(
        tmp_path, segment_bytes=SEGMENT_BYTES, fsync=True, preallocate_bytes=PREALLOCATE_BYTES
    )
    sizes = []
    for index in range(1, 3200):  # about 6.4 MB: two rotations
        _write(pair, 1, index)
        sizes.append(segments(tmp_path)[-1].stat().st_size)
    pair.close()
    files = segments(tmp_path)
    assert len(files) == 3
    # The size changed when a runway was topped up or a segment began, not on every record.
    assert sum(a != b for a, b in itertools.pairwise(sizes)) < 20
    assert all(path.stat().st_size <= SEGMENT_BYTES + RECORD_PAYLOAD + 200 for path in files)
    last = files[-1]
    end = _records_end(tmp_path)
    assert last.stat().st_size - end >= PREALLOCATE_BYTES // 2  # zeros kept ahead
    assert not any(last.read_bytes()[end:])
    caplog.set_level(logging.WARNING, logger="raft_manager.storage")
    size = last.stat().st_size
    reopened = pair.reopen(fsync=True)
    assert reopened == pair.expected()
    assert last.stat().st_size == size and caplog.records == []  # the runway is no torn tail
    pair.close()


def test_the_append_layout_and_the_runway_mix(tmp_path: Path) -> None:
    """A directory written without a runway takes one when reopened with it, and back."""
    pair = Lockstep(tmp_path, segment_bytes=SEGMENT_BYTES, fsync=True)
    _write(pair, 50)
    assert segments(tmp_path)[-1].stat().st_size == _records_end(tmp_path)
    pair.preallocate_bytes = PREALLOCATE_BYTES
    pair.reopen(fsync=True)
    _write(pair, 50, first=51)
    assert segments(tmp_path)[-1].stat().st_size > _records_end(tmp_path)
    pair.preallocate_bytes = 0
    assert pair.reopen(fsync=True) == pair.expected()
    _write(pair, 50, first=101)  # over the zeros, not after them
    assert pair.reopen() == pair.expected()
    pair.close()


def test_only_small_records_top_the_runway_up(tmp_path: Path) -> None:
    """A burst's large record goes past the runway and grows the file; the next small one
    writes a runway again."""
    pair = Lockstep(
        tmp_path, segment_bytes=SEGMENT_BYTES, fsync=True, preallocate_bytes=PREALLOCATE_BYTES
    )
    _write(pair, 1)
    segment = segments(tmp_path)[0]
    assert segment.stat().st_size > _records_end(tmp_path)
    big = 2 * RUNWAY_RECORD_BYTES
    for index in range(2, 2 + PREALLOCATE_BYTES // big + 2):
        pair.save(HardState(1, "n1", index - 1), ents(index, 1, 1, big), None)
    assert segment.stat().st_size == _records_end(tmp_path)  # past the runway, no new one
    _write(pair, 1, first=2 + PREALLOCATE_BYTES // big + 2)
    assert segment.stat().st_size - _records_end(tmp_path) >= PREALLOCATE_BYTES // 2
    assert pair.reopen() == pair.expected()
    pair.close()


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, Lockstep, int, int]:
    """A directory whose last record, at [start, end), the tests treat as unsynced."""
    directory = tmp_path / "pristine"
    pair = Lockstep(
        directory, segment_bytes=SEGMENT_BYTES, fsync=True, preallocate_bytes=PREALLOCATE_BYTES
    )
    _write(pair, 30)
    start = _records_end(directory)
    pair.save(HardState(1, "n1", 30), ents(31, 1, 1, 3 * 4096), None)  # over several pages
    end = _records_end(directory)
    pair.close()
    return directory, pair, start, end


def _copy(directory: Path, name: str) -> Path:
    copy = directory.parent / name
    shutil.copytree(directory, copy)
    return copy


def test_a_prefix_of_the_last_record_in_the_runway_is_a_torn_tail(
    history: tuple[Path, Lockstep, int, int], caplog: pytest.LogCaptureFixture
) -> None:
    directory, pair, start, end = history
    before = pair.memory.load()
    before_last = FileStorage(directory, preallocate_bytes=0).load()
    assert len(before_last.entries) == 31
    caplog.set_level(logging.WARNING, logger="raft_manager.storage")
    for kept in (1, 13, 14, (end - start) // 2, end - start - 1):
        copy = _copy(directory, f"kept-{kept}")
        segment = segments(copy)[-1]
        with segment.open("r+b") as file:  # the rest of the record never reached the disk
            file.seek(start + kept)
            file.write(bytes(end - start - kept))
        caplog.clear()
        storage = FileStorage(copy, segment_bytes=SEGMENT_BYTES)
        restored = storage.load()
        assert [entry.index for entry in restored.entries] == list(range(1, 31)), kept
        assert any("torn tail" in record.getMessage() for record in caplog.records), kept
        assert segment.stat().st_size == start  # cut off, runway and all
        storage.save(HardState(2, "n2", 30), ents(31, 2, 2, 100), None)  # and the log goes on
        storage.close()
        again = FileStorage(copy, segment_bytes=SEGMENT_BYTES).load()
        assert [(entry.index, entry.term) for entry in again.entries][-3:] == [
            (30, 1),
            (31, 2),
            (32, 2),
        ]
    assert before.entries[-1].index == 31


@pytest.mark.parametrize("missing", ["header", "first page", "a middle sector", "last page"])
def test_pages_of_the_last_record_that_reached_the_disk_out_of_order_are_a_torn_tail(
    history: tuple[Path, Lockstep, int, int], missing: str
) -> None:
    """A write over the runway's zeros may reach the disk in any order of its pages: a page of
    the last record missing (zeros), with later ones present, is a torn tail, not corruption."""
    directory, _, start, end = history
    page = 4096
    first_page_end = start - start % page + page
    holes = {
        "header": (start, start + 13),
        "first page": (start, first_page_end),
        "a middle sector": (first_page_end + 512, first_page_end + 1024),
        "last page": (end - end % page, end),
    }
    hole_start, hole_end = holes[missing]
    assert start <= hole_start < hole_end <= end and end - start > 2 * page
    copy = _copy(directory, missing.replace(" ", "-"))
    segment = segments(copy)[-1]
    with segment.open("r+b") as file:
        file.seek(hole_start)
        file.write(bytes(hole_end - hole_start))
    restored = FileStorage(copy, segment_bytes=SEGMENT_BYTES).load()
    assert [entry.index for entry in restored.entries] == list(range(1, 31))
    assert segment.stat().st_size == start


def test_a_whole_last_record_with_a_flipped_bit_is_corruption(
    history: tuple[Path, Lockstep, int, int],
) -> None:
    """No sector of it is missing: its bytes all reached the disk, and one of them changed."""
    directory, _, start, end = history
    copy = _copy(directory, "flipped")
    segment = segments(copy)[-1]
    blob = bytearray(segment.read_bytes())
    blob[(start + end) // 2] ^= 0x04
    segment.write_bytes(bytes(blob))
    with pytest.raises(CorruptionError) as caught:
        FileStorage(copy, segment_bytes=SEGMENT_BYTES)
    assert caught.value.offset == start and caught.value.path == segment
