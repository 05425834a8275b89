"""Errors of the storage floor."""

from __future__ import annotations

from pathlib import Path


class StorageError(Exception):
    """Base class of storage failures."""


class CorruptionError(StorageError):
    """Durable data failed verification: the node must not start on it.

    Names the file and the byte offset, so an operator (or `raft-manager wal inspect`) can find it.
    """

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: offset {offset}: {reason}")
