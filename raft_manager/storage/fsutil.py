"""The few file-system operations durability rests on."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import StorageError


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def pwritev_all(fd: int, parts: Sequence[bytes | memoryview], offset: int) -> int:
    """Write the buffers back to back at `offset` with one os.pwritev (finishing a short
    write); returns the number of bytes written."""
    total = sum(map(len, parts))
    written = os.pwritev(fd, parts, offset)
    if written < total:
        rest = memoryview(b"".join(parts))
        while written < total:
            written += os.pwrite(fd, rest[written:], offset + written)
    return total


def fsync_directory(directory: Path) -> None:
    """Make a create, rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write to a temporary name, fsync, rename into place, fsync the directory."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    if fsync:
        fsync_directory(path.parent)


class DirectoryLock:
    """An exclusive lock on a directory, held while it is open: `DIR/LOCK`, flock'ed. The
    kernel lets go of it when the process dies, however it dies."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StorageError(
                f"{directory} is in use by another storage (its LOCK is held)"
            ) from None

    def release(self) -> None:
        """Let go of the lock (closing the file does); again: nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
