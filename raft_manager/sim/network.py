"""A simulated network: delays, loss, duplication, reordering and partitions, all seeded.

Theory of operation: every message sent gets a delivery time `now + delay` (in ticks) and waits in
a heap; random delays reorder messages between the same two nodes. A message may be dropped or
duplicated when sent. Partitions are a set of blocked directed links, checked when a message is
delivered, so a partition also swallows what was in flight; blocking only one direction gives an
asymmetric partition. Nothing here reads a clock or the global RNG.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from dataclasses import dataclass

from raft_manager.core import Message, NodeId


@dataclass(slots=True)
class LinkFaults:
    """How the network misbehaves right now."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    min_delay: int = 1
    max_delay: int = 2
    # With this probability a message is held much longer (up to long_delay ticks): reordering.
    long_delay_rate: float = 0.0
    long_delay: int = 10


class Network:
    def __init__(self, rng: random.Random, faults: LinkFaults | None = None) -> None:
        self._rng = rng
        self.faults = faults or LinkFaults()
        self._queue: list[tuple[int, int, Message]] = []
        self._seq = 0
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.sent = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, msg: Message, now: int) -> None:
        faults, rng = self.faults, self._rng
        self.sent += 1
        if faults.drop_rate and rng.random() < faults.drop_rate:
            self.dropped += 1
            return
        copies = 2 if faults.duplicate_rate and rng.random() < faults.duplicate_rate else 1
        for _ in range(copies):
            if faults.long_delay_rate and rng.random() < faults.long_delay_rate:
                delay = rng.randint(faults.max_delay, faults.long_delay)
            else:
                delay = rng.randint(faults.min_delay, faults.max_delay)
            self._seq += 1
            heapq.heappush(self._queue, (now + delay, self._seq, msg))

    def next_due(self, now: int) -> Message | None:
        """Pop the next message due at or before `now` that its link lets through."""
        queue = self._queue
        while queue and queue[0][0] <= now:
            msg = heapq.heappop(queue)[2]
            if (msg.frm, msg.to) in self.blocked:
                self.dropped += 1
                continue
            return msg
        return None

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Cut every link between different groups (both directions)."""
        sets = [set(group) for group in groups]
        for i, left in enumerate(sets):
            for right in sets[i + 1 :]:
                for a in left:
                    for b in right:
                        self.blocked.add((a, b))
                        self.blocked.add((b, a))

    def cut(self, frm: NodeId, to: NodeId) -> None:
        """Block one direction only."""
        self.blocked.add((frm, to))

    def isolate(self, node: NodeId, others: Iterable[NodeId]) -> None:
        self.partition([node], [other for other in others if other != node])

    def heal(self) -> None:
        self.blocked.clear()

    def clear(self) -> None:
        """Lose everything in flight."""
        self.dropped += len(self._queue)
        self._queue.clear()
