"""Linearizable reads on the leader: ReadIndex rounds and the leader lease.

Theory of operation: the leader numbers its heartbeat broadcasts (read rounds) and remembers the
tick each went out. Followers echo the round they answer. The quorum round is the highest round a
majority of voters (the leader counting itself for its latest round) has answered: it proves that
when that round was sent, no other leader had been elected.

- ReadIndex (Raft dissertation 6.4): a read that arrives when the commit index is C waits for a
  round sent after it arrived. Once the quorum round reaches it, reading at C is linearizable.
- Lease: a follower that answered round r will not vote for anyone else for an election timeout
  after it received r (leader stickiness, check-quorum). So no other leader can exist before
  sent_tick(quorum round) + election_tick, less the allowed clock drift; within that window the
  leader may answer at once. The caller must refuse the lease while a leadership transfer is under
  way, since TimeoutNow bypasses stickiness.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .quorum import quorum_value
from .types import NodeId

MAX_ROUNDS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class PendingRead:
    round: int
    index: int
    context: bytes
    requester: NodeId | None  # None: asked on the leader itself; else the forwarding follower


class ReadTracker:
    __slots__ = ("_acked", "_pending", "_sent_tick", "round")

    def __init__(self) -> None:
        self.round = 0
        self._sent_tick: dict[int, int] = {}
        self._acked: dict[NodeId, int] = {}
        self._pending: deque[PendingRead] = deque()

    def reset(self) -> list[PendingRead]:
        """Forget all rounds (leadership changed); return the reads that can no longer be served."""
        self._sent_tick.clear()
        self._acked.clear()
        dropped = list(self._pending)
        self._pending.clear()
        return dropped

    def new_round(self, now: int) -> int:
        self.round += 1
        sent = self._sent_tick
        sent[self.round] = now
        if len(sent) > MAX_ROUNDS_KEPT:  # a leader nobody answers: forget its oldest rounds
            del sent[next(iter(sent))]  # (losing one can only deny a lease, never grant one)
        return self.round

    def ack(self, peer: NodeId, round_: int) -> None:
        if self._acked.get(peer, 0) < round_ <= self.round:
            self._acked[peer] = round_

    def quorum_round(self, voters: Sequence[NodeId], self_id: NodeId) -> int:
        return quorum_value(
            [self.round if voter == self_id else self._acked.get(voter, 0) for voter in voters]
        )

    def add(self, index: int, context: bytes, requester: NodeId | None) -> None:
        """Queue a read at `index`; it waits for the next round to be sent and acknowledged."""
        self._pending.append(PendingRead(self.round + 1, index, context, requester))

    def release(self, quorum_round: int) -> list[PendingRead]:
        """Pop the reads whose round a quorum has acknowledged."""
        released = []
        pending = self._pending
        while pending and pending[0].round <= quorum_round:
            released.append(pending.popleft())
        for old in [r for r in self._sent_tick if r < quorum_round]:
            del self._sent_tick[old]
        return released

    def lease_holds(self, quorum_round: int, now: int, lease_ticks: int) -> bool:
        sent = self._sent_tick.get(quorum_round)
        return sent is not None and now < sent + lease_ticks
