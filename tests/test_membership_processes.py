"""Membership changes in a real cluster: node processes grow from 3 to 5 and back under load."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest
from cluster_helpers import IDS, Cluster, converged, leader_elected, statuses_of

from raft_manager.client import ClientError, RaftClient

JOINING = ("n4", "n5")


DONE_ALREADY = ("already a member", "is not a member", "is not a learner")


async def _change(client: RaftClient, body: dict[str, str]) -> dict[str, object]:
    """Make a change, retrying while the cluster is not ready for it (a learner still catching
    up, a change still in flight), bounded by the test's deadline. A retry after a lost answer
    may find the change made already (the refusal says so): then it is done."""
    with anyio.fail_after(15):
        while True:
            try:
                return await client.members(body)
            except ClientError as error:
                if error.code != "conf_rejected":
                    raise
                if any(done in str(error) for done in DONE_ALREADY):
                    return await client.members()
                await anyio.sleep(0.1)


def _roles(members: dict[str, object]) -> dict[str, str]:
    listed = members["members"]
    assert isinstance(listed, list)
    return {member["id"]: member["role"] for member in listed}


async def test_grow_to_five_and_back_to_three_while_1000_proposals_commit(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, joining=JOINING)
    for node in IDS:
        cluster.start(node)
    try:
        async with cluster.client() as client:
            await leader_elected(client, cluster)
            acknowledged: list[int] = []
            keys = itertools.count()
            changes_done = anyio.Event()

            async def writer() -> None:
                while not (changes_done.is_set() and len(acknowledged) >= 1000):
                    k = next(keys)
                    await client.command({"op": "memory.put", "key": f"k{k}", "value": k})
                    acknowledged.append(k)

            async def grow_and_shrink() -> None:
                for node in JOINING:
                    cluster.start(node)
                    members = await _change(
                        client,
                        {
                            "kind": "add_learner",
                            "node": node,
                            "address": cluster.raft_addresses[node],
                            "client_address": cluster.client_addresses[node],
                        },
                    )
                    assert _roles(members)[node] == "learner"
                    members = await _change(client, {"kind": "promote", "node": node})
                    assert _roles(members)[node] == "voter"
                statuses = await statuses_of(client, cluster)
                assert all(
                    _roles(status) == dict.fromkeys((*IDS, *JOINING), "voter")
                    for status in statuses.values()
                    if status["applied_index"] == max(s["applied_index"] for s in statuses.values())
                )
                for node in JOINING:
                    members = await _change(client, {"kind": "remove", "node": node})
                    assert node not in _roles(members)
                    cluster.stop(node)
                changes_done.set()

            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(writer)
                group.start_soon(grow_and_shrink)
            assert sorted(acknowledged) == list(range(len(acknowledged)))
            statuses = await converged(client, cluster, IDS)
            assert len({s["state_digest"] for s in statuses.values()}) == 1
            for status in statuses.values():
                assert _roles(status) == dict.fromkeys(IDS, "voter")
            for k in (0, len(acknowledged) // 2, len(acknowledged) - 1):
                item = (await client.query({"query": "memory.get", "key": f"k{k}"}))["item"]
                assert item["value"] == k
            with pytest.raises(ClientError) as refused:
                await client.members({"kind": "remove", "node": "n9"})
            assert refused.value.code == "conf_rejected"
    finally:
        cluster.stop_all()
