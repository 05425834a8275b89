"""The Quorum Manager adapter: membership and health reports out, membership requests in.

Theory of operation: only the leader reports (it is the one node whose view of the membership
is authoritative, and one reporter means one report per period, not one per node). Every
`CHECK_S` seconds (at most the report period) the leader asks every member for its status
(client/cluster_view.statuses: a member that does not answer within a second is unreachable)
and builds a `quorum.report`: each member's role, Raft state, reachability and lag (how many
entries its log is behind the leader's), and the cluster's health (cluster_view.health_of).
It publishes the report when its shape changed (leader, members, roles, reachability, health:
trigger "change") or when report_period_s passed since the last one (trigger "period"). A node
that becomes leader reports at its first check; one that stops leading forgets what it sent.

`quorum.change_request` is served by every node (membership.py carries it out through the
leader) and answered with `quorum.change_result`; a payload that does not fit is answered
`rejected` with the problem, and changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

import anyio

from raft_manager.client.cluster_view import Members, health_of, statuses

from .envelope import Envelope
from .handlers import Handlers, Reply
from .membership import carry_out, refusal
from .messages import (
    QUORUM_CHANGE,
    QUORUM_REPORT,
    QUORUM_RESULT,
    ChangeRequest,
    MemberHealth,
    QuorumReport,
)
from .node import AdapterNode, repeat

QUORUM_MANAGER = "quorum-manager"
CHECK_S = 1.0


class QuorumAdapter:
    def __init__(self, node: AdapterNode) -> None:
        self.node = node
        self._last_shape: tuple[Any, ...] | None = None
        self._last_sent = -math.inf

    def register(self, shared: Handlers, own: Handlers) -> None:
        shared.add(QUORUM_CHANGE, ChangeRequest, self.change, invalid=_bad_request)

    async def run(self) -> None:
        period = min(CHECK_S, self.node.settings.report_period_s)
        await repeat("quorum.report", period, self.check)

    async def change(self, envelope: Envelope, request: ChangeRequest) -> Reply:
        budget = self.node.budget_s
        if request.timeout_ms is not None and request.timeout_ms / 1000 > budget:
            why = f"timeout_ms may be at most {int(budget * 1000)} here"
            return Reply(QUORUM_RESULT, refusal(request, "rejected", why))
        timeout = budget if request.timeout_ms is None else request.timeout_ms / 1000
        return Reply(QUORUM_RESULT, await carry_out(self.node.client, request, timeout))

    async def check(self) -> None:
        """Report if this node leads and the report changed or is due."""
        if not self.node.parts.is_leader():
            self._last_shape = None
            return
        report = await self.report()
        shape = _shape(report)
        changed = shape != self._last_shape
        if (
            not changed
            and anyio.current_time() - self._last_sent < self.node.settings.report_period_s
        ):
            return
        report = report.model_copy(update={"trigger": "change" if changed else "period"})
        await self.node.bus.send(QUORUM_MANAGER, QUORUM_REPORT, report)
        self._last_shape, self._last_sent = shape, anyio.current_time()

    async def report(self) -> QuorumReport:
        listed = (await self.node.client.members())["members"]
        clients = {m["id"]: m["client_address"] for m in listed if m["client_address"]}
        answers = await statuses(Members(clients=clients, raft={}), client=self.node.client)
        # the quorum is the voters': learners answering or not change nothing there
        voters = {m["id"] for m in listed if m["role"] == "voter"}
        health = health_of(
            Members({i: a for i, a in clients.items() if i in voters}, {}),
            {i: answer for i, answer in answers.items() if i in voters},
        )
        leader_last = answers.get(health.leader or "", {}).get("last_index")
        rows = []
        for member in listed:
            found = answers.get(member["id"])
            lag = None
            if found is not None and leader_last is not None:
                lag = max(0, leader_last - found["last_index"])
            rows.append(
                MemberHealth(
                    id=member["id"],
                    role=member["role"],
                    state=found["role"] if found else None,
                    reachable=found is not None,
                    lag=lag,
                    applied_index=found["applied_index"] if found else None,
                )
            )
        return QuorumReport(
            reporter=self.node.node_id,
            trigger="period",
            leader=health.leader,
            term=health.term,
            health=health.state,
            reason=health.reason,
            members=rows,
        )


def _shape(report: QuorumReport) -> tuple[Any, ...]:
    """What a change is judged on: not the lag or indexes, which move all the time."""
    members = tuple((m.id, m.role, m.state, m.reachable) for m in report.members)
    return report.leader, report.health, members


def _bad_request(problems: str) -> Reply:
    return Reply(QUORUM_RESULT, refusal(None, "bad-payload", f"bad payload: {problems}"))
