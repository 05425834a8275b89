"""Durable state of a Raft node: log entries, hard state and snapshots.

`FileStorage` (file.py) keeps them on disk: a segmented write-ahead log and snapshot files, with
crash recovery; `MemoryStorage` (memory.py) keeps them in memory for tests and the simulator.
Both implement `Storage` (base.py).
"""

from .base import Storage
from .errors import CorruptionError, StorageError
from .file import FileStorage
from .memory import MemoryStorage

__all__ = ["CorruptionError", "FileStorage", "MemoryStorage", "Storage", "StorageError"]
