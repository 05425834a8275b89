"""A typed facade over RaftClient for the swarm ledger: one method per command and query.

Theory of operation: each method builds its command or query model from
raft_manager.ledger.commands, so arguments the ledger would refuse are refused here, before
anything goes on the wire, with ClientError("invalid_command") naming every problem. An optional
argument left at None takes the ledger's default. The model then travels through the wrapped
RaftClient (leader discovery, retries, and the session that makes a retried command apply once).
Commands return the ledger's result map (`{"ok": True, ...}`); queries return what they ask for
(a task, a list of tasks, a memory item or None, ...). A refusal by the ledger raises
ClientError with the ledger's code (`stale_token`, `not_found`, ...).

`watch` follows the change feed by polling the `feed` query: it asks again at once while pages
come back full and every `poll_interval` seconds once it has caught up. Events are read from a
cursor (an index, and how many events of that index were already yielded: one entry may emit
several), so a page that ends inside an entry's events loses none of them. When the node's feed
no longer reaches back to the cursor (`compacted`: events were dropped for room, or the node
restarted from a snapshot), it goes on from the first index the node still has; the events in
between are lost to the watcher, who should read the current state if it needs them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, JsonValue, ValidationError

from raft_manager.ledger import commands as c
from raft_manager.transport.client_protocol import MAX_REQUEST_BYTES

from .client import ClientError, RaftClient

POLL_SECONDS = 0.2  # how often a caught-up watcher (or a waiting claim) asks again
FEED_PAGE = 100
MAX_FEED_LIMIT = 10_000  # the feed query's largest limit
_FIRST_INDEX = re.compile(r"starts at index (\d+)")

Model = TypeVar("Model", bound=BaseModel)


def _build(model: type[Model], **fields: Any) -> Model:
    """The model from `fields` (None for an optional field: the model's default), or
    ClientError("invalid_command") listing every problem."""
    given = {
        name: value
        for name, value in fields.items()
        if value is not None or model.model_fields[name].is_required()
    }
    try:  # sizes are the node's to judge: its [ledger] max_payload_bytes may be larger
        return model.model_validate(given, context={"max_payload_bytes": MAX_REQUEST_BYTES})
    except ValidationError as error:
        raise ClientError("invalid_command", c.explain(error)) from None


class SwarmClient:
    """Use over an open RaftClient: `swarm = SwarmClient(client)`."""

    def __init__(self, client: RaftClient) -> None:
        self.client = client

    async def _command(self, model: type[BaseModel], **fields: Any) -> dict[str, Any]:
        return await self.client.command(_build(model, **fields))

    async def _query(self, model: type[BaseModel], answer: str, stale: bool, **fields: Any) -> Any:
        return (await self.client.query(_build(model, **fields), stale=stale))[answer]

    # -- tasks ---------------------------------------------------------------------------------

    async def submit_task(
        self,
        payload: JsonValue = None,
        *,
        task_id: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        depends_on: Sequence[str] | None = None,
        max_attempts: int | None = None,
    ) -> dict[str, Any]:
        """{"task_id", "state", "existing"}; the id is `task-<log index>` unless given."""
        return await self._command(
            c.TaskSubmit,
            id=task_id,
            queue=queue,
            payload=payload,
            priority=priority,
            depends_on=_listed(depends_on),
            max_attempts=max_attempts,
        )

    async def claim_task(
        self, agent: str, *, queues: Sequence[str] | None = None, lease_seconds: float | None = None
    ) -> dict[str, Any]:
        """{"task_id", "payload", "queue", "fencing_token", "lease_until", "attempt"}, or
        {"task_id": None} when nothing is claimable."""
        return await self._command(
            c.TaskClaim, agent=agent, queues=_listed(queues), lease_seconds=lease_seconds
        )

    async def renew_task(
        self, task_id: str, agent: str, token: int, *, lease_seconds: float | None = None
    ) -> dict[str, Any]:
        return await self._command(
            c.TaskRenew, task_id=task_id, agent=agent, token=token, lease_seconds=lease_seconds
        )

    async def complete_task(
        self, task_id: str, agent: str, token: int, result: JsonValue = None
    ) -> dict[str, Any]:
        return await self._command(
            c.TaskComplete, task_id=task_id, agent=agent, token=token, result=result
        )

    async def fail_task(
        self, task_id: str, agent: str, token: int, reason: str | None = None
    ) -> dict[str, Any]:
        return await self._command(
            c.TaskFail, task_id=task_id, agent=agent, token=token, reason=reason
        )

    async def cancel_task(self, task_id: str, reason: str | None = None) -> dict[str, Any]:
        return await self._command(c.TaskCancel, task_id=task_id, reason=reason)

    async def get_task(self, task_id: str, *, stale: bool = False) -> dict[str, Any]:
        task: dict[str, Any] = await self._query(c.TaskGet, "task", stale, task_id=task_id)
        return task

    async def list_tasks(
        self,
        *,
        state: str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        stale: bool = False,
    ) -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = await self._query(
            c.TaskList, "tasks", stale, state=state, queue=queue, agent=agent, limit=limit
        )
        return tasks

    # -- agents --------------------------------------------------------------------------------

    async def register_agent(
        self,
        agent_id: str,
        *,
        capabilities: Sequence[str] | None = None,
        heartbeat_timeout_seconds: float | None = None,
    ) -> dict[str, Any]:
        """{"agent_id", "deadline"}: the agent is declared dead if no heartbeat comes by then."""
        return await self._command(
            c.AgentRegister,
            agent_id=agent_id,
            capabilities=_listed(capabilities),
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
        )

    async def heartbeat(self, agent_id: str) -> dict[str, Any]:
        return await self._command(c.AgentHeartbeat, agent_id=agent_id)

    async def deregister_agent(self, agent_id: str) -> dict[str, Any]:
        return await self._command(c.AgentDeregister, agent_id=agent_id)

    async def list_agents(self, *, stale: bool = False) -> list[dict[str, Any]]:
        agents: list[dict[str, Any]] = await self._query(c.AgentList, "agents", stale)
        return agents

    # -- memory --------------------------------------------------------------------------------

    async def memory_put(
        self,
        key: str,
        value: JsonValue,
        *,
        namespace: str | None = None,
        ttl_seconds: float | None = None,
    ) -> dict[str, Any]:
        """{"version", "expires_at"}: the version is the write's log index."""
        return await self._command(
            c.MemoryPut, namespace=namespace, key=key, value=value, ttl_seconds=ttl_seconds
        )

    async def memory_get(
        self, key: str, *, namespace: str | None = None, stale: bool = False
    ) -> dict[str, Any] | None:
        """The item ({"namespace", "key", "value", "version", "updated_at", "expires_at"}), or
        None when the key is absent or expired."""
        item: dict[str, Any] | None = await self._query(
            c.MemoryGet, "item", stale, namespace=namespace, key=key
        )
        return item

    async def memory_get_at(
        self, address: str, key: str, *, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The item as the node at client address `address` holds it now: a stale read from
        that node's own state, whatever its role (no redirect); ClientError("unavailable")
        if it does not answer."""
        query = _build(c.MemoryGet, namespace=namespace, key=key)
        item: dict[str, Any] | None = (await self.client.local_query(address, query))["item"]
        return item

    async def memory_delete(self, key: str, *, namespace: str | None = None) -> dict[str, Any]:
        """{"existed"}."""
        return await self._command(c.MemoryDelete, namespace=namespace, key=key)

    async def memory_cas(
        self,
        key: str,
        value: JsonValue,
        *,
        expected: JsonValue = None,
        expected_version: int | None = None,
        namespace: str | None = None,
        ttl_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Write `value` if the key holds `expected` (an absent key never does), or, when
        `expected_version` is given, if its version is that (0: absent). ClientError
        `cas_failed` otherwise."""
        return await self._command(
            c.MemoryCas,
            namespace=namespace,
            key=key,
            value=value,
            expected_value=expected,
            expected_version=expected_version,
            compare="value" if expected_version is None else "version",
            ttl_seconds=ttl_seconds,
        )

    async def memory_list(
        self,
        *,
        prefix: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
        stale: bool = False,
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = await self._query(
            c.MemoryList, "items", stale, namespace=namespace, prefix=prefix, limit=limit
        )
        return items

    # -- decisions -----------------------------------------------------------------------------

    async def propose_decision(
        self,
        question: str,
        *,
        options: Sequence[str] | None = None,
        voters: Sequence[str] | None = None,
        deadline_seconds: float | None = None,
        decision_id: str | None = None,
    ) -> dict[str, Any]:
        """{"decision_id", "voters", "deadline"}; without `voters`, the agents alive now vote."""
        return await self._command(
            c.DecisionPropose,
            id=decision_id,
            question=question,
            options=_listed(options),
            voters=_listed(voters),
            deadline_seconds=deadline_seconds,
        )

    async def vote(
        self, decision_id: str, voter: str, option: str, *, reason: str | None = None
    ) -> dict[str, Any]:
        """{"decision_id", "state"}: the decision's state after this vote."""
        return await self._command(
            c.DecisionVote, decision_id=decision_id, voter=voter, option=option, reason=reason
        )

    async def get_decision(self, decision_id: str, *, stale: bool = False) -> dict[str, Any]:
        decision: dict[str, Any] = await self._query(
            c.DecisionGet, "decision", stale, decision_id=decision_id
        )
        return decision

    async def list_decisions(
        self, *, state: str | None = None, stale: bool = False
    ) -> list[dict[str, Any]]:
        decisions: list[dict[str, Any]] = await self._query(
            c.DecisionList, "decisions", stale, state=state
        )
        return decisions

    # -- CRDT operations and feed cursors ------------------------------------------------------

    async def order_crdt_operation(
        self,
        operation_id: str,
        operation: JsonValue,
        *,
        timestamp: JsonValue = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        """{"index", "duplicate"}: the operation's place in the log (its first place, with
        `duplicate`, when this id was ordered already); it goes on the feed as
        `crdt.operation`."""
        return await self._command(
            c.CrdtOperation,
            id=operation_id,
            operation=operation,
            timestamp=timestamp,
            origin=origin,
        )

    async def set_cursor(self, name: str, index: int, position: int = 0) -> dict[str, Any]:
        """{"cursor": {"index", "position"}, "moved"}: acknowledge the feed up to and including
        event `position` of entry `index` (a cursor never moves back)."""
        return await self._command(c.CursorSet, name=name, index=index, position=position)

    async def get_cursor(self, name: str, *, stale: bool = False) -> dict[str, int] | None:
        """The cursor ({"index", "position"}), or None when nothing was acknowledged."""
        cursor: dict[str, int] | None = await self._query(c.CursorGet, "cursor", stale, name=name)
        return cursor

    # -- the change feed -----------------------------------------------------------------------

    async def feed(
        self, from_index: int = 1, limit: int | None = None, *, stale: bool = False
    ) -> list[dict[str, Any]]:
        """Events ({"index", "term", "ts", "kind", "data"}) from `from_index` on, oldest first;
        ClientError `compacted` if the feed no longer reaches back that far."""
        events: list[dict[str, Any]] = await self._query(
            c.FeedRead, "events", stale, from_index=from_index, limit=limit
        )
        return events

    async def watch(
        self, from_index: int = 1, *, poll_interval: float = POLL_SECONDS, stale: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event from `from_index` on, in order, as it happens (never ends by itself)."""
        index, seen = from_index, 0  # the cursor: `seen` events of `index` were yielded
        while True:
            limit = min(seen + FEED_PAGE, MAX_FEED_LIMIT)
            try:
                events = await self.feed(index, limit, stale=stale)
            except ClientError as error:
                first = compacted_from(error)
                if first is None:
                    raise
                index, seen = first, 0
                continue
            for event in events[seen:]:
                if event["index"] == index:
                    seen += 1
                else:
                    index, seen = event["index"], 1
                yield event
            if len(events) < limit:
                await anyio.sleep(poll_interval)
            elif limit == MAX_FEED_LIMIT and seen >= MAX_FEED_LIMIT:
                index, seen = index + 1, 0  # one entry with more events than a page can hold


def compacted_from(error: ClientError) -> int | None:
    """The first index a node's feed still holds, if `error` is its `compacted` refusal."""
    found = _FIRST_INDEX.search(str(error)) if error.code == "compacted" else None
    return None if found is None else int(found.group(1))


def _listed(items: Sequence[str] | None) -> list[str] | None:
    return None if items is None else list(items)
