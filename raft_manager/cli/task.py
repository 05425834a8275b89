"""`raft-manager task ...`: submit, claim, renew, complete, fail, cancel, get, list, watch.

Theory of operation: each command is one SwarmClient call (see ledger.py for the cluster, the
output and the exit codes). `claim --wait S` asks again every POLL_SECONDS until a task comes or
S seconds pass; `watch` prints the change feed (every kind of event, not only tasks) from
--from on, one event per line, until --count events or Ctrl-C.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import typer

from raft_manager.client import SwarmClient
from raft_manager.client.swarm import POLL_SECONDS

from .ledger import (
    NOTHING,
    ClusterOption,
    JsonOption,
    StaleOption,
    TimeoutOption,
    answer,
    call,
    cell,
    command,
    json_argument,
    show,
    table,
)

task_app = typer.Typer(
    help="Tasks: submit, claim under a lease, renew, complete, fail, cancel, inspect, watch.",
    no_args_is_help=True,
)
TaskId = Annotated[str, typer.Argument(help="The task's id.", show_default=False)]
Agent = Annotated[str, typer.Option("--agent", help="The agent holding the task.")]
Token = Annotated[int, typer.Option("--token", help="The fencing token of the claim.")]
Lease = Annotated[
    float | None, typer.Option("--lease", help="Lease seconds (default: 30 for a claim).")
]
TASK_COLUMNS = ("id", "queue", "state", "priority", "attempts", "agent", "token", "lease_until")


@command(task_app, "submit")
def submit_command(
    payload: Annotated[str, typer.Argument(help="The task's payload: JSON.")],
    task_id: Annotated[
        str | None, typer.Option("--id", help="The task's id (default: task-<log index>).")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Default: default.")] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Higher first (default: 0).")
    ] = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option("--depends-on", help="A task that must be done first (repeatable)."),
    ] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts", help="Default: 3.")] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Submit a task.

    --json: {"task_id", "state", "existing"}: state pending, or waiting for its dependencies;
    existing true when the same task was submitted under that id before.
    """
    body = json_argument(payload, "PAYLOAD")
    result = call(
        cluster,
        timeout,
        lambda swarm: swarm.submit_task(
            body,
            task_id=task_id,
            queue=queue,
            priority=priority,
            depends_on=depends_on,
            max_attempts=max_attempts,
        ),
    )
    again = " (submitted before)" if result["existing"] else ""
    show(as_json, answer(result), f"task {result['task_id']}: {result['state']}{again}")


@command(task_app, "claim")
def claim_command(
    agent: Agent,
    queues: Annotated[
        list[str] | None,
        typer.Option("--queue", help="A queue to claim from (repeatable; default: default)."),
    ] = None,
    lease: Lease = None,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to keep trying while none is there.")
    ] = 0.0,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Claim a task: the highest priority, then the oldest.

    --json: {"task_id", "payload", "queue", "fencing_token", "lease_until", "attempt"}; with
    nothing to claim, {"task_id": null} and exit 3.
    """

    async def claim(swarm: SwarmClient) -> dict[str, Any]:
        deadline = anyio.current_time() + wait
        while True:
            result = await swarm.claim_task(agent, queues=queues, lease_seconds=lease)
            left = deadline - anyio.current_time()
            if result["task_id"] is not None or left <= 0:
                return result
            await anyio.sleep(min(POLL_SECONDS, left))

    result = call(cluster, timeout, claim)
    if result["task_id"] is None:
        show(as_json, answer(result), "nothing to claim")
        raise typer.Exit(NOTHING)
    show(
        as_json,
        answer(result),
        f"claimed {result['task_id']} from {result['queue']}: token {result['fencing_token']},"
        f" attempt {result['attempt']}, lease until {cell('lease_until', result['lease_until'])}"
        f"\npayload: {cell('payload', result['payload'])}",
    )


@command(task_app, "renew")
def renew_command(
    task_id: TaskId,
    agent: Agent,
    token: Token,
    lease: Lease = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Extend a held task's lease.

    By --lease seconds from now, else by the claim's lease. --json: {"task_id", "lease_until"};
    a lease that is over is exit 1, stale_token.
    """
    result = call(
        cluster, timeout, lambda swarm: swarm.renew_task(task_id, agent, token, lease_seconds=lease)
    )
    show(as_json, answer(result), f"lease until {cell('lease_until', result['lease_until'])}")


@command(task_app, "complete")
def complete_command(
    task_id: TaskId,
    agent: Agent,
    token: Token,
    result_json: Annotated[str, typer.Option("--result", help="The task's result: JSON.")] = "null",
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Complete a held task.

    --json: {"task_id", "state"}; a lease that is over is exit 1, stale_token (the result is
    dropped).
    """
    value = json_argument(result_json, "--result")
    result = call(cluster, timeout, lambda swarm: swarm.complete_task(task_id, agent, token, value))
    show(as_json, answer(result), f"task {task_id}: {result['state']}")


@command(task_app, "fail")
def fail_command(
    task_id: TaskId,
    agent: Agent,
    token: Token,
    reason: Annotated[str | None, typer.Option("--reason", help="Why it failed.")] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Fail a held task's attempt.

    The task goes back to pending, or fails for good after its last attempt. --json:
    {"task_id", "state", "attempts"}.
    """
    result = call(cluster, timeout, lambda swarm: swarm.fail_task(task_id, agent, token, reason))
    show(
        as_json,
        answer(result),
        f"task {task_id}: {result['state']} after {result['attempts']} failed attempts",
    )


@command(task_app, "cancel")
def cancel_command(
    task_id: TaskId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Cancel a task that is not final yet.

    The tasks waiting for it fail. --json: {"task_id", "state"}.
    """
    result = call(cluster, timeout, lambda swarm: swarm.cancel_task(task_id, reason))
    show(as_json, answer(result), f"task {task_id}: {result['state']}")


@command(task_app, "get")
def get_command(
    task_id: TaskId,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Show one task.

    --json: {"id", "queue", "payload", "priority", "depends_on", "max_attempts",
    "submitted_at", "submit_index", "state", "attempts", "agent", "token", "lease_ms",
    "lease_until", "updated_at", "result", "error"}; an unknown id is exit 1, not_found.
    """
    task = call(cluster, timeout, lambda swarm: swarm.get_task(task_id, stale=stale))
    lines = [f"{name}: {cell(name, value)}" for name, value in task.items()]
    show(as_json, task, "\n".join(lines))


@command(task_app, "list")
def list_command(
    state: Annotated[
        str | None,
        typer.Option("--state", help="waiting, pending, claimed, done, failed or cancelled."),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Held by this agent.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Default: 100.")] = None,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """List tasks in submission order.

    --json: an array of tasks (as `task get` prints them).
    """
    tasks = call(
        cluster,
        timeout,
        lambda swarm: swarm.list_tasks(
            state=state, queue=queue, agent=agent, limit=limit, stale=stale
        ),
    )
    show(as_json, tasks, table(f"{len(tasks)} tasks", tasks, TASK_COLUMNS))


@command(task_app, "watch")
def watch_command(
    from_index: Annotated[
        int, typer.Option("--from", min=1, help="The first log index to show.")
    ] = 1,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Follow the change feed.

    Every kind of event (tasks, agents, memory, decisions), from log index --from on, until
    --count events or Ctrl-C (exit 0). --json: one event per line, {"index", "term", "ts",
    "kind", "data"}.
    """

    async def follow(swarm: SwarmClient) -> None:
        shown = 0
        async for event in swarm.watch(from_index, stale=stale):
            if as_json:
                typer.echo(json.dumps(event))
            else:
                typer.echo(f"{event['index']} {event['kind']} {json.dumps(event['data'])}")
            shown += 1
            if shown == count:
                return

    try:
        call(cluster, timeout, follow)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
