"""Run swarm operations and record each one in a history: RecordingMemory and RecordingTasks.

Theory of operation: each wrapper method reads the history's clock, runs the SwarmClient call,
reads the clock again and records one line (history.py), then returns the call's result or
re-raises its error, so a caller uses it exactly like the SwarmClient. What an error means for
the history is decided once, in `outcome`, and errs on the side of `info`: calling an operation
that took effect `fail` would make a checker see a violation that is not there, while calling
one that took no effect `info` only lets the checker consider both.

- the ledger refused the command by its rules (`cas_failed`, `stale_token`, `not_found`, ...)
  or it never reached the log (`invalid_command`, `bad_request`): `fail`. RaftClient retries a
  command under one session and request number, so a refusal is the answer to the one time
  the command was applied, even after retries.
- `stale_request` (the session had already moved past the request: the command may have been
  applied once before), an unexpected answer, a timeout, a broken connection, a cancellation:
  `info`.

A read that fails is recorded too (as `fail` or `info`), though it tells a checker nothing.
The default namespace is used, and no TTL: the checkers model neither. Every key a history
touches must be absent when it starts (fresh keys, or a fresh cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import JsonValue

from raft_manager.ledger import commands as c
from raft_manager.ledger.errors import CODES as LEDGER_CODES

from .client import ClientError
from .history import HistoryOp, HistoryRecorder
from .swarm import SwarmClient

Result = TypeVar("Result")

# Codes that prove the command took no effect: the ledger's refusals (the command was applied
# and refused, or was refused at the edge) and a request the node could not decode.
DEFINITE_CODES = frozenset(LEDGER_CODES) - {"stale_request"} | {"bad_request"}
DEFAULT_LEASE_MS = round(float(c.TaskClaim.model_fields["lease_seconds"].default) * 1000)


def outcome(error: BaseException) -> tuple[str, str]:
    """The history type (`fail` or `info`) and the error code to record for an operation that
    raised `error`."""
    if isinstance(error, ClientError):
        return ("fail" if error.code in DEFINITE_CODES else "info"), error.code
    if isinstance(error, TimeoutError):
        return "info", "timeout"
    return "info", type(error).__name__


class _Recording:
    def __init__(self, swarm: SwarmClient, recorder: HistoryRecorder, process: int | str) -> None:
        self.swarm = swarm
        self.recorder = recorder
        self.process = process

    async def _run(
        self,
        op: str,
        inputs: Mapping[str, Any],
        call: Callable[[], Awaitable[Result]],
        outputs: Callable[[Result], Mapping[str, Any]],
    ) -> Result:
        invoke = self.recorder.now()
        try:
            result = await call()
        except BaseException as error:
            kind, code = outcome(error)
            data = {**inputs, "error": code}
            self._record(op, kind, invoke, data)
            raise
        self._record(op, "ok", invoke, {**inputs, **outputs(result)})
        return result

    def _record(self, op: str, kind: str, invoke: int, data: Mapping[str, Any]) -> None:
        complete = self.recorder.now()
        self.recorder.record(HistoryOp(self.process, op, kind, invoke, complete, data))


def _item(item: dict[str, Any] | None) -> Mapping[str, Any]:
    if item is None:
        return {"found": False}
    return {"found": True, "value": item["value"], "version": item["version"]}


class RecordingMemory(_Recording):
    """SwarmClient's memory operations, each recorded: `RecordingMemory(swarm, recorder, 3)`."""

    async def get(self, key: str, *, at: str | None = None) -> dict[str, Any] | None:
        """The item, or None when the key is absent: a linearizable read, or with `at` (a
        node's client address) a stale read of that node's own state, which a history checker
        may rightly find not linearizable."""
        if at is None:
            return await self._run("get", {"key": key}, lambda: self.swarm.memory_get(key), _item)
        return await self._run(
            "get", {"key": key}, lambda: self.swarm.memory_get_at(at, key), _item
        )

    async def put(self, key: str, value: JsonValue) -> dict[str, Any]:
        return await self._run(
            "put",
            {"key": key, "value": value},
            lambda: self.swarm.memory_put(key, value),
            lambda result: {"version": result["version"]},
        )

    async def cas(
        self,
        key: str,
        value: JsonValue,
        *,
        expected: JsonValue = None,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Compare on `expected_version` when it is given, else on `expected` (None: on null)."""
        compared: dict[str, Any] = (
            {"expected": expected}
            if expected_version is None
            else {"expected_version": expected_version}
        )
        return await self._run(
            "cas",
            {"key": key, "value": value, **compared},
            lambda: self.swarm.memory_cas(
                key, value, expected=expected, expected_version=expected_version
            ),
            lambda result: {"version": result["version"]},
        )

    async def delete(self, key: str) -> dict[str, Any]:
        return await self._run(
            "delete",
            {"key": key},
            lambda: self.swarm.memory_delete(key),
            lambda result: {"existed": result["existed"]},
        )


def _claimed(result: dict[str, Any]) -> Mapping[str, Any]:
    if result["task_id"] is None:
        return {"task": None}
    return {
        "task": result["task_id"],
        "token": result["fencing_token"],
        "lease_until": result["lease_until"],
    }


def _views(tasks: list[dict[str, Any]]) -> Mapping[str, Any]:
    fields = ("id", "state", "agent", "token", "lease_until")
    return {"tasks": [{name: task[name] for name in fields} for task in tasks]}


class RecordingTasks(_Recording):
    """SwarmClient's task operations, each recorded, for the task-history checker."""

    async def submit(
        self, payload: JsonValue = None, *, task_id: str | None = None, queue: str | None = None
    ) -> dict[str, Any]:
        return await self._run(
            "task.submit",
            {} if task_id is None else {"task": task_id},
            lambda: self.swarm.submit_task(payload, task_id=task_id, queue=queue),
            lambda result: {"task": result["task_id"]},
        )

    async def claim(
        self, agent: str, *, queues: list[str] | None = None, lease_seconds: float | None = None
    ) -> dict[str, Any]:
        lease_ms = DEFAULT_LEASE_MS if lease_seconds is None else round(lease_seconds * 1000)
        return await self._run(
            "task.claim",
            {"agent": agent, "lease_ms": lease_ms},
            lambda: self.swarm.claim_task(agent, queues=queues, lease_seconds=lease_seconds),
            _claimed,
        )

    async def renew(
        self, task_id: str, agent: str, token: int, *, lease_seconds: float
    ) -> dict[str, Any]:
        """`lease_seconds` is required: with it the history can place the renewal on the
        ledger clock (its `lease_until` minus the lease)."""
        return await self._run(
            "task.renew",
            {
                "task": task_id,
                "agent": agent,
                "token": token,
                "lease_ms": round(lease_seconds * 1000),
            },
            lambda: self.swarm.renew_task(task_id, agent, token, lease_seconds=lease_seconds),
            lambda result: {"lease_until": result["lease_until"]},
        )

    async def complete(
        self, task_id: str, agent: str, token: int, result: JsonValue = None
    ) -> dict[str, Any]:
        return await self._run(
            "task.complete",
            {"task": task_id, "agent": agent, "token": token},
            lambda: self.swarm.complete_task(task_id, agent, token, result),
            lambda answer: {},
        )

    async def fail(
        self, task_id: str, agent: str, token: int, reason: str | None = None
    ) -> dict[str, Any]:
        return await self._run(
            "task.fail",
            {"task": task_id, "agent": agent, "token": token},
            lambda: self.swarm.fail_task(task_id, agent, token, reason),
            lambda answer: {},
        )

    async def list_tasks(self, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every task (up to `limit`), by a linearizable read; the history keeps each task's
        id, state, holder, token and lease end."""
        return await self._run(
            "task.list",
            {"limit": limit},
            lambda: self.swarm.list_tasks(limit=limit),
            _views,
        )
