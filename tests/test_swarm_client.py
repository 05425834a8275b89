"""SwarmClient: validation before the wire, a round trip through a real cluster, the watcher."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from cluster_helpers import Cluster, running_cluster

from raft_manager.client import ClientError, RaftClient, SwarmClient
from raft_manager.client import swarm as swarm_module
from raft_manager.client.worker import work


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("swarm-client")) as running:
        yield running


async def test_bad_arguments_are_refused_before_anything_is_sent() -> None:
    started = time.monotonic()
    async with RaftClient(["127.0.0.1:1"], timeout=5.0) as client:  # nothing listens there
        swarm = SwarmClient(client)
        with pytest.raises(ClientError) as refused:
            await swarm.submit_task({}, task_id="a b", priority=10**9)
        assert refused.value.code == "invalid_command"
        assert "id:" in str(refused.value) and "priority:" in str(refused.value)
        with pytest.raises(ClientError, match="state"):
            await swarm.list_tasks(state="sleeping")
        with pytest.raises(ClientError, match="option is listed twice"):
            await swarm.propose_decision("why?", options=["a", "a"])
        with pytest.raises(ClientError, match="from_index"):
            await swarm.feed(0)
    assert time.monotonic() - started < 1  # no network call was tried


async def test_a_round_trip_through_the_cluster(cluster: Cluster) -> None:
    async with cluster.client() as client:
        swarm = SwarmClient(client)
        await swarm.register_agent("agent-1", capabilities=["code"])
        submitted = await swarm.submit_task({"n": 1}, task_id="rt-1", queue="rt")
        assert submitted == {"ok": True, "task_id": "rt-1", "state": "pending", "existing": False}
        claim = await swarm.claim_task("agent-1", queues=["rt"], lease_seconds=60)
        assert (claim["task_id"], claim["payload"]) == ("rt-1", {"n": 1})
        assert (await swarm.claim_task("agent-1", queues=["rt"]))["task_id"] is None
        token = claim["fencing_token"]
        with pytest.raises(ClientError) as stale:
            await swarm.complete_task("rt-1", "agent-1", token + 1, "late")
        assert stale.value.code == "stale_token"
        await swarm.renew_task("rt-1", "agent-1", token)
        await swarm.complete_task("rt-1", "agent-1", token, {"answer": 42})
        task = await swarm.get_task("rt-1", stale=True)
        assert (task["state"], task["result"]) == ("done", {"answer": 42})
        assert [t["id"] for t in await swarm.list_tasks(queue="rt", state="done")] == ["rt-1"]

        put = await swarm.memory_put("k", None, namespace="rt")  # null is a value like any other
        swapped = await swarm.memory_cas("k", 2, expected=None, namespace="rt")
        assert swapped["version"] > put["version"]
        await swarm.memory_cas("k", 3, expected_version=swapped["version"], namespace="rt")
        with pytest.raises(ClientError, match="cas_failed"):
            await swarm.memory_cas("k", 4, expected_version=put["version"], namespace="rt")
        item = await swarm.memory_get("k", namespace="rt")
        assert item is not None and item["value"] == 3
        assert [i["key"] for i in await swarm.memory_list(namespace="rt")] == ["k"]
        assert (await swarm.memory_delete("k", namespace="rt"))["existed"] is True
        assert await swarm.memory_get("k", namespace="rt") is None

        proposed = await swarm.propose_decision("merge?", decision_id="rt-d")
        assert proposed["voters"] == ["agent-1"]  # without a list: the agents alive now
        assert (await swarm.vote("rt-d", "agent-1", "approve"))["state"] == "approved"
        assert (await swarm.get_decision("rt-d"))["winner"] == "approve"
        assert "rt-d" in [d["id"] for d in await swarm.list_decisions(state="approved")]

        await swarm.heartbeat("agent-1")
        assert [a["id"] for a in await swarm.list_agents()] == ["agent-1"]
        await swarm.deregister_agent("agent-1")
        assert await swarm.list_agents() == []
        with pytest.raises(ClientError, match="not_found"):
            await swarm.cancel_task("no-such-task")


async def _take(events: Any, count: int) -> list[dict[str, Any]]:
    taken = []
    with anyio.fail_after(10):
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                return taken
    return taken


async def test_watch_yields_every_event_in_order_across_pages(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled parent fails its three waiting children in the same entry: four events at
    one index, read two per page, so pages end inside an entry; none is lost or repeated."""
    monkeypatch.setattr(swarm_module, "FEED_PAGE", 2)
    async with cluster.client() as client:
        swarm = SwarmClient(client)
        first = int((await swarm.submit_task(queue="w"))["task_id"].removeprefix("task-"))
        parent = f"task-{first}"
        for child in ("c1", "c2", "c3"):
            await swarm.submit_task(task_id=f"w-{child}", queue="w", depends_on=[parent])
        await swarm.cancel_task(parent)
        expected = await swarm.feed(first, 1000)
        assert [e["kind"] for e in expected[4:]] == ["task.cancelled", *["task.failed"] * 3]
        assert len({e["index"] for e in expected[4:]}) == 1
        watched = await _take(swarm.watch(first, poll_interval=0.05), len(expected))
        assert watched == expected
        later = await swarm.submit_task(queue="w")  # a watcher that caught up sees new events
        following = swarm.watch(expected[-1]["index"] + 1, poll_interval=0.05)
        assert (await _take(following, 1))[0]["data"]["task_id"] == later["task_id"]


class _CompactedFeed:
    """A stand-in RaftClient whose node keeps the feed from index 7 on only."""

    async def query(self, body: Any, *, stale: bool = False) -> dict[str, Any]:
        if body.from_index < 7:
            raise ClientError("compacted", f"the feed starts at index 7 (asked {body.from_index})")
        events = [{"index": i, "kind": "memory.put", "data": {}} for i in range(7, 10)]
        return {"ok": True, "events": [e for e in events if e["index"] >= body.from_index]}


async def test_watch_goes_on_from_the_first_index_the_feed_still_has() -> None:
    swarm = SwarmClient(_CompactedFeed())  # type: ignore[arg-type]
    watched = await _take(swarm.watch(1, poll_interval=0.01), 3)
    assert [e["index"] for e in watched] == [7, 8, 9]


async def test_the_work_loop_counts_every_task_and_fails_one_whose_result_is_refused(
    cluster: Cluster,
) -> None:
    """max_tasks counts tasks handled, failed ones too (a handler that always raised once
    looped forever); a result the ledger refuses (here NaN) fails the task with the reason
    instead of raising out of the loop with the task still claimed until its lease ends."""
    async with cluster.client() as client:
        swarm = SwarmClient(client)
        for n in range(3):  # one attempt each: a failed one is not claimed again
            await swarm.submit_task({"n": n}, task_id=f"w-{n}", queue="work", max_attempts=1)

        async def handler(payload: Any) -> Any:
            if payload["n"] == 0:
                raise RuntimeError("no can do")
            return float("nan") if payload["n"] == 1 else "fine"

        with anyio.fail_after(20):
            report = await work(client, "worker-1", handler, queues=("work",), max_tasks=3)
        assert report.failed == ["w-0", "w-1"] and [t for t, _ in report.completed] == ["w-2"]
        refused = await swarm.get_task("w-1")
        assert refused["state"] == "failed" and "result was refused" in refused["error"]
