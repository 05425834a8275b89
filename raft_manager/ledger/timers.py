"""Deadlines on the ledger's clock (leases, heartbeats, TTLs, decision and session deadlines).

Theory of operation: one heap of (deadline ms, kind, key). The ledger pops what is due each time
an entry moves its clock, and the owner of each kind checks its own state before acting, so a
deadline that was cancelled meanwhile is simply skipped (lazy deletion). Only the latest deadline
scheduled for a (kind, key) fires: one that was moved leaves its old entry in the heap, and if
one late entry passes both, the old one must not fire first, ahead of other deadlines that lie
between the two (a replica restored from a snapshot knows only the new one). Ties are broken by
kind and key, never by insertion order: a replica that rebuilt its heap from a snapshot fires
the same timers in the same order as one that never restarted.

Stale entries (moved, or cancelled by an owner whose state ended: a finished task's lease) would
pile up until their deadlines pass, a lease's worth of claims for every live one; so once they
outnumber the live deadlines, the heap is rebuilt from the live ones alone. What fires, and in
what order, is the same either way: the order is that of (deadline, kind, key), which no heap
layout changes, and `due` reads the heap afresh at each step, so a rebuild while deadlines fire
(an owner scheduling another) changes nothing either.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

COMPACT_FLOOR = 1024  # stale entries tolerated beyond the live ones before a rebuild


class Timers:
    def __init__(self, compact_floor: int = COMPACT_FLOOR) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._latest: dict[tuple[str, str], int] = {}  # (kind, key) -> its current deadline
        self._compact_floor = compact_floor

    def __len__(self) -> int:
        """Entries held, stale ones included."""
        return len(self._heap)

    def schedule(self, deadline: int, kind: str, key: str) -> None:
        if self._latest.get((kind, key)) == deadline:
            return  # already there, live
        self._latest[kind, key] = deadline
        heapq.heappush(self._heap, (deadline, kind, key))
        if len(self._heap) > 2 * len(self._latest) + self._compact_floor:
            self._heap = [(deadline, *kind_key) for kind_key, deadline in self._latest.items()]
            heapq.heapify(self._heap)

    def cancel(self, kind: str, key: str) -> None:
        """The deadline of (kind, key), if any, will not fire."""
        self._latest.pop((kind, key), None)

    def due(self, now: int) -> Iterator[tuple[str, str]]:
        """(kind, key) of every deadline at or before `now`, earliest first."""
        latest = self._latest
        while self._heap and self._heap[0][0] <= now:
            deadline, kind, key = heapq.heappop(self._heap)
            if latest.get((kind, key)) == deadline:  # else moved, cancelled or fired since
                del latest[kind, key]
                yield kind, key

    def clear(self) -> None:
        self._heap.clear()
        self._latest.clear()
