"""The ledger gateway on a one-node cluster: validation at the edge, stamping, queries, and the
clock entries that make leases expire in an idle swarm."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from conftest import free_port

from raft_manager.core import Raft, RaftConfig
from raft_manager.ledger import Ledger, LedgerError
from raft_manager.server import gateway as gateway_module
from raft_manager.server.gateway import LedgerGateway
from raft_manager.server.runtime import NodeRuntime
from raft_manager.storage import MemoryStorage
from raft_manager.transport.client_protocol import Request
from raft_manager.transport.tcp import TcpTransport


@asynccontextmanager
async def one_node(clock_interval: float = 60.0) -> AsyncIterator[LedgerGateway]:
    raft = Raft(RaftConfig(id="n1", voters=("n1",)), random.Random(1))  # leads at once
    transport = TcpTransport("n1", "test", f"127.0.0.1:{free_port()}", {})
    runtime = NodeRuntime(raft, MemoryStorage(), transport, Ledger(), tick_seconds=0.01)
    gateway = LedgerGateway(runtime, runtime.state_machine, clock_interval)  # type: ignore[arg-type]
    async with anyio.create_task_group() as group:
        await group.start(runtime.run)
        group.start_soon(gateway.run_clock)
        yield gateway
        group.cancel_scope.cancel()


def _request(body: dict[str, Any], seq: int = 0) -> Request:
    return Request(seq, "command", body, "session-1" if seq else "", seq, seq)


async def _command(gateway: LedgerGateway, body: dict[str, Any], seq: int = 0) -> object:
    (entry,) = gateway.entries_for([_request(body, seq)])
    assert isinstance(entry, bytes), entry
    return await gateway.runtime.propose(entry)


async def test_an_invalid_command_is_refused_before_the_log() -> None:
    async with one_node() as gateway:
        last = gateway.runtime.raft.log.last_index
        (refused,) = gateway.entries_for([_request({"op": "task.claim", "lease_seconds": -1})])
        assert isinstance(refused, LedgerError) and refused.code == "invalid_command"
        assert "agent" in refused.message and "lease_seconds" in refused.message
        assert gateway.runtime.raft.log.last_index == last


async def test_a_burst_shares_one_stamp_and_invalid_commands_take_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with one_node() as gateway:
        readings = iter(range(7_000_000_000, 10_000_000_000, 1_000_000_000))
        monkeypatch.setattr(gateway_module.time, "time_ns", lambda: next(readings))
        put = {"op": "memory.put", "key": "k", "value": 1}
        first, refused, second = gateway.entries_for(
            [_request(put, 1), _request({"op": "nope"}, 2), _request(put, 3)]
        )
        assert isinstance(refused, LedgerError)
        assert isinstance(first, bytes) and isinstance(second, bytes)
        assert json.loads(first)["ts"] == json.loads(second)["ts"] == 7_000
        # A burst of invalid commands proposes nothing and reads no clock (a stamp also marks
        # the last proposal, which would hold the idle leader's clock entries back).
        assert isinstance(gateway.entries_for([_request({"op": "nope"}, 4)])[0], LedgerError)
        (third,) = gateway.entries_for([_request(put, 5)])
        assert isinstance(third, bytes) and json.loads(third)["ts"] == 8_000


async def test_stamps_never_run_backwards(monkeypatch: pytest.MonkeyPatch) -> None:
    async with one_node() as gateway:
        monkeypatch.setattr(gateway_module.time, "time_ns", lambda: 5_000_000_000)
        first = gateway.stamp()
        monkeypatch.setattr(gateway_module.time, "time_ns", lambda: 1_000_000_000)  # NTP step
        assert gateway.stamp() == first == 5_000


async def test_queries_read_what_was_committed_and_refusals_are_results() -> None:
    async with one_node() as gateway:
        await _command(gateway, {"op": "memory.put", "key": "k", "value": [1, 2]})
        found = await gateway.query({"query": "memory.get", "key": "k"}, stale=False, timeout=2)
        assert found["item"]["value"] == [1, 2]
        missing = await gateway.query({"query": "task.get", "task_id": "nope"}, False, 2)
        assert missing == {"ok": False, "error": "not_found", "message": "no task nope"}
        with pytest.raises(LedgerError):
            await gateway.query({"query": "task.get"}, stale=True, timeout=2)


async def test_a_retried_command_applies_once() -> None:
    async with one_node() as gateway:
        body = {"op": "task.submit", "payload": "once"}
        first = await _command(gateway, body, seq=1)
        again = await _command(gateway, body, seq=1)  # the same request number: a retry
        assert first == again
        found = await gateway.query({"query": "task.list"}, stale=True, timeout=2)
        assert [task["payload"] for task in found["tasks"]] == ["once"]


async def test_an_idle_leader_proposes_clock_entries_so_leases_expire() -> None:
    async with one_node(clock_interval=0.05) as gateway:
        await _command(gateway, {"op": "task.submit", "id": "t1"})
        await _command(gateway, {"op": "task.claim", "agent": "a", "lease_seconds": 0.2})
        with anyio.fail_after(3):  # nobody sends anything: only clock entries move time
            while True:
                task = await gateway.query({"query": "task.get", "task_id": "t1"}, True, 2)
                if task["task"]["state"] == "pending":
                    break
                await anyio.sleep(0.05)
        assert task["task"]["attempts"] == 1
