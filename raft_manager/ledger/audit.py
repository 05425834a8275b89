"""Judgements about a ledger's tasks that must hold whatever happened: the shared core of the
simulator's invariant checker and of `raft_manager.verify` (recorded histories, task tables
fetched from live nodes).

Theory of operation: each function is a pure verdict on facts its caller gathered, returning
the problem as a sentence (or a list of them), or nothing when the rule holds; the caller adds
where it found the facts (a node, a log entry, a history line) and decides what a problem
costs (the simulator raises, verify reports). The facts differ by caller: the simulator
watches every applied entry with its ledger timestamp, a history knows only what clients were
answered (a claim's `lease_until`, not when a completion was applied), a live node only its
current task table. So the rules are phrased over the smallest facts they need:

- Lease Exclusion: a task is claimed only once the previous lease not given back has run out
  on the ledger clock (`claim_conflict`); a renew, complete or fail is accepted only from the
  current holder under its fencing token, and, when its ledger time is known, before the lease
  ends (`holder_conflict`).
- Acknowledged Submit: a ledger that applied the index a submit was acknowledged at holds the
  task (`missing_submits`).
- Exactly Once: no two tasks carry the same payload marker, for workloads that give each
  submit its own (`repeated_markers`).
- A task table is coherent (`task_table_problems`): a claimed task has a holder and a token;
  a pending or waiting one has no holder and no lease; no fencing token (a claim's
  log index) was handed to two tasks.

Times are milliseconds on the ledger clock (the leader's stamps); tokens are claims' log
indexes. Nothing here reads a clock or knows where the facts came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Lease:
    """A task's latest lease not given back: its holder, fencing token and end (ms)."""

    agent: str
    token: int
    until: int


def claim_conflict(task_id: str, held: Lease | None, agent: str, now: int) -> str | None:
    """Why a claim of `task_id` by `agent` at ledger time `now` breaks Lease Exclusion, given
    the task's latest lease not given back (`held`), or None."""
    if held is None or held.until <= now:
        return None
    return (
        f"{agent} claimed {task_id} at {now} ms while {held.agent}'s lease under token "
        f"{held.token} ran until {held.until} ms"
    )


def holder_conflict(
    task_id: str, held: Lease | None, op: str, agent: str, token: int, now: int | None
) -> str | None:
    """Why an accepted `op` (renew, complete, fail) of `task_id` by `agent` under `token` breaks
    Lease Exclusion, given the task's current lease (`held`) and, when known, the ledger time
    `now` it was applied at; or None."""
    if held is None or (held.agent, held.token) != (agent, token):
        holder = f"{held.agent} under token {held.token}" if held else "nobody"
        return (
            f"{op} of {task_id} by {agent} under token {token} was accepted; it is held by {holder}"
        )
    if now is not None and held.until <= now:
        return (
            f"{op} of {task_id} by {agent} was accepted at {now} ms, after its lease ended at "
            f"{held.until} ms"
        )
    return None


def missing_submits(
    acknowledged: Iterable[tuple[int, str]], applied: int, task_ids: Container[str]
) -> list[tuple[int, str]]:
    """The (index, task id) of each submit acknowledged at an index at or below `applied`
    that a ledger holding `task_ids` lacks."""
    return [
        (index, task_id)
        for index, task_id in acknowledged
        if index <= applied and task_id not in task_ids
    ]


def repeated_markers(payloads: Iterable[Any]) -> list[tuple[str, int]]:
    """(marker, count) for each payload marker (`{"marker": ...}`) carried by more than one
    task, in marker order."""
    markers = Counter(
        str(payload["marker"])
        for payload in payloads
        if isinstance(payload, dict) and "marker" in payload
    )
    return sorted((marker, count) for marker, count in markers.items() if count > 1)


def task_table_problems(tasks: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is incoherent in one ledger's task table (task views: `id`, `state`, `agent`,
    `token`, `lease_until`); empty when nothing is."""
    problems: list[str] = []
    holders_of: dict[int, list[str]] = {}
    for task in tasks:
        task_id, state, agent = task.get("id"), task.get("state"), task.get("agent")
        token, until = task.get("token"), task.get("lease_until")
        if type(token) is not int or type(until) is not int:
            problems.append(f"task {task_id} has no integer token and lease end")
            continue
        if state == "claimed" and (agent is None or token < 1):
            problems.append(
                f"task {task_id} is claimed without a holder and a token "
                f"(agent {agent}, token {token})"
            )
        elif state in ("pending", "waiting") and (agent is not None or until != 0):
            problems.append(
                f"task {task_id} is {state} but has a holder or a lease "
                f"(agent {agent}, lease until {until})"
            )
        if token > 0:
            holders_of.setdefault(token, []).append(str(task_id))
    for token, task_ids in sorted(holders_of.items()):
        if len(task_ids) > 1:
            listed = ", ".join(task_ids)
            problems.append(f"fencing token {token} was handed to {len(task_ids)} tasks: {listed}")
    return problems
