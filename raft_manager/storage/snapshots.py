"""Snapshot files: one per snapshot, written atomically, the newest K kept.

Theory of operation: a snapshot file `<index>-<term>.snap` (both zero-padded to 20 digits, so the
names sort by index) holds

    magic "RMSNAP1\\n" | u32 meta length | meta (JSON: index, term, voters, learners, contexts)
    | u64 data length | data | u32 CRC32C of everything before it

It is written under a temporary name, fsynced, renamed into place and the directory fsynced, so a
file with the final name is always whole; a stray temporary file is a write that never finished
and is removed on open. A file whose checksum, framing or name disagrees with its content raises
CorruptionError.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

from raft_manager.core import ConfState, Snapshot, SnapshotMeta

from .errors import CorruptionError
from .fsutil import fsync_directory, write_file_atomically

log = logging.getLogger("raft_manager.storage")

MAGIC = b"RMSNAP1\n"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
SNAPSHOT_PATTERN = re.compile(r"^(\d{20})-(\d{20})\.snap$")


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: Path
    index: int
    term: int
    size: int


def snapshot_name(index: int, term: int) -> str:
    return f"{index:020d}-{term:020d}.snap"


def encode_snapshot(snapshot: Snapshot) -> bytes:
    meta = snapshot.meta
    meta_json = json.dumps(
        {
            "index": meta.index,
            "term": meta.term,
            "voters": list(meta.conf.voters),
            "learners": list(meta.conf.learners),
            "contexts": dict(meta.conf.contexts),
        },
        sort_keys=True,
    ).encode()
    body = b"".join(
        (
            MAGIC,
            _U32.pack(len(meta_json)),
            meta_json,
            _U64.pack(len(snapshot.data)),
            snapshot.data,
        )
    )
    return body + _U32.pack(crc32c(body))


def decode_snapshot(path: Path, blob: bytes) -> Snapshot:
    if len(blob) < len(MAGIC) + 16 or not blob.startswith(MAGIC):
        raise CorruptionError(path, 0, "not a snapshot file (bad magic or too short)")
    body, (checksum,) = blob[:-4], _U32.unpack_from(blob, len(blob) - 4)
    if crc32c(body) != checksum:
        raise CorruptionError(path, len(blob) - 4, "snapshot checksum mismatch")
    offset = len(MAGIC)
    try:
        (meta_length,) = _U32.unpack_from(body, offset)
        offset += 4
        meta = json.loads(body[offset : offset + meta_length])
        offset += meta_length
        (data_length,) = _U64.unpack_from(body, offset)
        offset += 8
        contexts = meta.get("contexts", {})
        if not all(isinstance(c, str) for c in contexts.values()):
            raise TypeError("member contexts must be strings")
        conf = ConfState(tuple(meta["voters"]), tuple(meta["learners"]), tuple(contexts.items()))
        snapshot_meta = SnapshotMeta(int(meta["index"]), int(meta["term"]), conf)
    except (struct.error, ValueError, KeyError, TypeError) as error:
        raise CorruptionError(path, offset, f"undecodable snapshot metadata: {error}") from error
    if offset + data_length != len(body):
        raise CorruptionError(path, offset, "snapshot data length does not match the file")
    return Snapshot(snapshot_meta, body[offset:])


class SnapshotStore:
    def __init__(self, directory: Path, keep: int, fsync: bool) -> None:
        if keep < 1:
            raise ValueError("keep at least one snapshot")
        self.directory = directory
        self.keep = keep
        self._fsync = fsync

    def remove_strays(self) -> None:
        """Delete temporary files: snapshot writes that never finished."""
        for stray in self.directory.glob("*.tmp"):
            log.warning("removing %s: a snapshot write that never finished", stray)
            stray.unlink()

    def files(self) -> list[SnapshotFile]:
        """Snapshot files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = SNAPSHOT_PATTERN.match(path.name)
            if match:
                index, term = int(match.group(1)), int(match.group(2))
                found.append(SnapshotFile(path, index, term, path.stat().st_size))
        return sorted(found, key=lambda file: file.index)

    def read(self, file: SnapshotFile) -> Snapshot:
        snapshot = decode_snapshot(file.path, file.path.read_bytes())
        if (snapshot.meta.index, snapshot.meta.term) != (file.index, file.term):
            raise CorruptionError(file.path, 0, f"the file holds snapshot {snapshot.meta}")
        return snapshot

    def newest(self) -> Snapshot | None:
        files = self.files()
        return self.read(files[-1]) if files else None

    def save(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        path = self.directory / snapshot_name(meta.index, meta.term)
        write_file_atomically(path, encode_snapshot(snapshot), fsync=self._fsync)
        stale = self.files()[: -self.keep]
        for file in stale:
            file.path.unlink()
        if stale and self._fsync:
            fsync_directory(self.directory)
