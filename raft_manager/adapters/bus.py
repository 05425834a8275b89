"""The bus: one process's connection to the swarm's Redis streams, its identity and its keys.

Theory of operation: a `Bus` owns one redis-py client built with `from_url` (so `rediss://` gives
TLS and `redis://user:password@host` an ACL user), the verifier every consumer shares (one
replay memory per process), and the counters. It builds envelopes (`envelope`: a fresh id, this
identity as sender, signed with the key ring's newest valid key when there is a ring) and adds
them to streams (`publish`, with MAXLEN ~ trimming). Redis errors are retried with bounded,
jittered exponential backoff (transport.base.Backoff) until `publish_timeout_s` passes
(BusUnavailable); credentials or permissions that Redis refuses are not retried: BusAuthError,
naming the user and the server (never the password). redis-py's own retries are off, so the bus
alone decides when to retry. A retried XADD whose first attempt reached Redis before the
connection broke leaves two entries with one envelope id: a process that read the first refuses
the second as a replay, and a member that reads it after the first was handled finds the id in
the group's record (consumer.py); only two members taking the two entries at the same moment
may both run the handler, which is why handlers are idempotent by envelope id.

Consumers (consumer.py) read streams on behalf of the bus: `serve(role, handlers)` consumes the
role's request stream in the role's group; `reply_consumer()` consumes this identity's reply
stream and feeds `request`, which sends a request and awaits its reply. Every consumer reports
the envelopes it refuses to `reject`: counted by reason, logged, and handed to the `on_reject`
callback (the Security Manager adapter forwards them).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from raft_manager.server.config import AdaptersConfig
from raft_manager.transport.base import Backoff
from raft_manager.transport.keys import KeyRing

from .consumer import READ_COUNT, Consumer, Handled
from .envelope import ENVELOPE_FIELD, Envelope
from .errors import BusError, BusUnavailable, EnvelopeTooBig, auth_failure, redact
from .handlers import Dispatcher, Replies, Reply
from .metrics import BusMetrics
from .signing import Rejection, Verifier, sign
from .streams import check_name, reply_stream, request_stream

log = logging.getLogger("raft_manager.adapters")

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 10.0  # above the consumers' longest blocking read
T = TypeVar("T")


class Bus:
    def __init__(
        self,
        config: AdaptersConfig,
        *,
        cluster_id: str,
        identity: str,
        keyring: KeyRing | None = None,
        metrics: BusMetrics | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cluster_id = check_name("cluster id", cluster_id)
        self.identity = check_name("identity", identity)
        self.keyring = keyring
        self.metrics = metrics if metrics is not None else BusMetrics()
        self.on_reject = on_reject
        self.clock = clock
        required = config.require_signatures
        self.verifier = Verifier(
            cluster_id,
            keyring,
            require_signatures=keyring is not None if required is None else required,
            replay_window_s=config.replay_window_s,
            max_envelope_bytes=config.max_envelope_bytes,
            replay_cache=config.replay_cache,
        )
        self.replies = Replies()
        self.handled: dict[tuple[str, str], OrderedDict[str, Handled]] = {}  # (stream, group)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            config.redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )

    async def __aenter__(self) -> Bus:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Check that Redis answers and accepts our credentials (BusAuthError,
        BusUnavailable), once, without retrying."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as error:
            refused = auth_failure(error, self.config.redis_url)
            if refused is not None:
                raise refused from None
            raise BusUnavailable(f"Redis at {redact(self.config.redis_url)}: {error}") from None

    async def aclose(self) -> None:
        await self.redis.aclose()

    # Sending

    def envelope(
        self,
        type: str,
        *,
        recipient: str,
        payload: BaseModel | Mapping[str, Any],
        correlation_id: str | None = None,
    ) -> Envelope:
        """A new envelope from this identity, signed when the bus has a key ring (SigningError
        when no key is valid now)."""
        envelope = Envelope.new(
            type,
            sender=self.identity,
            recipient=recipient,
            cluster=self.cluster_id,
            payload=payload,
            correlation_id=correlation_id,
            now=self.clock(),
        )
        return envelope if self.keyring is None else sign(envelope, self.keyring)

    def reply_to(self, request: Envelope, reply: Reply) -> tuple[str, Envelope]:
        """The stream and envelope answering `request` with `reply`."""
        envelope = self.envelope(
            reply.type, recipient=request.sender, payload=reply.payload, correlation_id=request.id
        )
        return reply_stream(self.cluster_id, request.sender), envelope

    def encoded(self, envelope: Envelope) -> bytes:
        """The bytes `envelope` travels as; EnvelopeTooBig (a ValueError) when they exceed
        max_envelope_bytes."""
        raw = envelope.to_bytes()
        if len(raw) > self.config.max_envelope_bytes:
            raise EnvelopeTooBig(
                f"the envelope is {len(raw)} bytes; max_envelope_bytes is "
                f"{self.config.max_envelope_bytes}"
            )
        return raw

    async def publish(self, stream: str, envelope: Envelope) -> str:
        """Add `envelope` to `stream` (trimmed to about stream_maxlen); its entry id.
        EnvelopeTooBig, sending nothing, if it is too big."""
        return (await self.publish_encoded(stream, [self.encoded(envelope)]))[0]

    async def publish_encoded(self, stream: str, raws: Sequence[bytes]) -> list[str]:
        """Add envelopes already `encoded` to `stream` in order, in one round trip (a pipeline,
        not a transaction: retried whole, so a retry may repeat some: see above); their entry
        ids."""

        async def add() -> list[bytes | str]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for raw in raws:
                    pipe.xadd(
                        stream,
                        {ENVELOPE_FIELD: raw},
                        maxlen=self.config.stream_maxlen,
                        approximate=True,
                    )
                entries: list[bytes | str] = await pipe.execute()
            return entries

        entries = await self.retrying("publish", add)
        self.metrics.published.inc(len(raws))
        return [entry.decode() if isinstance(entry, bytes) else entry for entry in entries]

    async def send(self, role: str, type: str, payload: BaseModel | Mapping[str, Any]) -> Envelope:
        """Publish a new envelope to `role`'s request stream; the envelope sent."""
        envelope = self.envelope(type, recipient=role, payload=payload)
        await self.publish(request_stream(self.cluster_id, role), envelope)
        return envelope

    async def request(
        self, role: str, type: str, payload: BaseModel | Mapping[str, Any], timeout: float
    ) -> Envelope:
        """Send a request to `role` and await its reply (TimeoutError); needs a running
        `reply_consumer()`."""
        envelope = self.envelope(type, recipient=role, payload=payload)
        self.replies.expect(envelope.id)
        try:
            await self.publish(request_stream(self.cluster_id, role), envelope)
        except BaseException:
            self.replies.forget(envelope.id)
            raise
        return await self.replies.wait(envelope.id, timeout)

    # Consuming

    def consumer(
        self,
        stream: str,
        group: str,
        dispatcher: Dispatcher,
        *,
        recipient: str | None = None,
        name: str | None = None,
        read_count: int = READ_COUNT,
    ) -> Consumer:
        return Consumer(
            self, stream, group, dispatcher, recipient=recipient, name=name, read_count=read_count
        )

    def serve(
        self,
        role: str,
        dispatcher: Dispatcher,
        *,
        name: str | None = None,
        read_count: int = READ_COUNT,
    ) -> Consumer:
        """A consumer of `role`'s request stream, in the group named after the role."""
        return self.consumer(
            request_stream(self.cluster_id, role),
            role,
            dispatcher,
            recipient=role,
            name=name,
            read_count=read_count,
        )

    def reply_consumer(self) -> Consumer:
        """The consumer of this identity's reply stream, which `request` needs running."""
        return self.consumer(
            reply_stream(self.cluster_id, self.identity),
            self.identity,
            self.replies,
            recipient=self.identity,
        )

    def reject(self, rejection: Rejection) -> None:
        """Count, log and report an envelope the gate refused."""
        self.metrics.rejected.labels(rejection.reason).inc()
        log.warning(
            "event=bus_rejected reason=%s stream=%s entry=%s sender=%s detail=%r",
            rejection.reason,
            rejection.stream,
            rejection.entry_id,
            rejection.sender,
            rejection.detail,
        )
        if self.on_reject is not None:
            try:
                self.on_reject(rejection)
            except Exception:  # a reporting problem must not stop the consumer
                log.exception("event=bus_reject_callback_failed")

    async def retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, retried with backoff through Redis errors for up to publish_timeout_s."""
        deadline = anyio.current_time() + self.config.publish_timeout_s
        backoff = Backoff(f"bus:{self.identity}:{what}")
        while True:
            try:
                return await call()
            except (RedisError, OSError) as error:
                refused = auth_failure(error, self.config.redis_url)
                if refused is not None:
                    raise refused from None
                if isinstance(error, ResponseError):
                    raise BusError(f"Redis refused {what}: {error}") from None
                self.metrics.redis_errors.inc()
                if anyio.current_time() >= deadline:
                    raise BusUnavailable(
                        f"{what}: Redis at {redact(self.config.redis_url)} did not answer for "
                        f"{self.config.publish_timeout_s} s: {error}"
                    ) from None
                log.info("event=bus_redis_retry what=%s error=%r", what, str(error))
                await backoff.wait()
