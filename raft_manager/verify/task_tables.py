"""Live nodes' task tables, judged by the ledger's rules.

Theory of operation: every node answers a `task.list` query from its own state (a stale read:
no ReadIndex, whatever its role), so the tables are taken at slightly different applied
indexes and are never compared with one another; each is judged alone, by the verdicts the
simulator uses on its replicas (raft_manager/ledger/audit.py): the table is coherent (a claimed
task has a holder and a token, a pending or waiting one has neither holder nor lease, no
fencing token was handed to two tasks) and, for workloads that give each submit a payload
marker, no marker is carried by two tasks (Exactly Once). Whether the nodes hold the same log
and the same state is consistency.py's question. A node holds at most TABLE_LIMIT tasks in one
answer; a longer table is judged on its first TABLE_LIMIT tasks, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raft_manager.client import RaftClient
from raft_manager.ledger.audit import repeated_markers, task_table_problems
from raft_manager.ledger.commands import TaskList

from .checks import Check
from .consistency import _each  # ask every node at once

TABLE_LIMIT = 10_000  # the most tasks one task.list answers with

Table = list[dict[str, Any]] | str  # the tasks, or why the node gave none


async def fetch_task_tables(
    members: Mapping[str, str], *, timeout: float = 5.0
) -> dict[str, Table]:
    """Each member's task table (by member name), read from its own state, or the error it
    gave."""
    query = TaskList(limit=TABLE_LIMIT)
    async with RaftClient(list(members.values()), timeout=timeout) as client:
        answers = await _each(members, lambda address: client.local_query(address, query))
    tables: dict[str, Table] = {}
    for node, answer in answers.items():
        tasks = answer.get("tasks") if isinstance(answer, dict) else None
        if isinstance(answer, Exception):
            tables[node] = str(answer)
        elif not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            tables[node] = f"answered a task list that is not a list of tasks: {answer!r}"[:300]
        else:
            tables[node] = tasks
    return tables


def task_table_checks(tables: Mapping[str, Table]) -> list[Check]:
    """One line per node: its table is coherent, or one line per problem found in it."""
    found: list[Check] = []
    for node, table in tables.items():
        if isinstance(table, str):
            found.append(Check.skipped(f"tasks on {node} not checked: {table}"))
            continue
        problems = _problems(table)
        cut = " (the first ones: the table may hold more)" if len(table) >= TABLE_LIMIT else ""
        if not problems:
            found.append(Check.passed(f"tasks on {node}: {len(table):,} coherent{cut}"))
        found += [Check.failed(f"tasks on {node}: {problem}") for problem in problems]
    return found


def _problems(table: Sequence[Mapping[str, Any]]) -> list[str]:
    problems = task_table_problems(table)
    for marker, count in repeated_markers(task.get("payload") for task in table):
        problems.append(f"{count} tasks carry payload marker {marker}: a submit applied twice")
    return problems
