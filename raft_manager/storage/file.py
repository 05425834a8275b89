"""Durable storage on local disk: a write-ahead log plus snapshot files, and crash recovery.

Theory of operation: `DIR/wal/` holds the segments (wal.py), `DIR/snap/` the snapshots
(snapshots.py). Saving a Ready writes its snapshot file first (if the leader sent one), then one
READY record carrying the hard state, an install marker and the entries, with one fsync. Compacting
writes the snapshot file, appends a compaction marker, then deletes the segments and snapshot
files that are no longer needed. Entries are never rewritten: a READY record whose first entry is
at or below the current last index replaces that suffix when the log is replayed.

Recovery replays every record in order. The log it rebuilds stores Entry objects only above the
newest snapshot file's index (what the node needs in memory) but tracks the whole index range, so
that a gap, an entry written below the log's start, or a marker for a snapshot whose file is
missing is caught as corruption. Last, the newest snapshot file is laid over the log: if the log
holds the snapshot's last entry, the prefix is dropped; otherwise the log is replaced by the
snapshot (a crash between writing an installed snapshot's file and its marker). Segments deleted
after a compaction leave the log's start unknown; the newest snapshot must then cover it.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raft_manager.core import Entry, HardState, RestoredState, Snapshot

from .base import bounds_after
from .errors import CorruptionError
from .fsutil import DirectoryLock
from .records import (
    Marker,
    ReadyRecord,
    RecordError,
    RecordType,
    decode_ready,
    encode_ready,
    frame_parts,
)
from .snapshots import SnapshotFile, SnapshotStore
from .wal import PREALLOCATE_BYTES, SegmentInfo, SegmentWriter, scan

log = logging.getLogger("raft_manager.storage")

DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_KEEP_SNAPSHOTS = 2


class LogReplay:
    """The log as the WAL's records rebuild it; Entry objects only above `skip_through`."""

    def __init__(self, skip_through: int, complete: bool) -> None:
        self.skip_through = skip_through
        # False when older segments were deleted: what came before the first record is unknown,
        # and a jump in indexes is the trace of a deleted segment that a snapshot must cover.
        self.complete = complete
        self.base: int | None = None  # index before the first known entry; None: no records yet
        self.base_term: int | None = None  # None: unknown (older segments were deleted)
        self.last = 0
        self.term_at_skip: int | None = None  # term of the entry at skip_through, if held
        self.entries: list[Entry] = []  # the entries above max(base, skip_through)
        self.hard_state = HardState()
        self.newest_marker = 0

    def _first_stored(self) -> int:
        return max(self.base or 0, self.skip_through) + 1

    def term(self, index: int) -> int | None:
        if self.base is None or index < self.base or index > self.last:
            return None
        if index == self.base:
            return self.base_term
        if index == self.skip_through:
            return self.term_at_skip
        if index > self.skip_through:
            return self.entries[index - self._first_stored()].term
        return None  # skipped: a snapshot covers it

    def apply(self, record: ReadyRecord, path: Path, offset: int) -> None:
        if record.hard_state is not None:
            self.hard_state = record.hard_state
        if record.marker is not None:
            self._cut(record.marker, path, offset)
        if record.count:
            self._append(record, path, offset)

    def _cut(self, marker: Marker, path: Path, offset: int) -> None:
        index, term = marker.index, marker.term
        self.newest_marker = max(self.newest_marker, index)
        if marker.install:  # the leader's snapshot replaced the whole log
            self.base, self.base_term, self.last = index, term, index
            self.entries = []
            self.term_at_skip = term if index == self.skip_through else None
            return
        if self.base is None:  # the first record left: older segments were deleted
            self.base, self.base_term, self.last = index, term, index
            return
        if index == self.base and self.base_term is None:
            self.base_term = term  # the unknown start is where this snapshot ends
        if index <= self.base:
            return
        held = self.term(index)
        if held != term:
            # Not held here: fine only if the newest snapshot covers it, and either the entries
            # were skipped (below that snapshot) or they lived in deleted segments.
            covered = held is None and index <= self.skip_through
            if not (covered and (index <= self.last or not self.complete)):
                raise CorruptionError(
                    path, offset, f"compaction to ({index}, {term}) of entries not held"
                )
        if index > self.last:  # the log went this far in segments deleted since
            self.last, self.entries = index, []
            self.term_at_skip = term if index == self.skip_through else None
        first_stored = self._first_stored()
        self.base, self.base_term = index, term
        del self.entries[: max(self._first_stored() - first_stored, 0)]

    def _append(self, record: ReadyRecord, path: Path, offset: int) -> None:
        first = record.first_index
        if self.base is None:
            self.base, self.last = first - 1, first - 1
            self.base_term = 0 if first == 1 else None
        if first > self.last + 1:
            if self.complete:
                raise CorruptionError(
                    path, offset, f"entries jump from {self.last} to {first}: a gap in the log"
                )
            self.base, self.base_term, self.last = first - 1, None, first - 1
            self.entries, self.term_at_skip = [], None
        stored_from = self._first_stored()
        if first <= self.base:
            if self.base_term is not None:  # the start is a snapshot: nothing goes below it
                raise CorruptionError(path, offset, f"entry {first} lies before the log's start")
            self.base = first - 1  # an unknown start (older segments deleted) is only a bound
        del self.entries[max(first - stored_from, 0) :]  # a suffix is replaced
        skip = self.skip_through
        if first <= skip:
            self.term_at_skip = None
        self.last = first + record.count - 1
        if first <= skip <= self.last:
            self.term_at_skip = record.terms[skip - first]
        self.entries.extend(record.entries)

    def finish(self, snapshot: Snapshot | None, snap_path: Path) -> RestoredState:
        """Lay the newest snapshot over the replayed log."""
        index = snapshot.meta.index if snapshot is not None else 0
        if self.newest_marker > index:
            raise CorruptionError(
                snap_path,
                0,
                f"the WAL records snapshot {self.newest_marker}, whose file is missing",
            )
        if self.base is None:
            return RestoredState(self.hard_state, snapshot, [])
        if self.base > index:
            raise CorruptionError(
                snap_path,
                0,
                f"the log starts after {self.base} but the newest snapshot is at {index}: "
                f"entries {index + 1}..{self.base} are missing",
            )
        if snapshot is None:
            return RestoredState(self.hard_state, None, self.entries)
        held = self.term(index)
        if held == snapshot.meta.term or (held is None and self.base == index):
            # The log continues the snapshot (at an unknown start, it can only have come after it).
            return RestoredState(self.hard_state, snapshot, self.entries)
        return RestoredState(self.hard_state, snapshot, [])  # the snapshot replaced the log


class FileStorage:
    """The Storage interface on local disk. Opening it recovers (or refuses to)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        keep_snapshots: int = DEFAULT_KEEP_SNAPSHOTS,
        fsync: bool = True,
        preallocate_bytes: int = PREALLOCATE_BYTES,
    ) -> None:
        """`preallocate_bytes`: the runway of zeros kept ahead of the records with fsync on
        (wal.py; 0: none, each record grows the file), at most PREALLOCATE_BYTES."""
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self.directory = Path(directory)
        self._wal_dir = self.directory / "wal"
        self._wal_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(self.directory)  # one writer per log
        try:
            self._open(segment_bytes, keep_snapshots, fsync, preallocate_bytes)
        except BaseException:
            self._lock.release()
            raise

    def _open(
        self, segment_bytes: int, keep_snapshots: int, fsync: bool, preallocate_bytes: int
    ) -> None:
        for stray in self._wal_dir.glob("*.tmp"):
            log.warning("removing %s: a segment creation that never finished", stray)
            stray.unlink()
        self._snapshots = SnapshotStore(self.directory / "snap", keep_snapshots, fsync)
        self._snapshots.directory.mkdir(exist_ok=True)
        self._snapshots.remove_strays()
        recovery = recover(self._wal_dir, self._snapshots)
        restored = recovery.restored
        self._restored: RestoredState | None = restored
        self._hard_state = restored.hard_state
        # The log's bounds, to refuse a write that replay would find corrupt.
        self._offset = restored.snapshot.meta.index if restored.snapshot else 0
        self._last_index = restored.entries[-1].index if restored.entries else self._offset
        segments = recovery.segments
        if segments and segments[-1].torn_bytes:
            torn = segments[-1]
            log.warning(
                "%s: dropped a torn tail of %d bytes at offset %d (a write cut short by a crash)",
                torn.path,
                torn.torn_bytes,
                torn.end,
            )
            os.truncate(torn.path, torn.end)
            torn.torn_bytes = 0
        if segments:
            self._writer = SegmentWriter(
                self._wal_dir, segments, segment_bytes, fsync, preallocate_bytes
            )
        else:
            self._writer = SegmentWriter.create(
                self._wal_dir, segment_bytes, fsync, HardState(), preallocate_bytes
            )

    def load(self) -> RestoredState:
        """What recovery found. Only the first call returns the entries (they are not kept)."""
        restored = self._restored
        if restored is None:
            raise RuntimeError("load() may be called once, right after opening")
        self._restored = None
        return restored

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        *,
        sync: bool = True,
    ) -> None:
        """Persist one Ready: the snapshot file first, then one READY record, one fsync (none
        with `sync=False`, allowed only for a hard state whose commit index alone changed: a
        later fsync makes it durable, and a crash before that loses only a commit index).

        Entries that would not attach to the log (leaving a gap, or reaching below the snapshot)
        raise ValueError and nothing is written.
        """
        offset, last = bounds_after(snapshot, entries, self._offset, self._last_index)
        marker = None
        if snapshot is not None:
            self._snapshots.save(snapshot)
            marker = Marker(snapshot.meta.index, snapshot.meta.term, install=True)
        if hard_state is None and marker is None and not entries:
            return
        if hard_state is not None:
            self._hard_state = hard_state
        record = frame_parts(RecordType.READY, encode_ready(hard_state, marker, entries))
        max_index = entries[-1].index if entries else 0
        self._writer.append(record, max_index, self._hard_state, sync=sync)
        self._offset, self._last_index = offset, last

    def compact(self, snapshot: Snapshot) -> None:
        """Keep our own snapshot and drop what it covers from the log (ValueError if it reaches
        past the log's end)."""
        meta = snapshot.meta
        if meta.index > self._last_index:
            raise ValueError(f"cannot compact to {meta.index}: the log ends at {self._last_index}")
        if meta.index <= self._offset:
            return
        self._snapshots.save(snapshot)
        marker = Marker(meta.index, meta.term, install=False)
        self._writer.append(
            frame_parts(RecordType.READY, encode_ready(None, marker, [])), 0, self._hard_state
        )
        self._writer.drop_through(meta.index)
        self._offset = meta.index

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._lock.release()


@dataclass(slots=True)
class Recovery:
    restored: RestoredState
    segments: list[SegmentInfo]
    snapshot_files: list[SnapshotFile]


def recover(wal_dir: Path, snapshots: SnapshotStore) -> Recovery:
    """Replay the WAL and lay the newest snapshot over it, changing nothing on disk (a torn tail
    is reported in the last segment's `torn_bytes` for the caller to cut). Raises
    CorruptionError."""
    files = snapshots.files()
    snapshot = snapshots.read(files[-1]) if files else None
    segments: list[SegmentInfo] = []
    scans = scan(wal_dir)
    first_scan = next(scans, None)
    complete = first_scan is None or first_scan.sequence == 1
    replay = LogReplay(snapshot.meta.index if snapshot else 0, complete)
    for segment in itertools.chain([first_scan] if first_scan else [], scans):
        if not segments:
            replay.hard_state = segment.hard_state
        info = SegmentInfo(
            segment.sequence, segment.path, end=segment.end, torn_bytes=segment.torn_bytes
        )
        for record in segment.records:
            if record.type is not RecordType.READY:
                raise CorruptionError(segment.path, record.offset, f"unexpected {record.type.name}")
            try:
                ready = decode_ready(record.payload, replay.skip_through)
            except RecordError as error:
                raise CorruptionError(segment.path, record.offset, str(error)) from error
            replay.apply(ready, segment.path, record.offset)
            info.records += 1
            if ready.count:
                last = ready.first_index + ready.count - 1
                info.max_index = max(info.max_index, last)
                info.min_index = min(info.min_index or ready.first_index, ready.first_index)
        segments.append(info)
    restored = replay.finish(snapshot, files[-1].path if files else snapshots.directory)
    return Recovery(restored, segments, files)
