"""The cluster-health checks of the hooks: pure judgements of one round of node statuses.

Theory of operation: the hooks ask every member for its `status` at once
(client/cluster_view.py) and judge the answers here; each judgement is one Check (checks.py).
A `StatusRound` holds the answers by node id. The leader is the leader of the highest term
among them (cluster_view.leader_of); the voters are the voters in the leader's own member
list, so a member added since the cluster file was written counts, or, with no leader known,
the members that were asked. A node's lag is how far its applied index trails the leader's
commit index (statuses are taken at slightly different moments, so a small lag is normal
under load: the threshold is the caller's). Nothing here talks to the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raft_manager.client.cluster_view import Members, leader_of

from .checks import Check


@dataclass(frozen=True, slots=True)
class StatusRound:
    answers: dict[str, dict[str, Any]]  # node id -> its status
    asked: tuple[str, ...]  # the member names asked (ids, or addresses for bare addresses)
    missing: tuple[str, ...]  # those that did not answer

    @classmethod
    def of(cls, members: Members, answers: dict[str, dict[str, Any]]) -> StatusRound:
        """From `cluster_view.statuses` answers (by member name); an answer without the
        fields the checks read counts as no answer."""
        usable = {name: status for name, status in answers.items() if _usable(status)}
        by_id = {status["id"]: status for status in usable.values()}
        missing = tuple(name for name in members.clients if name not in usable)
        return cls(by_id, tuple(members.clients), missing)

    @property
    def leader(self) -> tuple[str | None, int]:
        return leader_of(self.answers)

    def voters(self) -> list[str]:
        leader, _ = self.leader
        if leader is not None:
            listed = self.answers[leader].get("members")
            if isinstance(listed, list):
                return sorted(
                    str(m.get("id"))
                    for m in listed
                    if isinstance(m, dict) and m.get("role") == "voter"
                )
        return sorted({*self.answers, *self.missing})

    def lag(self, node: str) -> int:
        """How many entries `node` has yet to apply of what the leader committed (0 when no
        leader is known)."""
        leader, _ = self.leader
        if leader is None:
            return 0
        commit = int(self.answers[leader]["commit_index"])
        return max(0, commit - int(self.answers[node]["applied_index"]))

    def commit(self) -> int | None:
        leader, _ = self.leader
        return None if leader is None else int(self.answers[leader]["commit_index"])


def _usable(status: dict[str, Any]) -> bool:
    numbers = ("term", "commit_index", "applied_index")
    return (
        isinstance(status.get("id"), str)
        and isinstance(status.get("role"), str)
        and all(type(status.get(name)) is int for name in numbers)
    )


def leader_known(state: StatusRound) -> Check:
    leader, term = state.leader
    if leader is None:
        return Check.failed(f"no leader known (newest term {term})")
    return Check.passed(f"leader {leader}, term {term}")


def quorum_reachable(state: StatusRound) -> Check:
    voters = state.voters()
    answering = [voter for voter in voters if voter in state.answers]
    need = len(voters) // 2 + 1
    text = f"{len(answering)} of {len(voters)} voters answer"
    if len(answering) >= need:
        return Check.passed(f"quorum: {text}")
    silent = ", ".join(voter for voter in voters if voter not in state.answers)
    return Check.failed(f"no quorum: {text}, {need} needed (silent: {silent})")


def no_node_lagging(state: StatusRound, max_lag: int) -> list[Check]:
    """One line if no node that answers lags more than `max_lag` entries, else one line per
    node that does; and a skipped line per node that does not answer (work goes on with a
    quorum, quorum_reachable's concern)."""
    leader, _ = state.leader
    commit = state.commit()
    if leader is None or commit is None:
        return [Check.skipped("lag: no leader to measure it against")]
    lagging = [
        (node, state.lag(node)) for node in sorted(state.answers) if state.lag(node) > max_lag
    ]
    checks = [
        Check.failed(f"node {node} lags {lag:,} entries behind commit {commit:,}")
        for node, lag in lagging
    ] or [Check.passed(f"no node lags more than {max_lag:,} entries behind commit {commit:,}")]
    return checks + [
        Check.skipped(f"node {node} does not answer: its lag is unknown") for node in state.missing
    ]


def transfer_target_healthy(state: StatusRound, max_lag: int) -> Check:
    """Is there a voter, other than the leader, that answers and is within `max_lag` of the
    leader's commit (one that could take leadership over)?"""
    leader, _ = state.leader
    if leader is None:
        return Check.failed("no transfer target: no leader known")
    others = [v for v in state.voters() if v != leader and v in state.answers]
    if not others:
        return Check.failed(f"no transfer target: no voter besides {leader} answers")
    best = min(others, key=lambda voter: (state.lag(voter), voter))
    lag = state.lag(best)
    if lag > max_lag:
        return Check.failed(
            f"no healthy transfer target: the closest voter, {best}, lags {lag:,} entries"
        )
    return Check.passed(f"transfer target {best} is healthy: {lag:,} entries behind the leader")


def single_leader(state: StatusRound) -> Check:
    """Exactly one node leads in the newest term any node reports."""
    newest = max((int(status["term"]) for status in state.answers.values()), default=0)
    leaders = sorted(
        node
        for node, status in state.answers.items()
        if status.get("role") == "leader" and status.get("term") == newest
    )
    if len(leaders) == 1:
        return Check.passed(f"single leader {leaders[0]} in the newest term {newest}")
    if not leaders:
        return Check.failed(f"no leader in the newest term {newest}")
    return Check.failed(f"{len(leaders)} leaders in term {newest}: {', '.join(leaders)}")


def caught_up(state: StatusRound, commit: int) -> list[Check]:
    """Every node has applied the leader's commit index `commit`: one line, or one line per
    node still behind; a node that does not answer fails (it is not known to hold it)."""
    behind = sorted(
        (node, int(status["applied_index"]))
        for node, status in state.answers.items()
        if int(status["applied_index"]) < commit
    )
    checks = [
        Check.failed(f"node {node} applied {applied:,} of the leader's commit {commit:,}")
        for node, applied in behind
    ] or [
        Check.passed(
            f"caught up to the leader's commit {commit:,}: {', '.join(sorted(state.answers))}"
        )
    ]
    return checks + [
        Check.failed(
            f"node {node} does not answer: not known to hold the leader's commit {commit:,}"
        )
        for node in state.missing
    ]
