"""Shared helpers for the FileStorage tests (test_storage_*.py).

Entries carry a payload derived from (index, term), so an entry is identical wherever it appears
and a test can tell a torn or misplaced entry from a whole one. `Lockstep` drives a FileStorage
and a MemoryStorage (the reference model) with the same writes and compares them after reopening.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from raft_manager.core import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    RestoredState,
    Snapshot,
    SnapshotMeta,
)
from raft_manager.storage import FileStorage, MemoryStorage

VOTERS = ("n1", "n2", "n3")
ENTRY_TYPES = tuple(EntryType)


def payload(index: int, term: int, size: int = 16) -> bytes:
    """`size` bytes derived from (index, term)."""
    unit = f"<{index}:{term}>".encode()
    return (unit * (size // len(unit) + 1))[:size]


def entry(index: int, term: int, size: int = 16) -> Entry:
    return Entry(index, term, ENTRY_TYPES[index % len(ENTRY_TYPES)], payload(index, term, size))


def ents(first: int, count: int, term: int, size: int = 16) -> list[Entry]:
    return [entry(first + k, term, size) for k in range(count)]


def snap(index: int, term: int, size: int = 32) -> Snapshot:
    image = f"image@{index}/{term};".encode()
    data = (image * (size // len(image) + 1))[:size]
    return Snapshot(SnapshotMeta(index, term, ConfState(VOTERS, ("l1",))), data)


def wal_dir(directory: Path) -> Path:
    return directory / "wal"


def snap_dir(directory: Path) -> Path:
    return directory / "snap"


def segments(directory: Path) -> list[Path]:
    """Segment files, oldest first (their hex names sort by sequence)."""
    return sorted(wal_dir(directory).glob("*.wal"))


def snapshot_files(directory: Path) -> list[Path]:
    return sorted(snap_dir(directory).glob("*.snap"))


def open_load(
    directory: Path, *, segment_bytes: int = 1 << 20, keep_snapshots: int = 2, fsync: bool = False
) -> RestoredState:
    """Open FileStorage, load, close: what a restarting node would find."""
    storage = FileStorage(
        directory, segment_bytes=segment_bytes, keep_snapshots=keep_snapshots, fsync=fsync
    )
    try:
        return storage.load()
    finally:
        storage.close()


def describe(state: RestoredState) -> str:
    """A short summary for assertion messages."""
    snapshot = state.snapshot
    where = f"snap=({snapshot.meta.index},{snapshot.meta.term})" if snapshot else "snap=None"
    indexes = [e.index for e in state.entries]
    span = f"{indexes[0]}..{indexes[-1]}" if indexes else "-"
    return f"hs={tuple(state.hard_state)} {where} entries={span} ({len(indexes)})"


def last_index(state: RestoredState) -> int:
    if state.entries:
        return state.entries[-1].index
    return state.snapshot.meta.index if state.snapshot else 0


def flip_bit(path: Path, position: int, bit: int) -> None:
    with path.open("r+b") as file:
        file.seek(position)
        byte = file.read(1)[0]
        file.seek(position)
        file.write(bytes([byte ^ (1 << bit)]))


def append_bytes(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


class Lockstep:
    """A FileStorage and a MemoryStorage written with the same calls."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 1 << 20,
        keep_snapshots: int = 2,
        fsync: bool = False,
        preallocate_bytes: int = 0,
    ) -> None:
        """`preallocate_bytes` 0 (the default here): the append layout, where a segment file
        ends where its records do (the crash tests cut files by their size)."""
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.keep_snapshots = keep_snapshots
        self.preallocate_bytes = preallocate_bytes
        self.memory = MemoryStorage()
        self.file = self._open(fsync)
        self.loaded = self.file.load()

    def _open(self, fsync: bool) -> FileStorage:
        return FileStorage(
            self.directory,
            segment_bytes=self.segment_bytes,
            keep_snapshots=self.keep_snapshots,
            fsync=fsync,
            preallocate_bytes=self.preallocate_bytes,
        )

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        *,
        sync: bool = True,
    ) -> None:
        self.memory.save(hard_state, entries, snapshot)
        self.file.save(hard_state, entries, snapshot, sync=sync)

    def compact(self, snapshot: Snapshot) -> None:
        self.memory.compact(snapshot)
        self.file.compact(snapshot)

    def expected(self) -> RestoredState:
        return self.memory.load()

    def reopen(self, fsync: bool = False) -> RestoredState:
        """Close and reopen the FileStorage; returns what it loaded."""
        self.file.close()
        self.file = self._open(fsync)
        self.loaded = self.file.load()
        return self.loaded

    def close(self) -> None:
        self.file.close()
