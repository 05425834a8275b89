"""Swarm decisions: a question, options, eligible voters, a deadline; decided by strict majority.

Theory of operation: a decision is `open` until one option has votes from more than half of the
eligible voters (3 voters need 2): then it is `approved`, with that option as the winner, or
`rejected` if the winning option is "reject". It is also `rejected` as soon as no option can
reach a majority any more, and `expired` at the first entry past its deadline while still open.
Each eligible voter votes once; every vote, with its reason, stays in the record, dissent
included. Without an explicit list, the eligible voters are the agents alive at proposal time.
A closed decision is forgotten `retention_ms` after it closed (its deadline's timer kind, set
again when it closes and when restored from a snapshot): decisions do not pile up forever.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError
from .tasks import Emit
from .timers import Timers

DEADLINE = "decision"
REJECT = "reject"


@dataclass(slots=True)
class Decision:
    id: str
    question: str
    options: list[str]
    voters: list[str]
    deadline: int
    created_at: int
    votes: list[dict[str, Any]] = field(default_factory=list)
    state: str = "open"
    winner: str | None = None
    closed_at: int | None = None

    def tally(self) -> dict[str, Any]:
        counts = Counter(vote["option"] for vote in self.votes)
        eligible = len(self.voters)
        leading = max(counts.values(), default=0)
        return {
            "counts": {option: counts.get(option, 0) for option in self.options},
            "participation_rate": len(self.votes) / eligible,
            "approval_rate": (counts.get(self.winner, 0) if self.winner else leading) / eligible,
        }

    def view(self) -> dict[str, Any]:
        return {**asdict(self), **self.tally()}


@dataclass(slots=True)
class DecisionBook:
    timers: Timers
    retention_ms: int  # a closed decision is forgotten this long after it closed
    decisions: dict[str, Decision] = field(default_factory=dict)

    def propose(
        self, cmd: Args, alive_agents: list[str], index: int, now: int, emit: Emit
    ) -> dict[str, Any]:
        decision_id = cmd["id"] or f"decision-{index}"
        if decision_id in self.decisions:
            raise LedgerError("conflict", f"decision {decision_id} exists")
        voters = sorted(cmd["voters"]) if cmd["voters"] is not None else alive_agents
        if not voters:
            raise LedgerError("not_eligible", "no eligible voters: name them or register agents")
        deadline = now + round(cmd["deadline_seconds"] * 1000)
        decision = Decision(
            decision_id, cmd["question"], list(cmd["options"]), voters, deadline, now
        )
        self.decisions[decision_id] = decision
        self.timers.schedule(deadline, DEADLINE, decision_id)
        emit("decision.proposed", {"decision_id": decision_id, "voters": len(voters)})
        return {"ok": True, "decision_id": decision_id, "voters": voters, "deadline": deadline}

    def vote(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        decision = self._get(cmd["decision_id"])
        if decision.state != "open":
            raise LedgerError("closed", f"decision {decision.id} is {decision.state}")
        if cmd["voter"] not in decision.voters:
            raise LedgerError("not_eligible", f"{cmd['voter']} may not vote on {decision.id}")
        if any(vote["voter"] == cmd["voter"] for vote in decision.votes):
            raise LedgerError("already_voted", f"{cmd['voter']} voted on {decision.id} already")
        if cmd["option"] not in decision.options:
            raise LedgerError(
                "invalid_command", f"{cmd['option']!r} is not one of {', '.join(decision.options)}"
            )
        decision.votes.append(
            {"voter": cmd["voter"], "option": cmd["option"], "reason": cmd["reason"], "at": now}
        )
        emit("decision.voted", {"decision_id": decision.id, "voter": cmd["voter"]})
        self._settle(decision, now, emit)
        return {"ok": True, "decision_id": decision.id, "state": decision.state}

    def expire(self, decision_id: str, now: int, emit: Emit) -> None:
        """Close an open decision whose deadline passed, or forget a closed one whose
        retention passed."""
        decision = self.decisions.get(decision_id)
        if decision is None:
            return
        if decision.state == "open":
            if decision.deadline <= now:
                self._close(decision, "expired", None, now, emit)
        elif decision.closed_at is not None and decision.closed_at + self.retention_ms <= now:
            del self.decisions[decision_id]

    def get(self, decision_id: str) -> dict[str, Any]:
        return self._get(decision_id).view()

    def find(self, state: str | None) -> list[dict[str, Any]]:
        return [d.view() for d in self.decisions.values() if state is None or d.state == state]

    def dump(self) -> list[Decision]:
        return list(self.decisions.values())

    def load(self, image: list[dict[str, Any]]) -> None:
        self.decisions = {fields["id"]: Decision(**fields) for fields in image}
        for decision in self.decisions.values():
            if decision.state == "open":
                self.timers.schedule(decision.deadline, DEADLINE, decision.id)
            elif decision.closed_at is not None:
                self.timers.schedule(decision.closed_at + self.retention_ms, DEADLINE, decision.id)

    def _get(self, decision_id: str) -> Decision:
        decision = self.decisions.get(decision_id)
        if decision is None:
            raise LedgerError("not_found", f"no decision {decision_id}")
        return decision

    def _settle(self, decision: Decision, now: int, emit: Emit) -> None:
        counts = Counter(vote["option"] for vote in decision.votes)
        eligible = len(decision.voters)
        for option in decision.options:
            if 2 * counts.get(option, 0) > eligible:
                state = "rejected" if option == REJECT else "approved"
                self._close(decision, state, option, now, emit)
                return
        still_to_vote = eligible - len(decision.votes)
        if 2 * (max(counts.values(), default=0) + still_to_vote) <= eligible:
            self._close(decision, "rejected", None, now, emit)  # no majority is possible

    def _close(
        self, decision: Decision, state: str, winner: str | None, now: int, emit: Emit
    ) -> None:
        decision.state, decision.winner, decision.closed_at = state, winner, now
        self.timers.schedule(now + self.retention_ms, DEADLINE, decision.id)
        emit("decision.closed", {"decision_id": decision.id, "state": state, "winner": winner})
