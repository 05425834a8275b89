"""Segmented write-ahead log files: scanning with checksums on the way in, appending on the way out.

Theory of operation: the log is a directory of segment files named by a hex sequence number,
`0000000000000001.wal`, `...2.wal`, each opened by a SEGMENT record. Records are only ever
appended, each batch with one write and one fsync (group commit). When the current segment passes
`segment_bytes` a new one is made under a temporary name, fsynced, renamed into place and the
directory fsynced, so a segment file either does not exist or starts with a whole header.
Old segments are deleted (and the directory fsynced) once a snapshot covers every entry in them.

Scanning reads every segment in sequence order and verifies every checksum. A gap in the sequence
numbers, a damaged record anywhere but at the very end of the last segment, or a record that does
not decode raises CorruptionError naming the file and the byte offset. The end of the last segment
may hold a torn record, left by a crash in the middle of an unsynced write: the scan reports where
it starts, and `open_for_append` truncates it away (logging how many bytes it dropped).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from crc32c import crc32c

from raft_manager.core import HardState

from .errors import CorruptionError
from .fsutil import fsync_directory, write_file_atomically, writev_all
from .records import (
    HEADER,
    HEADER_SIZE,
    RECORD_END,
    RecordError,
    RecordType,
    decode_segment,
    encode_segment,
    frame,
    header_ok,
)

log = logging.getLogger("raft_manager.storage")

SEGMENT_PATTERN = re.compile(r"^([0-9a-f]{16})\.wal$")


def segment_name(sequence: int) -> str:
    return f"{sequence:016x}.wal"


@dataclass(slots=True)
class Record:
    offset: int
    type: RecordType
    payload: memoryview


@dataclass(slots=True)
class SegmentScan:
    path: Path
    sequence: int
    size: int
    hard_state: HardState
    records: list[Record] = field(default_factory=list)  # after the SEGMENT record
    torn_at: int | None = None  # where a torn tail starts (last segment only)

    @property
    def torn_bytes(self) -> int:
        return self.size - self.torn_at if self.torn_at is not None else 0


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in sequence order; raises CorruptionError on a gap in the sequence."""
    found = sorted(
        (int(match.group(1), 16), path)
        for path in directory.iterdir()
        if (match := SEGMENT_PATTERN.match(path.name))
    )
    for (previous, _), (sequence, path) in pairwise(found):
        if sequence != previous + 1:
            raise CorruptionError(
                path, 0, f"segment {segment_name(previous + 1)} is missing before this one"
            )
    return found


def scan_segment(path: Path, sequence: int, is_last: bool) -> SegmentScan:
    data = memoryview(path.read_bytes())
    size = len(data)
    records: list[Record] = []
    offset = 0
    torn_at: int | None = None
    while offset < size:
        problem = _record_problem(data, offset, size)
        if problem is None:
            length, record_type = HEADER.unpack_from(data, offset)[:2]
            start = offset + HEADER_SIZE
            try:
                kind = RecordType(record_type)
            except ValueError:
                raise CorruptionError(path, offset, f"unknown record type {record_type}") from None
            records.append(Record(offset, kind, data[start : start + length]))
            offset = start + length + 1
            continue
        torn, reason = problem
        if torn and is_last:
            torn_at = offset
            break
        raise CorruptionError(path, offset, reason)
    if not records or records[0].type is not RecordType.SEGMENT:
        raise CorruptionError(path, 0, "the segment does not start with a segment header")
    try:
        found_sequence, hard_state = decode_segment(records[0].payload)
    except RecordError as error:
        raise CorruptionError(path, 0, str(error)) from error
    if found_sequence != sequence:
        raise CorruptionError(path, 0, f"the header names segment {found_sequence}")
    return SegmentScan(path, sequence, size, hard_state, records[1:], torn_at)


def _record_problem(data: memoryview, offset: int, size: int) -> tuple[bool, str] | None:
    """None if a whole, intact record starts at `offset`; else (is it a torn tail?, why)."""
    remaining = size - offset
    if remaining < HEADER_SIZE:
        return True, f"partial record header ({remaining} bytes)"
    header = data[offset : offset + HEADER_SIZE]
    if not header_ok(header):
        return _zeroed_before(data, offset + HEADER_SIZE), "record header checksum mismatch"
    length, _, payload_crc, _ = HEADER.unpack_from(header)
    end = offset + HEADER_SIZE + length + 1
    if end > size:
        return True, f"record of {length} bytes runs past the end of the file"
    start = offset + HEADER_SIZE
    if data[end - 1] != RECORD_END:
        return _zeroed_before(data, end), "record end byte missing"
    if crc32c(data[start : end - 1]) != payload_crc:
        return _zeroed_before(data, end), "record payload checksum mismatch"
    return None


def _zeroed_before(data: memoryview, end: int) -> bool:
    """Is everything from some point before `end` to the end of the file zero, i.e. does the
    file's last non-zero byte lie before `end - 1`? Then the record was cut short by a crash."""
    last_nonzero = len(bytes(data).rstrip(b"\0")) - 1
    return last_nonzero < end - 1


def scan(directory: Path) -> Iterator[SegmentScan]:
    """Every segment, verified, in order. A torn tail is allowed only at the end of the last."""
    segments = list_segments(directory)
    for position, (sequence, path) in enumerate(segments):
        yield scan_segment(path, sequence, is_last=position == len(segments) - 1)


@dataclass(slots=True)
class SegmentInfo:
    sequence: int
    path: Path
    max_index: int = 0  # the highest entry index written in it (0: none)
    min_index: int = 0  # the lowest (0: none)
    records: int = 0  # READY records found when it was scanned
    size: int = 0  # bytes when it was scanned
    torn_bytes: int = 0  # a torn tail found when it was scanned


class SegmentWriter:
    """Appends records to the newest segment and manages the segment files."""

    def __init__(
        self, directory: Path, segments: list[SegmentInfo], segment_bytes: int, fsync: bool
    ) -> None:
        self.directory = directory
        self.segments = segments
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        current = segments[-1].path
        self._fd = os.open(current, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size

    @classmethod
    def create(
        cls, directory: Path, segment_bytes: int, fsync: bool, hard_state: HardState
    ) -> SegmentWriter:
        path = _make_segment(directory, 1, hard_state, fsync)
        return cls(directory, [SegmentInfo(1, path)], segment_bytes, fsync)

    @property
    def current(self) -> SegmentInfo:
        return self.segments[-1]

    def append(
        self, record: list[bytes], max_index: int, hard_state: HardState, *, sync: bool = True
    ) -> None:
        """Append one framed record (as buffers) with one write and one fsync (unless `sync` is
        False); start a new segment if this one is full.

        A failed write (a full disk, say) is cut back off before the error propagates, so the
        next append does not land after half a record. A failed fsync propagates as it is: what
        the kernel kept is then unknown, and the node must stop rather than carry on.
        """
        try:
            self._size += writev_all(self._fd, record)
        except OSError:
            os.ftruncate(self._fd, self._size)
            raise
        if self._fsync and sync:
            os.fdatasync(self._fd)
        self.current.max_index = max(self.current.max_index, max_index)
        if self._size >= self.segment_bytes:
            self._rotate(hard_state)

    def _rotate(self, hard_state: HardState) -> None:
        sequence = self.current.sequence + 1
        path = _make_segment(self.directory, sequence, hard_state, self._fsync)
        os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = os.fstat(self._fd).st_size
        self.segments.append(SegmentInfo(sequence, path))

    def drop_through(self, index: int) -> int:
        """Delete the oldest segments while every entry in them lies at or below `index`.

        Only a prefix of the sequence is ever deleted, oldest first, so a crash in the middle
        leaves no gap; the current segment is always kept. Returns how many were deleted.
        """
        dropped = 0
        while len(self.segments) > 1 and self.segments[0].max_index <= index:
            self.segments[0].path.unlink()
            del self.segments[0]
            dropped += 1
        if dropped and self._fsync:
            fsync_directory(self.directory)
        return dropped

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _make_segment(directory: Path, sequence: int, hard_state: HardState, fsync: bool) -> Path:
    path = directory / segment_name(sequence)
    header = frame(RecordType.SEGMENT, encode_segment(sequence, hard_state))
    write_file_atomically(path, header, fsync=fsync)
    return path
