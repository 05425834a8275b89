"""Deadlines on the ledger's clock (leases, heartbeats, TTLs, decision and session deadlines).

Theory of operation: one heap of (deadline ms, kind, key). The ledger pops what is due each time
an entry moves its clock, and the owner of each kind checks its own state before acting, so a
deadline that was cancelled meanwhile is simply skipped (lazy deletion). Only the latest deadline
scheduled for a (kind, key) fires: one that was moved leaves its old entry in the heap, and if
one late entry passes both, the old one must not fire first, ahead of other deadlines that lie
between the two (a replica restored from a snapshot knows only the new one). Ties are broken by
kind and key, never by insertion order: a replica that rebuilt its heap from a snapshot fires
the same timers in the same order as one that never restarted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []
        self._latest: dict[tuple[str, str], int] = {}  # (kind, key) -> its current deadline

    def schedule(self, deadline: int, kind: str, key: str) -> None:
        self._latest[kind, key] = deadline
        heapq.heappush(self._heap, (deadline, kind, key))

    def due(self, now: int) -> Iterator[tuple[str, str]]:
        """(kind, key) of every deadline at or before `now`, earliest first."""
        heap, latest = self._heap, self._latest
        while heap and heap[0][0] <= now:
            deadline, kind, key = heapq.heappop(heap)
            if latest.get((kind, key)) == deadline:  # else moved (or fired) since
                del latest[kind, key]
                yield kind, key

    def clear(self) -> None:
        self._heap.clear()
        self._latest.clear()
