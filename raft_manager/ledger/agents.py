"""Agents: register, heartbeat, deregister; declared dead when their heartbeats stop.

Theory of operation: an agent is `alive` until the first entry whose timestamp passes its last
heartbeat plus its timeout; then it is `dead`, and the ledger hands each task it held back to the
queue (as a failed attempt). A dead agent must register again before it may heartbeat or claim;
one that does not is forgotten `retention_ms` after its deadline (by the same timer kind, set
again at its death and when restored from a snapshot), so agents that come and go under fresh
ids do not pile up. Agents that never registered may still claim tasks: their leases alone
protect the work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError
from .tasks import Emit
from .timers import Timers

HEARTBEAT = "heartbeat"


@dataclass(slots=True)
class Agent:
    id: str
    capabilities: list[str]
    timeout_ms: int
    registered_at: int
    last_heartbeat: int
    state: str = "alive"

    @property
    def deadline(self) -> int:
        return self.last_heartbeat + self.timeout_ms

    def view(self) -> dict[str, Any]:
        return {**asdict(self), "deadline": self.deadline}


@dataclass(slots=True)
class AgentBook:
    timers: Timers
    retention_ms: int  # a dead agent is forgotten this long after its deadline
    agents: dict[str, Agent] = field(default_factory=dict)

    def register(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        timeout_ms = round(cmd["heartbeat_timeout_seconds"] * 1000)
        agent = Agent(cmd["agent_id"], list(cmd["capabilities"]), timeout_ms, now, now)
        previous = self.agents.get(cmd["agent_id"])
        if previous is not None and previous.state == "alive":
            agent.registered_at = previous.registered_at
        self.agents[agent.id] = agent
        self.timers.schedule(agent.deadline, HEARTBEAT, agent.id)
        emit("agent.registered", {"agent_id": agent.id, "capabilities": agent.capabilities})
        return {"ok": True, "agent_id": agent.id, "deadline": agent.deadline}

    def heartbeat(self, cmd: Args, now: int) -> dict[str, Any]:
        agent = self.alive(cmd["agent_id"])
        agent.last_heartbeat = now
        self.timers.schedule(agent.deadline, HEARTBEAT, agent.id)
        return {"ok": True, "agent_id": agent.id, "deadline": agent.deadline}

    def deregister(self, cmd: Args, emit: Emit) -> dict[str, Any]:
        if self.agents.pop(cmd["agent_id"], None) is None:
            raise LedgerError("not_found", f"no agent {cmd['agent_id']}")
        emit("agent.deregistered", {"agent_id": cmd["agent_id"]})
        return {"ok": True, "agent_id": cmd["agent_id"]}

    def alive(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise LedgerError("not_found", f"no agent {agent_id}")
        if agent.state != "alive":
            raise LedgerError("agent_dead", f"agent {agent_id} was declared dead; register again")
        return agent

    def check_may_claim(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None and agent.state != "alive":
            raise LedgerError("agent_dead", f"agent {agent_id} was declared dead; register again")

    def expire(self, agent_id: str, now: int, emit: Emit) -> bool:
        """Declare the agent dead if its deadline passed (True: it just died), or forget a dead
        one whose retention passed."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.deadline > now:
            return False
        if agent.state == "dead":
            if agent.deadline + self.retention_ms <= now:
                del self.agents[agent_id]
            return False
        agent.state = "dead"
        self.timers.schedule(agent.deadline + self.retention_ms, HEARTBEAT, agent_id)
        emit("agent.dead", {"agent_id": agent_id, "last_heartbeat": agent.last_heartbeat})
        return True

    def alive_ids(self) -> list[str]:
        return sorted(a.id for a in self.agents.values() if a.state == "alive")

    def find(self) -> list[dict[str, Any]]:
        return [self.agents[agent_id].view() for agent_id in sorted(self.agents)]

    def dump(self) -> list[Agent]:
        return [self.agents[agent_id] for agent_id in sorted(self.agents)]

    def load(self, image: list[dict[str, Any]]) -> None:
        self.agents = {fields["id"]: Agent(**fields) for fields in image}
        for agent in self.agents.values():
            forget = 0 if agent.state == "alive" else self.retention_ms
            self.timers.schedule(agent.deadline + forget, HEARTBEAT, agent.id)
