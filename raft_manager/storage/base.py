"""The one interface every storage implements (files on disk, or memory for the simulator).

Theory of operation: storage is written in Ready batches and read back only when a node starts.
`save` persists one Ready (hard state, entries replacing any persisted suffix from their first
index, a snapshot received from the leader) durably and all-or-nothing before it returns;
`compact` keeps the node's own snapshot and may drop the entries it covers; `load` returns what
a restarting node needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from raft_manager.core import Entry, HardState, RestoredState, Snapshot


class Storage(Protocol):
    def load(self) -> RestoredState: ...

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
    ) -> None: ...

    def compact(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...
