"""The cluster's state right now, for `raft-manager agent render --live`.

Theory of operation: nothing here decides anything about the cluster; it asks, with the same
machinery as `raft-manager status` and `health` (raft_manager/client/cluster_view.py): every
known node's own status at once (a node that does not answer within the status timeout is
simply absent), the status report built from those answers (leader, term, each node's role
and indexes) and the health verdict (healthy, degraded, no quorum). When some node answers,
it also asks the leader for the membership (voter or learner per member), giving up on that
part alone if no leader answers in time. The result is one LiveState, stamped with the UTC
time it was taken; `reachable` is false when no node answered at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.client.cluster_view import Health, Members, health_of, status_report, statuses


@dataclass(frozen=True, slots=True)
class LiveState:
    observed_at: str  # ISO 8601, UTC, to the second
    leader: str | None
    term: int
    nodes: list[dict[str, Any]]  # status_report's nodes, each with its "membership" added
    health: Health

    @property
    def reachable(self) -> bool:
        return any(node["reachable"] for node in self.nodes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "observed_at": self.observed_at,
            "reachable": self.reachable,
            "leader": self.leader,
            "term": self.term,
            "nodes": self.nodes,
            "health": self.health.as_dict(),
        }


async def observe(members: Members, timeout: float = 5.0) -> LiveState:
    """The cluster's state as its nodes report it; `timeout` bounds the membership question."""
    observed_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    answers = await statuses(members)
    report = status_report(members, answers)
    roles = await _membership(members, timeout) if answers else {}
    nodes = [{**node, "membership": roles.get(str(node["id"]))} for node in report["nodes"]]
    return LiveState(
        observed_at, report["leader"], report["term"], nodes, health_of(members, answers)
    )


async def _membership(members: Members, timeout: float) -> dict[str, str]:
    """Node id -> voter or learner, as the leader sees it; empty when no leader answers."""
    with anyio.move_on_after(timeout):
        try:
            async with RaftClient(list(members.clients.values()), timeout=timeout) as client:
                result = await client.members()
        except (ClientError, TimeoutError, OSError):
            return {}
        return {str(member["id"]): str(member["role"]) for member in result["members"]}
    return {}
