"""Publishing the committed change feed to the CRDT Synchronizer: in log order, at least once,
resuming from what it acknowledged.

Theory of operation: the leader publishes (one publisher, one order; a node that stops leading
forgets its state, and the next leader starts from the acknowledged cursor). Every `POLL_S` it
reads the synchronizer's cursor (a linearizable read) and, from its own ledger, the feed after
what it sent, and sends each new event as a `crdt.change` (up to PUBLISH_BATCH in one round
trip to Redis): the entry's index, the event's position among that entry's events, term,
ledger time, kind, data, and `prev`, the event before it on the feed. `prev` chains the
events, so the receiver can tell a duplicate (at or before what it applied), the next event
(prev is what it applied last) and a gap (anything else: wait, it is resent).

The synchronizer acknowledges with `crdt.feed_ack`; the acknowledgement becomes the ledger's
cursor `crdt-synchronizer` (ledger/cursors.py), replicated through Raft. The cursor lives in the
ledger, not in Redis, because it must outlive exactly what the feed must survive: a Redis
restart (which may lose the stream, its pending entries and any key we kept there), a restart
of this node, and a change of leader (the new one reads the same cursor). It costs one log
entry per acknowledgement, so the synchronizer acknowledges in batches.

Flow control and loss: at most `feed_window` events are sent and not acknowledged. When the
cursor has not moved for `feed_resend_s` while events are outstanding (counted from the later
of its last move and the send of the oldest outstanding event) (lost with a Redis
restart, trimmed, dead-lettered, or the synchronizer restarted), the publisher goes back to
the cursor and sends everything after it again (go-back-N); the receiver drops what it has.

A feed that no longer reaches back to what must be sent next (a leader restored from a
snapshot, or more than feed_keep events behind) cannot be replayed: the publisher sends
`crdt.feed_gap` (the last event sent, the index it resumes from) and starts a new chain there
(the first event's prev is null); the synchronizer reads the state it missed from the ledger.
An event too big for an envelope is sent with `truncated` and no data.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio

from raft_manager.client import ClientError
from raft_manager.client.swarm import MAX_FEED_LIMIT, compacted_from
from raft_manager.ledger.commands import FeedRead

from .errors import EnvelopeTooBig
from .messages import CRDT_CHANGE, CRDT_GAP, FeedChange, FeedGap, FeedPoint
from .node import AdapterNode, repeat
from .streams import request_stream

log = logging.getLogger("raft_manager.adapters")

CRDT_SYNCHRONIZER = "crdt-synchronizer"
CURSOR = CRDT_SYNCHRONIZER  # the ledger cursor's name
POLL_S = 0.1
PUBLISH_BATCH = 100  # events added to the stream in one round trip


@dataclass(frozen=True, order=True, slots=True)
class Point:
    """An event's place: entry index, position among its events (-1: before the first)."""

    index: int
    position: int

    def wire(self) -> FeedPoint:
        return FeedPoint(index=self.index, position=self.position)


class FeedPublisher:
    def __init__(self, node: AdapterNode) -> None:
        self.node = node
        self._stream = request_stream(node.bus.cluster_id, CRDT_SYNCHRONIZER)
        self.reset()

    def reset(self) -> None:
        """Forget what was sent: the next step starts from the cursor."""
        self.acked: Point | None = None
        self.sent: Point | None = None  # the last event sent in the current chain
        self.start = 1  # the entry to read from next
        self.unacked: deque[Point] = deque()
        self.progress_at = anyio.current_time()

    def head(self) -> Point:
        """Where the chain stands: the last event sent, or just before the start."""
        return self.sent if self.sent is not None else Point(self.start, -1)

    async def run(self) -> None:
        await repeat("crdt.change", POLL_S, self.step)

    async def step(self) -> None:
        if not self.node.parts.is_leader():
            self.reset()
            return
        now = anyio.current_time()
        acked = await self._cursor()
        if acked != self.acked:
            self.acked, self.progress_at = acked, now
            while self.unacked and acked is not None and self.unacked[0] <= acked:
                self.unacked.popleft()
        if acked is not None and acked > self.head():  # acknowledged past what we sent
            self.sent, self.start = acked, acked.index
            self.unacked.clear()
        if self.unacked and now - self.progress_at >= self.node.settings.feed_resend_s:
            log.info("event=feed_rewind from=%s unacked=%d", self.head(), len(self.unacked))
            self.sent = acked
            self.start = acked.index if acked is not None else 1
            self.unacked.clear()
            self.progress_at = now
        room = self.node.settings.feed_window - len(self.unacked)
        if room > 0:
            await self._publish(room)

    async def _cursor(self) -> Point | None:
        """The cursor, read linearizably: a leader that just took over (or restarted) may
        not have applied its predecessors' entries yet, and would resend what was acknowledged.
        Once this read returns, this node has applied at least that far, so its own feed is
        as new as the cursor."""
        cursor = await self.node.swarm.get_cursor(CURSOR)
        return None if cursor is None else Point(cursor["index"], cursor["position"])

    async def _publish(self, room: int) -> None:
        sent = self.sent
        skip = sent.position + 1 if sent is not None and sent.index == self.start else 0
        if skip >= MAX_FEED_LIMIT:  # one entry with more events than a read returns
            await self._gap(self.start + 1)
            return
        limit = min(skip + room, MAX_FEED_LIMIT)
        read = FeedRead(from_index=self.start, limit=limit)
        try:
            answer = await self.node.client.local_query(self.node.own_address, read)
        except ClientError as error:
            first = compacted_from(error)
            if first is None:
                raise
            await self._gap(first)
            return
        index, position = 0, -1
        batch: list[tuple[Point, bytes]] = []
        prev = self.sent
        for event in answer["events"]:
            position = position + 1 if event["index"] == index else 0
            index = event["index"]
            point = Point(index, position)
            if point > self.head():
                batch.append((point, self._encoded_change(event, point, prev)))
                prev = point
        for at in range(0, len(batch), PUBLISH_BATCH):
            chunk = batch[at : at + PUBLISH_BATCH]
            await self.node.bus.publish_encoded(self._stream, [raw for _, raw in chunk])
            if not self.unacked:  # the first outstanding event: the resend clock starts now
                self.progress_at = anyio.current_time()
            for point, _ in chunk:
                self.unacked.append(point)
            self.sent = chunk[-1][0]
            self.start = self.sent.index

    def _encoded_change(self, event: dict[str, Any], point: Point, prev: Point | None) -> bytes:
        """The change's envelope as it travels; without its data when that is too big."""
        change = FeedChange(
            index=point.index,
            position=point.position,
            term=event["term"],
            ts=event["ts"],
            kind=event["kind"],
            data=event["data"],
            prev=prev.wire() if prev is not None else None,
        )
        bus = self.node.bus
        envelope = partial(bus.envelope, CRDT_CHANGE, recipient=CRDT_SYNCHRONIZER)
        try:
            return bus.encoded(envelope(payload=change))
        except EnvelopeTooBig:
            cut = change.model_copy(update={"data": None, "truncated": True})
            return bus.encoded(envelope(payload=cut))

    async def _gap(self, resume_index: int) -> None:
        after = self.sent.wire() if self.sent is not None else None
        await self.node.bus.send(
            CRDT_SYNCHRONIZER, CRDT_GAP, FeedGap(after=after, resume_index=resume_index)
        )
        log.warning("event=feed_gap after=%s resume_index=%d", self.sent, resume_index)
        self.sent, self.start = None, resume_index
        self.unacked.clear()
        self.progress_at = anyio.current_time()
