"""What the pre and post hooks check around an agent's task, and which checks a task calls for.

Theory of operation: a hook runs before (pre) or after (post) a task an agent performs on the
cluster. The task's text only selects checks, by matching words (it is never run, evaluated
or passed on):

- pre: a leader is known (its id and term are printed), a quorum of voters answers, and no
  node lags more than `max_lag` entries behind the leader's commit index; when the task
  mentions an election, also that a transfer target is healthy (another voter that answers,
  within `max_lag` of the leader).
- post: `verify` (consistency.py: the committed logs and the state digests agree across the
  nodes); when the task mentions an election, that exactly one node leads the newest term;
  when it mentions replication (replicat..., log, append...), that every node that answers
  has applied the commit index the leader had when the check began. These two are asked
  again until they pass or `wait` seconds have passed (an election or a catch-up takes a
  moment), so a hook never waits longer than about `wait` plus verify's own bound.

A hook's outcome is its checks and whether any node answered at all; no answer is exit 2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from raft_manager.client.cluster_view import STATUS_TIMEOUT, Members, statuses

from .checks import Check, exit_code
from .consistency import verify_cluster
from .health import (
    StatusRound,
    caught_up,
    leader_known,
    no_node_lagging,
    quorum_reachable,
    single_leader,
    transfer_target_healthy,
)

ELECTION = re.compile(r"\b(?:re-?)?elect\w*|\bleadership\b", re.IGNORECASE)
REPLICATION = re.compile(r"\breplicat\w*|\blogs?\b|\bappend\w*", re.IGNORECASE)
RETRY_SECONDS = 0.1
DEFAULT_MAX_LAG = 1000


def mentions_election(task: str) -> bool:
    return ELECTION.search(task) is not None


def mentions_replication(task: str) -> bool:
    return REPLICATION.search(task) is not None


@dataclass(frozen=True, slots=True)
class HookOutcome:
    checks: list[Check]
    reachable: bool

    @property
    def exit_code(self) -> int:
        """0 every check passed, 1 one failed, 2 no node answered."""
        return exit_code(self.checks, self.reachable)


async def _round(members: Members, timeout: float) -> StatusRound:
    return StatusRound.of(members, await statuses(members, timeout))


def _unreachable(state: StatusRound) -> HookOutcome:
    asked = ", ".join(state.asked) or "no node"
    return HookOutcome([Check.failed(f"cluster unreachable: none of {asked} answers")], False)


async def pre_hook(
    members: Members, task: str, *, max_lag: int = DEFAULT_MAX_LAG, timeout: float = STATUS_TIMEOUT
) -> HookOutcome:
    state = await _round(members, timeout)
    if not state.answers:
        return _unreachable(state)
    checks = [leader_known(state), quorum_reachable(state), *no_node_lagging(state, max_lag)]
    if mentions_election(task):
        checks.append(transfer_target_healthy(state, max_lag))
    return HookOutcome(checks, True)


async def post_hook(
    members: Members, task: str, *, wait: float = 5.0, timeout: float = 5.0
) -> HookOutcome:
    report = await verify_cluster(members.clients, timeout=timeout, wait=wait)
    if not report.heads:
        return HookOutcome(report.checks(), False)
    checks = report.checks()
    deadline = anyio.current_time() + wait
    status_timeout = min(timeout, STATUS_TIMEOUT)
    if mentions_election(task):
        checks += await _settled(members, status_timeout, deadline, lambda s: [single_leader(s)])
    if mentions_replication(task):
        commit = (await _round(members, status_timeout)).commit()
        if commit is None:
            checks.append(Check.failed("catch-up: no leader known, so no commit to catch up to"))
        else:
            checks += await _settled(
                members, status_timeout, deadline, lambda s: caught_up(s, commit)
            )
    return HookOutcome(checks, True)


async def _settled(
    members: Members,
    timeout: float,
    deadline: float,
    judge: Callable[[StatusRound], list[Check]],
) -> list[Check]:
    """Judge rounds of statuses until every check passes or the deadline passed; the last
    judgement."""
    while True:
        checks = judge(await _round(members, timeout))
        if all(check.ok for check in checks) or anyio.current_time() >= deadline:
            return checks
        await anyio.sleep(RETRY_SECONDS)
