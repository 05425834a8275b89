"""Does a recorded history of task operations keep the ledger's promises?

Theory of operation: the history (client/history.py) says what clients were answered, and
when on their clock; the ledger's own clock appears only in what it answered (a claim's or a
renewal's `lease_until`, from which the lease's start follows: `lease_until - lease_ms`).
Each rule below is judged on those facts alone, with the benefit of the doubt wherever they
cannot decide (two operations that overlap in real time may have been applied in either
order). The ledger rules themselves are the shared verdicts of raft_manager/ledger/audit.py.

- Acknowledged Submit: a task whose submit was acknowledged is in every complete task list
  (`task.list` with fewer tasks than its limit) read after the acknowledgement, and in the
  final task table when one is given.
- Lease Exclusion: a task's ok claims and renewals, placed on the ledger clock, never overlap:
  a claim comes only once the previous lease has run out (unless an ok complete or fail under
  its token gave it back), and a renewal only from the holder under its token, before the
  lease ends.
- Fencing: every ok renew, complete and fail carries the task's then-current token: the
  largest handed out for that task by a claim acknowledged before the operation was invoked;
  and no token is handed out twice.
- Exactly Once: no task has two ok completions, and no task is claimed by a claim invoked
  after a completion of it was acknowledged.
- Completion Durability: a task list read after a completion was acknowledged shows the task
  done.
- Task Table: every task list read is coherent (audit.task_table_problems).

Limits: an info claim may have handed out a token and a lease the history does not know, and
cancellations, agent deaths and deregistrations (which also end leases) are not recorded, so a
history is checked as if leases ended only by expiry, complete or fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raft_manager.client.history import TASK_OPS, HistoryOp
from raft_manager.ledger.audit import (
    Lease,
    claim_conflict,
    holder_conflict,
    missing_submits,
    task_table_problems,
)

FINAL = "the final task table"


@dataclass(frozen=True, slots=True)
class TaskViolation:
    rule: str
    task: str | None
    detail: str
    lines: tuple[int, ...]  # the history lines involved (0: not from a file)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "task": self.task, "detail": self.detail, "lines": self.lines}


@dataclass(slots=True)
class TaskReport:
    violations: list[TaskViolation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts,
            "violations": [violation.as_dict() for violation in self.violations],
        }


@dataclass(frozen=True, slots=True)
class _Table:
    """A task list read: when it was invoked (None: after everything), where, its tasks."""

    invoke: int | None
    line: int
    tasks: Mapping[str, Mapping[str, Any]]
    complete: bool  # every task is in it (fewer than the limit)

    @property
    def label(self) -> str:
        if self.invoke is None:
            return FINAL
        return f"the task list read at line {self.line}" if self.line else "a task list"

    def after(self, op: HistoryOp) -> bool:
        """Was this table read after `op` was acknowledged?"""
        return self.invoke is None or op.complete < self.invoke


def _where(op: HistoryOp) -> str:
    return f"line {op.line}" if op.line else f"process {op.process}"


def _by_task(ops: Iterable[HistoryOp]) -> dict[str, list[HistoryOp]]:
    """`ops` grouped by their task, each group in the order given."""
    grouped: dict[str, list[HistoryOp]] = {}
    for op in ops:
        grouped.setdefault(op.data["task"], []).append(op)
    return grouped


def check_tasks(
    ops: Iterable[HistoryOp], final: Sequence[Mapping[str, Any]] | None = None
) -> TaskReport:
    """Judge the task operations among `ops`; `final` is the ledger's task table at the end
    (task views with id, state, agent, token and lease_until), when known."""
    task_ops = [op for op in ops if op.op in TASK_OPS]
    ok = [op for op in task_ops if op.type == "ok"]
    submits = [op for op in ok if op.op == "task.submit"]
    claims = [op for op in ok if op.op == "task.claim" and op.data["task"] is not None]
    acts = [op for op in ok if op.op in ("task.renew", "task.complete", "task.fail")]
    tables = [
        _Table(
            op.invoke,
            op.line,
            {task["id"]: task for task in op.data["tasks"]},
            len(op.data["tasks"]) < op.data["limit"],
        )
        for op in ok
        if op.op == "task.list"
    ]
    if final is not None:
        tables.append(_Table(None, 0, {str(task["id"]): task for task in final}, True))
    report = TaskReport()
    report.counts = _counts(task_ops, claims)
    found = report.violations
    found += _acknowledged(submits, tables)
    found += _unique_tokens(claims)
    claims_of, acts_of = _by_task(claims), _by_task(acts)
    for task_id in sorted({*claims_of, *acts_of}):
        mine, done = claims_of.get(task_id, []), acts_of.get(task_id, [])
        found += _leases(task_id, mine, done)
        found += _fencing(task_id, mine, done)
        found += _exactly_once(task_id, mine, done)
        found += _durable(task_id, done, tables)
    for table in tables:
        found += [
            TaskViolation("Task Table", None, f"{table.label}: {problem}", (table.line,))
            for problem in task_table_problems(table.tasks.values())
        ]
    return report


_COUNTED = {
    "task.submit": "submitted",
    "task.claim": "claimed",
    "task.renew": "renewed",
    "task.complete": "completed",
    "task.fail": "failed",
    "task.list": "listed",
}


def _counts(task_ops: Sequence[HistoryOp], claims: Sequence[HistoryOp]) -> dict[str, int]:
    """How many operations of each kind were acknowledged (claims: those that got a task),
    refused (fail) and left unknown (info)."""
    counts = dict.fromkeys(("operations", *_COUNTED.values(), "refused", "unknown"), 0)
    counts["operations"] = len(task_ops)
    for op in task_ops:
        if op.type == "fail":
            counts["refused"] += 1
        elif op.type == "info":
            counts["unknown"] += 1
        elif op.op != "task.claim":
            counts[_COUNTED[op.op]] += 1
    counts["claimed"] = len(claims)
    return counts


def _acknowledged(submits: Sequence[HistoryOp], tables: Sequence[_Table]) -> list[TaskViolation]:
    found: list[TaskViolation] = []
    reported: set[str] = set()
    for table in tables:
        if not table.complete:
            continue
        # Positions on the history's clock: acknowledged at `complete`, read at `invoke`.
        upto = table.invoke - 1 if table.invoke is not None else 1 << 62
        acknowledged = [(op.complete, op.data["task"]) for op in submits]
        for at, task_id in missing_submits(acknowledged, upto, table.tasks):
            if task_id in reported:
                continue
            reported.add(task_id)
            submit = next(op for op in submits if (op.complete, op.data["task"]) == (at, task_id))
            found.append(
                TaskViolation(
                    "Acknowledged Submit",
                    task_id,
                    f"task {task_id}, acknowledged to process {submit.process} "
                    f"({_where(submit)}), is missing from {table.label}, read after it",
                    (submit.line, table.line),
                )
            )
    return found


def _unique_tokens(claims: Sequence[HistoryOp]) -> list[TaskViolation]:
    by_token: dict[int, HistoryOp] = {}
    found = []
    for op in claims:
        token = op.data["token"]
        other = by_token.setdefault(token, op)
        if other is not op:
            found.append(
                TaskViolation(
                    "Fencing",
                    op.data["task"],
                    f"token {token} was handed out twice: for {other.data['task']} to "
                    f"{other.data['agent']} ({_where(other)}) and for {op.data['task']} to "
                    f"{op.data['agent']} ({_where(op)})",
                    (other.line, op.line),
                )
            )
    return found


def _leases(
    task_id: str, claims: Sequence[HistoryOp], acts: Sequence[HistoryOp]
) -> list[TaskViolation]:
    """Lease Exclusion on the ledger clock: the claims and renewals in the order the ledger's
    times (then tokens) put them in."""
    given_back = {op.data["token"] for op in acts if op.op != "task.renew"}
    timed = [
        (op.data["lease_until"] - op.data["lease_ms"], op.data["token"], op.op == "task.renew", op)
        for op in (*claims, *(op for op in acts if op.op == "task.renew"))
    ]
    timed.sort(key=lambda item: item[:3])
    found: list[TaskViolation] = []
    held: Lease | None = None
    held_by: HistoryOp | None = None
    for at, token, renewal, op in timed:
        agent = op.data["agent"]
        if renewal:
            problem = holder_conflict(task_id, held, "renew", agent, token, at)
            if problem is None and held is not None:
                held.until = op.data["lease_until"]
        else:
            problem = None
            if held is not None and held.token not in given_back:
                problem = claim_conflict(task_id, held, agent, at)
            held = Lease(agent, token, op.data["lease_until"])
        if problem is not None:
            lines = (held_by.line, op.line) if held_by is not None else (op.line,)
            found.append(TaskViolation("Lease Exclusion", task_id, problem, lines))
        if not renewal:
            held_by = op
    return found


def _fencing(
    task_id: str, claims: Sequence[HistoryOp], acts: Sequence[HistoryOp]
) -> list[TaskViolation]:
    """Each act against the largest token handed out by a claim acknowledged before it."""
    found = []
    for act in acts:
        before = [op for op in claims if op.complete < act.invoke]
        latest = max(before, key=lambda op: op.data["token"], default=None)
        held = None
        if latest is not None:
            held = Lease(latest.data["agent"], latest.data["token"], latest.data["lease_until"])
        op_name = act.op.removeprefix("task.")
        problem = holder_conflict(
            task_id, held, op_name, act.data["agent"], act.data["token"], None
        )
        if problem is not None:
            lines = (latest.line, act.line) if latest is not None else (act.line,)
            found.append(TaskViolation("Fencing", task_id, f"{problem} ({_where(act)})", lines))
    return found


def _exactly_once(
    task_id: str, claims: Sequence[HistoryOp], acts: Sequence[HistoryOp]
) -> list[TaskViolation]:
    completions = [op for op in acts if op.op == "task.complete"]
    found = []
    if len(completions) > 1:
        first, second = completions[0], completions[1]
        found.append(
            TaskViolation(
                "Exactly Once",
                task_id,
                f"{task_id} was completed twice: by {first.data['agent']} under token "
                f"{first.data['token']} ({_where(first)}) and by {second.data['agent']} under "
                f"token {second.data['token']} ({_where(second)})",
                (first.line, second.line),
            )
        )
    for completion in completions:
        for claim in claims:
            if claim.invoke > completion.complete:
                found.append(
                    TaskViolation(
                        "Exactly Once",
                        task_id,
                        f"{task_id} was claimed by {claim.data['agent']} under token "
                        f"{claim.data['token']} ({_where(claim)}) after its completion was "
                        f"acknowledged ({_where(completion)})",
                        (completion.line, claim.line),
                    )
                )
    return found


def _durable(
    task_id: str, acts: Sequence[HistoryOp], tables: Sequence[_Table]
) -> list[TaskViolation]:
    for completion in (op for op in acts if op.op == "task.complete"):
        for table in tables:
            if not table.after(completion):
                continue
            task = table.tasks.get(task_id)
            if task is None and not table.complete:
                continue
            if task is None or task.get("state") != "done":
                shown = "missing" if task is None else task.get("state")
                detail = (
                    f"{task_id}'s completion was acknowledged ({_where(completion)}) but it is "
                    f"{shown} in {table.label}, read after it"
                )
                return [
                    TaskViolation(
                        "Completion Durability", task_id, detail, (completion.line, table.line)
                    )
                ]
    return []
