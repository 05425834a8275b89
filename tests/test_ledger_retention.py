"""Swarm ledger: finished tasks are forgotten after `finished_task_retention_seconds`, or when
more than `max_finished_tasks` are finished (the first finished go first), so a ledger that
runs millions of tasks through stays bounded. Unfinished tasks are never forgotten, and a
forgotten task leaves nothing behind that a later command could trip over."""

from __future__ import annotations

from typing import Any

import pytest
from ledger_helpers import Feeder

from raft_manager.ledger import LedgerConfig


def finish(f: Feeder, task_id: str, agent: str = "a", queue: str = "default") -> None:
    """Submit, claim and complete one task (nothing else pending in its queue)."""
    f.submit(task_id, queue=queue)
    claim = f.claim(agent, queues=[queue])
    assert claim["task_id"] == task_id
    f.ok({"op": "task.complete", **f.held(claim, agent)})


def known(f: Feeder) -> list[str]:
    tasks: list[dict[str, Any]] = f.query({"query": "task.list", "limit": 1000})["tasks"]
    return [task["id"] for task in tasks]


def test_beyond_max_finished_tasks_the_first_finished_are_forgotten_first() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=2))
    f.submit("old")  # submitted first, finished last
    f.submit("keep-pending", queue="other")
    for task_id in ("x", "y"):
        finish(f, task_id, queue="fast")
    claim = f.claim("a")
    assert claim["task_id"] == "old"
    f.ok({"op": "task.complete", **f.held(claim, "a")})
    f.clock()  # forgetting happens as the next entry begins
    assert known(f) == ["old", "keep-pending", "y"]
    f.refused({"op": "task.complete", **f.held(claim, "a")}, "stale_token")
    f.refused({"op": "task.cancel", "task_id": "x"}, "not_found")


def test_finished_tasks_are_forgotten_after_the_retention_and_unfinished_ones_never() -> None:
    f = Feeder(LedgerConfig(finished_task_retention_seconds=60))
    finish(f, "done")
    f.submit("cancelled")
    f.ok({"op": "task.cancel", "task_id": "cancelled"})
    f.submit("pending")
    f.submit("held")
    f.claim("b", lease_seconds=3600)
    f.clock(after=59.999)
    assert known(f) == ["done", "cancelled", "pending", "held"]
    f.clock(after=0.001)
    assert known(f) == ["pending", "held"]
    f.clock(after=3000)
    assert known(f) == ["pending", "held"]


def test_a_waiting_task_whose_done_dependency_was_forgotten_runs_when_the_others_are_done() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    finish(f, "first")
    f.submit("second")
    f.submit("after-both", depends_on=["first", "second"])
    finish(f, "filler", queue="other")
    assert f.state("after-both") == "waiting"
    claim = f.claim("a")
    assert claim["task_id"] == "second"
    f.ok({"op": "task.complete", **f.held(claim, "a")})
    f.clock()
    assert "first" not in known(f)
    assert f.state("after-both") == "pending"


@pytest.mark.parametrize("ending", ["task.complete", "task.cancel"])
def test_a_forgotten_dependent_does_not_trouble_its_dependency_when_it_ends(ending: str) -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    f.submit("dep")
    f.submit("dependent", depends_on=["dep"])
    f.ok({"op": "task.cancel", "task_id": "dependent"})
    finish(f, "other", queue="elsewhere")
    f.clock()
    assert known(f) == ["dep", "other"]
    if ending == "task.complete":
        claim = f.claim("a")
        f.ok({"op": "task.complete", **f.held(claim, "a")})
    else:
        f.ok({"op": "task.cancel", "task_id": "dep"})
    assert f.state("dep") == ("done" if ending == "task.complete" else "cancelled")


def test_the_queue_entry_of_a_forgotten_cancelled_task_is_skipped_by_claim() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    f.submit("cancelled-early", priority=9)
    f.ok({"op": "task.cancel", "task_id": "cancelled-early"})
    f.submit("root")
    f.submit("spare")
    f.ok({"op": "task.cancel", "task_id": "spare"})
    f.clock()
    assert known(f) == ["root", "spare"]
    assert f.claim("a")["task_id"] == "root"
    assert f.claim("a")["task_id"] is None


def test_a_forgotten_id_can_be_submitted_again_and_cannot_be_depended_on() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    finish(f, "t")
    finish(f, "u")
    f.clock()
    f.refused({"op": "task.submit", "id": "x", "depends_on": ["t"]}, "unknown_dependency")
    assert f.submit("t")["existing"] is False
    assert f.state("t") == "pending"


def test_a_restored_replica_forgets_the_same_tasks_in_the_same_order() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=3, finished_task_retention_seconds=100))
    for n in range(3):
        f.submit(f"early-{n}")
    for n in range(3):
        finish(f, f"mid-{n}", queue="mid")
    twin = f.fork()
    for replica in (f, twin):
        for _ in range(3):
            claim = replica.claim("a", lease_seconds=3600)
            replica.ok({"op": "task.complete", **replica.held(claim, "a")}, after=40)
        replica.clock(after=30)
    assert known(f) == known(twin)
    assert f.ledger.snapshot() == twin.ledger.snapshot()


def test_a_snapshot_of_an_older_version_restores_its_finished_tasks_in_finish_time_order() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=2))
    f.submit("a")
    f.submit("b", priority=5)  # claimed and finished first
    for agent in ("x", "y"):
        claim = f.claim(agent)
        f.ok({"op": "task.complete", **f.held(claim, agent)}, after=1)
    image = f.ledger.snapshot().replace(b'"version":3', b'"version":2')
    image = image.replace(b',"finished_tasks":["b","a"]', b"")
    assert b'"version":2' in image and b"finished_tasks" not in image
    old = Feeder(f.config)
    old.ledger.restore(image)
    old.index, old.ts = f.index, f.ts
    finish(old, "c")
    old.clock()
    assert known(old) == ["a", "c"]


# -- a forgotten id used again: a new task, to every queue and dependency -----------------------
# (found by review: leftovers of the forgotten task in queues and dependency lists mistook the
# new task for the old one; a replica restored from a snapshot had no leftovers, and diverged)


def both(replicas: tuple[Feeder, Feeder], command: dict[str, Any]) -> dict[str, Any]:
    """Apply to a replica and to its twin restored from a snapshot: the same result."""
    results = [replica.do(command) for replica in replicas]
    assert results[0] == results[1], results
    assert results[0]["ok"] is True, results[0]
    return results[0]


def forgotten(f: Feeder, task_id: str) -> tuple[Feeder, Feeder]:
    """Finish a filler task so that `task_id` (finished) is forgotten; then fork a twin."""
    f.ok({"op": "task.submit", "id": "filler", "queue": "filler"})
    f.ok({"op": "task.cancel", "task_id": "filler"})
    f.clock()
    assert task_id not in known(f)
    return f, f.fork()


def test_a_reused_id_in_another_queue_is_not_claimed_from_the_old_one() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    f.submit("X", queue="q1")
    f.ok({"op": "task.cancel", "task_id": "X"})
    replicas = forgotten(f, "X")
    both(replicas, {"op": "task.submit", "id": "Y", "queue": "q2", "priority": 9})
    both(replicas, {"op": "task.submit", "id": "X", "queue": "q2"})
    assert both(replicas, {"op": "task.claim", "agent": "a", "queues": ["q1"]})["task_id"] is None
    assert both(replicas, {"op": "task.claim", "agent": "b", "queues": ["q2"]})["task_id"] == "Y"
    assert both(replicas, {"op": "task.claim", "agent": "c", "queues": ["q2"]})["task_id"] == "X"
    assert replicas[0].ledger.snapshot() == replicas[1].ledger.snapshot()


def test_a_reused_id_is_not_a_dependent_of_what_the_old_task_waited_for() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    f.submit("P")
    f.submit("Q", queue="other")
    f.submit("D", depends_on=["P"])
    f.ok({"op": "task.cancel", "task_id": "D"})
    replicas = forgotten(f, "D")
    both(replicas, {"op": "task.submit", "id": "D", "depends_on": ["Q"]})
    both(replicas, {"op": "task.cancel", "task_id": "P"})
    assert [replica.state("D") for replica in replicas] == ["waiting", "waiting"]
    assert replicas[0].ledger.snapshot() == replicas[1].ledger.snapshot()


def test_a_dependency_forgotten_when_done_stays_done_when_its_id_is_used_again() -> None:
    f = Feeder(LedgerConfig(max_finished_tasks=1))
    f.submit("A", queue="qa")
    claim = f.claim("a", queues=["qa"])
    f.submit("B", queue="qb")
    f.submit("W", depends_on=["A", "B"], queue="qw")
    f.ok({"op": "task.complete", **f.held(claim, "a")})
    replicas = forgotten(f, "A")
    both(replicas, {"op": "task.submit", "id": "A", "queue": "qa"})  # a new task, pending
    claim = both(replicas, {"op": "task.claim", "agent": "b", "queues": ["qb"]})
    both(replicas, {"op": "task.complete", **f.held(claim, "b")})
    assert [replica.state("W") for replica in replicas] == ["pending", "pending"]
    assert replicas[0].ledger.snapshot() == replicas[1].ledger.snapshot()
