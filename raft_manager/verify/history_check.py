"""Every checker on one recorded history, and the report `raft-manager check-history` prints.

Theory of operation: the memory operations go to the linearizability checker, key by key
(linearizability.py), the task operations to the task-history checker (task_history.py); the
verdicts become Check lines (checks.py): one line for all the linearizable keys, a FAIL line
with its witness for each key that is not, a skip line for each key whose search passed its
budget, and one line per task rule broken (or one saying none was). The exit code: 0 nothing
wrong, 1 a violation, 3 no violation but some key undecided (its search passed the budget).
Times in the text are milliseconds since the history's first invoke.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raft_manager.client.history import MEMORY_OPS, TASK_OPS, HistoryOp

from .checks import Check
from .linearizability import DEFAULT_BUDGET, KeyResult, Witness, check_memory
from .task_history import TaskReport, check_tasks

OK, VIOLATION, UNDECIDED = 0, 1, 3
KEYS_NAMED = 8  # linearizable keys named on their line
VALUE_CHARS = 40


@dataclass(frozen=True, slots=True)
class HistoryReport:
    operations: int
    keys: list[KeyResult]
    tasks: TaskReport | None  # None: the history has no task operation
    seconds: float
    origin: int  # the first invoke (ns): times are shown from it
    budget: int  # search steps per key

    @property
    def exit_code(self) -> int:
        if any(key.verdict == "violation" for key in self.keys) or (
            self.tasks is not None and not self.tasks.ok
        ):
            return VIOLATION
        return UNDECIDED if any(key.verdict == "unknown" for key in self.keys) else OK

    def checks(self) -> list[Check]:
        found: list[Check] = []
        good = [key for key in self.keys if key.verdict == "linearizable"]
        if good:
            names = ", ".join(key.key for key in good[:KEYS_NAMED])
            more = f" and {len(good) - KEYS_NAMED:,} more" if len(good) > KEYS_NAMED else ""
            ops = sum(key.ops for key in good)
            counted = (
                f"{_many(len(good), 'key')} linearizable ({names}{more}; {_many(ops, 'operation')})"
            )
            found.append(Check.passed(f"memory: {counted}"))
        for key in self.keys:
            if key.verdict == "unknown":
                found.append(
                    Check.skipped(
                        f"key {key.key}: undecided: the search passed its budget of "
                        f"{self.budget:,} steps ({_many(key.ops, 'operation')})"
                    )
                )
            elif key.verdict == "violation":
                text = f"key {key.key}: not linearizable ({_many(key.ops, 'operation')})"
                if key.witness is not None:
                    text += "".join(f"\n     {line}" for line in self._witness(key))
                found.append(Check.failed(text))
        if self.tasks is not None:
            counts = self.tasks.counts
            if self.tasks.ok:
                found.append(
                    Check.passed(
                        f"tasks: no rule broken ({counts['submitted']:,} submitted, "
                        f"{counts['claimed']:,} claimed, {counts['completed']:,} completed, "
                        f"{counts['unknown']:,} unknown outcomes)"
                    )
                )
            for violation in self.tasks.violations:
                found.append(Check.failed(f"tasks: {violation.rule}: {violation.detail}"))
        if not found:
            found.append(Check.skipped("the history holds no memory or task operation"))
        return found

    def _witness(self, key: KeyResult) -> list[str]:
        witness: Witness | None = key.witness
        assert witness is not None
        if witness.unexplained is not None:  # found before any search
            return [self.describe(witness.blocked), witness.unexplained]
        lines = [f"the longest linearizable prefix places {witness.placed:,} operations"]
        if witness.last:
            lines.append("ending with:")
            lines += [f"  {self.describe(op)}" for op in witness.last]
        assert witness.state is not None
        lines.append(f"after it, {key.key} {_state(witness.state)}; then")
        lines.append(f"  {self.describe(witness.blocked)}")
        lines.append("cannot take effect before it completed")
        if witness.concurrent:
            lines.append("(nor could any of these go first instead:")
            lines += [f"  {self.describe(op)}" for op in witness.concurrent]
            lines[-1] += ")"
        return lines

    def describe(self, op: HistoryOp) -> str:
        """One operation for people: where, who, what, its outcome and when."""
        start = (op.invoke - self.origin) / 1e6
        if op.type == "info":
            when = f"invoked at {start:.3f} ms, outcome unknown"
        else:
            when = f"{start:.3f}-{(op.complete - self.origin) / 1e6:.3f} ms"
        where = f"line {op.line}: " if op.line else ""
        return f"{where}process {op.process} {_what(op)} [{when}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == OK,
            "exit_code": self.exit_code,
            "operations": self.operations,
            "seconds": round(self.seconds, 3),
            "budget": self.budget,
            "keys": [key.as_dict() for key in self.keys],
            "tasks": None if self.tasks is None else self.tasks.as_dict(),
        }


def _many(count: int, thing: str) -> str:
    return f"{count:,} {thing}" + ("" if count == 1 else "s")


def _value(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _state(state: dict[str, Any]) -> str:
    if not state["found"]:
        return "is absent"
    version = state["version"]
    at = "an unknown version" if version is None else f"version {version}"
    return f"holds {_value(state['value'])} at {at}"


def _what(op: HistoryOp) -> str:
    data, kind = op.data, op.type
    if op.op == "get":
        if kind != "ok":
            return f"get ({kind})"
        if not data["found"]:
            return "get -> absent"
        return f"get -> {_value(data['value'])} at version {data['version']}"
    if op.op == "delete":
        outcome = {"ok": "existed" if data.get("existed") else "was absent"}.get(kind, kind)
        return f"delete ({outcome})"
    if op.op == "put":
        head = f"put {_value(data['value'])}"
    else:
        compared = (
            f"version {data['expected_version']}"
            if "expected_version" in data
            else _value(data["expected"])
        )
        head = f"cas {compared} -> {_value(data['value'])}"
    if kind == "ok":
        return f"{head} (version {data['version']})"
    return f"{head} ({kind}: {data.get('error', '')})"


def check_history(ops: Sequence[HistoryOp], budget: int = DEFAULT_BUDGET) -> HistoryReport:
    """Run every checker on `ops` (a history read by client.history.read_history)."""
    started = time.perf_counter()
    keys = check_memory(ops, budget)
    has_tasks = any(op.op in TASK_OPS for op in ops)
    tasks = check_tasks(ops) if has_tasks else None
    origin = min((op.invoke for op in ops), default=0)
    counted = sum(1 for op in ops if op.op in MEMORY_OPS or op.op in TASK_OPS)
    seconds = time.perf_counter() - started
    return HistoryReport(counted, keys, tasks, seconds, origin, budget)
