"""Property: three swarm ledger replicas fed the same log stay byte-identical, even when one of
them is replaced at any point by a fresh ledger restored from another's snapshot.

Hypothesis generates command sequences of every kind (tasks, agents, memory, decisions, clock),
including ones the rules refuse (stale tokens, wrong agents, votes from outsiders, duplicate
ids, ids of finished tasks forgotten since), retries and acks in client sessions, undecodable
entries, and clock jumps both ways. After every step: every replica returned the same result
and emitted the same feed events for the entry, their snapshots are equal bytes, a snapshot
restores to the same bytes, no task is held by two agents, and only the current holder's token
is ever accepted. Deterministic regression tests for the divergences the property found follow
the state machine.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from ledger_helpers import START_MS, Entry, Feeder

from raft_manager.ledger import Ledger, LedgerConfig, encode_entry, parse_command, parse_query

TASKS = ["t0", "t1", "t2", "t3"]
AGENTS = ["a0", "a1", "a2"]
KEYS = ["k0", "k1", "k2"]
DECISIONS = ["d0", "d1"]
VALUES = st.sampled_from([None, 0, 1, "x", [1], {"v": 2}])
LEASES = st.sampled_from([0.001, 1.0, 5.0, 30.0, 120.0])  # the least: 1 ms
TIMEOUTS = st.sampled_from([2.0, 10.0, 60.0])

CONFIG = LedgerConfig(
    session_timeout_seconds=90,
    max_results_per_session=3,
    feed_keep=10_000,
    finished_task_retention_seconds=120,
    max_finished_tasks=2,
)

# How far each entry moves the leader's clock (ms): often not at all, sometimes far, sometimes
# back (a new leader whose clock is behind).
STEPS = st.one_of(
    st.just(0),
    st.integers(1, 3_000),
    st.integers(3_000, 150_000),
    st.integers(-20_000, -1),
)

BAD_ENTRIES = [
    b"garbage",
    b'{"ts": 1, "s": "", "q": 0, "a": 0, "c": {"op": "task.steal"}}',
    b'{"ts": "1", "s": "", "q": 0, "a": 0, "c": {"op": "clock"}}',
    b'{"ts": 1, "s": "", "q": 0, "a": 0, "c": {"op": "memory.put", "key": "k0"}}',
]


def subset(items: list[str], min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)


class ReplicatedLedger(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.replicas = [Ledger(CONFIG) for _ in range(3)]
        self.index = 0
        self.ts = START_MS
        self.claims: list[tuple[str, str, int]] = []  # (task, agent, token) of every claim
        self.versions: list[int] = [0]  # memory versions handed out, and "absent"
        self.decision_ids: list[str] = list(DECISIONS)
        self.sessions: dict[str, list[dict[str, Any]]] = {"s0": [], "s1": []}  # seq - 1 -> cmd
        self.acks: dict[str, int] = {"s0": 0, "s1": 0}

    # -- applying ------------------------------------------------------------------------------

    def apply(self, data: bytes) -> dict[str, Any]:
        """One entry to every replica: the same result and the same new events from each. A
        fourth, short-lived replica restored from the first one's snapshot just before the
        entry applies it too, so every step also checks that a restore changes nothing."""
        self.index += 1
        entry = Entry(self.index, 1 + self.index // 25, data)
        holders = self.holders()
        shadow = Ledger(CONFIG)
        shadow.restore(self.replicas[0].snapshot())
        replicas = [*self.replicas, shadow]
        results = [replica.apply(entry) for replica in replicas]
        assert all(result == results[0] for result in results), results
        events = [self.new_events(replica) for replica in replicas]
        assert all(each == events[0] for each in events), events
        assert shadow.snapshot() == self.replicas[0].snapshot()
        self.check_fencing(json.loads(data) if data.startswith(b"{") else {}, holders, results[0])
        return results[0]

    def command(self, command: dict[str, Any], step: int, session: str = "", seq: int = 0) -> None:
        self.ts += step
        ack = self.acks.get(session, 0)
        result = self.apply(
            encode_entry(parse_command(command, CONFIG), self.ts, session, seq, ack)
        )
        self.learn(command, result)

    def new_events(self, replica: Ledger) -> list[dict[str, Any]]:
        feed = parse_query({"query": "feed", "from_index": self.index, "limit": 10_000})
        events: list[dict[str, Any]] = replica.query(feed)["events"]  # this entry's alone
        return events

    def learn(self, command: dict[str, Any], result: dict[str, Any]) -> None:
        if not result.get("ok"):
            return
        if command["op"] == "task.claim" and result["task_id"] is not None:
            self.claims.append((result["task_id"], command["agent"], result["fencing_token"]))
        elif command["op"] in ("memory.put", "memory.cas"):
            self.versions.append(result["version"])
        elif command["op"] == "decision.propose":
            self.decision_ids.append(result["decision_id"])

    def holders(self) -> dict[str, tuple[str | None, int]]:
        tasks = self.replicas[0].tasks.tasks.values()
        return {t.id: (t.agent, t.token) for t in tasks if t.state == "claimed"}

    def check_fencing(
        self,
        envelope: dict[str, Any],
        holders: dict[str, tuple[str | None, int]],
        result: dict[str, Any],
    ) -> None:
        """A renew, complete or fail is accepted only from the holder of the current lease, as
        the state stood after the entry's deadlines fired (leases can only end, never begin,
        there: the holders before the entry are a superset)."""
        command = envelope.get("c")
        if not isinstance(command, dict) or not result.get("ok"):
            return
        if command.get("op") in ("task.renew", "task.complete", "task.fail"):
            held = holders.get(command["task_id"])
            assert held == (command["agent"], command["token"]), (command, held)

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        task_id=st.sampled_from([None, *TASKS]),
        queue=st.sampled_from(["default", "q1"]),
        payload=VALUES,
        priority=st.integers(0, 2),
        depends_on=subset(TASKS, 0).map(lambda deps: deps[:2]),
        max_attempts=st.integers(1, 3),
        step=STEPS,
    )
    def submit(
        self,
        task_id: str | None,
        queue: str,
        payload: Any,
        priority: int,
        depends_on: list[str],
        max_attempts: int,
        step: int,
    ) -> None:
        command = {"op": "task.submit", "id": task_id, "queue": queue, "payload": payload}
        command |= {"priority": priority, "depends_on": depends_on, "max_attempts": max_attempts}
        self.command(command, step)

    @rule(
        agent=st.sampled_from(AGENTS),
        queues=subset(["default", "q1"], 1),
        lease=LEASES,
        step=STEPS,
    )
    def claim(self, agent: str, queues: list[str], lease: float, step: int) -> None:
        self.command(
            {"op": "task.claim", "agent": agent, "queues": queues, "lease_seconds": lease}, step
        )

    @precondition(lambda self: bool(self.claims))
    @rule(
        data=st.data(),
        op=st.sampled_from(["task.renew", "task.complete", "task.fail"]),
        wrong_agent=st.booleans(),
        token_shift=st.sampled_from([0, 0, 0, -1, 1]),
        lease=st.none() | LEASES,
        step=STEPS,
    )
    def act_on_a_claim(
        self,
        data: st.DataObject,
        op: str,
        wrong_agent: bool,
        token_shift: int,
        lease: float | None,
        step: int,
    ) -> None:
        task_id, agent, token = data.draw(st.sampled_from(self.claims[-6:]), label="claim")
        if wrong_agent:
            agent = data.draw(st.sampled_from(AGENTS), label="agent")
        command: dict[str, Any] = {"op": op, "task_id": task_id, "agent": agent}
        command["token"] = max(1, token + token_shift)
        if op == "task.renew":
            command["lease_seconds"] = lease
        elif op == "task.complete":
            command["result"] = {"by": agent}
        else:
            command["reason"] = "it broke"
        self.command(command, step)

    @rule(task_id=st.sampled_from(TASKS), step=STEPS)
    def cancel(self, task_id: str, step: int) -> None:
        self.command({"op": "task.cancel", "task_id": task_id, "reason": "no longer"}, step)

    @rule(agent=st.sampled_from(AGENTS), timeout=TIMEOUTS, step=STEPS)
    def register(self, agent: str, timeout: float, step: int) -> None:
        command = {"op": "agent.register", "agent_id": agent, "heartbeat_timeout_seconds": timeout}
        self.command(command, step)

    @rule(agent=st.sampled_from(AGENTS), step=STEPS)
    def heartbeat(self, agent: str, step: int) -> None:
        self.command({"op": "agent.heartbeat", "agent_id": agent}, step)

    @rule(agent=st.sampled_from(AGENTS), step=STEPS)
    def deregister(self, agent: str, step: int) -> None:
        self.command({"op": "agent.deregister", "agent_id": agent}, step)

    @rule(
        key=st.sampled_from(KEYS),
        value=VALUES,
        ttl=st.none() | st.sampled_from([0.001, 1.0, 20.0]),
        step=STEPS,
    )
    def put(self, key: str, value: Any, ttl: float | None, step: int) -> None:
        self.command({"op": "memory.put", "key": key, "value": value, "ttl_seconds": ttl}, step)

    @rule(key=st.sampled_from(KEYS), step=STEPS)
    def delete(self, key: str, step: int) -> None:
        self.command({"op": "memory.delete", "key": key}, step)

    @rule(
        data=st.data(),
        key=st.sampled_from(KEYS),
        value=VALUES,
        on_version=st.booleans(),
        expected=VALUES,
        step=STEPS,
    )
    def cas(
        self, data: st.DataObject, key: str, value: Any, on_version: bool, expected: Any, step: int
    ) -> None:
        command: dict[str, Any] = {"op": "memory.cas", "key": key, "value": value}
        if on_version:
            version = data.draw(st.sampled_from([*self.versions[-5:], 0]), label="version")
            command |= {"compare": "version", "expected_version": version}
        else:
            command["expected_value"] = expected
        self.command(command, step)

    @rule(
        decision_id=st.sampled_from([None, *DECISIONS]),
        voters=st.none() | subset(AGENTS, 1),
        custom=st.booleans(),
        deadline=st.sampled_from([5.0, 60.0]),
        step=STEPS,
    )
    def propose(
        self,
        decision_id: str | None,
        voters: list[str] | None,
        custom: bool,
        deadline: float,
        step: int,
    ) -> None:
        command: dict[str, Any] = {"op": "decision.propose", "id": decision_id, "question": "?"}
        command |= {"voters": voters, "deadline_seconds": deadline}
        if custom:
            command["options"] = ["x", "y", "reject"]
        self.command(command, step)

    @rule(
        data=st.data(),
        voter=st.sampled_from([*AGENTS, "outsider"]),
        option=st.sampled_from(["approve", "reject", "x", "y"]),
        step=STEPS,
    )
    def vote(self, data: st.DataObject, voter: str, option: str, step: int) -> None:
        decision_id = data.draw(st.sampled_from(self.decision_ids[-4:]), label="decision")
        command = {"op": "decision.vote", "decision_id": decision_id, "voter": voter}
        self.command({**command, "option": option, "reason": f"{voter} says {option}"}, step)

    @rule(step=STEPS)
    def clock(self, step: int) -> None:
        self.command({"op": "clock"}, step)

    @rule(
        session=st.sampled_from(["s0", "s1"]),
        agent=st.sampled_from(AGENTS),
        kind=st.sampled_from(["submit", "claim", "put"]),
        step=STEPS,
    )
    def session_command(self, session: str, agent: str, kind: str, step: int) -> None:
        choices: dict[str, dict[str, Any]] = {
            "submit": {"op": "task.submit", "payload": agent},
            "claim": {"op": "task.claim", "agent": agent, "lease_seconds": 10.0},
            "put": {"op": "memory.put", "key": "k0", "value": agent},
        }
        command = choices[kind]
        self.sessions[session].append(command)
        self.command(command, step, session, len(self.sessions[session]))

    @precondition(lambda self: any(self.sessions.values()))
    @rule(data=st.data(), step=STEPS)
    def session_retry(self, data: st.DataObject, step: int) -> None:
        session = data.draw(st.sampled_from([s for s, sent in self.sessions.items() if sent]))
        seq = data.draw(st.integers(1, len(self.sessions[session])), label="seq")
        self.command(self.sessions[session][seq - 1], step, session, seq)

    @precondition(lambda self: any(self.sessions.values()))
    @rule(session=st.sampled_from(["s0", "s1"]), forward=st.integers(0, 2))
    def session_ack(self, session: str, forward: int) -> None:
        self.acks[session] = min(self.acks[session] + forward, len(self.sessions[session]) + 1)

    @rule(data=st.sampled_from(BAD_ENTRIES))
    def bad_entry(self, data: bytes) -> None:
        assert self.apply(data)["error"] == "bad_entry"

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data(), op=st.sampled_from(["task.complete", "task.cancel", "task.claim"]))
    def entry_missing_a_field(self, data: st.DataObject, op: str) -> None:
        """A command from a faulty proposer, without a field the ledger reads last: refused as
        bad_entry, it must leave no trace, not even in the indexes a snapshot does not hold."""
        task_id, agent, token = data.draw(st.sampled_from(self.claims[-6:]), label="claim")
        command = {
            "task.complete": {"op": op, "task_id": task_id, "agent": agent, "token": token},
            "task.cancel": {"op": op, "task_id": task_id},
            "task.claim": {"op": op, "agent": agent, "queues": ["default", "q1"]},
        }[op]
        envelope = {"ts": self.ts, "s": "", "q": 0, "a": 0, "c": command}
        assert self.apply(json.dumps(envelope).encode())["ok"] is False

    @rule(replaced=st.integers(0, 2), source=st.integers(0, 2))
    def replace_a_replica(self, replaced: int, source: int) -> None:
        fresh = Ledger(CONFIG)
        fresh.restore(self.replicas[source].snapshot())
        self.replicas[replaced] = fresh

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def replicas_are_identical(self) -> None:
        snapshots = [replica.snapshot() for replica in self.replicas]
        assert snapshots[1] == snapshots[0] and snapshots[2] == snapshots[0]

    @invariant()
    def a_snapshot_restores_to_the_same_bytes(self) -> None:
        snapshot = self.replicas[0].snapshot()
        again = Ledger(CONFIG)
        again.restore(snapshot)
        assert again.snapshot() == snapshot

    @invariant()
    def no_task_is_held_by_two_agents(self) -> None:
        for replica in self.replicas:
            book = replica.tasks
            owners: dict[str, list[str]] = {}
            for agent, held in book._held.items():
                for task_id in held:
                    owners.setdefault(task_id, []).append(agent)
            for task in book.tasks.values():
                expected = [task.agent] if task.state == "claimed" else []
                assert owners.get(task.id, []) == expected, (task, owners.get(task.id))


TestReplicatedLedger = ReplicatedLedger.TestCase
TestReplicatedLedger.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# -- regressions the property found ------------------------------------------------------------


def test_a_restored_replica_fires_an_extended_lease_at_the_same_point_as_the_original() -> None:
    """A renewal leaves the old lease deadline in the timer heap. When one late entry passes
    both the old deadline and an agent's heartbeat deadline that lies between the old and new
    lease deadlines, the original must not end the lease at the old deadline (before the agent
    dies) while a replica restored from a snapshot (which only knows the new deadline) lets the
    agent die first: their tasks would then differ in why the attempt ended."""
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=60)
    f.submit("t")
    claim = f.claim("a", lease_seconds=30)
    f.ok({"op": "task.renew", **f.held(claim, "a"), "lease_seconds": 100}, after=1)
    twin = f.fork()
    for replica in (f, twin):
        replica.clock(after=200)
    assert f.task("t")["error"] == twin.task("t")["error"] == "agent a was declared dead"
    assert f.ledger.snapshot() == twin.ledger.snapshot()
    assert f.kinds(f.index) == twin.kinds(f.index)


def test_a_restored_replica_kills_an_agent_at_the_same_point_as_the_original() -> None:
    """The same for a heartbeat: the first deadline stays in the heap after the agent
    heartbeats; a late entry past both must let the lease (due in between) end first."""
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=10)
    f.submit("t")
    f.claim("a", lease_seconds=15)
    f.ok({"op": "agent.heartbeat", "agent_id": "a"}, after=9)  # deadline +19 s
    twin = f.fork()
    for replica in (f, twin):
        replica.clock(after=100)
    assert f.task("t")["error"] == twin.task("t")["error"] == "the lease of a ran out"
    assert f.ledger.snapshot() == twin.ledger.snapshot()
    assert f.kinds(f.index) == twin.kinds(f.index)


def test_a_rewritten_ttl_key_expires_in_the_same_order_on_a_restored_replica() -> None:
    """And for a TTL extended by a rewrite: the change feed must order expirations alike."""
    f = Feeder()
    f.ok({"op": "memory.put", "key": "b", "value": 1, "ttl_seconds": 5})
    f.ok({"op": "memory.put", "key": "a", "value": 1, "ttl_seconds": 10})
    f.ok({"op": "memory.put", "key": "b", "value": 2, "ttl_seconds": 20})
    twin = f.fork()
    for replica in (f, twin):
        replica.clock(after=60)
    expired = [e["data"]["key"] for e in f.events(f.index)]
    assert expired == [e["data"]["key"] for e in twin.events(f.index)] == ["a", "b"]
