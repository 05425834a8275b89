"""What a leader knows about each follower's log, and how fast it may send to it.

Theory of operation (after etcd's tracker package): each peer's Progress is in one of three states.

- PROBE: the leader does not know where the follower's log ends. It sends one AppendEntries and
  waits for the answer (or the next heartbeat answer) before sending again; rejections walk `next`
  back one conflicting term at a time using the follower's hint.
- REPLICATE: the logs match up to `match`; the leader streams entries optimistically, advancing
  `next` as it sends, with at most `max_inflight_msgs` messages and `max_inflight_bytes` bytes
  unacknowledged (the Inflights window).
- SNAPSHOT: the follower needs entries the leader compacted away; the leader sends its snapshot in
  chunks, one chunk awaiting acknowledgement at a time, and does not send entries meanwhile.

`recent_active` records whether the peer answered since the last check-quorum round.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """A FIFO of (last index, bytes) for AppendEntries sent but not yet acknowledged."""

    __slots__ = ("_queue", "bytes", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._queue: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    def full(self) -> bool:
        return len(self._queue) >= self.max_count or self.bytes >= self.max_bytes

    def add(self, last_index: int, size: int) -> None:
        self._queue.append((last_index, size))
        self.bytes += size

    def free_to(self, index: int) -> None:
        """Forget every message whose last entry is at or below `index`."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self.bytes -= queue.popleft()[1]

    def reset(self) -> None:
        self._queue.clear()
        self.bytes = 0


class Progress:
    __slots__ = (
        "catch_up_to",
        "inflights",
        "last_round",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "round_end",
        "round_start",
        "snapshot_index",
        "snapshot_offset",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.recent_active = False
        self.inflights = inflights
        self.snapshot_index = 0
        self.snapshot_offset = 0
        # quorum_fanout: a held-back peer is streamed to like the others until it has been sent
        # this index (the leader's last index when it answered a heartbeat behind, or what a
        # compaction would cut).
        self.catch_up_to = 0
        # Catch-up rounds (dissertation 4.2.1): a round ends when `match` reaches `round_end`,
        # the leader's last index when it began; `last_round` is how many ticks the last took.
        self.round_start = 0
        self.round_end = 0
        self.last_round: int | None = None

    def start_round(self, now: int, last_index: int) -> None:
        self.round_start, self.round_end = now, last_index

    def finish_round(self, now: int, last_index: int) -> None:
        self.last_round = now - self.round_start
        self.start_round(now, last_index)

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.value}, match={self.match}, next={self.next}, "
            f"inflight={len(self.inflights)})"
        )

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.snapshot_index = 0
        self.snapshot_offset = 0
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # The snapshot may have arrived: continue from it rather than from the old match.
            snapshot_index = self.snapshot_index
            self._reset(ProgressState.PROBE)
            self.next = max(self.match, snapshot_index) + 1
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.snapshot_index = snapshot_index

    def is_paused(self) -> bool:
        """May the leader send this peer another AppendEntries right now?"""
        state = self.state
        if state is ProgressState.REPLICATE:
            return self.inflights.full()
        if state is ProgressState.PROBE:
            return self.probe_sent
        return True

    def sent_entries(self, last_index: int, size: int) -> None:
        """Account for an AppendEntries carrying entries up to `last_index`."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower's log matches up to `index`. Returns whether `match` advanced."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decrease_to(self, rejected: int, next_hint: int) -> bool:
        """The follower refused an append after `rejected`; move `next` back towards `next_hint`.

        A rejection while replicating drops the peer back to probing. Returns False for a stale
        rejection (one that answers an older message), which changes nothing.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self._reset(ProgressState.PROBE)
        elif rejected != self.next - 1:
            return False
        self.next = max(self.match + 1, min(rejected, next_hint))
        self.probe_sent = False
        return True
