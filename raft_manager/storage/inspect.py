"""A read-only look at a node's data directory: what is there, and whether it verifies.

Theory of operation: runs the same recovery as opening the storage (every checksum, the replay,
the snapshot check) without changing a byte, and describes the result: segments with their index
ranges, snapshot files, the hard state, the recovered log's bounds, a torn tail that opening would
cut, or the corruption that would stop the node from starting (file and offset).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptionError
from .file import recover
from .snapshots import SnapshotStore
from .wal import SEGMENT_PATTERN


@dataclass(slots=True)
class StorageReport:
    directory: str
    ok: bool = True
    corruption: dict[str, Any] | None = None  # file, offset, reason
    segments: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    hard_state: dict[str, Any] | None = None
    first_index: int | None = None
    last_index: int | None = None
    torn_tail: dict[str, Any] | None = None  # what opening the storage would cut

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def inspect_storage(directory: Path) -> StorageReport:
    """Describe and verify `directory`. Raises FileNotFoundError if it holds no WAL."""
    wal_dir = directory / "wal"
    if not wal_dir.is_dir():
        raise FileNotFoundError(f"{directory} is not a raft-manager data directory (no wal/)")
    report = StorageReport(str(directory))
    snapshots = SnapshotStore(directory / "snap", keep=1, fsync=False)
    for file in snapshots.files():
        entry: dict[str, Any] = {
            "file": str(file.path),
            "index": file.index,
            "term": file.term,
            "bytes": file.size,
            "ok": True,
        }
        try:
            snapshots.read(file)
        except CorruptionError as error:
            entry.update(ok=False, error=error.reason, offset=error.offset)
        report.snapshots.append(entry)
    try:
        recovery = recover(wal_dir, snapshots)
    except CorruptionError as error:
        report.ok = False
        report.corruption = {
            "file": str(error.path),
            "offset": error.offset,
            "reason": error.reason,
        }
        report.segments = [
            {"file": str(path), "bytes": path.stat().st_size}
            for path in sorted(wal_dir.iterdir())
            if SEGMENT_PATTERN.match(path.name)
        ]
        return report
    restored = recovery.restored
    for info in recovery.segments:
        report.segments.append(
            {
                "file": str(info.path),
                "sequence": info.sequence,
                "bytes": info.end,
                "records": info.records,
                "first_index": info.min_index or None,
                "last_index": info.max_index or None,
            }
        )
        if info.torn_bytes:
            report.torn_tail = {
                "file": str(info.path),
                "offset": info.end,
                "bytes": info.torn_bytes,
            }
    hard = restored.hard_state
    report.hard_state = {"term": hard.term, "vote": hard.vote, "commit": hard.commit}
    offset = restored.snapshot.meta.index if restored.snapshot else 0
    report.first_index = offset + 1
    report.last_index = restored.entries[-1].index if restored.entries else offset
    return report
