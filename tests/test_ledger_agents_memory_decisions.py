"""Swarm ledger agents (register, heartbeat, deregister, death by silence), shared memory
(versions, compare-and-set, TTLs, prefix listing) and decisions (strict majority, closing rules,
eligibility, rates), driven through Ledger.apply with log entries at chosen times."""

from __future__ import annotations

import pytest
from ledger_helpers import Feeder, image

from raft_manager.ledger import LedgerError, parse_command
from raft_manager.ledger.commands import LedgerConfig

# -- agents ------------------------------------------------------------------------------------


def test_register_makes_an_alive_agent_with_a_heartbeat_deadline() -> None:
    f = Feeder()
    result = f.register("a", capabilities=["python", "gpu"], heartbeat_timeout_seconds=10)
    assert result == {"ok": True, "agent_id": "a", "deadline": f.ts + 10_000}
    assert f.agent("a") == {
        "id": "a",
        "capabilities": ["python", "gpu"],
        "timeout_ms": 10_000,
        "registered_at": f.ts,
        "last_heartbeat": f.ts,
        "state": "alive",
        "deadline": f.ts + 10_000,
    }
    assert f.kinds(f.index) == ["agent.registered"]


def test_registering_again_while_alive_keeps_the_first_registration_time() -> None:
    f = Feeder()
    first = f.ts
    f.register("a", capabilities=["x"])
    f.move(after=5)
    f.register("a", capabilities=["y"], heartbeat_timeout_seconds=60)
    agent = f.agent("a")
    assert agent is not None
    assert (agent["registered_at"], agent["capabilities"]) == (first, ["y"])
    assert agent["deadline"] == f.ts + 60_000


def test_heartbeat_moves_the_deadline_and_keeps_the_agent_alive() -> None:
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=10)
    beat = f.ok({"op": "agent.heartbeat", "agent_id": "a"}, after=8)
    assert beat == {"ok": True, "agent_id": "a", "deadline": f.ts + 10_000}
    f.clock(after=9.999)  # 17.999 s after registering
    agent = f.agent("a")
    assert agent is not None and agent["state"] == "alive"
    f.clock(after=0.001)
    agent = f.agent("a")
    assert agent is not None and agent["state"] == "dead"


def test_heartbeat_or_deregister_of_an_unknown_agent_is_not_found() -> None:
    f = Feeder()
    f.refused({"op": "agent.heartbeat", "agent_id": "ghost"}, "not_found")
    f.refused({"op": "agent.deregister", "agent_id": "ghost"}, "not_found")


def test_deregister_removes_the_agent_and_hands_its_tasks_back() -> None:
    f = Feeder()
    f.register("a")
    f.register("b")
    f.submit("t1")
    f.submit("t2")
    f.submit("t3")
    c1 = f.claim("a")
    f.claim("b")
    c3 = f.claim("a")
    assert f.ok({"op": "agent.deregister", "agent_id": "a"}) == {"ok": True, "agent_id": "a"}
    assert f.agent("a") is None
    for task_id in (c1["task_id"], c3["task_id"]):
        task = f.task(task_id)
        assert (task["state"], task["attempts"], task["agent"]) == ("pending", 1, None)
        assert task["error"] == "agent a deregistered"
    assert f.state("t2") == "claimed"
    f.refused({"op": "task.complete", **f.held(c1, "a")}, "stale_token")


def test_a_silent_agent_dies_at_the_first_entry_past_its_deadline_and_loses_its_tasks() -> None:
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=10)
    f.register("b", heartbeat_timeout_seconds=60)
    f.submit("t")
    f.submit("u", max_attempts=1)
    claim = f.claim("a", lease_seconds=600)
    f.claim("a", lease_seconds=600)
    deadline = f.ts + 10_000
    f.clock(at=deadline - 1)
    assert f.state("t") == "claimed"
    f.clock(at=deadline)
    dead = f.agent("a")
    assert dead is not None and dead["state"] == "dead"
    alive = f.agent("b")
    assert alive is not None and alive["state"] == "alive"
    task = f.task("t")
    assert (task["state"], task["attempts"]) == ("pending", 1)
    assert task["error"] == "agent a was declared dead"
    assert f.state("u") == "failed"  # that was its only attempt
    assert "agent.dead" in f.kinds(f.index)
    f.refused({"op": "task.complete", **f.held(claim, "a")}, "stale_token")


def test_a_dead_agent_can_neither_heartbeat_nor_claim_until_it_registers_again() -> None:
    f = Feeder()
    f.register("a", heartbeat_timeout_seconds=5)
    f.submit("t")
    f.clock(after=5)
    f.refused({"op": "agent.heartbeat", "agent_id": "a"}, "agent_dead")
    f.refused({"op": "task.claim", "agent": "a"}, "agent_dead")
    assert f.state("t") == "pending"
    f.register("a", heartbeat_timeout_seconds=5)
    agent = f.agent("a")
    assert agent is not None and agent["state"] == "alive" and agent["registered_at"] == f.ts
    f.ok({"op": "agent.heartbeat", "agent_id": "a"})
    assert f.claim("a")["task_id"] == "t"


def test_an_agent_that_never_registered_may_claim_under_its_lease() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("drifter")
    assert claim["task_id"] == "t" and f.agent("drifter") is None


# -- memory ------------------------------------------------------------------------------------


def test_put_then_get_returns_the_value_with_the_write_index_as_version() -> None:
    f = Feeder()
    put = f.ok({"op": "memory.put", "key": "plan", "value": {"steps": [1, 2]}})
    assert put == {"ok": True, "version": f.index, "expires_at": None}
    assert f.item("plan") == {
        "namespace": "default",
        "key": "plan",
        "value": {"steps": [1, 2]},
        "version": f.index,
        "updated_at": f.ts,
        "expires_at": None,
    }
    f.clock()
    again = f.ok({"op": "memory.put", "key": "plan", "value": "v2"})
    assert again["version"] == f.index == put["version"] + 2
    assert f.item("plan") is not None and f.item("plan", namespace="other") is None


def test_delete_removes_a_key_and_says_whether_it_existed() -> None:
    f = Feeder()
    f.ok({"op": "memory.put", "namespace": "ns", "key": "k", "value": 1})
    assert f.ok({"op": "memory.delete", "namespace": "ns", "key": "k"})["existed"] is True
    assert f.item("k", namespace="ns") is None
    assert f.ok({"op": "memory.delete", "namespace": "ns", "key": "k"})["existed"] is False
    assert f.kinds().count("memory.deleted") == 1


def test_cas_on_value_writes_only_when_the_current_value_matches() -> None:
    f = Feeder()
    f.ok({"op": "memory.put", "key": "leader", "value": "alice"})
    ok = f.ok({"op": "memory.cas", "key": "leader", "expected_value": "alice", "value": "bob"})
    assert ok["version"] == f.index
    failed = f.refused(
        {"op": "memory.cas", "key": "leader", "expected_value": "alice", "value": "carol"},
        "cas_failed",
    )
    assert "leader" in failed["message"]
    item = f.item("leader")
    assert item is not None and (item["value"], item["version"]) == ("bob", ok["version"])


@pytest.mark.parametrize(
    ("held", "expected"),
    [(True, 1), (False, 0), (1, 1.0), ({"a": [True]}, {"a": [1]}), ([0], [False])],
)
def test_cas_on_value_compares_json_types_too(held: object, expected: object) -> None:
    """JSON true is not 1, nor 1 the same as 1.0 (Python's == says they are: such a cas once
    wrote over a value it did not hold)."""
    f = Feeder()
    f.ok({"op": "memory.put", "key": "k", "value": held})
    f.refused(
        {"op": "memory.cas", "key": "k", "expected_value": expected, "value": 2}, "cas_failed"
    )
    assert f.ok({"op": "memory.cas", "key": "k", "expected_value": held, "value": 2})["ok"]


def test_cas_on_value_never_matches_an_absent_key() -> None:
    f = Feeder()
    f.refused({"op": "memory.cas", "key": "k", "expected_value": None, "value": 1}, "cas_failed")
    assert f.item("k") is None


def test_cas_on_version_zero_creates_an_absent_key_once() -> None:
    f = Feeder()
    create = {"op": "memory.cas", "key": "lock", "compare": "version", "expected_version": 0}
    first = f.ok({**create, "value": "mine"})
    failed = f.refused({**create, "value": "theirs"}, "cas_failed")
    assert f"version is {first['version']}" in failed["message"]
    item = f.item("lock")
    assert item is not None and item["value"] == "mine"


def test_cas_on_version_needs_the_current_version_even_after_delete_and_rewrite() -> None:
    f = Feeder()
    v1 = f.ok({"op": "memory.put", "key": "k", "value": "same"})["version"]
    f.ok({"op": "memory.delete", "key": "k"})
    v2 = f.ok({"op": "memory.put", "key": "k", "value": "same"})["version"]
    assert v2 > v1
    by_version = {"op": "memory.cas", "key": "k", "compare": "version", "value": "new"}
    f.refused({**by_version, "expected_version": v1}, "cas_failed")  # no ABA
    f.refused({**by_version, "expected_version": 0}, "cas_failed")
    assert f.ok({**by_version, "expected_version": v2})["version"] == f.index


def test_cas_on_version_must_name_the_version() -> None:
    with pytest.raises(LedgerError) as refused:
        parse_command({"op": "memory.cas", "key": "k", "value": 1, "compare": "version"})
    assert refused.value.code == "invalid_command"


def test_an_expected_version_alone_compares_on_the_version_and_a_mixed_cas_is_refused() -> None:
    """A cas naming only expected_version once compared the value with null (compare's
    default), so on a key holding null it wrote whatever the version."""
    f = Feeder()
    v1 = f.ok({"op": "memory.put", "key": "k", "value": None})["version"]
    f.refused({"op": "memory.cas", "key": "k", "value": 2, "expected_version": 999}, "cas_failed")
    assert f.ok({"op": "memory.cas", "key": "k", "value": 2, "expected_version": v1})["ok"]
    for mixed in (
        {"compare": "value", "expected_version": 3},
        {"compare": "version", "expected_version": 3, "expected_value": 1},
    ):
        with pytest.raises(LedgerError, match="exactly one") as refused:
            parse_command({"op": "memory.cas", "key": "k", "value": 1, **mixed})
        assert refused.value.code == "invalid_command"


def test_a_ttl_key_lives_until_the_first_entry_at_its_expiry_which_removes_it() -> None:
    f = Feeder()
    put = f.ok({"op": "memory.put", "key": "k", "value": 1, "ttl_seconds": 10})
    assert put["expires_at"] == f.ts + 10_000
    f.clock(at=put["expires_at"] - 1)
    assert f.item("k") is not None
    f.clock(at=put["expires_at"])
    assert f.item("k") is None
    assert f.kinds(f.index) == ["memory.expired"]
    assert f.ok({"op": "memory.delete", "key": "k"})["existed"] is False


def test_a_duration_under_the_ledgers_millisecond_is_refused() -> None:
    """The ledger's clock counts milliseconds: 0.4 ms was 0 ms, a key acknowledged and never
    readable, a lease over as it was handed out. The least is 1 ms, which lives one tick."""
    f = Feeder()
    for command in (
        {"op": "memory.put", "key": "blink", "value": 1, "ttl_seconds": 0.0004},
        {"op": "task.claim", "agent": "a", "lease_seconds": 0.0004},
    ):
        with pytest.raises(LedgerError, match=r"greater than or equal to 0\.001"):
            parse_command(command)
    f.ok({"op": "memory.put", "key": "blink", "value": 1, "ttl_seconds": 0.001})
    assert f.item("blink") is not None
    f.clock(after=0.001)
    assert f.item("blink") is None and f.kinds(f.index) == ["memory.expired"]


def test_a_rewrite_without_ttl_outlives_the_old_expiry() -> None:
    f = Feeder()
    f.ok({"op": "memory.put", "key": "k", "value": 1, "ttl_seconds": 5})
    f.ok({"op": "memory.put", "key": "k", "value": 2})
    f.clock(after=60)
    item = f.item("k")
    assert item is not None and item["value"] == 2


def test_cas_sees_an_expired_key_as_absent() -> None:
    f = Feeder()
    f.ok({"op": "memory.put", "key": "k", "value": "old", "ttl_seconds": 1})
    create = {"op": "memory.cas", "key": "k", "compare": "version", "expected_version": 0}
    assert f.ok({**create, "value": "new"}, after=1)["version"] == f.index


def test_list_returns_live_keys_with_the_prefix_in_key_order_up_to_the_limit() -> None:
    f = Feeder()
    for key in ("task/3", "task/1", "other", "task/2", "tas"):
        f.ok({"op": "memory.put", "key": key, "value": key})
    f.ok({"op": "memory.put", "namespace": "elsewhere", "key": "task/0", "value": 0})
    f.ok({"op": "memory.put", "key": "task/0", "value": 0, "ttl_seconds": 1})
    f.clock(after=1)
    listed = f.query({"query": "memory.list", "prefix": "task/"})["items"]
    assert [item["key"] for item in listed] == ["task/1", "task/2", "task/3"]
    limited = f.query({"query": "memory.list", "prefix": "task/", "limit": 2})["items"]
    assert [item["key"] for item in limited] == ["task/1", "task/2"]
    everything = f.query({"query": "memory.list"})["items"]
    assert [item["key"] for item in everything] == ["other", "tas", "task/1", "task/2", "task/3"]


# -- decisions ---------------------------------------------------------------------------------


def propose(f: Feeder, voters: list[str] | None, **fields: object) -> str:
    result = f.ok({"op": "decision.propose", "question": "ship it?", "voters": voters, **fields})
    decision_id: str = result["decision_id"]
    return decision_id


def vote(
    f: Feeder, decision_id: str, voter: str, option: str, reason: str = ""
) -> dict[str, object]:
    command = {"op": "decision.vote", "decision_id": decision_id, "voter": voter}
    return f.ok({**command, "option": option, "reason": reason})


def test_three_voters_need_two_votes_to_approve() -> None:
    f = Feeder()
    result = f.ok({"op": "decision.propose", "question": "q", "voters": ["c", "a", "b"]})
    assert result == {
        "ok": True,
        "decision_id": f"decision-{f.index}",
        "voters": ["a", "b", "c"],
        "deadline": f.ts + 300_000,
    }
    decision_id = result["decision_id"]
    assert vote(f, decision_id, "a", "approve")["state"] == "open"
    f.move(after=1)
    assert vote(f, decision_id, "b", "approve")["state"] == "approved"
    decision = f.decision(decision_id)
    assert (decision["winner"], decision["closed_at"]) == ("approve", f.ts)
    assert "decision.closed" in f.kinds(f.index)


def test_four_voters_need_three_votes() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c", "d"])
    vote(f, decision_id, "a", "approve")
    assert vote(f, decision_id, "b", "approve")["state"] == "open"
    assert vote(f, decision_id, "c", "approve")["state"] == "approved"


def test_a_majority_for_reject_rejects_with_reject_as_winner() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c"])
    vote(f, decision_id, "a", "reject")
    assert vote(f, decision_id, "b", "reject")["state"] == "rejected"
    assert f.decision(decision_id)["winner"] == "reject"


def test_a_decision_is_rejected_as_soon_as_no_option_can_reach_a_majority() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c", "d"], options=["x", "y", "z"])
    vote(f, decision_id, "a", "x")
    vote(f, decision_id, "b", "y")
    assert vote(f, decision_id, "c", "x")["state"] == "open"  # x could still get 3 of 4
    assert vote(f, decision_id, "d", "y")["state"] == "rejected"
    decision = f.decision(decision_id)
    assert decision["winner"] is None and decision["counts"] == {"x": 2, "y": 2, "z": 0}
    three_way = propose(f, ["a", "b", "c"], options=["x", "y", "z"])
    vote(f, three_way, "a", "x")
    assert vote(f, three_way, "b", "y")["state"] == "open"
    assert vote(f, three_way, "c", "z")["state"] == "rejected"


def test_an_open_decision_expires_at_the_first_entry_past_its_deadline() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c"], deadline_seconds=60)
    deadline = f.decision(decision_id)["deadline"]
    vote(f, decision_id, "a", "approve")
    f.clock(at=deadline - 1)
    assert f.decision(decision_id)["state"] == "open"
    f.clock(at=deadline)
    decision = f.decision(decision_id)
    assert (decision["state"], decision["winner"], decision["closed_at"]) == ("expired", None, f.ts)
    result = f.refused(
        {"op": "decision.vote", "decision_id": decision_id, "voter": "b", "option": "approve"},
        "closed",
    )
    assert "expired" in result["message"]


def test_voting_on_a_closed_decision_is_refused() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c"])
    vote(f, decision_id, "a", "approve")
    vote(f, decision_id, "b", "approve")
    f.refused(
        {"op": "decision.vote", "decision_id": decision_id, "voter": "c", "option": "reject"},
        "closed",
    )
    assert len(f.decision(decision_id)["votes"]) == 2


def test_voters_default_to_the_agents_alive_at_proposal_time() -> None:
    f = Feeder()
    f.register("zed", heartbeat_timeout_seconds=1000)
    f.register("amy", heartbeat_timeout_seconds=1000)
    f.register("gone", heartbeat_timeout_seconds=1)
    f.clock(after=1)
    decision_id = propose(f, None)
    assert f.decision(decision_id)["voters"] == ["amy", "zed"]
    f.register("late")
    f.refused(
        {"op": "decision.vote", "decision_id": decision_id, "voter": "late", "option": "approve"},
        "not_eligible",
    )


def test_a_proposal_without_voters_and_without_alive_agents_is_refused() -> None:
    f = Feeder()
    f.refused({"op": "decision.propose", "question": "anyone?"}, "not_eligible")
    assert f.query({"query": "decision.list"})["decisions"] == []


def test_votes_from_outsiders_twice_or_for_unknown_options_are_refused() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c"])
    base = {"op": "decision.vote", "decision_id": decision_id}
    f.refused({**base, "voter": "mallory", "option": "approve"}, "not_eligible")
    vote(f, decision_id, "a", "reject")
    f.refused({**base, "voter": "a", "option": "approve"}, "already_voted")
    f.refused({**base, "voter": "b", "option": "maybe"}, "invalid_command")
    f.refused({**base, "decision_id": "nope", "voter": "a", "option": "approve"}, "not_found")
    decision = f.decision(decision_id)
    assert decision["state"] == "open" and decision["votes"][0]["option"] == "reject"
    assert len(decision["votes"]) == 1


def test_a_decision_id_can_not_be_proposed_twice() -> None:
    f = Feeder()
    propose(f, ["a"], id="d1")
    f.refused(
        {"op": "decision.propose", "id": "d1", "question": "again", "voters": ["b"]}, "conflict"
    )
    assert f.decision("d1")["question"] == "ship it?"


def test_every_vote_keeps_its_reason_dissent_included_with_rates() -> None:
    f = Feeder()
    decision_id = propose(f, ["a", "b", "c", "d", "e"])
    vote(f, decision_id, "a", "approve", "tests pass")
    vote(f, decision_id, "b", "reject", "too risky")
    opened = f.decision(decision_id)
    assert opened["participation_rate"] == pytest.approx(2 / 5)
    assert opened["approval_rate"] == pytest.approx(1 / 5)  # the leading option's share
    vote(f, decision_id, "c", "approve", "")
    vote(f, decision_id, "d", "approve", "ok")
    decision = f.decision(decision_id)
    assert (decision["state"], decision["winner"]) == ("approved", "approve")
    assert [(v["voter"], v["option"], v["reason"]) for v in decision["votes"]] == [
        ("a", "approve", "tests pass"),
        ("b", "reject", "too risky"),
        ("c", "approve", ""),
        ("d", "approve", "ok"),
    ]
    assert decision["counts"] == {"approve": 3, "reject": 1}
    assert decision["participation_rate"] == pytest.approx(4 / 5)
    assert decision["approval_rate"] == pytest.approx(3 / 5)


def test_decision_list_filters_by_state() -> None:
    f = Feeder()
    approved = propose(f, ["a"])
    vote(f, approved, "a", "approve")
    still_open = propose(f, ["a", "b"])
    listed = f.query({"query": "decision.list", "state": "open"})["decisions"]
    assert [d["id"] for d in listed] == [still_open]
    listed = f.query({"query": "decision.list", "state": "approved"})["decisions"]
    assert [d["id"] for d in listed] == [approved]


def test_dead_agents_and_closed_decisions_are_forgotten_after_their_retention() -> None:
    """Kept forever, agents that each run under a fresh id and every decision ever made
    would grow the state (and every snapshot) without bound."""
    config = LedgerConfig(dead_agent_retention_seconds=60, closed_decision_retention_seconds=60)
    f = Feeder(config)
    f.ok({"op": "agent.register", "agent_id": "gone", "heartbeat_timeout_seconds": 10})
    f.ok({"op": "agent.register", "agent_id": "back", "heartbeat_timeout_seconds": 10})
    proposed = f.ok({"op": "decision.propose", "question": "q?", "voters": ["v"]})
    f.clock(after=10)  # both agents die
    vote = {"op": "decision.vote", "decision_id": proposed["decision_id"], "voter": "v"}
    assert f.ok({**vote, "option": "approve"})["state"] == "approved"  # closed now
    assert {a["id"]: a["state"] for a in f.query({"query": "agent.list"})["agents"]} == {
        "back": "dead",
        "gone": "dead",
    }
    f.ok({"op": "agent.register", "agent_id": "back", "heartbeat_timeout_seconds": 3600})
    twin = f.fork()  # a replica restored from a snapshot taken now forgets them alike
    for ledger in (f, twin):
        ledger.clock(after=59)
    assert f.query({"query": "decision.get", "decision_id": proposed["decision_id"]})["ok"]
    for ledger in (f, twin):
        ledger.clock(after=2)
    assert [a["id"] for a in f.query({"query": "agent.list"})["agents"]] == ["back"]
    with pytest.raises(LedgerError, match="not_found"):
        f.query({"query": "decision.get", "decision_id": proposed["decision_id"]})
    assert image(f.ledger) == image(twin.ledger)
