"""The Redis-streams transport against a real redis-server, and a cluster that runs on it."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import redis
from conftest import Inbox, RedisServer

from raft_manager.core import Heartbeat, Raft, RaftConfig
from raft_manager.ledger import Ledger, encode_entry
from raft_manager.ledger.commands import MemoryPut
from raft_manager.server.runtime import NodeRuntime
from raft_manager.storage import FileStorage
from raft_manager.transport import redis_streams
from raft_manager.transport.codec import encode
from raft_manager.transport.redis_streams import RedisStreamsTransport, inbox_key

CLUSTER = "redis-test"
IDS = ("n1", "n2", "n3")


@asynccontextmanager
async def running(transport: RedisStreamsTransport) -> AsyncIterator[Inbox]:
    inbox = Inbox()
    async with anyio.create_task_group() as group:
        await group.start(transport.serve, group, inbox.deliver)
        await anyio.sleep(0.1)  # the receiver starts reading from the newest entry
        yield inbox
        group.cancel_scope.cancel()


def _heartbeat(round_: int) -> Heartbeat:
    return Heartbeat(frm="a", to="b", term=2, commit=1, round=round_)


async def test_two_nodes_exchange_messages_in_order(redis_server: RedisServer) -> None:
    a = RedisStreamsTransport("a", CLUSTER, redis_server.url, ["a", "b"])
    b = RedisStreamsTransport("b", CLUSTER, redis_server.url, ["a", "b"])
    async with running(a), running(b) as inbox:
        for round_ in range(1, 201):
            a.send(_heartbeat(round_))
        await inbox.wait_for(200)
    assert [m.round for m in inbox.messages] == list(range(1, 201))  # type: ignore[attr-defined]


async def test_foreign_entries_in_an_inbox_are_dropped_and_counted(
    redis_server: RedisServer,
) -> None:
    b = RedisStreamsTransport("b", CLUSTER, redis_server.url, ["a", "b"])
    raw = redis.Redis.from_url(redis_server.url)
    key = inbox_key(CLUSTER, "b")
    async with running(b) as inbox:
        raw.xadd(key, {"other": "field"})
        raw.xadd(key, {"f": b"\xc1 garbage"})
        raw.xadd(key, {"f": encode(_heartbeat(1), "another-cluster")})
        raw.xadd(key, {"f": encode(_heartbeat(7), CLUSTER)})
        await inbox.wait_for(1)
    raw.close()
    assert inbox.messages == [_heartbeat(7)]
    assert b.stats.dropped["no-frame"] == 1
    assert b.stats.dropped["undecodable"] == 1
    assert b.stats.dropped["wrong-cluster"] == 1


@asynccontextmanager
async def redis_cluster(tmp_path: Path, url: str) -> AsyncIterator[list[NodeRuntime]]:
    runtimes = []
    for k, node in enumerate(IDS):
        storage = FileStorage(tmp_path / node)
        raft = Raft(
            RaftConfig(id=node, voters=IDS, election_tick=10), random.Random(k), storage.load()
        )
        transport = RedisStreamsTransport(node, CLUSTER, url, list(IDS))
        runtimes.append(NodeRuntime(raft, storage, transport, Ledger(), tick_seconds=0.02))
    async with anyio.create_task_group() as group:
        for runtime in runtimes:
            await group.start(runtime.run)
        yield runtimes
        group.cancel_scope.cancel()
    for runtime in runtimes:
        runtime.storage.close()


async def _propose(runtimes: list[NodeRuntime], key: str, value: int) -> None:
    """Propose through whichever node leads, retrying through elections (bounded)."""
    command = encode_entry(MemoryPut(key=key, value=value), ts=1_000)
    with anyio.fail_after(15):
        while True:
            leader = next((r for r in runtimes if r.is_leader), None)
            if leader is not None:
                try:
                    await leader.propose(command, timeout=1.0)
                    return
                except Exception:  # lost leadership, or timed out while Redis was away
                    pass
            await anyio.sleep(0.02)


async def test_a_cluster_on_redis_streams_commits_and_survives_a_redis_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with redis_cluster(tmp_path, redis_server.url) as runtimes:
        async with anyio.create_task_group() as group:
            for k in range(300):
                group.start_soon(_propose, runtimes, f"k{k}", k)
        redis_server.stop()
        await anyio.sleep(0.5)
        redis_server.start()  # same port, empty: every inbox is gone too
        for k in range(300, 320):
            await _propose(runtimes, "after-restart", k)
        with anyio.fail_after(10):
            while len({r.raft.log.applied for r in runtimes}) != 1:
                await anyio.sleep(0.02)
        images = [r.state_machine.snapshot() for r in runtimes]
        assert images[0] == images[1] == images[2]
        ledger = runtimes[0].state_machine
        assert isinstance(ledger, Ledger)

        def value(key: str) -> object:
            item = ledger.memory.get("default", key, ledger.now)
            return item["value"] if item else None

        assert value("after-restart") == 319
        assert [value(f"k{k}") for k in range(300)] == list(range(300))  # none lost


async def test_a_redis_that_stops_answering_is_left_and_dialled_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A stopped Redis keeps its connections open and says nothing (a host cut off: no FIN, no
    # RST). Every wait is bounded, so the transport hangs up and dials again instead of
    # waiting forever, and messages flow once Redis answers again.
    monkeypatch.setattr(redis_streams, "REPLY_SECONDS", 0.3)
    caplog.set_level(logging.INFO, "raft_manager.transport")
    a = RedisStreamsTransport("a", CLUSTER, redis_server.url, ["a", "b"])
    b = RedisStreamsTransport("b", CLUSTER, redis_server.url, ["a", "b"])
    async with running(a), running(b) as inbox:
        a.send(_heartbeat(1))
        await inbox.wait_for(1)
        redis_server.pause()
        try:
            with anyio.fail_after(3):  # REPLY_SECONDS and a BLOCK of 1 s
                while "event=redis_read_failed" not in caplog.text:
                    await anyio.sleep(0.02)
        finally:
            redis_server.resume()
        with anyio.fail_after(10):
            while len(inbox.messages) < 2:  # sent until one gets through (Raft resends too)
                a.send(_heartbeat(2))
                await anyio.sleep(0.1)


async def test_xadds_redis_refuses_are_counted_one_by_one_and_sending_goes_on(
    redis_server: RedisServer,
) -> None:
    # A reply that is an error (here WRONGTYPE: b's inbox key holds a string) refuses that one
    # XADD; Redis still answers the rest of the round, and the connection stays usable.
    a = RedisStreamsTransport("a", CLUSTER, redis_server.url, ["a", "b"])
    b = RedisStreamsTransport("b", CLUSTER, redis_server.url, ["a", "b"])
    raw = redis.Redis.from_url(redis_server.url)
    key = inbox_key(CLUSTER, "b")
    async with running(a), running(b) as inbox:
        raw.set(key, "not a stream")
        for round_ in range(1, 6):
            a.send(_heartbeat(round_))
        with anyio.fail_after(5):
            while a.stats.dropped["redis-refused"] < 5:
                await anyio.sleep(0.01)
        raw.delete(key)
        with anyio.fail_after(10):
            while not inbox.messages:  # after the refusal's backoff
                a.send(_heartbeat(6))
                await anyio.sleep(0.05)
    raw.close()
    assert a.stats.dropped == {"redis-refused": 5}
    assert a.stats.sent >= 1
    assert inbox.messages[0].round == 6  # type: ignore[attr-defined]
