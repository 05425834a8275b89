"""The CRDT Synchronizer adapter end to end, against a real redis-server and a real node: CRDT
operations ordered through Raft; the change feed published in order, at least once, resumed
from the acknowledged cursor after a Redis restart and after a node restart (nothing lost,
nothing applied twice); a feed that no longer reaches back is announced as a gap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from adapter_helpers import Nodes, Peer, eventually, peer, running
from bus_helpers import CLUSTER
from conftest import RedisServer

from raft_manager.adapters import BusError, Envelope, request_stream
from raft_manager.adapters.messages import (
    CRDT_ACK,
    CRDT_CHANGE,
    CRDT_GAP,
    CRDT_OPERATION,
    CrdtResult,
    FeedAckResult,
    FeedChange,
    FeedGap,
)
from raft_manager.client import ClientError, SwarmClient
from raft_manager.client.swarm import compacted_from

SYNCHRONIZER = "crdt-synchronizer"
Point = tuple[int, int]


class Synchronizer:
    """Applies the feed as a CRDT Synchronizer should: an event whose `prev` is the last one it
    applied is next; one at or before that is a duplicate; anything else waits for the resend.
    `acks` acknowledges what it applied, in batches, as a real synchronizer would, and again
    when duplicates come (the publisher resends because an acknowledgement was lost: one sent
    while Redis came back, before the node's consumer group was there again)."""

    def __init__(self) -> None:
        self.applied: list[FeedChange] = []
        self.last: Point | None = None
        self.received: list[FeedChange] = []
        self.duplicates = 0
        self.early = 0
        self.gaps: list[FeedGap] = []
        self.reack = False  # a duplicate came: the last acknowledgement may have been lost

    async def change(self, envelope: Envelope, change: FeedChange) -> None:
        self.received.append(change)
        point = (change.index, change.position)
        prev = (change.prev.index, change.prev.position) if change.prev else None
        if self.last is not None and point <= self.last:
            self.duplicates += 1
            self.reack = True
        elif prev == self.last:
            self.applied.append(change)
            self.last = point
        else:
            self.early += 1

    async def gap(self, envelope: Envelope, gap: FeedGap) -> None:
        self.gaps.append(gap)

    async def acks(self, played: Peer, every: float = 0.05) -> None:
        acked = None
        while True:
            await anyio.sleep(every)
            if self.last is not None and (self.last != acked or self.reack):
                try:
                    ack = {"index": self.last[0], "position": self.last[1]}
                    self.reack = False
                    await played.bus.send("raft-manager", CRDT_ACK, ack)
                    acked = self.last
                except BusError:  # Redis is away: the next round tries again
                    continue

    def routes(self) -> dict[str, Any]:
        return {CRDT_CHANGE: self.change, CRDT_GAP: self.gap}


def _points(changes: list[FeedChange]) -> list[tuple[int, int, str, Any]]:
    return [(c.index, c.position, c.kind, c.data) for c in changes]


async def _feed(swarm: SwarmClient, start: int = 1) -> list[tuple[int, int, str, Any]]:
    """The node's feed from `start` as (index, position, kind, data)."""
    found, positions = [], {}
    for event in await swarm.feed(start, 10_000):
        position = positions.get(event["index"], -1) + 1
        positions[event["index"]] = position
        found.append((event["index"], position, event["kind"], event["data"]))
    return found


async def test_operations_are_ordered_through_raft_once_and_bad_ones_change_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    nodes = Nodes(tmp_path, redis_server.url, peers=(SYNCHRONIZER,))
    sync = Synchronizer()
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SYNCHRONIZER, routes=sync.routes()) as played,
        nodes.client() as client,
    ):
        operation = {"type": "CRDT_OPERATION", "operation": {"inc": "likes"}, "timestamp": 1}
        first = await played.ask(CRDT_OPERATION, {**operation, "id": "op-1"})
        second = await played.ask(CRDT_OPERATION, {**operation, "timestamp": 2})
        assert isinstance(first, CrdtResult) and first.ok and first.committed
        assert second.committed and second.index is not None and first.index is not None
        assert second.index > first.index and second.id is not None
        again = await played.ask(CRDT_OPERATION, {**operation, "id": "op-1"})
        assert (again.committed, again.index, again.duplicate) == (True, first.index, True)
        swarm = SwarmClient(client)
        before = await _feed(swarm)
        refusals = {
            "other content": ({**operation, "id": "op-1", "timestamp": 9}, "conflict"),
            "no operation": ({"type": "CRDT_OPERATION", "timestamp": 1}, "bad-payload"),
            "null operation": ({**operation, "operation": None}, "bad-payload"),
            "wrong type": ({**operation, "type": "CRDT_OP"}, "bad-payload"),
            "unknown field": ({**operation, "colour": "red"}, "bad-payload"),
            "bad id": ({**operation, "id": "has spaces"}, "bad-payload"),
        }
        for name, (payload, code) in refusals.items():
            refused = await played.ask(CRDT_OPERATION, payload)
            assert (refused.ok, refused.committed, refused.error) == (False, False, code), name
            assert refused.reason, name
        assert await _feed(swarm) == before  # the refusals changed nothing
        kinds = [(index, kind) for index, _, kind, _ in before]
        assert kinds == [(first.index, "crdt.operation"), (second.index, "crdt.operation")]
        assert before[0][3] == {
            "id": "op-1",
            "origin": "crdt-synchronizer.test",
            "operation": {"inc": "likes"},
            "timestamp": 1,
        }
        # the feed went out too, in order
        await eventually(lambda: len(sync.applied) == 2)
        assert _points(sync.applied) == before
        # an acknowledgement of what was never sent would silence the feed up to it: refused
        beyond = await played.ask(CRDT_ACK, {"index": 10**9})
        assert isinstance(beyond, FeedAckResult)
        assert (beyond.ok, beyond.error) == (False, "out_of_range")
        cursor = await swarm.get_cursor("crdt-synchronizer")
        assert cursor is None or cursor["index"] <= second.index


async def test_an_event_after_an_idle_spell_is_sent_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The synchronizer acknowledges every 0.3 s, within feed_resend_s (0.5 s). After the feed
    was idle for longer than that, the next event once went out again one poll after it was
    first sent: the publisher took the idle time for time without progress."""
    nodes = Nodes(tmp_path, redis_server.url, peers=(SYNCHRONIZER,))
    sync = Synchronizer()
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SYNCHRONIZER, routes=sync.routes()) as played,
        nodes.client() as client,
        anyio.create_task_group() as group,
    ):
        swarm = SwarmClient(client)
        group.start_soon(sync.acks, played, 0.3)
        operation = {"type": "CRDT_OPERATION", "operation": {"inc": "a"}, "timestamp": 1}
        first = await played.ask(CRDT_OPERATION, operation)

        async def acknowledged(index: int) -> bool:
            cursor = await swarm.get_cursor("crdt-synchronizer")
            return cursor is not None and cursor["index"] == index

        await eventually(lambda: len(sync.applied) == 1)
        with anyio.fail_after(5):
            while not await acknowledged(first.index):
                await anyio.sleep(0.05)
        await anyio.sleep(1.0)  # idle, past feed_resend_s
        second = await played.ask(CRDT_OPERATION, {**operation, "timestamp": 2})
        await eventually(lambda: len(sync.applied) == 2)
        with anyio.fail_after(5):
            while not await acknowledged(second.index):
                await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    assert (len(sync.received), sync.duplicates) == (2, 0)


async def test_the_feed_rides_out_a_redis_restart_and_a_node_restart_losing_and_repeating_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Events wait unread in the synchronizer's stream when Redis restarts without persistence
    and loses them: the publisher sends everything after the acknowledged cursor again."""
    nodes = Nodes(tmp_path, redis_server.url, peers=(SYNCHRONIZER,))
    sync = Synchronizer()
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SYNCHRONIZER, routes=sync.routes(), consume=False) as played,
        nodes.client() as client,
        anyio.create_task_group() as group,
    ):
        swarm = SwarmClient(client)
        reading = anyio.CancelScope()

        async def read() -> None:
            with reading:
                await played.bus.serve(SYNCHRONIZER, played.handlers).run()

        group.start_soon(read)
        group.start_soon(sync.acks, played)
        for n in range(20):
            await swarm.memory_put(f"k{n}", n)
        await eventually(lambda: len(sync.applied) == 20)
        await eventually(lambda: _cursor_is(swarm, sync.last))
        reading.cancel()  # the synchronizer stops reading; 20 more events wait in its stream
        for n in range(20, 40):
            await swarm.memory_put(f"k{n}", n)
        stream = request_stream(CLUSTER, SYNCHRONIZER)
        await eventually(lambda: _length(redis_server.url, stream) >= 40)
        redis_server.stop()  # no persistence: the stream, its groups and entries are gone
        for n in range(40, 50):
            await swarm.memory_put(f"k{n}", n)  # the cluster goes on without Redis
        redis_server.start()
        reading = anyio.CancelScope()
        group.start_soon(read)
        for n in range(50, 60):
            await swarm.memory_put(f"k{n}", n)
        feed = await _feed(swarm)
        assert len(feed) == 60
        await eventually(lambda: _points(sync.applied) == feed, timeout=20)
        assert sync.early > 0  # events after the lost ones came first, and waited
        # the cursor (in the ledger) reaches what was applied, then the node restarts
        await eventually(lambda: _cursor_is(swarm, sync.last), timeout=10)
        received = len(sync.received)
        await nodes.stop("n1")
        await nodes.start("n1")
        for n in range(60, 70):
            await swarm.memory_put(f"k{n}", n)
        feed = await _feed(swarm)
        await eventually(lambda: _points(sync.applied) == feed, timeout=10)
        group.cancel_scope.cancel()
    # After the restart the publisher went on from the cursor: nothing from before it was sent
    # again, the new chain starts at it, and every later event came. (Arrival order is not
    # the chain's: the bus may redeliver an entry later, so each is looked up by its place.)
    after_restart = {(c.index, c.position): c for c in sync.received[received:]}
    assert set(after_restart) == {p[:2] for p in feed[60:]}
    resumed = after_restart[feed[60][:2]].prev
    assert resumed is not None and (resumed.index, resumed.position) == feed[59][:2]
    points = [(c.index, c.position) for c in sync.applied]
    assert points == sorted(set(points))  # nothing applied twice


def _length(url: str, stream: str) -> int:
    raw = redis.Redis.from_url(url)
    try:
        return int(raw.xlen(stream))
    finally:
        raw.close()


async def _cursor_is(swarm: SwarmClient, point: tuple[int, int] | None) -> bool:
    cursor = await swarm.get_cursor(SYNCHRONIZER)
    return cursor is not None and (cursor["index"], cursor["position"]) == point


async def test_a_feed_that_no_longer_reaches_back_is_announced_as_a_gap(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Nothing acknowledged, and the node restarts from a snapshot: its feed starts after the
    snapshot, so the publisher announces the gap and starts a new chain where it resumes."""
    nodes = Nodes(tmp_path, redis_server.url, peers=(SYNCHRONIZER,), top={"snapshot_every": 5})
    sync = Synchronizer()
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SYNCHRONIZER, routes=sync.routes()),
        nodes.client() as client,
    ):
        swarm = SwarmClient(client)
        for n in range(12):
            await swarm.memory_put(f"k{n}", n)
        await eventually(lambda: len(sync.applied) == 12)
        await nodes.stop("n1")
        await nodes.start("n1")
        await eventually(lambda: len(sync.gaps) == 1)
        [gap] = sync.gaps
        with pytest.raises(ClientError) as compacted:
            await swarm.feed(1, 1)
        first = compacted_from(compacted.value)  # the restarted node's feed starts here
        assert first is not None
        assert gap.after is None and gap.resume_index == first > 1
        await swarm.memory_put("late", 1)
        feed = await _feed(swarm, first)
        await eventually(lambda: sync.applied[-1].data == feed[-1][3])
        restarted = [c for c in sync.received if c.index >= first and c.prev is None]
        assert [(c.index, c.position) for c in restarted] == [(first, 0)]


async def test_a_change_too_big_for_an_envelope_goes_out_without_its_data(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The big operation is committed by a client (its request is not an envelope); its change
    # on the feed would be more than max_envelope_bytes, so it goes out marked truncated.
    nodes = Nodes(
        tmp_path,
        redis_server.url,
        peers=(SYNCHRONIZER,),
        sections={"adapters": {"max_envelope_bytes": 2048}},
    )
    sync = Synchronizer()
    async with (
        running(nodes, "n1"),
        peer(redis_server.url, SYNCHRONIZER, routes=sync.routes()),
        nodes.client() as client,
    ):
        indexes = []
        for name, operation in [("a", {"inc": "a"}), ("b", {"pad": "x" * 4000}), ("c", {})]:
            result = await client.command({"op": "crdt.op", "id": name, "operation": operation})
            indexes.append(result["index"])
        await eventually(lambda: len(sync.applied) == 3)
    assert [(c.index, c.truncated) for c in sync.applied] == list(
        zip(indexes, [False, True, False], strict=True)
    )
    assert [c.data and c.data["operation"] for c in sync.applied] == [{"inc": "a"}, None, {}]
