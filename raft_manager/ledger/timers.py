"""Deadlines on the ledger's clock (leases, heartbeats, TTLs, decision and session deadlines).

Theory of operation: one heap of (deadline ms, kind, key). The ledger pops what is due each time
an entry moves its clock, and the owner of each kind checks its own state before acting, so a
deadline that was extended or cancelled meanwhile is simply skipped (lazy deletion). Ties are
broken by kind and key, never by insertion order: a replica that rebuilt its heap from a
snapshot fires the same timers in the same order as one that never restarted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str, str]] = []

    def schedule(self, deadline: int, kind: str, key: str) -> None:
        heapq.heappush(self._heap, (deadline, kind, key))

    def due(self, now: int) -> Iterator[tuple[str, str]]:
        """(kind, key) of every deadline at or before `now`, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, kind, key = heapq.heappop(heap)
            yield kind, key

    def clear(self) -> None:
        self._heap.clear()
