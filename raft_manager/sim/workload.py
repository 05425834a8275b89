"""The simulated clients: a writer and a reader of shared memory, a planner that submits tasks, and
agents that claim them under short leases and complete, fail, renew or abandon them.

Theory of operation: every client draws from the schedule's RNG and acts once per tick, before
the faults, so a seed replays exactly. Requests go to a node that believes it leads (stale
leaders of older terms included, so work also piles up on the wrong side of partitions) or, 15 %
of the time, to any node. The writer proposes `memory.put` of one of four keys without a session
(written once, never answered) on 15 % of ticks; the reader asks for a linearizable read of the
same keys on another 15 %.

The planner and each agent own a session (the Raft dissertation's chapter 6): numbered requests,
one outstanding at a time, so the `ack` sent with a request is its own number. A request is
proposed again every RETRY_TICKS until the node it went to answers it (a crash, a lost term or a
node that does not lead leaves it unanswered). One request in four also has a copy delayed on
its way, proposed 1 to 20 ticks later whether or not the request was answered meanwhile: two
copies of one request in the log, the second of which the ledger's session table must answer
from its record, or refuse as `stale_request` once the client has moved on. An answer to an
older request (a late copy's) is ignored.

The planner submits a task on 10 % of the ticks it is idle, each with its own payload marker,
three in ten under an explicit id, and reports every acknowledged submit to the Checker. An idle
agent claims from the default queue on 20 % of its ticks, with a lease of 1 or 2 s (10 or 20
ticks), and backs off 10 to 20 ticks when there was nothing to claim; holding a task, it works 1
to 12 ticks, then completes it (60 %), fails it (15 %), renews its lease (15 %) or walks away and
lets the lease expire (10 %). Partitions, crashes and slow retries also make leases run out under
agents that still believe they hold them: their late renewals and completions must be refused,
and the task claimed again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raft_manager.core import Role
from raft_manager.ledger import Command, parse_command

from .cluster import Answer, SimCluster

KEYS = ("k0", "k1", "k2", "k3")
AGENTS = 3
RETRY_TICKS = 20
DELAYED_COPY = 0.25  # the share of requests with a second copy on its way
LEASE_SECONDS = (1.0, 2.0)
PLANNER = "planner"


def believed_leader(cluster: SimCluster, rng: random.Random) -> str | None:
    """A node that thinks it leads, stale leaders of older terms included."""
    leaders = [
        node.id
        for node in cluster.nodes.values()
        if node.raft is not None and node.raft.role is Role.LEADER
    ]
    return rng.choice(leaders) if leaders else None


@dataclass(slots=True)
class Session:
    id: str
    seq: int = 0  # the number of the latest request
    command: Command | None = None  # that request, until it is answered
    retry_at: int = 0  # the tick at which it is proposed again
    copy: tuple[int, int, Command] | None = None  # a delayed copy: (tick due, seq, command)


@dataclass(slots=True)
class Agent:
    session: Session
    task_id: str | None = None  # the task it believes it holds
    token: int = 0
    next_move: int = 0  # the tick of its next request


class Workload:
    def __init__(self, cluster: SimCluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.writes = 0
        self.submits = 0
        self.retries = 0
        self.planner = Session(PLANNER)
        self.agents = {f"agent-{k}": Agent(Session(f"agent-{k}")) for k in range(1, AGENTS + 1)}
        self.sessions = [self.planner, *(agent.session for agent in self.agents.values())]

    def _target(self) -> str:
        leader = believed_leader(self.cluster, self.rng)
        if leader is not None and self.rng.random() < 0.85:
            return leader
        return self.rng.choice(self.cluster.ids)

    def act(self) -> None:
        cluster, rng = self.cluster, self.rng
        self.collect()
        roll = rng.random()
        if roll < 0.15:
            self.writes += 1
            cluster.put(self._target(), rng.choice(KEYS), f"v{self.writes}")
        elif roll < 0.3:
            cluster.read(self._target(), rng.choice(KEYS))
        now = cluster.now
        if self.planner.command is None and rng.random() < 0.1:
            self._submit()
        for agent in self.agents.values():
            if agent.session.command is None and agent.next_move <= now:
                self._move(agent)
        for session in self.sessions:
            self._resend(session, now)

    def collect(self) -> None:
        """Take the answers the cluster gave since the last call."""
        answers = self.cluster.answers
        if not answers:
            return
        self.cluster.answers = []
        for answer in answers:
            agent = self.agents.get(answer.session)
            session = agent.session if agent is not None else self.planner
            if session.command is None or answer.seq != session.seq:
                continue  # the answer to a copy of a request answered already
            command, session.command = session.command, None
            if agent is not None:
                self._agent_answered(agent, command, answer)
            elif answer.result["ok"]:
                self.cluster.checker.on_submit_acknowledged(answer.index, answer.result["task_id"])

    # -- requests --------------------------------------------------------------------------------

    def _send(self, session: Session, body: dict[str, object]) -> None:
        session.seq += 1
        session.command = command = parse_command(body)
        now = self.cluster.now
        if session.copy is None and self.rng.random() < DELAYED_COPY:
            session.copy = (now + self.rng.randint(1, RETRY_TICKS), session.seq, command)
        session.retry_at = now + RETRY_TICKS
        self._propose(session, session.seq, command)

    def _resend(self, session: Session, now: int) -> None:
        """Propose what is due again: the unanswered request on its timer, a delayed copy."""
        if session.command is not None and session.retry_at <= now:
            self.retries += 1
            session.retry_at = now + RETRY_TICKS
            self._propose(session, session.seq, session.command)
        if session.copy is not None and session.copy[0] <= now:
            _, seq, command = session.copy
            session.copy = None
            self._propose(session, seq, command)

    def _propose(self, session: Session, seq: int, command: Command) -> None:
        self.cluster.propose(self._target(), command, session.id, seq, seq)

    def _submit(self) -> None:
        self.submits += 1
        body: dict[str, object] = {
            "op": "task.submit",
            "payload": {"marker": f"m{self.submits}"},
            "priority": self.rng.randint(0, 2),
        }
        if self.rng.random() < 0.3:
            body["id"] = f"job-{self.submits}"
        self._send(self.planner, body)

    # -- agents ----------------------------------------------------------------------------------

    def _move(self, agent: Agent) -> None:
        rng, name = self.rng, agent.session.id
        if agent.task_id is None:
            if rng.random() < 0.2:
                lease = rng.choice(LEASE_SECONDS)
                self._send(
                    agent.session, {"op": "task.claim", "agent": name, "lease_seconds": lease}
                )
            return
        roll = rng.random()
        if roll >= 0.9:
            self.cluster.note(f"{name} walks away from {agent.task_id}")
            agent.task_id = None
            return
        op = "task.complete" if roll < 0.6 else "task.fail" if roll < 0.75 else "task.renew"
        self._send(
            agent.session, {"op": op, "task_id": agent.task_id, "agent": name, "token": agent.token}
        )

    def _agent_answered(self, agent: Agent, command: Command, answer: Answer) -> None:
        result, now = answer.result, self.cluster.now
        if command.op == "task.claim":
            if result["ok"] and result["task_id"] is not None:
                agent.task_id, agent.token = result["task_id"], result["fencing_token"]
                agent.next_move = now + self.rng.randint(1, 12)
            else:
                agent.next_move = now + self.rng.randint(10, 20)  # nothing to do: back off
        elif command.op == "task.renew" and result["ok"]:
            agent.next_move = now + self.rng.randint(1, 12)
        else:
            agent.task_id = None  # done, failed, or refused: the lease was lost
