"""What the storage does when the disk fails it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raft_manager.core import Entry, EntryType, HardState
from raft_manager.storage import FileStorage, fsutil
from raft_manager.storage.inspect import inspect_storage


def _entries(first: int, count: int) -> list[Entry]:
    return [Entry(first + k, 1, EntryType.NORMAL, b"x" * 100) for k in range(count)]


def test_a_failed_write_is_cut_back_and_the_log_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileStorage(tmp_path)
    storage.load()
    storage.save(HardState(1, "a", 0), _entries(1, 5), None)

    def half_then_full_disk(fd: int, parts: list[bytes], offset: int) -> int:
        blob = b"".join(parts)
        os.pwrite(fd, blob[: len(blob) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "pwritev", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        storage.save(HardState(1, "a", 5), _entries(6, 5), None)
    monkeypatch.undo()
    storage.save(HardState(1, "a", 5), _entries(6, 3), None)  # the next write lands cleanly
    storage.close()

    restored = FileStorage(tmp_path).load()
    assert [entry.index for entry in restored.entries] == list(range(1, 9))
    assert restored.hard_state == HardState(1, "a", 5)


def test_a_failed_fsync_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = FileStorage(tmp_path)
    storage.load()

    def failing_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("raft_manager.storage.wal.os.fdatasync", failing_fdatasync)
    with pytest.raises(OSError, match="Input/output"):
        storage.save(HardState(1, "a", 0), _entries(1, 1), None)


def test_a_commit_only_save_is_written_without_an_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hard state whose commit index alone moved is written with sync=False: no fdatasync,
    yet the record is in the file (a reopen reads it); the next synced save covers it."""
    storage = FileStorage(tmp_path)
    storage.load()
    storage.save(HardState(1, "a", 0), _entries(1, 3), None)
    syncs: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(
        "raft_manager.storage.wal.os.fdatasync", lambda fd: syncs.append(fd) or real_fdatasync(fd)
    )
    storage.save(HardState(1, "a", 3), (), None, sync=False)
    assert syncs == []
    written = inspect_storage(tmp_path).hard_state  # read-only: the storage stays open
    assert written == {"term": 1, "vote": "a", "commit": 3}
    storage.save(HardState(1, "a", 3), _entries(4, 1), None)
    assert len(syncs) == 1
    storage.close()
    restored = FileStorage(tmp_path).load()
    assert restored.hard_state == HardState(1, "a", 3)
    assert [entry.index for entry in restored.entries] == [1, 2, 3, 4]


def test_no_room_for_the_runway_keeps_the_record_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record was written; only the zeros ahead of it failed (a full disk): the save
    succeeds, the file ends at the record, and the log stays usable."""
    storage = FileStorage(tmp_path)
    storage.load()
    storage.save(HardState(1, "a", 0), _entries(1, 1), None)
    real_pwritev = os.pwritev

    def no_room_for_zeros(fd: int, parts: list[bytes], offset: int) -> int:
        if parts and not any(parts[0]):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwritev(fd, parts, offset)

    segment = sorted((tmp_path / "wal").glob("*.wal"))[-1]
    monkeypatch.setattr(fsutil.os, "pwritev", no_room_for_zeros)
    for index in range(2, 4500):  # enough to need the runway topped up
        storage.save(HardState(1, "a", index - 1), _entries(index, 1), None)
    monkeypatch.undo()
    size = segment.stat().st_size
    storage.close()
    restored = FileStorage(tmp_path).load()
    assert [entry.index for entry in restored.entries] == list(range(1, 4500))
    assert size < 4500 * 160 < 1 << 20  # the file ends near the records: no runway


def test_a_segment_is_synced_before_the_next_one_begins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit-only record (written without an fsync) that fills a segment is synced before
    the rotation: an older segment never holds a torn record."""
    storage = FileStorage(tmp_path, segment_bytes=4096)
    storage.load()
    storage.save(HardState(1, "a", 0), _entries(1, 30), None)  # about 3.3 KB
    syncs: list[int] = []
    real_fdatasync = os.fdatasync
    monkeypatch.setattr(
        "raft_manager.storage.wal.os.fdatasync", lambda fd: syncs.append(fd) or real_fdatasync(fd)
    )
    while len(sorted((tmp_path / "wal").glob("*.wal"))) == 1:
        storage.save(HardState(1, "a", 30), (), None, sync=False)
    assert len(syncs) == 1
    storage.close()
