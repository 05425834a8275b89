"""The task-history checker (raft_manager/verify/task_history.py), the shared ledger verdicts
it stands on (raft_manager/ledger/audit.py) and the checks of live task tables
(raft_manager/verify/task_tables.py)."""

from __future__ import annotations

from typing import Any

import pytest
from history_helpers import op
from ledger_helpers import Feeder

from raft_manager.client.history import HistoryOp
from raft_manager.ledger.audit import (
    Lease,
    claim_conflict,
    holder_conflict,
    missing_submits,
    repeated_markers,
    task_table_problems,
)
from raft_manager.sim.invariants import Checker, InvariantViolation
from raft_manager.verify.checks import Verdict
from raft_manager.verify.task_history import TaskReport, check_tasks
from raft_manager.verify.task_tables import task_table_checks

# History times are in ms (history_helpers.op); ledger times (lease_until) in ms on the
# ledger's own clock, here 10_000 + ..., so the two are never confused.
LEASE = 1000


def submit(p: int, start: float, end: float, task: str, kind: str = "ok") -> HistoryOp:
    extra = {"error": "timeout"} if kind == "info" else {}
    return op(p, "task.submit", start, end, kind, task=task, **extra)


def claim(
    p: int, start: float, end: float, agent: str, task: str, token: int, ledger_at: int
) -> HistoryOp:
    """An ok claim applied at `ledger_at` ms on the ledger clock, for LEASE ms."""
    return op(
        p,
        "task.claim",
        start,
        end,
        agent=agent,
        lease_ms=LEASE,
        task=task,
        token=token,
        lease_until=ledger_at + LEASE,
    )


def act(
    name: str,
    p: int,
    start: float,
    end: float,
    agent: str,
    task: str,
    token: int,
    kind: str = "ok",
    **data: Any,
) -> HistoryOp:
    if kind == "fail":
        data.setdefault("error", "stale_token")
    return op(p, f"task.{name}", start, end, kind, task=task, agent=agent, token=token, **data)


def renew(
    p: int, start: float, end: float, agent: str, task: str, token: int, ledger_at: int
) -> HistoryOp:
    return act(
        "renew", p, start, end, agent, task, token, lease_ms=LEASE, lease_until=ledger_at + LEASE
    )


def view(task: str, state: str, agent: str | None = None, token: int = 0, until: int = 0) -> Any:
    return {"id": task, "state": state, "agent": agent, "token": token, "lease_until": until}


def listing(p: int, start: float, end: float, *views: Any, limit: int = 100) -> HistoryOp:
    return op(p, "task.list", start, end, limit=limit, tasks=list(views))


def rules(report: TaskReport) -> list[str]:
    return [violation.rule for violation in report.violations]


def clean_history() -> list[HistoryOp]:
    """Two tasks: a1 claims t1, renews and completes it; a2's lease on t2 runs out, a3 claims
    it, a2's late completion is refused, a3 completes it; the final list shows both done."""
    return [
        submit(0, 0, 1, "t1"),
        submit(0, 1, 2, "t2"),
        claim(1, 3, 4, "a1", "t1", 3, 10_000),
        claim(2, 3, 5, "a2", "t2", 4, 10_001),
        renew(1, 5, 6, "a1", "t1", 3, 10_800),  # until 11_800
        act("complete", 1, 7, 8, "a1", "t1", 3),
        claim(3, 9, 10, "a3", "t2", 9, 11_001),  # a2's lease ended at 11_001
        act("complete", 2, 11, 12, "a2", "t2", 4, "fail"),
        op(3, "task.claim", 11, 12, "info", agent="a4", lease_ms=LEASE, error="timeout"),
        act("complete", 3, 13, 14, "a3", "t2", 9),
        listing(0, 15, 16, view("t1", "done", "a1", 3), view("t2", "done", "a3", 9)),
    ]


def test_a_clean_history() -> None:
    report = check_tasks(clean_history())
    assert report.ok, report.violations
    assert report.counts == {
        "operations": 11,
        "submitted": 2,
        "claimed": 3,
        "renewed": 1,
        "completed": 2,
        "failed": 0,
        "listed": 1,
        "refused": 1,
        "unknown": 1,
    }
    final = [view("t1", "done", "a1", 3), view("t2", "done", "a3", 9)]
    assert check_tasks(clean_history(), final).ok


def test_overlapping_leases() -> None:
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),  # until 11_000
        claim(2, 2, 3, "a2", "t1", 5, 10_500),
    ]
    report = check_tasks(history)
    assert rules(report) == ["Lease Exclusion"]
    assert "a2 claimed t1 at 10500 ms while a1's lease under token 3 ran until 11000 ms" in (
        report.violations[0].detail
    )
    given_back = [history[0], act("fail", 1, 1.5, 1.8, "a1", "t1", 3), history[1]]
    assert check_tasks(given_back).ok


def test_a_renewal_after_the_lease_ended() -> None:
    history = [claim(1, 0, 1, "a1", "t1", 3, 10_000), renew(1, 2, 3, "a1", "t1", 3, 11_000)]
    report = check_tasks(history)
    assert rules(report) == ["Lease Exclusion"]
    assert "after its lease ended at 11000 ms" in report.violations[0].detail
    assert check_tasks([history[0], renew(1, 2, 3, "a1", "t1", 3, 10_999)]).ok


def test_a_renewal_extends_the_lease_it_excludes_with() -> None:
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),
        renew(1, 2, 3, "a1", "t1", 3, 10_900),  # until 11_900
        claim(2, 4, 5, "a2", "t1", 8, 11_500),
    ]
    assert rules(check_tasks(history)) == ["Lease Exclusion"]


def test_a_completion_with_a_stale_token() -> None:
    """a2's claim under token 5 was acknowledged before a1's completion under token 3 was
    invoked, yet the completion was accepted."""
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),
        claim(2, 2, 3, "a2", "t1", 5, 11_200),  # after a1's lease ran out
        act("complete", 1, 4, 5, "a1", "t1", 3),
    ]
    report = check_tasks(history)
    assert rules(report) == ["Fencing"]
    assert "it is held by a2 under token 5" in report.violations[0].detail
    concurrent = [
        history[0],
        claim(2, 2, 5, "a2", "t1", 5, 11_200),
        act("complete", 1, 4, 6, "a1", "t1", 3),
    ]
    assert check_tasks(concurrent).ok  # the claim may have been applied after the completion


def test_an_act_under_a_token_never_handed_out() -> None:
    report = check_tasks([act("fail", 1, 0, 1, "a1", "t1", 7)])
    assert rules(report) == ["Fencing"]
    assert "held by nobody" in report.violations[0].detail


def test_a_double_completion() -> None:
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),
        act("complete", 1, 2, 3, "a1", "t1", 3),
        act("complete", 2, 2, 4, "a1", "t1", 3),
    ]
    report = check_tasks(history)
    assert rules(report) == ["Exactly Once"]
    assert "completed twice" in report.violations[0].detail


def test_a_claim_after_the_completion() -> None:
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),
        act("complete", 1, 2, 3, "a1", "t1", 3),
        claim(2, 4, 5, "a2", "t1", 9, 12_000),
    ]
    assert rules(check_tasks(history)) == ["Exactly Once"]


def test_a_token_handed_out_twice() -> None:
    history = [claim(1, 0, 1, "a1", "t1", 3, 10_000), claim(2, 0, 1, "a2", "t2", 3, 10_000)]
    report = check_tasks(history)
    assert rules(report) == ["Fencing"]
    assert "token 3 was handed out twice" in report.violations[0].detail


def test_a_lost_acknowledged_submit() -> None:
    history = [submit(1, 0, 1, "t9"), listing(2, 2, 3, view("t1", "pending"))]
    report = check_tasks(history)
    assert rules(report) == ["Acknowledged Submit"]
    assert "t9" in report.violations[0].detail
    assert report.violations[0].task == "t9"
    final = check_tasks([submit(1, 0, 1, "t9")], final=[view("t1", "pending")])
    assert rules(final) == ["Acknowledged Submit"]
    assert "the final task table" in final.violations[0].detail


def test_submits_the_list_cannot_vouch_for() -> None:
    """A list read before the acknowledgement, a list cut at its limit, an unacknowledged
    submit: nothing to say."""
    assert check_tasks([submit(1, 0, 5, "t9"), listing(2, 1, 3, view("t1", "pending"))]).ok
    cut = listing(2, 2, 3, view("t1", "pending"), limit=1)
    assert check_tasks([submit(1, 0, 1, "t9"), cut]).ok
    assert check_tasks([submit(1, 0, 1, "t9", "info"), listing(2, 2, 3)]).ok


def test_a_completion_lost_from_a_later_list() -> None:
    history = [
        claim(1, 0, 1, "a1", "t1", 3, 10_000),
        act("complete", 1, 2, 3, "a1", "t1", 3),
        listing(2, 4, 5, view("t1", "claimed", "a1", 3, 11_000)),
    ]
    report = check_tasks(history)
    assert rules(report) == ["Completion Durability"]
    assert "but it is claimed in a task list, read after it" in report.violations[0].detail


def test_an_incoherent_task_list() -> None:
    history = [listing(1, 0, 1, view("t1", "claimed"), view("t2", "pending", "a1", 4, 10_000))]
    report = check_tasks(history)
    assert rules(report) == ["Task Table", "Task Table"]


def test_histories_answered_by_a_real_ledger_pass() -> None:
    """Operations applied to the ledger itself (at ledger times the test picks), recorded as a
    client would have recorded them: the checker agrees with the ledger's own rules."""
    feeder = Feeder()
    history: list[HistoryOp] = []
    clock = [0.0]

    def record(name: str, kind: str, **data: Any) -> None:
        clock[0] += 1
        history.append(op(1, name, clock[0], clock[0] + 0.5, kind, **data))

    for task_id in ("t1", "t2", "t3"):
        feeder.submit(task_id)
        record("task.submit", "ok", task=task_id)
    start = feeder.ts
    for agent, after in (("a1", 0.0), ("a2", 0.1), ("a3", 0.1)):
        result = feeder.claim(agent, lease_seconds=1.0, at=feeder.ts + round(after * 1000))
        record(
            "task.claim",
            "ok",
            agent=agent,
            lease_ms=1000,
            task=result["task_id"],
            token=result["fencing_token"],
            lease_until=result["lease_until"],
        )
    t1, t2, t3 = history[3:6]
    renewed = feeder.ok(
        {
            "op": "task.renew",
            "task_id": "t1",
            "agent": "a1",
            "token": t1.data["token"],
            "lease_seconds": 2.0,
        },
        at=start + 500,
    )
    record(
        "task.renew",
        "ok",
        task="t1",
        agent="a1",
        token=t1.data["token"],
        lease_ms=2000,
        lease_until=renewed["lease_until"],
    )
    feeder.ok(
        {"op": "task.complete", "task_id": "t1", "agent": "a1", "token": t1.data["token"]},
        at=start + 600,
    )
    record("task.complete", "ok", task="t1", agent="a1", token=t1.data["token"])
    feeder.ok(
        {"op": "task.fail", "task_id": "t2", "agent": "a2", "token": t2.data["token"]},
        at=start + 700,
    )
    record("task.fail", "ok", task="t2", agent="a2", token=t2.data["token"])
    feeder.clock(at=start + 1200)  # a3's lease on t3 runs out
    for agent in ("a4", "a5"):
        result = feeder.claim(agent, lease_seconds=1.0)
        record(
            "task.claim",
            "ok",
            agent=agent,
            lease_ms=1000,
            task=result["task_id"],
            token=result["fencing_token"],
            lease_until=result["lease_until"],
        )
    refused = feeder.do(
        {"op": "task.complete", "task_id": "t3", "agent": "a3", "token": t3.data["token"]}
    )
    assert refused["error"] == "stale_token"
    record(
        "task.complete", "fail", task="t3", agent="a3", token=t3.data["token"], error="stale_token"
    )
    tasks = feeder.query({"query": "task.list", "limit": 100})["tasks"]
    assert task_table_problems(tasks) == []
    views = [
        {name: task[name] for name in ("id", "state", "agent", "token", "lease_until")}
        for task in tasks
    ]
    record("task.list", "ok", limit=100, tasks=views)
    report = check_tasks(history, final=tasks)
    assert report.ok, report.violations
    assert (report.counts["claimed"], report.counts["refused"]) == (5, 1)


# -- the shared verdicts -----------------------------------------------------------------------


def test_claim_and_holder_conflicts() -> None:
    held = Lease("a1", 3, 2000)
    assert claim_conflict("t1", None, "a2", 1500) is None
    assert claim_conflict("t1", held, "a2", 2000) is None
    assert claim_conflict("t1", held, "a2", 1999) == (
        "a2 claimed t1 at 1999 ms while a1's lease under token 3 ran until 2000 ms"
    )
    assert holder_conflict("t1", held, "complete", "a1", 3, 1999) is None
    assert holder_conflict("t1", held, "complete", "a1", 3, None) is None
    stale = holder_conflict("t1", held, "fail", "a1", 2, None)
    assert stale == "fail of t1 by a1 under token 2 was accepted; it is held by a1 under token 3"
    late = holder_conflict("t1", held, "renew", "a1", 3, 2000)
    assert late == "renew of t1 by a1 was accepted at 2000 ms, after its lease ended at 2000 ms"
    assert "held by nobody" in (holder_conflict("t1", None, "fail", "a1", 2, 5) or "")


def test_missing_submits_and_repeated_markers() -> None:
    acknowledged = [(3, "t1"), (5, "t2"), (9, "t3")]
    assert missing_submits(acknowledged, 5, {"t1"}) == [(5, "t2")]
    assert missing_submits(acknowledged, 9, {"t1", "t2", "t3"}) == []
    payloads = [{"marker": "m1"}, {"marker": "m2"}, {"marker": "m1"}, None, {"x": 1}, 7]
    assert repeated_markers(payloads) == [("m1", 2)]


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        ([view("t1", "claimed", None, 3, 1000)], "claimed without a holder and a token"),
        ([view("t1", "claimed", "a1", 0, 1000)], "claimed without a holder and a token"),
        ([view("t1", "pending", "a1", 3, 0)], "pending but has a holder or a lease"),
        ([view("t1", "waiting", None, 0, 50)], "waiting but has a holder or a lease"),
        (
            [view("t1", "done", "a1", 4), view("t2", "claimed", "a2", 4, 900)],
            "fencing token 4 was handed to 2 tasks: t1, t2",
        ),
        ([{"id": "t1", "state": "pending"}], "no integer token and lease end"),
    ],
)
def test_incoherent_task_tables(tasks: list[dict[str, Any]], problem: str) -> None:
    (found,) = task_table_problems(tasks)
    assert problem in found


def test_coherent_task_tables() -> None:
    tasks = [
        view("t1", "done", "a1", 3),
        view("t2", "pending", None, 5),  # its lease ran out: back to pending, token kept
        view("t3", "claimed", "a2", 8, 1000),
        view("t4", "waiting"),
    ]
    assert task_table_problems(tasks) == []


def test_the_simulator_judges_its_task_tables_with_the_same_verdicts() -> None:
    checker = Checker(("n1", "n2", "n3"))
    checker.on_task_table("n1", [view("t1", "done", "a1", 3)])
    with pytest.raises(InvariantViolation) as caught:
        checker.on_task_table("n2", [view("t1", "done", "a1", 3), view("t2", "done", "a2", 3)])
    assert caught.value.invariant == "Lease Exclusion"
    assert "n2: fencing token 3 was handed to 2 tasks" in caught.value.detail


def test_live_task_table_checks() -> None:
    good = [{**view("t1", "done", "a1", 3), "payload": {"marker": "m1"}}]
    twice = [*good, {**view("t2", "pending"), "payload": {"marker": "m1"}}]
    checks = task_table_checks({"n1": good, "n2": twice, "n3": "unavailable: did not answer"})
    assert [check.verdict for check in checks] == [Verdict.OK, Verdict.FAIL, Verdict.SKIP]
    assert checks[0].text == "tasks on n1: 1 coherent"
    assert "2 tasks carry payload marker m1" in checks[1].text
    assert "n3 not checked: unavailable" in checks[2].text
