"""What the bus tests share: small timings, a recording handler, running consumers, waiting."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis
from pydantic import BaseModel

from raft_manager.adapters import Bus, Consumer, Envelope, Handlers, Reply
from raft_manager.server.config import AdaptersConfig

CLUSTER = "bus-test"


def settings(url: str, **changes: Any) -> AdaptersConfig:
    """Timings small enough for tests: redelivery after 300 ms, dead letter after 3 tries."""
    values: dict[str, Any] = {
        "redis_url": url,
        "claim_idle_ms": 300,
        "handler_timeout_s": 0.1,
        "dead_letter_after": 3,
        "publish_timeout_s": 10,
    }
    values.update(changes)
    return AdaptersConfig(**values)


class Item(BaseModel):
    n: int


class Recorder:
    """Handles `test.item` envelopes: records each n applied; `fail(n)` says how many of its
    first deliveries raise; replies with `test.done` when asked (`reply=True`)."""

    def __init__(self, reply: bool = False, fail: Callable[[int], int] = lambda n: 0) -> None:
        self.applied: list[int] = []
        self.attempts: Counter[int] = Counter()
        self.handlers = Handlers()
        self._reply = reply
        self._fail = fail
        self.handlers.add("test.item", Item, self.handle)

    async def handle(self, envelope: Envelope, item: Item) -> Reply | None:
        self.attempts[item.n] += 1
        if self.attempts[item.n] <= self._fail(item.n):
            raise RuntimeError(f"item {item.n} fails on attempt {self.attempts[item.n]}")
        self.applied.append(item.n)
        return Reply("test.done", {"n": item.n}) if self._reply else None


@asynccontextmanager
async def consuming(*consumers: Consumer) -> AsyncIterator[None]:
    async with anyio.create_task_group() as group:
        for consumer in consumers:
            await group.start(consumer.run)
        yield
        group.cancel_scope.cancel()


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def dead_letters(url: str, stream: str) -> list[dict[str, str]]:
    raw = redis.Redis.from_url(url, decode_responses=False)
    try:
        rows = raw.xrange(f"{stream}:dead")
    finally:
        raw.close()
    return [
        {
            key.decode(): value.decode(errors="replace")
            for key, value in fields.items()
            if key != b"envelope"
        }
        for _entry, fields in rows
    ]


def pending_count(url: str, stream: str, group: str) -> int:
    raw = redis.Redis.from_url(url)
    try:
        return int(raw.xpending(stream, group)["pending"])
    finally:
        raw.close()


def make_bus(url: str, identity: str = "tester", **kwargs: Any) -> Bus:
    config = kwargs.pop("config", None) or settings(url)
    return Bus(config, cluster_id=CLUSTER, identity=identity, **kwargs)
