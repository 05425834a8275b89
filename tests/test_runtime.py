"""The node runtime, three nodes in one event loop on real loopback sockets and real files."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from conftest import free_ports
from crc32c import crc32c

from raft_manager.core import NotLeader, Raft, RaftConfig
from raft_manager.ledger import Ledger, encode_entry
from raft_manager.ledger.commands import MemoryPut
from raft_manager.server.digests import Checkpoints
from raft_manager.server.runtime import NodeRuntime
from raft_manager.storage import FileStorage
from raft_manager.transport.framed import PendingWrites
from raft_manager.transport.tcp import TcpTransport

IDS = ("n1", "n2", "n3")


@asynccontextmanager
async def cluster(tmp_path: Path, snapshot_every: int = 10_000) -> AsyncIterator[list[NodeRuntime]]:
    addresses = {node: f"127.0.0.1:{port}" for node, port in zip(IDS, free_ports(3), strict=True)}
    runtimes = []
    for k, node in enumerate(IDS):
        storage = FileStorage(tmp_path / node)
        config = RaftConfig(id=node, voters=IDS, election_tick=10)
        raft = Raft(config, random.Random(k), storage.load())
        pending_writes = PendingWrites()  # shared, as the node shares it (server/node.py)
        transport = TcpTransport(
            node, "test-cluster", addresses[node], addresses, pending_writes=pending_writes
        )
        runtimes.append(
            NodeRuntime(
                raft,
                storage,
                transport,
                Ledger(),
                tick_seconds=0.01,
                snapshot_every=snapshot_every,
                pending_writes=pending_writes,
            )
        )
    async with anyio.create_task_group() as group:
        for runtime in runtimes:
            await group.start(runtime.run)
        yield runtimes
        group.cancel_scope.cancel()
    for runtime in runtimes:
        runtime.storage.close()


async def _leader(runtimes: list[NodeRuntime]) -> NodeRuntime:
    with anyio.fail_after(5):
        while True:
            leaders = [runtime for runtime in runtimes if runtime.is_leader]
            if leaders:
                return leaders[0]
            await anyio.sleep(0.01)


def _put(key: str, value: int) -> bytes:
    return encode_entry(MemoryPut(key=key, value=value), ts=1_000)


def _value(runtime: NodeRuntime, key: str) -> object:
    ledger = runtime.state_machine
    assert isinstance(ledger, Ledger)
    item = ledger.memory.get("default", key, ledger.now)
    return item["value"] if item else None


async def test_three_nodes_elect_commit_and_apply_in_the_same_order(tmp_path: Path) -> None:
    async with cluster(tmp_path, snapshot_every=100) as runtimes:
        leader = await _leader(runtimes)
        results: list[object] = []

        async def propose(k: int) -> None:
            results.append(await leader.propose(_put(f"k{k % 7}", k)))

        async with anyio.create_task_group() as group:
            for k in range(300):
                group.start_soon(propose, k)
        assert [result["ok"] for result in results] == [True] * 300  # type: ignore[index]
        with anyio.fail_after(5):
            while len({runtime.raft.log.applied for runtime in runtimes}) != 1:
                await anyio.sleep(0.01)
        images = [runtime.state_machine.snapshot() for runtime in runtimes]
        assert images[0] == images[1] == images[2]
        assert leader.raft.log.offset > 0  # the log was compacted along the way
        follower = next(runtime for runtime in runtimes if not runtime.is_leader)
        with pytest.raises(NotLeader):
            await follower.propose(_put("x", 1))
        index = await follower.read_barrier()  # a linearizable read on a follower
        assert index >= leader.raft.log.committed - 1


async def test_a_restarted_cluster_recovers_its_state_from_disk(tmp_path: Path) -> None:
    async with cluster(tmp_path) as runtimes:
        leader = await _leader(runtimes)
        for k in range(20):
            await leader.propose(_put("counter", k))
    async with cluster(tmp_path) as runtimes:
        leader = await _leader(runtimes)
        await leader.propose(_put("after", 1))
        assert _value(leader, "counter") == 19 and _value(leader, "after") == 1


async def test_a_request_past_its_deadline_fails_with_timeout_error() -> None:
    # A sole voter leads at once; with the Ready loop not running nothing commits, so the only
    # way out is the deadline sweep the ticker runs.
    from raft_manager.storage import MemoryStorage

    raft = Raft(RaftConfig(id="n1", voters=("n1",)), random.Random(1))
    runtime = NodeRuntime(
        raft, MemoryStorage(), TcpTransport("n1", "t", "127.0.0.1:1", {}), Ledger()
    )
    outcome: list[BaseException] = []

    async def propose() -> None:
        try:
            await runtime.propose(_put("k", 1), timeout=0.5)
        except TimeoutError as error:
            outcome.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(propose)
        await anyio.sleep(0.01)
        runtime._expire(time.monotonic())  # not yet due
        await anyio.sleep(0.01)
        assert outcome == []
        runtime._expire(time.monotonic() + 1)
    assert len(outcome) == 1


async def _applied_alike(runtimes: list[NodeRuntime]) -> None:
    with anyio.fail_after(5):
        while len({runtime.raft.log.applied for runtime in runtimes}) != 1:
            await anyio.sleep(0.01)


async def test_a_checkpoint_gives_every_node_its_digest_at_one_index(tmp_path: Path) -> None:
    async with cluster(tmp_path) as runtimes:
        leader = await _leader(runtimes)
        for k in range(30):
            await leader.propose(_put(f"k{k % 4}", k))
        made = await leader.checkpoint()
        index = made["index"]
        assert leader.raft.log.term(index) == made["term"]
        assert made["digest"] == hashlib.sha256(leader.state_machine.snapshot()).hexdigest()
        with anyio.fail_after(5):
            while any(runtime.digest_at(index)["digest"] is None for runtime in runtimes):
                await anyio.sleep(0.01)
        assert {runtime.digest_at(index)["digest"] for runtime in runtimes} == {made["digest"]}
        await leader.propose(_put("after", 1))  # the state moves on; the note stays
        assert leader.digest_at(index)["digest"] == made["digest"]
        assert leader.status(digest=True)["state_digest"] != made["digest"]
        assert "state_digest" not in leader.status()  # a full hash of the state: when asked
        unknown = leader.digest_at(index + 10_000)
        assert unknown["digest"] is None and unknown["applied_index"] < index + 10_000
        follower = next(runtime for runtime in runtimes if not runtime.is_leader)
        with pytest.raises(NotLeader):
            await follower.checkpoint()


async def test_checkpoints_asked_for_together_share_one_entry(tmp_path: Path) -> None:
    """Each checkpoint makes every node hash its whole state: a burst of requests must not make
    a burst of entries (any client could stall every node so). Those asked for while one is on
    its way get its answer."""
    async with cluster(tmp_path) as runtimes:
        leader = await _leader(runtimes)
        await leader.propose(_put("k", 1))
        made: list[dict[str, object]] = []

        async def ask() -> None:
            made.append(await leader.checkpoint())

        before = leader.raft.log.last_index
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(ask)
        assert len(made) == 20 and len({str(answer) for answer in made}) == 1
        assert leader.raft.log.last_index == before + 1
        again = await leader.checkpoint()  # the next one, once that one is applied, is new
        assert again["index"] == before + 2


async def test_log_pages_agree_across_nodes_and_start_after_the_snapshot(tmp_path: Path) -> None:
    async with cluster(tmp_path, snapshot_every=50) as runtimes:
        leader = await _leader(runtimes)
        for k in range(120):
            await leader.propose(_put(f"k{k % 4}", k))
        await _applied_alike(runtimes)
        heads = [runtime.log_page(0, 0) for runtime in runtimes]
        for runtime, head in zip(runtimes, heads, strict=True):
            log = runtime.raft.log
            assert head["entries"] == [] and head["id"] == runtime.raft.id
            assert head["snapshot_index"] == log.offset >= 50  # compacted
            assert head["first_index"] == log.offset + 1
            assert head["snapshot_term"] == log.offset_term
        low = max(head["first_index"] for head in heads)
        high = min(head["commit_index"] for head in heads)
        pages = [runtime.log_page(0, high + 1) for runtime in runtimes]
        common = [[e for e in page["entries"] if low <= e[0] <= high] for page in pages]
        assert common[0] == common[1] == common[2] and len(common[0]) == high - low + 1
        for entry in pages[0]["entries"]:
            held = runtimes[0].raft.log.entries[entry[0] - runtimes[0].raft.log.offset - 1]
            assert entry == [held.index, held.term, int(held.type), crc32c(held.data)]
        window = leader.log_page(low + 2, 3)["entries"]
        assert [entry[0] for entry in window] == [low + 2, low + 3, low + 4]


def test_checkpoint_notes_are_bounded_oldest_first() -> None:
    notes = Checkpoints(keep=2)
    for index in (10, 20, 30):
        notes.record(index, f"d{index}")
    assert (notes.get(10), notes.get(20), notes.get(30)) == (None, "d20", "d30")
    with pytest.raises(ValueError):
        Checkpoints(keep=0)


async def test_a_restarted_node_notes_its_checkpoints_again(tmp_path: Path) -> None:
    """The CHECKPOINT entry survives the WAL; applying the log again notes the same digest."""
    async with cluster(tmp_path) as runtimes:
        leader = await _leader(runtimes)
        for k in range(10):
            await leader.propose(_put("k", k))
        made = await leader.checkpoint()
    async with cluster(tmp_path) as runtimes:
        with anyio.fail_after(5):
            while any(r.digest_at(made["index"])["digest"] is None for r in runtimes):
                await anyio.sleep(0.01)
        assert {r.digest_at(made["index"])["digest"] for r in runtimes} == {made["digest"]}


def _sole_node(tmp_path: Path) -> NodeRuntime:
    """A one-voter node on real files and a real (unused) listener: it leads on its own."""
    storage = FileStorage(tmp_path / "n1")
    raft = Raft(
        RaftConfig(id="n1", voters=("n1",), election_tick=10), random.Random(0), storage.load()
    )
    address = f"127.0.0.1:{free_ports(1)[0]}"
    transport = TcpTransport("n1", "test-cluster", address, {"n1": address})
    return NodeRuntime(raft, storage, transport, Ledger(), tick_seconds=0.01)


async def test_a_failed_write_stops_the_runtime_with_its_error(tmp_path: Path) -> None:
    """A Ready whose fsync fails is never advanced past: the runtime stops and `run` raises the
    storage's error, as a failing task would, so the node exits rather than serve on."""
    runtime = _sole_node(tmp_path)
    storage = runtime.storage
    assert isinstance(storage, FileStorage)
    answers: list[Exception | None] = []

    def failing_save(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    with pytest.raises(ExceptionGroup) as stopped:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                await group.start(runtime.run)
                while not runtime.is_leader:
                    await anyio.sleep(0.01)
                await runtime.propose(_put("k", 0))
                storage.save = failing_save  # type: ignore[method-assign]
                runtime.submit([_put("k", 1)], [lambda _, error: answers.append(error)], 5.0)
                await anyio.sleep(5)  # the runtime's failure cancels this
    storage.close()
    assert stopped.group_contains(OSError, match="Input/output error")
    assert runtime.raft.log.last_index == runtime.raft.log.applied + 1  # never advanced past
    assert answers == []  # nobody was told the write succeeded


async def test_no_ready_pass_runs_after_the_runtime_stopped(tmp_path: Path) -> None:
    """A wake after the runtime stopped (a peer's connection closing on the way out, say) must
    not run a pass: the node closes its storage next."""
    runtime = _sole_node(tmp_path)
    storage = runtime.storage
    assert isinstance(storage, FileStorage)
    async with anyio.create_task_group() as group:
        await group.start(runtime.run)
        while not runtime.is_leader:
            await anyio.sleep(0.01)
        await runtime.propose(_put("k", 0))
        group.cancel_scope.cancel()
    saves: list[object] = []
    storage.save = lambda *args, **kwargs: saves.append(args)  # type: ignore[method-assign]
    runtime.raft.propose_batch([_put("k", 1)])
    runtime._wake()
    await anyio.sleep(0.05)
    storage.close()
    assert saves == []
