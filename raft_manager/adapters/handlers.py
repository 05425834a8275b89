"""What a consumer does with an envelope that passed the gate: route it by type to a handler.

Theory of operation: a `Dispatcher` takes an envelope and returns an optional `Reply` (which the
consumer sends to the sender's reply stream, in the same Redis transaction as the
acknowledgement), raises `Unhandleable` when no retry could ever help (no handler for the type,
a payload that does not fit the type's model: the message goes to the dead-letter stream at
once), or raises anything else to fail this delivery (the message is redelivered after the
claim timeout, and dead-lettered after too many failures).

`Handlers` is the dispatcher peer adapters use: one handler per message type, each with the
pydantic model its payload must fit, so a handler receives a validated payload. A request type
registered with `invalid` (a function of the problem, returning the rejection reply) answers a
payload that does not fit with that reply instead of dead-lettering it, so its sender learns
at once what was wrong:

    handlers = Handlers()

    @handlers.on("quorum.change_request", ChangeRequest)
    async def change(envelope: Envelope, request: ChangeRequest) -> Reply | None:
        ...
        return Reply("quorum.change_result", ChangeResult(...))

Handlers run one at a time per consumer, and must be idempotent by envelope id for effects
outside Redis (see consumer.py for what the bus guarantees). `Replies` is the dispatcher of a
requester's reply stream: it hands each reply to whoever awaits its correlation id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
from pydantic import BaseModel, ValidationError

from .envelope import TYPE, Envelope

P = TypeVar("P", bound=BaseModel)
log = logging.getLogger("raft_manager.adapters")


@dataclass(frozen=True, slots=True)
class Reply:
    type: str
    payload: BaseModel | Mapping[str, Any]


class Unhandleable(Exception):
    """This envelope can never be handled here; `reason` names why (dead-letter reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class Dispatcher(Protocol):
    async def dispatch(self, envelope: Envelope) -> Reply | None: ...

    def label(self, envelope: Envelope) -> str:
        """What the bus counts `envelope` under (metrics.py: one of a bounded set)."""
        ...


Handler = Callable[[Envelope, P], Awaitable[Reply | None]]


Invalid = Callable[[str], Reply]


@dataclass(frozen=True, slots=True)
class _Route:
    model: type[BaseModel]
    handler: Callable[[Envelope, Any], Awaitable[Reply | None]]
    invalid: Invalid | None


class Handlers:
    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def add(
        self, type: str, model: type[P], handler: Handler[P], *, invalid: Invalid | None = None
    ) -> None:
        if not TYPE.match(type):
            raise ValueError(f"message type {type!r}: dotted lowercase words")
        if type in self._routes:
            raise ValueError(f"message type {type!r} has a handler already")
        self._routes[type] = _Route(model, handler, invalid)

    def on(
        self, type: str, model: type[P], *, invalid: Invalid | None = None
    ) -> Callable[[Handler[P]], Handler[P]]:
        """Register the decorated coroutine as the handler of `type`."""

        def register(handler: Handler[P]) -> Handler[P]:
            self.add(type, model, handler, invalid=invalid)
            return handler

        return register

    @property
    def types(self) -> list[str]:
        return sorted(self._routes)

    def label(self, envelope: Envelope) -> str:
        return envelope.type  # counted only once dispatched: a registered type

    async def dispatch(self, envelope: Envelope) -> Reply | None:
        route = self._routes.get(envelope.type)
        if route is None:
            raise Unhandleable("unknown-type", f"no handler for {envelope.type!r}")
        try:
            payload = route.model.model_validate(envelope.payload)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'payload'}: {item['msg']}"
                for item in error.errors(include_url=False)[:5]
            )
            if route.invalid is None:
                raise Unhandleable("bad-payload", problems) from None
            log.warning(
                "event=bus_bad_payload type=%s envelope=%s sender=%s problems=%r",
                envelope.type,
                envelope.id,
                envelope.sender,
                problems,
            )
            return route.invalid(problems)
        return await route.handler(envelope, payload)


class Replies:
    """Matches replies to the requests awaiting them (by correlation id). A reply nobody awaits
    (it came after its request timed out) is acknowledged and dropped."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[anyio.Event, list[Envelope]]] = {}

    async def wait(self, request_id: str, timeout: float) -> Envelope:
        """The reply to `request_id` (register before sending; TimeoutError after `timeout`)."""
        event, slot = self._waiting.setdefault(request_id, (anyio.Event(), []))
        try:
            with anyio.fail_after(timeout if math.isfinite(timeout) else None):
                await event.wait()
            return slot[0]
        finally:
            self._waiting.pop(request_id, None)

    def expect(self, request_id: str) -> None:
        self._waiting.setdefault(request_id, (anyio.Event(), []))

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def label(self, envelope: Envelope) -> str:
        return "reply"  # anyone may write to a reply stream, under any type

    async def dispatch(self, envelope: Envelope) -> Reply | None:
        waiting = self._waiting.get(envelope.correlation_id or "")
        if waiting is None or waiting[0].is_set():
            return None
        waiting[1].append(envelope)
        waiting[0].set()
        return None
