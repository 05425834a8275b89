"""`raft-manager agent ...`: register, heartbeat, deregister, list (and `render`, the agent
definition for agent frameworks: cli/agent_render.py).

Theory of operation: each command is one SwarmClient call (see ledger.py for the cluster, the
output and the exit codes). An agent is declared dead at the first log entry past its last
heartbeat plus its timeout, and the tasks it held go back to their queues.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .agent_render import render_command
from .ledger import (
    ClusterOption,
    JsonOption,
    StaleOption,
    TimeoutOption,
    answer,
    call,
    cell,
    command,
    show,
    table,
)
from .skill import help_of

agent_app = typer.Typer(
    help="Agents: register, heartbeat, deregister, list; render the agent definition.",
    no_args_is_help=True,
)
agent_app.command("render", help=help_of(render_command))(render_command)
AgentId = Annotated[str, typer.Argument(help="The agent's id.", show_default=False)]


@command(agent_app, "register")
def register_command(
    agent_id: AgentId,
    capabilities: Annotated[
        list[str] | None, typer.Option("--capability", help="What it can do (repeatable).")
    ] = None,
    heartbeat_timeout: Annotated[
        float | None,
        typer.Option(
            "--heartbeat-timeout",
            help="Seconds of silence before it is declared dead (default: 30).",
        ),
    ] = None,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Register an agent (again, after it was declared dead).

    --json: {"agent_id", "deadline"}: ms since the epoch; heartbeat before then.
    """
    result = call(
        cluster,
        timeout,
        lambda swarm: swarm.register_agent(
            agent_id, capabilities=capabilities, heartbeat_timeout_seconds=heartbeat_timeout
        ),
    )
    show(as_json, answer(result), _alive_until(result["agent_id"], result["deadline"]))


@command(agent_app, "heartbeat")
def heartbeat_command(
    agent_id: AgentId,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Tell the ledger the agent is alive.

    --json: {"agent_id", "deadline"}; an agent declared dead is exit 1, agent_dead (register it
    again).
    """
    result = call(cluster, timeout, lambda swarm: swarm.heartbeat(agent_id))
    show(as_json, answer(result), _alive_until(result["agent_id"], result["deadline"]))


@command(agent_app, "deregister")
def deregister_command(
    agent_id: AgentId,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Remove an agent.

    The tasks it held go back to their queues. --json: {"agent_id"}.
    """
    result = call(cluster, timeout, lambda swarm: swarm.deregister_agent(agent_id))
    show(as_json, answer(result), f"agent {agent_id} deregistered")


@command(agent_app, "list")
def list_command(
    stale: StaleOption = False,
    cluster: ClusterOption = None,
    timeout: TimeoutOption = 5.0,
    as_json: JsonOption = False,
) -> None:
    """List the agents, by id.

    --json: an array of {"id", "capabilities", "timeout_ms", "registered_at",
    "last_heartbeat", "state", "deadline"} (state alive or dead).
    """
    agents = call(cluster, timeout, lambda swarm: swarm.list_agents(stale=stale))
    columns = ("id", "state", "capabilities", "deadline")
    show(as_json, agents, table(f"{len(agents)} agents", agents, columns))


def _alive_until(agent_id: str, deadline: int) -> str:
    return f"agent {agent_id} alive until {cell('deadline', deadline)}"
