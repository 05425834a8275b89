"""The swarm ledger's tools: tasks, shared memory, decisions.

Theory of operation: each tool is one ledger command or query model from
raft_manager/ledger/commands.py, which is at once the tool's input schema and its validator
(see tools.py); only the discriminator (`op`, `query`) is the server's to set. A command goes
through the server's one client session (so a retried command is applied once) and returns the
ledger's result without its `ok` flag; a query is linearizable (a ReadIndex round through the
leader) and returns the ledger's answer without its `ok` flag (`{"task": ...}`,
`{"tasks": [...]}`, `{"item": ... or null}`, ...), always a JSON object. A refusal by the ledger
raises ClientError with the ledger's code (`stale_token`, `not_found`, `cas_failed`, ...).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from raft_manager.ledger import commands as c

from .tools import Cluster, Tool


def _without_ok(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "ok"}


async def _command(cluster: Cluster, command: BaseModel) -> dict[str, Any]:
    return _without_ok(await cluster.swarm.client.command(command))


async def _query(cluster: Cluster, query: BaseModel) -> dict[str, Any]:
    return _without_ok(await cluster.swarm.client.query(query))


def command_tool(name: str, model: type[BaseModel], description: str) -> Tool[Any]:
    return Tool(name, description, model, _command, fixed=("op",))


def query_tool(name: str, model: type[BaseModel], description: str) -> Tool[Any]:
    return Tool(name, description, model, _query, fixed=("query",), read_only=True)


LEDGER_TOOLS: tuple[Tool[Any], ...] = (
    command_tool(
        "task_submit",
        c.TaskSubmit,
        "Submit a task to the swarm. payload: any JSON; id: optional (default task-<log index>;"
        " submitting the same task under the same id again is a no-op); queue (default"
        " 'default'); priority (higher is claimed first); depends_on: task ids that must be done"
        " first; max_attempts (default 3). Result: {task_id, state: pending or waiting,"
        " existing}.",
    ),
    command_tool(
        "task_claim",
        c.TaskClaim,
        "Claim the next task for an agent: the highest priority, then the oldest, from queues"
        " (default ['default']), under a lease of lease_seconds (default 30). Result: {task_id,"
        " payload, queue, fencing_token, lease_until (ms since the epoch), attempt}, or"
        " {task_id: null} when nothing is claimable. task_complete and task_fail need the"
        " fencing_token as `token`.",
    ),
    command_tool(
        "task_complete",
        c.TaskComplete,
        "Complete a claimed task: task_id, agent, token (the claim's fencing_token), result (any"
        " JSON). Result: {task_id, state: done}. Refused with stale_token when the lease is over"
        " or the task was claimed again since (the result is dropped).",
    ),
    command_tool(
        "task_fail",
        c.TaskFail,
        "Fail a claimed task's attempt: task_id, agent, token (the claim's fencing_token),"
        " reason. The task goes back to pending, or fails for good after its last attempt."
        " Result: {task_id, state, attempts}. Refused with stale_token like task_complete.",
    ),
    query_tool(
        "task_list",
        c.TaskList,
        "List tasks in submission order, filtered by state (waiting, pending, claimed, done,"
        " failed, cancelled), queue, or agent (the one holding them); at most limit (default"
        " 100). Result: {tasks: [{id, queue, payload, priority, depends_on, max_attempts,"
        " submitted_at, state, attempts, agent, token, lease_until, result, error, ...}]}.",
    ),
    query_tool(
        "memory_get",
        c.MemoryGet,
        "Read a key of the swarm's shared memory (namespace default 'default'). Result: {item:"
        " {namespace, key, value, version, updated_at, expires_at}}, or {item: null} when the"
        " key is absent or expired.",
    ),
    command_tool(
        "memory_put",
        c.MemoryPut,
        "Write a key of the shared memory: value is any JSON; ttl_seconds: optional expiry;"
        " namespace default 'default'. Result: {version, expires_at}; the version is the"
        " write's log index.",
    ),
    command_tool(
        "memory_cas",
        c.MemoryCas,
        "Compare-and-set a key: write value only if the key holds expected_value (an absent key"
        " never does), or, with expected_version, only if its version is that (0: the key is"
        " absent). compare ('value' or 'version') defaults to 'version' when expected_version"
        " is given. Result: {version, expires_at}; refused with cas_failed when the comparison"
        " fails.",
    ),
    command_tool(
        "decision_propose",
        c.DecisionPropose,
        "Propose a decision for agents to vote on: question; options (default ['approve',"
        " 'reject']); voters (default: the registered agents alive now); deadline_seconds"
        " (default 300); id (optional). A strict majority of the voters decides. Result:"
        " {decision_id, voters, deadline}.",
    ),
    command_tool(
        "decision_vote",
        c.DecisionVote,
        "Vote on an open decision: decision_id, voter, option, reason (optional; every vote"
        " stays in the record). Result: {decision_id, state} (open, approved, rejected, ...)."
        " Refused with not_eligible, already_voted or closed.",
    ),
    query_tool(
        "decision_get",
        c.DecisionGet,
        "Read a decision: its question, options, voters, every vote with its reason, state,"
        " winner and tally. Result: {decision: {...}}; refused with not_found for an unknown"
        " id.",
    ),
)
