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


def bounds_after(
    snapshot: Snapshot | None, entries: Sequence[Entry], offset: int, last_index: int
) -> tuple[int, int]:
    """The log's (offset, last index) after saving `snapshot` and `entries` on a log that spans
    (offset, last_index]; ValueError if the entries would leave a gap or reach below the log."""
    if snapshot is not None:
        offset = last_index = snapshot.meta.index
    if entries:
        first = entries[0].index
        if not offset < first <= last_index + 1:
            raise ValueError(
                f"entries from {first} do not attach to the log ({offset}, {last_index}]"
            )
        last_index = entries[-1].index
    return offset, last_index


class Storage(Protocol):
    def load(self) -> RestoredState: ...

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        *,
        sync: bool = True,
    ) -> None: ...

    def compact(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...
