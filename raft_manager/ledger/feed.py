"""The change feed: the ordered stream of what the ledger applied, for followers of the swarm.

Theory of operation: every state change the ledger makes emits one event (index, term,
timestamp, kind, data), in apply order; the feed keeps the newest `keep` in memory. A reader asks
for events from an index on; if the feed no longer reaches back that far (events dropped for
room, or a node restored from a snapshot), it is told `compacted` with the first index it can
have, and starts again from there (after reading the current state). The feed is not part of the
snapshot: it describes history, not state.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .errors import LedgerError


class Feed:
    def __init__(self, keep: int) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=keep)
        self._first_index = 1  # the feed holds every event from this index on

    def add(self, index: int, term: int, ts: int, kind: str, data: dict[str, Any]) -> None:
        if len(self._events) == self._events.maxlen:
            self._first_index = self._events[0]["index"] + 1
        self._events.append({"index": index, "term": term, "ts": ts, "kind": kind, "data": data})

    def reset(self, after_index: int) -> None:
        """Forget everything; the feed starts after `after_index` (a restored snapshot)."""
        self._events.clear()
        self._first_index = after_index + 1

    def read(self, from_index: int, limit: int) -> list[dict[str, Any]]:
        if from_index < self._first_index:
            raise LedgerError(
                "compacted", f"the feed starts at index {self._first_index} (asked {from_index})"
            )
        events = []
        for event in self._events:  # few thousand at most; newest last
            if event["index"] >= from_index:
                events.append(event)
                if len(events) >= limit:
                    break
        return events
