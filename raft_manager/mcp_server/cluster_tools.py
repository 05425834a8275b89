"""The cluster's tools: status, health, verify, elect, and the members_* membership changes.

Theory of operation: status and health ask every known node for its own view at once (each gets
a second) and judge it with raft_manager/client/cluster_view.py, the same functions
`raft-manager status` and `health` print, so the tool and the command cannot disagree. A health
verdict, `no_quorum` included, is a result; a status nobody answers is an error (`unavailable`).
verify runs raft_manager/verify (the cross-node log and state comparison `raft-manager verify`
runs): a divergence is a result (`consistent: false`), a cluster nobody answers an error.
elect and the membership changes go through the leader on the server's one client. Their
arguments have no ledger model (they are not ledger commands), so their models are here: they
check a node id and the addresses the way the node will, before anything is sent.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from raft_manager.client import ClientError
from raft_manager.client.cluster_view import change_members, health_of, status_report, statuses
from raft_manager.transport.base import parse_address
from raft_manager.verify import verify_cluster

from .tools import Cluster, Tool, ToolFailure

NodeId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="A node id: letters, digits, '-' and '_'."),
]


def _address(value: str) -> str:
    parse_address(value)  # ValueError: pydantic reports it as the field's problem
    return value


Address = Annotated[str, AfterValidator(_address)]


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArguments(_Arguments):
    pass


class Elect(_Arguments):
    to: NodeId | None = Field(
        default=None, description="The new leader (default: the most up-to-date follower)."
    )


class Verify(_Arguments):
    wait_seconds: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="Seconds the nodes get to note their state digest at the checkpoint.",
    )


class MembersAdd(_Arguments):
    node: NodeId
    address: Address = Field(description="The new member's Raft address, HOST:PORT.")
    client_address: Address = Field(description="Its client address, HOST:PORT.")
    learner: bool = Field(default=False, description="Add it as a learner (no vote).")


class MembersPromote(_Arguments):
    node: NodeId
    wait_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="Seconds to let a lagging learner catch up."
    )


class MembersRemove(_Arguments):
    node: NodeId


async def _status(cluster: Cluster, _: NoArguments) -> dict[str, Any]:
    answers = await statuses(cluster.members)
    if not answers:
        addresses = ", ".join(cluster.members.clients.values())
        raise ToolFailure("unavailable", f"no node of the cluster answers ({addresses})")
    return status_report(cluster.members, answers)


async def _health(cluster: Cluster, _: NoArguments) -> dict[str, Any]:
    return health_of(cluster.members, await statuses(cluster.members)).as_dict()


async def _verify(cluster: Cluster, arguments: Verify) -> dict[str, Any]:
    report = await verify_cluster(
        cluster.members.clients, timeout=cluster.timeout, wait=arguments.wait_seconds
    )
    checks = report.checks()
    if not report.heads:
        lines = "; ".join(check.text for check in checks)
        raise ToolFailure("unavailable", f"cannot verify: {lines}")
    return {**report.as_dict(), "checks": [check.as_dict() for check in checks]}


async def _elect(cluster: Cluster, arguments: Elect) -> dict[str, Any]:
    try:
        return await cluster.swarm.client.transfer(arguments.to)
    except ClientError as error:
        why = str(error).removeprefix(f"{error.code}: ")
        raise ToolFailure(error.code, f"leadership did not move: {why}") from None


async def _members_list(cluster: Cluster, _: NoArguments) -> dict[str, Any]:
    return await cluster.swarm.client.members()


async def _members_add(cluster: Cluster, arguments: MembersAdd) -> dict[str, Any]:
    body = {
        "kind": "add_learner" if arguments.learner else "add_voter",
        "node": arguments.node,
        "address": arguments.address,
        "client_address": arguments.client_address,
    }
    return await change_members(cluster.swarm.client, body, 0)


async def _members_promote(cluster: Cluster, arguments: MembersPromote) -> dict[str, Any]:
    body = {"kind": "promote", "node": arguments.node}
    return await change_members(cluster.swarm.client, body, arguments.wait_seconds)


async def _members_remove(cluster: Cluster, arguments: MembersRemove) -> dict[str, Any]:
    return await change_members(cluster.swarm.client, {"kind": "remove", "node": arguments.node}, 0)


MEMBERS = "{members: [{id, role: voter or learner, address, client_address}]}"

CLUSTER_TOOLS: tuple[Tool[Any], ...] = (
    Tool(
        "status",
        "The cluster's state: the leader and term, and every node's role, term, commit, applied"
        " and last index, pid, address and reachability. Result: {leader, term, nodes: [{id,"
        " role, term, commit_index, applied_index, last_index, pid, address, reachable}]}.",
        NoArguments,
        _status,
        read_only=True,
    ),
    Tool(
        "health",
        "Is the cluster healthy? healthy: a leader, every node answers; degraded: a quorum"
        " answers; no_quorum: it cannot make progress. Result: {state, reason (one line),"
        " leader, term, answering, total, down: [node ids]}.",
        NoArguments,
        _health,
        read_only=True,
    ),
    Tool(
        "verify",
        "Verify the cluster's consistency across its nodes: compare every node's committed log"
        " entry by entry, then commit a checkpoint and compare the nodes' state digests at it."
        " Result: {consistent (true, or false on a divergence), exit_code, nodes, log, state,"
        " checks: [{verdict: ok, FAIL or skip, text}]}; an error when no node answers.",
        Verify,
        _verify,
    ),
    Tool(
        "elect",
        "Transfer leadership (to `to`, else to the most up-to-date follower) and wait for it."
        " Result: {old, new, term}.",
        Elect,
        _elect,
    ),
    Tool(
        "members_list",
        f"The cluster's members as the leader sees them. Result: {MEMBERS}.",
        NoArguments,
        _members_list,
        read_only=True,
    ),
    Tool(
        "members_add",
        "Add a member (its node must already run with `join = true` in its cluster file), as a"
        f" voter or, with learner, as a learner. Result: {MEMBERS} after the change; refused"
        " with conf_rejected when it cannot be made.",
        MembersAdd,
        _members_add,
    ),
    Tool(
        "members_promote",
        "Make a learner a voter once it has caught up with the leader (retried for"
        f" wait_seconds while it lags). Result: {MEMBERS} after the change.",
        MembersPromote,
        _members_promote,
    ),
    Tool(
        "members_remove",
        "Remove a member (the leader may remove itself: it hands leadership over as it goes)."
        f" Result: {MEMBERS} after the change.",
        MembersRemove,
        _members_remove,
    ),
)
