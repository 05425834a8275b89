"""Storage kept in memory: what a node would find on disk after a crash, without the disk.

Theory of operation: `MemoryStorage` holds exactly what a runtime has persisted from the Readies
it was given (hard state, entries, the latest snapshot) and nothing else, so a simulator can drop a
node's Raft object, keep this, and restart it as if from disk. Writing follows the Ready contract:
a snapshot replaces the log, entries overwrite any persisted suffix from their first index on.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_manager.core import Entry, HardState, RestoredState, Snapshot

from .base import bounds_after


class MemoryStorage:
    __slots__ = ("entries", "hard_state", "offset", "snapshot")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.offset = 0  # index covered by the snapshot; entries[k].index == offset + 1 + k
        self.entries: list[Entry] = []

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        *,
        sync: bool = True,
    ) -> None:
        """Persist one Ready's worth of state (the caller's single fsync), all or nothing.
        `sync` means nothing here: memory is as durable as it gets."""
        bounds_after(snapshot, entries, self.offset, self.last_index)  # refuses a gap
        if snapshot is not None:
            self.install_snapshot(snapshot)
        if entries:
            del self.entries[entries[0].index - self.offset - 1 :]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot received from the leader: it replaces the whole log."""
        self.snapshot = snapshot
        self.offset = snapshot.meta.index
        self.entries = []

    def compact(self, snapshot: Snapshot) -> None:
        """Our own snapshot: keep it and drop the entries it covers."""
        index = snapshot.meta.index
        if index > self.last_index:
            raise ValueError(f"cannot compact to {index}: the log ends at {self.last_index}")
        if index <= self.offset:
            return
        del self.entries[: index - self.offset]
        self.offset = index
        self.snapshot = snapshot

    def load(self) -> RestoredState:
        return RestoredState(self.hard_state, self.snapshot, list(self.entries))

    def close(self) -> None:
        """Nothing to release: the state stays, as a disk's would."""
