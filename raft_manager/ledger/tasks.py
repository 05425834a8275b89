"""Tasks: submit, claim under a lease with a fencing token, renew, complete, fail, cancel.

Theory of operation: a task is `waiting` (for dependencies), `pending` (claimable), `claimed`
(held by one agent until its lease ends), or final: `done`, `failed`, `cancelled`. A claim takes
the runnable task with the highest priority, then the oldest submission, from the queues asked
for (one heap per queue, entries skipped lazily when their task is no longer pending), and
hands out a fencing token: the claim's log index, which only grows. Renew, complete and fail must
present the current token and holder, so an agent whose lease ran out (the task went back to
pending, or to another agent with a larger token) is refused with `stale_token` and cannot
overwrite its successor's work. A failed attempt (fail, an expired lease, a dead holder) counts
against `max_attempts`; the last one fails the task for good. Dependencies must exist when a task
is submitted, so the graph stays acyclic by construction (a task naming itself is the only cycle
anyone can ask for, and it is refused); when a dependency fails or is cancelled, every task
waiting on it fails with that cause, transitively.

A finished task is kept for `retention_ms` after it finished, and at most `max_finished` are kept
(the first finished go first, at the next entry: `forget`); then its id is unknown, and may name
a new task. A task is told from an earlier one of the same id by its submit index: queue entries
carry it (an entry of a forgotten task, or of an earlier one, is skipped), a dependency counts
only if it was submitted before its dependent (a dependency that is gone, or replaced by a later
task of that id, was done: a waiting task only ever waits on unfinished or done tasks, since a
failed or cancelled dependency fails it at once), and a forgotten task leaves the dependents'
lists of what it waited for. A replica restored from a snapshot rebuilds the same structures.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError
from .json_values import same
from .timers import Timers

Emit = Callable[[str, dict[str, Any]], None]
FINAL = ("done", "failed", "cancelled")
LEASE = "lease"
QUEUE_COMPACT_MIN = 64  # a claim queue is first tidied at this many entries


@dataclass(slots=True)
class Task:
    id: str
    queue: str
    payload: Any
    priority: int
    depends_on: list[str]
    max_attempts: int
    submitted_at: int
    submit_index: int
    state: str = "pending"
    attempts: int = 0  # failed attempts so far
    agent: str | None = None
    token: int = 0
    lease_ms: int = 0
    lease_until: int = 0
    updated_at: int = 0
    result: Any = None
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class TaskBook:
    timers: Timers
    retention_ms: int
    max_finished: int
    tasks: dict[str, Task] = field(default_factory=dict)
    _finished: deque[str] = field(default_factory=deque)  # final tasks, in the order they ended
    _queues: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    _compact_at: dict[str, int] = field(default_factory=dict)  # a queue's size to tidy it at
    _dependents: dict[str, list[str]] = field(default_factory=dict)
    _held: dict[str, set[str]] = field(default_factory=dict)  # agent -> claimed task ids

    # -- commands ------------------------------------------------------------------------------

    def submit(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        task_id = cmd["id"] or f"task-{index}"
        existing = self.tasks.get(task_id)
        if existing is not None:
            content = (existing.queue, existing.priority, existing.depends_on)
            equal = content == (cmd["queue"], cmd["priority"], cmd["depends_on"])
            if not (equal and same(existing.payload, cmd["payload"])):
                raise LedgerError("conflict", f"task {task_id} exists with different content")
            return {"ok": True, "task_id": task_id, "state": existing.state, "existing": True}
        for dep in cmd["depends_on"]:
            if dep == task_id:
                raise LedgerError("cycle", f"task {task_id} cannot depend on itself")
            other = self.tasks.get(dep)
            if other is None:
                raise LedgerError("unknown_dependency", f"no task {dep}")
            if other.state in ("failed", "cancelled"):
                raise LedgerError("failed_dependency", f"dependency {dep} is {other.state}")
        task = Task(
            task_id,
            cmd["queue"],
            cmd["payload"],
            cmd["priority"],
            list(cmd["depends_on"]),
            cmd["max_attempts"],
            submitted_at=now,
            submit_index=index,
            updated_at=now,
        )
        self.tasks[task_id] = task
        for dep in task.depends_on:
            self._dependents.setdefault(dep, []).append(task_id)
        if self._unmet(task):
            task.state = "waiting"
        else:
            self._make_pending(task)
        emit("task.submitted", {"task_id": task_id, "queue": task.queue, "state": task.state})
        return {"ok": True, "task_id": task_id, "state": task.state, "existing": False}

    def claim(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        agent, lease_ms = cmd["agent"], round(cmd["lease_seconds"] * 1000)  # before any change
        best: tuple[int, int, str] | None = None
        best_heap: list[tuple[int, int, str]] = []
        for queue in cmd["queues"]:
            heap = self._queues.get(queue)
            while heap and not self._is_pending(heap[0]):
                heapq.heappop(heap)  # claimed, finished or forgotten since it was queued
            if heap and (best is None or heap[0] < best):
                best, best_heap = heap[0], heap
        if best is None:
            return {"ok": True, "task_id": None}
        task = self.tasks[best[2]]
        heapq.heappop(best_heap)
        task.state, task.agent, task.token = "claimed", agent, index
        task.lease_ms, task.lease_until, task.updated_at = lease_ms, now + lease_ms, now
        self._held.setdefault(agent, set()).add(task.id)
        self.timers.schedule(task.lease_until, LEASE, task.id)
        emit("task.claimed", {"task_id": task.id, "agent": agent, "token": index})
        return {
            "ok": True,
            "task_id": task.id,
            "payload": task.payload,
            "queue": task.queue,
            "fencing_token": index,
            "lease_until": task.lease_until,
            "attempt": task.attempts + 1,
        }

    def renew(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        task = self._held_task(cmd["task_id"], cmd["agent"], cmd["token"])
        if cmd["lease_seconds"] is not None:
            task.lease_ms = round(cmd["lease_seconds"] * 1000)
        task.lease_until, task.updated_at = now + task.lease_ms, now
        self.timers.schedule(task.lease_until, LEASE, task.id)
        emit("task.renewed", {"task_id": task.id, "lease_until": task.lease_until})
        return {"ok": True, "task_id": task.id, "lease_until": task.lease_until}

    def complete(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        task = self._held_task(cmd["task_id"], cmd["agent"], cmd["token"])
        result = cmd["result"]  # read before any change: a bad entry must change nothing
        self._release(task)
        task.result = result
        self._finish(task, "done", now)
        emit("task.completed", {"task_id": task.id, "agent": cmd["agent"]})
        for dependent in self._dependents_of(task):
            if dependent.state == "waiting" and not self._unmet(dependent):
                self._make_pending(dependent)
                dependent.updated_at = now
                emit("task.ready", {"task_id": dependent.id})  # claimable now
        return {"ok": True, "task_id": task.id, "state": "done"}

    def fail(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        task = self._held_task(cmd["task_id"], cmd["agent"], cmd["token"])
        self._end_attempt(task, cmd["reason"] or "failed by its agent", now, emit)
        return {"ok": True, "task_id": task.id, "state": task.state, "attempts": task.attempts}

    def cancel(self, cmd: Args, now: int, emit: Emit) -> dict[str, Any]:
        task = self._get(cmd["task_id"])
        if task.state in FINAL:
            raise LedgerError("conflict", f"task {task.id} is already {task.state}")
        reason = cmd["reason"]  # read before any change: a bad entry must change nothing
        self._release(task)
        task.error = reason or None
        self._finish(task, "cancelled", now)
        emit("task.cancelled", {"task_id": task.id, "reason": reason})
        self._fail_dependents(task, now, emit)
        return {"ok": True, "task_id": task.id, "state": "cancelled"}

    # -- time and agents -----------------------------------------------------------------------

    def expire_lease(self, task_id: str, now: int, emit: Emit) -> None:
        task = self.tasks.get(task_id)
        if task is not None and task.state == "claimed" and task.lease_until <= now:
            emit("task.lease_expired", {"task_id": task.id, "agent": task.agent})
            self._end_attempt(task, f"the lease of {task.agent} ran out", now, emit)

    def release_agent(self, agent: str, why: str, now: int, emit: Emit) -> None:
        """The agent is gone: each task it holds ends its attempt (back to pending, or failed)."""
        for task_id in sorted(self._held.get(agent, ())):
            self._end_attempt(self.tasks[task_id], why, now, emit)

    def forget(self, now: int) -> None:
        """Forget the finished tasks past the retention or beyond the count (first finished
        first). Finishing times only grow along `_finished`, so the oldest are at its head."""
        finished, tasks = self._finished, self.tasks
        while finished and (
            len(finished) > self.max_finished
            or tasks[finished[0]].updated_at + self.retention_ms <= now
        ):
            task = tasks.pop(finished.popleft())
            self._dependents.pop(task.id, None)
            for dep in task.depends_on:
                waiting_on = self._dependents.get(dep)
                if waiting_on is not None and task.id in waiting_on:
                    waiting_on.remove(task.id)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, task_id: str) -> dict[str, Any]:
        return self._get(task_id).view()

    def find(
        self, state: str | None, queue: str | None, agent: str | None, limit: int
    ) -> list[dict[str, Any]]:
        found = []
        for task in self.tasks.values():
            if state is not None and task.state != state:
                continue
            if (queue is not None and task.queue != queue) or (
                agent is not None and task.agent != agent
            ):
                continue
            found.append(task.view())
            if len(found) >= limit:
                break
        return found

    # -- snapshot ------------------------------------------------------------------------------

    def dump(self) -> list[Task]:
        return list(self.tasks.values())  # in submission order

    def dump_finished(self) -> list[str]:
        return list(self._finished)  # in the order they finished

    def load(self, image: list[dict[str, Any]], finished: list[str] | None) -> None:
        """Rebuild from `dump` and `dump_finished` (None from an image older than the latter:
        the finished tasks are then ordered by the time they finished, then submission)."""
        self.tasks.clear()
        self._queues.clear()
        self._compact_at.clear()
        self._dependents.clear()
        self._held.clear()
        self._finished.clear()
        for fields in image:
            task = Task(**fields)
            self.tasks[task.id] = task
            for dep in task.depends_on:
                if self._dependency(dep, task) is not None:  # the dependency it was given
                    self._dependents.setdefault(dep, []).append(task.id)
            if task.state == "pending":
                self._queue(task)
            elif task.state == "claimed":
                assert task.agent is not None
                self._held.setdefault(task.agent, set()).add(task.id)
                self.timers.schedule(task.lease_until, LEASE, task.id)
        if finished is None:
            ended = [task for task in self.tasks.values() if task.state in FINAL]
            finished = [task.id for task in sorted(ended, key=lambda task: task.updated_at)]
        self._finished.extend(finished)

    # -- inside --------------------------------------------------------------------------------

    def _get(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise LedgerError("not_found", f"no task {task_id}")
        return task

    def _held_task(self, task_id: str, agent: str, token: int) -> Task:
        task = self._get(task_id)
        if task.state != "claimed":
            raise LedgerError(
                "stale_token", f"task {task_id} is {task.state}, not held: the lease is over"
            )
        if task.token != token or task.agent != agent:
            raise LedgerError(
                "stale_token",
                f"task {task_id} is held by {task.agent} under token {task.token}, "
                f"not by {agent} under {token}",
            )
        return task

    def _unmet(self, task: Task) -> bool:
        """Some dependency is not done (one forgotten, or replaced by a later task of its id,
        was done: see the top)."""
        return any(self._dependency(dep, task) not in (None, "done") for dep in task.depends_on)

    def _dependency(self, dep: str, dependent: Task) -> str | None:
        """The state of `dependent`'s dependency `dep`, or None if it is gone."""
        task = self.tasks.get(dep)
        return (
            task.state if task is not None and task.submit_index < dependent.submit_index else None
        )

    def _is_pending(self, entry: tuple[int, int, str]) -> bool:
        """Is the queue entry's task still the one queued, and pending?"""
        task = self.tasks.get(entry[2])
        return task is not None and task.submit_index == entry[1] and task.state == "pending"

    def _dependents_of(self, task: Task) -> list[Task]:
        """Its dependents (a forgotten one has left the list: see `forget`)."""
        return [self.tasks[each] for each in self._dependents.get(task.id, ())]

    def _finish(self, task: Task, state: str, now: int) -> None:
        task.state, task.updated_at = state, now
        self._finished.append(task.id)

    def _queue(self, task: Task) -> None:
        entry = (-task.priority, task.submit_index, task.id)
        heap = self._queues.setdefault(task.queue, [])
        heapq.heappush(heap, entry)
        if len(heap) >= self._compact_at.get(task.queue, QUEUE_COMPACT_MIN):
            # Entries of tasks no longer pending leave only when they reach the top; under a
            # task nobody claims they would pile up. Dropped here, at sizes that double, the
            # cost is amortized. The heap's layout is no replica's state: only its smallest
            # pending entry is (it is rebuilt from the tasks when a snapshot is restored).
            heap[:] = [each for each in heap if self._is_pending(each)]
            heapq.heapify(heap)
            self._compact_at[task.queue] = max(QUEUE_COMPACT_MIN, 2 * len(heap))

    def _make_pending(self, task: Task) -> None:
        task.state = "pending"
        self._queue(task)

    def _release(self, task: Task) -> None:
        if task.agent is not None and task.state == "claimed":
            self._held.get(task.agent, set()).discard(task.id)
            self.timers.cancel(LEASE, task.id)

    def _end_attempt(self, task: Task, why: str, now: int, emit: Emit) -> None:
        self._release(task)
        task.attempts += 1
        task.error, task.updated_at = why, now
        task.agent, task.lease_until = None, 0
        if task.attempts >= task.max_attempts:
            self._finish(task, "failed", now)
            emit("task.failed", {"task_id": task.id, "reason": why})
            self._fail_dependents(task, now, emit)
        else:
            self._make_pending(task)
            emit("task.retry", {"task_id": task.id, "attempts": task.attempts, "reason": why})

    def _fail_dependents(self, root: Task, now: int, emit: Emit) -> None:
        stack = [root]
        while stack:
            cause = stack.pop()
            for dependent in self._dependents_of(cause):
                if dependent.state != "waiting":
                    continue
                dependent.error = f"dependency {cause.id} {cause.state}"
                self._finish(dependent, "failed", now)
                emit("task.failed", {"task_id": dependent.id, "reason": dependent.error})
                stack.append(dependent)
