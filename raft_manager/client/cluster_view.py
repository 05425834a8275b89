"""The cluster as its nodes report it: who answers, who leads, how healthy it is; and membership
changes that wait for a lagging learner.

Theory of operation: `statuses` asks every known node for its own view (the client protocol's
`status` op, no redirect), all at once, each with a short timeout: a node that is down, starting
or unreachable is simply missing from the answer. Everything else here is a pure function of
those answers: `leader_of` picks the leader of the highest term, `status_report` is the
document `raft-manager status --json` prints (and the MCP `status` tool returns), `health_of`
judges healthy (a leader, every node answers), degraded (a quorum of the known nodes answers)
or no quorum. The faces (the CLI, the MCP server) only render these; they decide nothing.

`change_members` makes one membership change through the leader; a promotion is refused while
the learner lags, and any change while another is in flight, before the leader committed an
entry of its term or during a leadership transfer, so it retries those passing refusals until
they pass or `wait` seconds have passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from .client import ClientError, RaftClient

STATUS_TIMEOUT = 1.0  # seconds one node gets to report its status
RETRY_SECONDS = 0.2  # how often a change refused for a passing reason is asked again
PASSING = ("has not caught up", "; retry", "leadership is being transferred")  # core refusals


@dataclass(frozen=True, slots=True)
class Members:
    """Whom to ask: node id -> client address, and node id -> Raft address when known. Given as
    bare addresses (`--cluster HOST:PORT,HOST:PORT`), a node is named by its address until it
    answers."""

    clients: dict[str, str]
    raft: dict[str, str]


async def statuses(
    members: Members, timeout: float = STATUS_TIMEOUT, *, client: RaftClient | None = None
) -> dict[str, dict[str, Any]]:
    """Answers by member key (node id, or address for bare addresses); nodes that do not answer
    within `timeout` are left out. A poller passes its own open `client`, whose connections
    then serve every round; else one is opened for this round."""
    found: dict[str, dict[str, Any]] = {}

    async def ask(client: RaftClient, key: str, address: str) -> None:
        with anyio.move_on_after(timeout):
            try:
                found[key] = await client.status(address)
            except Exception:  # down, starting, or unreachable: reported as unreachable
                return

    async def ask_all(client: RaftClient) -> None:
        async with anyio.create_task_group() as group:
            for key, address in members.clients.items():
                group.start_soon(ask, client, key, address)

    if client is not None:
        await ask_all(client)
    else:
        async with RaftClient(list(members.clients.values()), timeout=timeout) as own:
            await ask_all(own)
    return {key: found[key] for key in members.clients if key in found}


def leader_of(answers: dict[str, dict[str, Any]]) -> tuple[str | None, int]:
    """(the member key of the leader of the highest term, or None; that term, else the highest
    term any node reported)."""
    leaders = [(s["term"], node) for node, s in answers.items() if s["role"] == "leader"]
    if leaders:
        term, node = max(leaders)
        return node, term
    return None, max((s["term"] for s in answers.values()), default=0)


def status_report(members: Members, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{"leader": id or None, "term", "nodes": [{"id", "role", "term", "commit_index",
    "applied_index", "last_index", "pid", "address", "reachable"}]} (None for what a node that
    does not answer cannot tell)."""
    leader, term = leader_of(answers)
    nodes = []
    for key, client_address in members.clients.items():
        found = answers.get(key, {})
        nodes.append(
            {
                "id": found.get("id", key),
                "role": found.get("role"),
                "term": found.get("term"),
                "commit_index": found.get("commit_index"),
                "applied_index": found.get("applied_index"),
                "last_index": found.get("last_index"),
                "pid": found.get("pid"),
                "address": members.raft.get(key, client_address),
                "reachable": bool(found),
            }
        )
    leader_id = answers[leader]["id"] if leader is not None else None
    return {"leader": leader_id, "term": term, "nodes": nodes}


HealthState = Literal["healthy", "degraded", "no_quorum"]


@dataclass(frozen=True, slots=True)
class Health:
    state: HealthState
    reason: str  # one line, for people
    leader: str | None
    term: int
    answering: int
    total: int
    down: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 no quorum (`raft-manager health`)."""
        return {"healthy": 0, "degraded": 1, "no_quorum": 2}[self.state]

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "leader": self.leader,
            "term": self.term,
            "answering": self.answering,
            "total": self.total,
            "down": self.down,
        }


def health_of(members: Members, answers: dict[str, dict[str, Any]]) -> Health:
    """Healthy: a leader and every node answers; degraded: a quorum of the known nodes answers;
    else no quorum."""
    leader, term = leader_of(answers)
    leader_id = answers[leader]["id"] if leader is not None else None
    total, answering = len(members.clients), len(answers)
    down = sorted(set(members.clients) - set(answers))
    if answering * 2 <= total:
        reason = f"no quorum: {answering} of {total} nodes answer"
        return Health("no_quorum", reason, leader_id, term, answering, total, down)
    if leader is None or answering < total:
        why = f"leader {leader_id}" if leader_id else "no leader known"
        reason = f"degraded: {why}; {answering} of {total} answer (down: {', '.join(down)})"
        return Health("degraded", reason, leader_id, term, answering, total, down)
    reason = f"healthy: leader {leader_id}, term {term}, all {total} nodes answer"
    return Health("healthy", reason, leader_id, term, answering, total, down)


def passing(error: ClientError) -> bool:
    """Whether a membership change was refused for a reason that passes by itself."""
    return error.code == "conf_rejected" and any(reason in str(error) for reason in PASSING)


async def change_members(client: RaftClient, body: dict[str, Any], wait: float) -> dict[str, Any]:
    """Make one change (`body` as RaftClient.members takes it); while it is refused for a passing
    reason (a lagging learner, another change in flight), retry until `wait` seconds have
    passed. {"members": [...]} after the change."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await client.members(body)
        except ClientError as error:
            if not passing(error) or time.monotonic() >= deadline:
                raise
            await anyio.sleep(RETRY_SECONDS)
