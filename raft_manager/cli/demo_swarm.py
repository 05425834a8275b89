"""The demo's swarm: a task graph, agents working it, a leader killed halfway, and the audit.

Theory of operation: `plan_tasks` lays out PIPELINES pipelines of STAGES stages each (every
stage depends on the one before it; a review also depends on the next pipeline's research, so
the graph is a DAG with fan-in, not only chains); they are submitted in topological order, since
the ledger refuses an unknown dependency. AGENTS agents run the client's work loop, each with
its own client session, so a command retried through the failover applies once. A watcher
polls the ledger; when half of the tasks are done it SIGKILLs the leader's process, times the
election of a new leader, and starts the killed node again on its data. `audit` then checks
what the swarm promises: every task done; exactly one accepted completion per task, whose
fencing token and agent are the task's final ones; exactly one `task.completed` event per task
in the change feed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.client.swarm import SwarmClient
from raft_manager.client.worker import WorkReport, work

STAGES = ("plan", "research", "draft", "review", "publish")
PIPELINES = 8
AGENTS = 4
QUEUE = "demo"
LEASE_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class PlannedTask:
    id: str
    depends_on: tuple[str, ...]
    work_ms: int


def plan_tasks(seed: int = 7) -> list[PlannedTask]:
    """The task graph, in an order where every dependency comes first."""
    rng = random.Random(seed)
    planned = []
    for stage_number, stage in enumerate(STAGES):
        for pipeline in range(PIPELINES):
            depends: list[str] = []
            if stage_number:
                depends.append(f"p{pipeline}-{STAGES[stage_number - 1]}")
            if stage == "review":
                depends.append(f"p{(pipeline + 1) % PIPELINES}-research")
            planned.append(
                PlannedTask(f"p{pipeline}-{stage}", tuple(depends), rng.randint(80, 250))
            )
    return planned


@dataclass(slots=True)
class Failover:
    old_leader: str
    old_term: int
    new_leader: str | None = None
    new_term: int | None = None
    seconds: float | None = None  # from the SIGKILL to a new leader answering
    done_at_kill: int = 0


@dataclass(slots=True)
class SwarmRun:
    reports: dict[str, WorkReport] = field(default_factory=dict)
    failover: Failover | None = None
    seconds: float = 0.0


async def leader_of(client: RaftClient, addresses: dict[str, str]) -> tuple[str, int, int] | None:
    """(leader id, term, pid) from the first node that names itself leader, else None."""
    best: tuple[str, int, int] | None = None
    for address in addresses.values():
        try:
            status = await client.status(address)
        except Exception:  # down or not answering: not a leader we can use
            continue
        if status["role"] == "leader" and (best is None or status["term"] > best[1]):
            best = (status["id"], status["term"], status["pid"])
    return best


async def run_swarm(
    addresses: dict[str, str],
    restart: Callable[[str], None],
    say: Callable[[str], None],
    *,
    timeout: float = 45.0,
) -> SwarmRun:
    """Submit the graph, work it with AGENTS agents, kill the leader halfway; bounded by
    `timeout` seconds (the agents stop then, done or not)."""
    run = SwarmRun()
    planned = plan_tasks()
    started = time.monotonic()
    targets = list(addresses.values())
    async with RaftClient(targets, timeout=10.0) as client:
        swarm = SwarmClient(client)
        for task in planned:
            await swarm.submit_task(
                {"task": task.id, "work_ms": task.work_ms},
                task_id=task.id,
                queue=QUEUE,
                depends_on=task.depends_on,
            )
        say(f"submitted {len(planned)} tasks ({PIPELINES} pipelines x {len(STAGES)} stages)")
        stop = anyio.Event()
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as group:
                for number in range(1, AGENTS + 1):
                    group.start_soon(_agent, targets, f"agent-{number}", run, stop)
                await _watch(client, swarm, addresses, len(planned), run, restart, say)
                stop.set()
    run.seconds = time.monotonic() - started
    return run


async def _agent(targets: list[str], agent: str, run: SwarmRun, stop: anyio.Event) -> None:
    async def handle(payload: Any) -> Any:
        await anyio.sleep(payload["work_ms"] / 1000)
        return {"by": agent, "summary": f"{payload['task']} done"}

    async with RaftClient(targets, timeout=10.0) as client:
        swarm = SwarmClient(client)
        await swarm.register_agent(agent, capabilities=["demo"], heartbeat_timeout_seconds=300)
        run.reports[agent] = await work(
            client,
            agent,
            handle,
            queues=(QUEUE,),
            lease_seconds=LEASE_SECONDS,
            idle_wait=0.1,
            should_stop=stop.is_set,
        )
        await swarm.deregister_agent(agent)


async def _watch(
    client: RaftClient,
    swarm: SwarmClient,
    addresses: dict[str, str],
    total: int,
    run: SwarmRun,
    restart: Callable[[str], None],
    say: Callable[[str], None],
) -> None:
    """Poll progress; at half done, kill the leader and time the election; return when all
    tasks are done."""
    while True:
        await anyio.sleep(0.1)
        try:
            done = len(await swarm.list_tasks(state="done", queue=QUEUE))
        except (ClientError, TimeoutError):  # during the failover: ask again
            continue
        if done >= total:
            say(f"all {total} tasks done")
            return
        if run.failover is None and done * 2 >= total:
            run.failover = await _kill_leader(client, addresses, done, total, restart, say)


async def _kill_leader(
    client: RaftClient,
    addresses: dict[str, str],
    done: int,
    total: int,
    restart: Callable[[str], None],
    say: Callable[[str], None],
) -> Failover:
    found = await leader_of(client, addresses)
    if found is None:
        raise RuntimeError("no leader to kill")
    leader, term, pid = found
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    failover = Failover(leader, term, done_at_kill=done)
    say(f"{done}/{total} done: SIGKILL leader {leader} (pid {pid}, term {term})")
    others = {node: address for node, address in addresses.items() if node != leader}
    with anyio.move_on_after(15.0):
        while True:
            now = await leader_of(client, others)
            if now is not None and now[1] > term:
                failover.new_leader, failover.new_term = now[0], now[1]
                failover.seconds = time.monotonic() - killed_at
                break
            await anyio.sleep(0.02)
    if failover.new_leader is None:
        say("no new leader within 15 s")
    else:
        say(
            f"{failover.new_leader} elected leader in term {failover.new_term}, "
            f"{failover.seconds:.2f} s after the kill"
        )
    restart(leader)
    say(f"restarted {leader} on its data")
    return failover


@dataclass(slots=True)
class Audit:
    done: int
    total: int
    completions: int  # accepted completions reported by the agents
    exactly_once: bool
    problems: list[str]


async def audit(addresses: dict[str, str], run: SwarmRun) -> Audit:
    """Check the promises against the ledger (linearizable reads) and the agents' reports."""
    planned = {task.id for task in plan_tasks()}
    problems: list[str] = []
    async with RaftClient(list(addresses.values()), timeout=10.0) as client:
        swarm = SwarmClient(client)
        tasks = {task["id"]: task for task in await swarm.list_tasks(queue=QUEUE)}
        completed_events: Counter[str] | None = Counter()
        index = 1
        while completed_events is not None:
            try:
                events = await swarm.feed(index, 1000)
            except ClientError as error:
                if error.code != "compacted":
                    raise
                problems.append("the change feed no longer starts at index 1: events unchecked")
                completed_events = None
                break
            completed_events.update(
                event["data"]["task_id"] for event in events if event["kind"] == "task.completed"
            )
            if len(events) < 1000:
                break
            index = events[-1]["index"] + 1
    accepted: dict[str, list[tuple[str, int]]] = {}
    for agent, report in run.reports.items():
        for task_id, token in report.completed:
            accepted.setdefault(task_id, []).append((agent, token))
    done = sum(1 for task_id in planned if tasks.get(task_id, {}).get("state") == "done")
    for task_id in sorted(planned):
        task = tasks.get(task_id)
        if task is None or task["state"] != "done":
            problems.append(f"{task_id} is {task['state'] if task else 'missing'}")
            continue
        claims = accepted.get(task_id, [])
        if len(claims) != 1:
            problems.append(f"{task_id} has {len(claims)} accepted completions")
        elif claims[0] != (task["agent"], task["token"]):
            problems.append(f"{task_id} completed by {claims[0]}, ledger says {task['agent']}")
        if completed_events is not None and completed_events[task_id] != 1:
            problems.append(f"{task_id} has {completed_events[task_id]} completion events")
    completions = sum(len(claims) for claims in accepted.values())
    return Audit(done, len(planned), completions, not problems, problems)
