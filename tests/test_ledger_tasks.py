"""Swarm ledger tasks: every transition (submit, claim, renew, complete, fail, cancel, lease
expiry) and every rejection, driven through Ledger.apply with log entries at chosen times."""

from __future__ import annotations

import math

import pytest
from ledger_helpers import Feeder, image_but_applied

from raft_manager.ledger import LedgerConfig, LedgerError, parse_command

# -- submit ------------------------------------------------------------------------------------


def test_submit_without_id_names_the_task_after_its_log_index() -> None:
    f = Feeder()
    f.submit()
    result = f.submit(payload={"n": 1}, queue="q", priority=4)
    assert result == {"ok": True, "task_id": "task-2", "state": "pending", "existing": False}
    task = f.task("task-2")
    assert task["queue"] == "q" and task["payload"] == {"n": 1} and task["priority"] == 4
    assert task["submit_index"] == 2 and task["submitted_at"] == f.ts
    assert task["attempts"] == 0 and task["agent"] is None and task["max_attempts"] == 3


def test_submit_with_an_explicit_id_keeps_it() -> None:
    f = Feeder()
    assert f.submit("build-docs", max_attempts=5)["task_id"] == "build-docs"
    assert f.task("build-docs")["max_attempts"] == 5


def test_resubmitting_the_same_content_returns_the_existing_task_untouched() -> None:
    f = Feeder()
    f.submit("t", payload=[1, 2], priority=2)
    f.claim("a")
    before = image_but_applied(f.ledger)
    again = f.submit("t", payload=[1, 2], priority=2)
    assert again == {"ok": True, "task_id": "t", "state": "claimed", "existing": True}
    assert image_but_applied(f.ledger) == before
    assert len(f.query({"query": "task.list"})["tasks"]) == 1


@pytest.mark.parametrize(
    "change",
    [{"payload": [1, 3]}, {"queue": "other"}, {"priority": 3}, {"depends_on": ["dep"]}],
    ids=["payload", "queue", "priority", "depends_on"],
)
def test_resubmitting_an_id_with_different_content_is_a_conflict(change: dict[str, object]) -> None:
    f = Feeder()
    f.submit("dep")
    f.submit("t", payload=[1, 2], priority=2)
    before = image_but_applied(f.ledger)
    f.refused(
        {"op": "task.submit", "id": "t", "payload": [1, 2], "priority": 2, **change}, "conflict"
    )
    assert image_but_applied(f.ledger) == before


def test_resubmitting_with_a_payload_of_other_json_types_is_a_conflict() -> None:
    f = Feeder()
    f.submit("t", payload={"x": 1})
    for other in ({"x": True}, {"x": 1.0}):
        f.refused({"op": "task.submit", "id": "t", "payload": other}, "conflict")
    assert f.ok({"op": "task.submit", "id": "t", "payload": {"x": 1}})["existing"] is True


def test_payload_larger_than_max_payload_bytes_is_refused_before_the_log() -> None:
    config = LedgerConfig(max_payload_bytes=64)
    at_limit = "x" * 62  # 64 bytes of JSON with its quotes
    parse_command({"op": "task.submit", "payload": at_limit}, config)
    with pytest.raises(LedgerError) as refused:
        parse_command({"op": "task.submit", "payload": at_limit + "x"}, config)
    assert refused.value.code == "invalid_command"
    assert "payload" in refused.value.message and "65 bytes" in refused.value.message


@pytest.mark.parametrize(
    "command",
    [
        {"op": "task.submit", "payload": {"x": [1.5, float("nan")]}},
        {"op": "memory.put", "key": "k", "value": float("inf")},
        {"op": "memory.cas", "key": "k", "value": 1, "expected_value": float("-inf")},
        {"op": "task.complete", "task_id": "t", "agent": "a", "token": 1, "result": [math.inf]},
        {"op": "crdt.op", "id": "x", "operation": {"n": float("nan")}},
    ],
    ids=["submit", "put", "cas", "complete", "crdt"],
)
def test_nan_and_infinity_are_refused_not_stored_as_null(command: dict[str, object]) -> None:
    # JSON has no NaN or Infinity: kept, they would be written (and read back) as null.
    with pytest.raises(LedgerError) as refused:
        parse_command(command)
    assert refused.value.code == "invalid_command" and "not finite" in refused.value.message


def test_completion_result_larger_than_max_payload_bytes_is_refused_before_the_log() -> None:
    config = LedgerConfig(max_payload_bytes=32)
    big = {"op": "task.complete", "task_id": "t", "agent": "a", "token": 1, "result": "y" * 40}
    with pytest.raises(LedgerError) as refused:
        parse_command(big, config)
    assert refused.value.code == "invalid_command" and "result" in refused.value.message


def test_an_unknown_dependency_is_refused_and_nothing_is_stored() -> None:
    f = Feeder()
    f.submit("a")
    f.refused({"op": "task.submit", "id": "b", "depends_on": ["a", "ghost"]}, "unknown_dependency")
    with pytest.raises(LedgerError) as missing:
        f.task("b")
    assert missing.value.code == "not_found"


def test_a_task_depending_on_itself_is_a_cycle() -> None:
    f = Feeder()
    f.refused({"op": "task.submit", "id": "loop", "depends_on": ["loop"]}, "cycle")
    assert f.query({"query": "task.list"})["tasks"] == []


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_depending_on_a_failed_or_cancelled_task_is_refused(how: str) -> None:
    f = Feeder()
    f.submit("dep", max_attempts=1)
    if how == "failed":
        claim = f.claim("a")
        f.ok({"op": "task.fail", **f.held(claim, "a")})
    else:
        f.ok({"op": "task.cancel", "task_id": "dep"})
    assert f.state("dep") == how
    result = f.refused({"op": "task.submit", "id": "t", "depends_on": ["dep"]}, "failed_dependency")
    assert how in result["message"]


def test_a_task_waits_for_unfinished_dependencies_and_not_for_done_ones() -> None:
    f = Feeder()
    f.submit("first")
    claim = f.claim("a")
    f.ok({"op": "task.complete", **f.held(claim, "a")})
    f.submit("second")
    assert f.submit("after-first", depends_on=["first"])["state"] == "pending"
    assert f.submit("after-both", depends_on=["first", "second"])["state"] == "waiting"


def test_submit_can_not_be_built_with_a_dependency_named_twice() -> None:
    with pytest.raises(LedgerError) as refused:
        parse_command({"op": "task.submit", "depends_on": ["a", "a"]})
    assert refused.value.code == "invalid_command"


# -- claim -------------------------------------------------------------------------------------


def test_claim_takes_the_highest_priority_first_then_the_oldest() -> None:
    f = Feeder()
    f.submit("low", priority=0)
    f.submit("high-old", priority=5)
    f.submit("mid", priority=1)
    f.submit("high-new", priority=5)
    f.submit("negative", priority=-3)
    order = [f.claim("a")["task_id"] for _ in range(5)]
    assert order == ["high-old", "high-new", "mid", "low", "negative"]


def test_claim_looks_in_every_queue_asked_for_and_only_those() -> None:
    f = Feeder()
    f.submit("a-old", queue="a", priority=1)
    f.submit("b-urgent", queue="b", priority=2)
    f.submit("c-most-urgent", queue="c", priority=9)
    f.submit("b-old-equal", queue="b", priority=1)
    f.submit("a-new-equal", queue="a", priority=1)
    picks = [f.claim("x", queues=["a", "b"])["task_id"] for _ in range(4)]
    assert picks == ["b-urgent", "a-old", "b-old-equal", "a-new-equal"]
    assert f.claim("x", queues=["a", "b"])["task_id"] is None
    assert f.claim("x")["task_id"] is None  # "default" holds nothing
    assert f.claim("x", queues=["c"])["task_id"] == "c-most-urgent"


def test_claim_with_nothing_runnable_returns_no_task_and_changes_nothing() -> None:
    f = Feeder()
    assert f.claim("a") == {"ok": True, "task_id": None}
    f.submit("t")
    f.claim("a")
    before = image_but_applied(f.ledger)
    assert f.claim("b") == {"ok": True, "task_id": None}
    assert f.claim("b", queues=["never-used"]) == {"ok": True, "task_id": None}
    assert image_but_applied(f.ledger) == before


def test_waiting_tasks_are_not_claimable_until_their_dependencies_are_done() -> None:
    f = Feeder()
    f.submit("base", priority=0)
    f.submit("child", depends_on=["base"], priority=100)
    f.submit("grandchild", depends_on=["child"], priority=100)
    first = f.claim("a")
    assert first["task_id"] == "base"
    assert f.claim("a")["task_id"] is None
    f.ok({"op": "task.complete", **f.held(first, "a")})
    assert f.state("child") == "pending" and f.state("grandchild") == "waiting"
    # the feed says so: a follower of it would otherwise keep child as waiting
    assert [(e["kind"], e["data"]["task_id"]) for e in f.events(f.index)] == [
        ("task.completed", "base"),
        ("task.ready", "child"),
    ]
    second = f.claim("a")
    assert second["task_id"] == "child"
    assert f.claim("a")["task_id"] is None
    f.ok({"op": "task.complete", **f.held(second, "a")})
    assert f.claim("a")["task_id"] == "grandchild"


def test_claim_hands_out_the_claim_index_as_a_growing_fencing_token() -> None:
    f = Feeder()
    f.submit("t1")
    f.submit("t2")
    first = f.claim("a", lease_seconds=10)
    assert first == {
        "ok": True,
        "task_id": "t1",
        "payload": None,
        "queue": "default",
        "fencing_token": f.index,
        "lease_until": f.ts + 10_000,
        "attempt": 1,
    }
    second = f.claim("b")
    assert second["fencing_token"] == f.index > first["fencing_token"]
    f.clock(after=10)  # t1's lease ends: back to pending
    again = f.claim("c")
    assert again["task_id"] == "t1" and again["attempt"] == 2
    assert again["fencing_token"] == f.index > second["fencing_token"]
    task = f.task("t1")
    assert (task["agent"], task["token"], task["state"]) == ("c", again["fencing_token"], "claimed")


# -- renew -------------------------------------------------------------------------------------


def test_renew_extends_the_lease_from_the_renewal_time() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a", lease_seconds=30)
    renewed = f.ok({"op": "task.renew", **f.held(claim, "a")}, after=20)
    assert renewed == {"ok": True, "task_id": "t", "lease_until": f.ts + 30_000}
    f.clock(after=29.999)  # 49.999 s after the claim: past the first lease, not the second
    assert f.state("t") == "claimed"
    f.clock(after=0.001)
    assert f.state("t") == "pending"


def test_renew_may_set_a_new_lease_length_that_later_renewals_keep() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a", lease_seconds=30)
    renewed = f.ok({"op": "task.renew", **f.held(claim, "a"), "lease_seconds": 5}, after=1)
    assert renewed["lease_until"] == f.ts + 5_000
    again = f.ok({"op": "task.renew", **f.held(claim, "a")}, after=4)
    assert again["lease_until"] == f.ts + 5_000
    assert f.task("t")["lease_ms"] == 5_000


def test_renew_with_a_stale_token_or_by_another_agent_is_refused() -> None:
    f = Feeder()
    f.submit("t")
    old = f.claim("a", lease_seconds=5)
    f.clock(after=5)
    new = f.claim("b", lease_seconds=5)
    before = image_but_applied(f.ledger)
    f.refused({"op": "task.renew", **f.held(old, "a")}, "stale_token")
    f.refused({"op": "task.renew", **f.held(old, "b")}, "stale_token")
    f.refused({"op": "task.renew", **f.held(new, "a")}, "stale_token")
    assert image_but_applied(f.ledger) == before
    assert f.ok({"op": "task.renew", **f.held(new, "b")})["lease_until"] == f.ts + 5_000


def test_renew_of_a_pending_or_unknown_task_is_refused() -> None:
    f = Feeder()
    f.submit("t")
    f.refused({"op": "task.renew", "task_id": "t", "agent": "a", "token": 1}, "stale_token")
    f.refused({"op": "task.renew", "task_id": "nope", "agent": "a", "token": 1}, "not_found")


# -- complete ----------------------------------------------------------------------------------


def test_complete_stores_the_result_and_frees_the_agent() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a")
    result = f.ok({"op": "task.complete", **f.held(claim, "a"), "result": {"answer": 42}})
    assert result == {"ok": True, "task_id": "t", "state": "done"}
    task = f.task("t")
    assert task["state"] == "done" and task["result"] == {"answer": 42}
    assert task["updated_at"] == f.ts and task["attempts"] == 0
    f.ok({"op": "agent.register", "agent_id": "a"})
    f.ok({"op": "agent.deregister", "agent_id": "a"})
    assert f.state("t") == "done"  # a finished task is not handed back


def test_completing_twice_is_refused_as_stale() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a")
    f.ok({"op": "task.complete", **f.held(claim, "a"), "result": 1})
    f.refused({"op": "task.complete", **f.held(claim, "a"), "result": 2}, "stale_token")
    assert f.task("t")["result"] == 1


def test_a_completion_after_the_lease_ran_out_cannot_overwrite_the_new_holder() -> None:
    f = Feeder()
    f.submit("t")
    stale = f.claim("slow", lease_seconds=10)
    f.clock(after=10)
    f.refused({"op": "task.complete", **f.held(stale, "slow"), "result": "late"}, "stale_token")
    fresh = f.claim("fast", lease_seconds=10)
    f.refused({"op": "task.complete", **f.held(stale, "slow"), "result": "late"}, "stale_token")
    f.refused({"op": "task.fail", **f.held(stale, "slow")}, "stale_token")
    task = f.task("t")
    assert (task["state"], task["agent"], task["token"]) == (
        "claimed",
        "fast",
        fresh["fencing_token"],
    )
    f.ok({"op": "task.complete", **f.held(fresh, "fast"), "result": "on time"})
    assert f.task("t")["result"] == "on time"


def test_complete_of_an_unknown_task_is_not_found() -> None:
    f = Feeder()
    f.refused({"op": "task.complete", "task_id": "nope", "agent": "a", "token": 1}, "not_found")


# -- fail --------------------------------------------------------------------------------------


def test_a_failed_attempt_is_retried_until_max_attempts_then_the_task_fails() -> None:
    f = Feeder()
    f.submit("t", max_attempts=3)
    for attempt in (1, 2):
        claim = f.claim("a")
        assert claim["attempt"] == attempt
        failed = f.ok({"op": "task.fail", **f.held(claim, "a"), "reason": f"boom {attempt}"})
        assert failed == {"ok": True, "task_id": "t", "state": "pending", "attempts": attempt}
        assert f.task("t")["error"] == f"boom {attempt}"
    claim = f.claim("a")
    assert claim["attempt"] == 3
    failed = f.ok({"op": "task.fail", **f.held(claim, "a")})
    assert failed == {"ok": True, "task_id": "t", "state": "failed", "attempts": 3}
    assert f.task("t")["error"] == "failed by its agent"
    assert f.claim("a")["task_id"] is None


def test_a_failed_task_fails_its_waiting_dependents_transitively_with_the_cause() -> None:
    f = Feeder()
    f.submit("root", max_attempts=1)
    f.submit("other")
    f.submit("child", depends_on=["root"])
    f.submit("grandchild", depends_on=["child", "other"])
    f.submit("bystander", depends_on=["other"])
    claim = f.claim("a")
    assert claim["task_id"] == "root"
    f.ok({"op": "task.fail", **f.held(claim, "a"), "reason": "disk full"})
    assert f.task("root")["error"] == "disk full"
    assert (f.state("child"), f.task("child")["error"]) == ("failed", "dependency root failed")
    grandchild = f.task("grandchild")
    assert (grandchild["state"], grandchild["error"]) == ("failed", "dependency child failed")
    assert f.state("other") == "pending" and f.state("bystander") == "waiting"
    failed = [e["data"]["task_id"] for e in f.events() if e["kind"] == "task.failed"]
    assert sorted(failed) == ["child", "grandchild", "root"]


def test_fail_by_a_stale_token_is_refused_and_counts_no_attempt() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a")
    f.refused(
        {"op": "task.fail", **f.held(claim, "a"), "token": claim["fencing_token"] + 1},
        "stale_token",
    )
    f.refused({"op": "task.fail", **f.held(claim, "b")}, "stale_token")
    assert f.task("t")["attempts"] == 0 and f.state("t") == "claimed"


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_a_pending_task_makes_it_unclaimable() -> None:
    f = Feeder()
    f.submit("t")
    result = f.ok({"op": "task.cancel", "task_id": "t", "reason": "not needed"})
    assert result == {"ok": True, "task_id": "t", "state": "cancelled"}
    assert f.task("t")["error"] == "not needed"
    assert f.claim("a")["task_id"] is None


def test_cancel_a_claimed_task_fences_out_its_holder() -> None:
    f = Feeder(LedgerConfig(finished_task_retention_seconds=86_400))
    f.submit("t")
    claim = f.claim("a")
    f.ok({"op": "task.cancel", "task_id": "t"})
    f.refused({"op": "task.complete", **f.held(claim, "a")}, "stale_token")
    f.refused({"op": "task.renew", **f.held(claim, "a")}, "stale_token")
    assert f.state("t") == "cancelled"
    f.clock(after=3600)  # its old lease timer must not bring it back
    assert f.state("t") == "cancelled" and f.task("t")["attempts"] == 0


def test_cancel_cascades_to_waiting_dependents() -> None:
    f = Feeder()
    f.submit("root")
    f.submit("child", depends_on=["root"])
    f.submit("grandchild", depends_on=["child"])
    f.submit("independent")
    f.ok({"op": "task.cancel", "task_id": "root", "reason": "scope cut"})
    assert f.task("child")["error"] == "dependency root cancelled"
    assert f.task("grandchild")["error"] == "dependency child failed"
    assert [f.state(t) for t in ("root", "child", "grandchild", "independent")] == [
        "cancelled",
        "failed",
        "failed",
        "pending",
    ]


@pytest.mark.parametrize("final", ["done", "failed", "cancelled"])
def test_cancelling_a_final_task_is_a_conflict(final: str) -> None:
    f = Feeder()
    f.submit("t", max_attempts=1)
    if final == "cancelled":
        f.ok({"op": "task.cancel", "task_id": "t"})
    else:
        claim = f.claim("a")
        op = "task.complete" if final == "done" else "task.fail"
        f.ok({"op": op, **f.held(claim, "a")})
    assert f.state("t") == final
    f.refused({"op": "task.cancel", "task_id": "t"}, "conflict")
    assert f.state("t") == final


def test_cancel_of_an_unknown_task_is_not_found() -> None:
    f = Feeder()
    f.refused({"op": "task.cancel", "task_id": "nope"}, "not_found")


# -- lease expiry ------------------------------------------------------------------------------


def test_a_lease_expires_at_the_first_entry_at_or_past_its_deadline() -> None:
    f = Feeder()
    f.submit("t", max_attempts=3)
    claim = f.claim("a", lease_seconds=30)
    f.clock(at=claim["lease_until"] - 1)
    assert f.state("t") == "claimed"
    f.clock(at=claim["lease_until"])
    task = f.task("t")
    assert (task["state"], task["attempts"], task["agent"]) == ("pending", 1, None)
    assert task["error"] == "the lease of a ran out"
    assert f.kinds(f.index) == ["task.lease_expired", "task.retry"]
    f.refused({"op": "task.renew", **f.held(claim, "a")}, "stale_token")


def test_the_entry_that_passes_a_deadline_sees_the_expired_lease_before_its_own_command() -> None:
    f = Feeder()
    f.submit("t")
    claim = f.claim("a", lease_seconds=30)
    again = f.claim("b", at=claim["lease_until"] + 5_000)
    assert again["task_id"] == "t" and again["attempt"] == 2
    f.refused({"op": "task.complete", **f.held(claim, "a")}, "stale_token", after=1)


def test_a_lease_expiring_at_max_attempts_fails_the_task_and_its_dependents() -> None:
    f = Feeder()
    f.submit("t", max_attempts=2)
    f.submit("next", depends_on=["t"])
    for _ in range(2):
        claim = f.claim("a", lease_seconds=1)
        f.clock(at=claim["lease_until"])
    task = f.task("t")
    assert (task["state"], task["attempts"]) == ("failed", 2)
    assert task["error"] == "the lease of a ran out"
    assert f.task("next")["error"] == "dependency t failed"
    assert f.claim("a")["task_id"] is None


def test_one_late_entry_expires_every_lease_it_passes() -> None:
    f = Feeder()
    for name in ("t1", "t2", "t3"):
        f.submit(name)
    f.claim("a", lease_seconds=10)
    f.claim("b", lease_seconds=20)
    f.claim("c", lease_seconds=60)
    f.clock(after=30)
    assert [f.state(t) for t in ("t1", "t2", "t3")] == ["pending", "pending", "claimed"]


def test_a_claim_queue_does_not_keep_the_entries_of_tasks_no_longer_pending() -> None:
    """Tasks cancelled while pending left their queue entries behind until they reached the
    top; under a task nobody claims, they piled up (2,001 entries for 1 pending task)."""
    f = Feeder()
    f.submit("first", queue="q")
    for n in range(2000):
        f.submit(f"t{n}", queue="q")
        f.ok({"op": "task.cancel", "task_id": f"t{n}"})
    assert len(f.ledger.tasks._queues["q"]) <= 128
    assert f.claim("a", queues=["q"])["task_id"] == "first"
