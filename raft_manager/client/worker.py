"""An agent's work loop: claim a task, do it, complete it (or fail it), repeat.

Theory of operation: `work` claims from the given queues under a lease; when nothing is
claimable it waits (doubling from 50 ms up to `idle_wait`) and tries again. A claimed task's
payload goes to `handler`; its return value completes the task with the fencing token of the
claim, and an exception fails it with the exception's text as the reason, as does a result the
ledger refuses (not JSON, too big). A completion refused as `stale_token` means the lease ran
out and the task went to someone else: the result is dropped, as it must be. Each command
carries the client's session, so one retried through a leader change applies once. The loop
ends when `should_stop()` is true or after `max_tasks` tasks handled, however each ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .client import ClientError, RaftClient

Handler = Callable[[Any], Awaitable[Any]]


@dataclass(slots=True)
class WorkReport:
    completed: list[tuple[str, int]] = field(default_factory=list)  # (task id, fencing token)
    failed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # leases that ran out before completion


async def work(
    client: RaftClient,
    agent: str,
    handler: Handler,
    *,
    queues: tuple[str, ...] = ("default",),
    lease_seconds: float = 30.0,
    idle_wait: float = 1.0,
    max_tasks: int | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> WorkReport:
    report = WorkReport()
    wait = 0.05
    claim: dict[str, Any] = {
        "op": "task.claim",
        "agent": agent,
        "queues": list(queues),
        "lease_seconds": lease_seconds,
    }
    handled = 0
    while not should_stop() and (max_tasks is None or handled < max_tasks):
        task = await client.command(claim)
        if task["task_id"] is None:
            await anyio.sleep(wait)
            wait = min(wait * 2, idle_wait)
            continue
        wait, handled = 0.05, handled + 1
        task_id, token = task["task_id"], task["fencing_token"]
        held = {"task_id": task_id, "agent": agent, "token": token}
        try:
            result = await handler(task["payload"])
        except Exception as error:  # the handler's failure is the task's failure
            await _fail(client, held, str(error))
            report.failed.append(task_id)
            continue
        try:
            done = await _settle(client, {"op": "task.complete", **held, "result": result})
        except ClientError as error:
            if error.code != "invalid_command":
                raise
            await _fail(client, held, f"its result was refused: {error}")
            report.failed.append(task_id)
            continue
        if done:
            report.completed.append((task_id, token))
        else:
            report.lost.append(task_id)
    return report


async def _fail(client: RaftClient, held: dict[str, Any], reason: str) -> None:
    await _settle(client, {"op": "task.fail", **held, "reason": reason[:4000]})


async def _settle(client: RaftClient, command: dict[str, Any]) -> bool:
    """Complete or fail a held task; False if the lease had run out (stale token)."""
    try:
        await client.command(command)
    except ClientError as error:
        if error.code == "stale_token":
            return False
        raise
    return True
