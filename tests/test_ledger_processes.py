"""The swarm ledger in a real cluster: node processes, agent processes, SIGKILLed leaders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from cluster_helpers import IDS, Cluster, converged, leader_elected, statuses_of

from raft_manager.client import ClientError, RaftClient

TASKS = 2000
AGENTS = 8


async def _done_count(client: RaftClient) -> int:
    found = await client.query({"query": "task.list", "state": "done", "limit": 10_000})
    return len(found["tasks"])


async def _kill_the_leader_when(client: RaftClient, cluster: Cluster, done_at_least: int) -> None:
    with anyio.fail_after(60):
        while await _done_count(client) < done_at_least:
            await anyio.sleep(0.1)
    statuses = await statuses_of(client, cluster)
    leader = next(n for n, s in statuses.items() if s["role"] == "leader")
    cluster.kill(leader)
    await anyio.sleep(0.5)
    cluster.start(leader)  # back on its own data


async def test_eight_agents_complete_2000_tasks_exactly_once_while_leaders_die(
    tmp_path: Path,
) -> None:
    """2,000 tasks, 8 agent processes claiming and completing them, the leader SIGKILLed
    twice (at 25% and 60% done) and restarted: every task ends done, completed by exactly one
    accepted completion; nothing is lost; all nodes agree."""
    cluster = Cluster(tmp_path)
    for node in IDS:
        cluster.start(node)
    stop = tmp_path / "stop"
    agents: list[subprocess.Popen[bytes]] = []
    try:
        async with cluster.client() as client:
            await leader_elected(client, cluster)
            with anyio.fail_after(60):

                async def submit(first: int) -> None:
                    for k in range(first, TASKS, 50):
                        await client.command(
                            {"op": "task.submit", "id": f"t{k:04d}", "payload": {"n": k}}
                        )

                async with anyio.create_task_group() as group:
                    for first in range(50):
                        group.start_soon(submit, first)
            addresses = list(cluster.client_addresses.values())
            for k in range(AGENTS):
                agents.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(Path(__file__).parent / "agent_process.py"),
                            "--agent",
                            f"agent-{k}",
                            "--out",
                            str(tmp_path / f"agent-{k}.json"),
                            "--stop",
                            str(stop),
                            *addresses,
                        ],
                        stdout=(tmp_path / f"agent-{k}.log").open("wb"),
                        stderr=subprocess.STDOUT,
                    )
                )
            await _kill_the_leader_when(client, cluster, TASKS // 4)
            await _kill_the_leader_when(client, cluster, TASKS * 6 // 10)
            with anyio.fail_after(90):
                while await _done_count(client) < TASKS:
                    await anyio.sleep(0.2)
            stop.touch()
            for agent in agents:
                assert agent.wait(timeout=30) == 0, (tmp_path / "agent-0.log").read_text()[-2000:]
            completed: list[str] = []
            for k in range(AGENTS):
                report = json.loads((tmp_path / f"agent-{k}.json").read_text())
                completed += [task_id for task_id, _token in report["completed"]]
                assert report["failed"] == []
            assert sorted(completed) == [f"t{k:04d}" for k in range(TASKS)]  # each exactly once
            for k in (0, TASKS // 2, TASKS - 1):
                task = (await client.query({"query": "task.get", "task_id": f"t{k:04d}"}))["task"]
                assert task["state"] == "done" and task["result"]["payload"] == {"n": k}
            try:
                await client.command({"op": "task.submit", "id": "t0000", "payload": {"n": -1}})
            except ClientError as error:
                assert error.code == "conflict"  # an id is never reused for other content
            else:
                raise AssertionError("a conflicting resubmission was accepted")
            statuses = await converged(client, cluster, IDS)
            assert len({s["state_digest"] for s in statuses.values()}) == 1
    finally:
        stop.touch()
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        cluster.stop_all()
