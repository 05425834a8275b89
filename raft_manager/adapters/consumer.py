"""A consumer: one member of a consumer group, reading one stream, handling each envelope once.

Theory of operation: `run` creates the group if need be (XGROUP CREATE ... 0 MKSTREAM: a new
group starts at the stream's oldest entry, so nothing sent before the first reader started is
missed) and then loops in one task, handling one entry at a time:

1. Read new entries (XREADGROUP >, at most `read_count` at once, blocking at most until the
   next reclaim round). A member that serves slow requests reads one at a time, so the entries
   behind a slow one go to the group's other members instead of waiting in its batch.
2. Every claim_idle_ms / 2, reclaim: XPENDING (IDLE claim_idle_ms) lists the entries some
   member of the group took and has not acknowledged for that long, with their delivery counts;
   XCLAIM (with the same minimum idle time, so two reclaimers never both win) takes them over.
   An entry delivered more than dead_letter_after times goes to the dead-letter stream instead
   of to its handler. (XAUTOCLAIM would claim in one call, but its reply carries no delivery
   counts, and on Redis 6.2 it hides the ids of entries trimmed away meanwhile.) An entry that
   was trimmed before anyone acknowledged it is acknowledged and recorded as dead ("trimmed").
3. Each entry passes the gate (signing.py). A refused one is reported (bus.reject), then moved
   to the dead-letter stream with its reason: XADD to `<stream>:dead` and XACK in one MULTI.
4. Deduplication by envelope id. An envelope already handled is acknowledged without running
   its handler again: this process remembers the last `handled_cache` ids the group handled
   here (and the reply made; the memory is the bus's, shared by its consumers of the group),
   and every handled id is also recorded in Redis, in the group's sorted set
   `<stream>:done:<group>` (id -> when; entries older than dedupe_ttl_s are pruned), for the
   other members and for after a restart; one ZMSCORE checks a whole batch.
5. The handler runs (bounded by handler_timeout_s). If it raises or times out, the entry stays
   pending and is redelivered after claim_idle_ms (to whichever member reclaims it first). If it
   returns, the id is remembered here at once. After the batch read in step 1 (or 2), one
   MULTI/EXEC writes, for each envelope handled, the "handled" record and the reply (if any, to
   the sender's reply stream), and acknowledges every entry of the batch: record, reply and
   acknowledgement happen together or not at all. If Redis fails in between, the entries are
   redelivered and find their ids remembered here: the MULTI is retried with the same replies,
   the handlers do not run again. When handlers are slow, that MULTI also runs every
   claim_idle_ms / 4 during the batch, for the entries handled so far, and renews this member's
   claim on the entries not reached yet (XCLAIM JUSTID: their idle time restarts, no delivery
   is counted). As each handler ends within handler_timeout_s, which must be under
   claim_idle_ms / 2, no entry of a batch in progress ever looks idle enough to be reclaimed by
   another member.

Delivery is at least once; a handler runs more than once for one envelope only if the process
dies after the handler's effect and before its MULTI (or its memory of the id is evicted first),
and then on another member or after a restart. So a handler whose effect lives outside Redis
must make that effect idempotent by envelope id: e.g. submit it through Raft with the envelope
id as the command's id (the ledger refuses a second task with one id), or check the effect's
own record first. Within dedupe_ttl_s (at least twice the replay window) the Redis record also
stops a second stream entry carrying an already-handled envelope id, in any member.

A Redis error ends the current step; the loop backs off (bounded, jittered) and starts over
from step 1, recreating the group if Redis came back empty (NOGROUP). Unacknowledged entries
survive in Redis's pending list and are reclaimed after claim_idle_ms; what survives a Redis
restart is what Redis persisted (RDB or AOF: configure Redis for the durability you need). A
trimmed stream loses entries no one has read yet: size stream_maxlen for the longest outage.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from redis.exceptions import RedisError, ResponseError

from raft_manager.transport.base import Backoff

from .envelope import ENVELOPE_FIELD, Envelope
from .errors import auth_failure
from .handlers import Dispatcher, Unhandleable
from .signing import DETAIL_CHARS, Rejected, Rejection, SigningError
from .streams import dead_letter_stream, done_set

if TYPE_CHECKING:
    from .bus import Bus

log = logging.getLogger("raft_manager.adapters")

READ_COUNT = 64
BLOCK_MS = 1000
ERRORS_KEPT = 1000
_numbers = itertools.count(1)  # distinct default names for the consumers of one process


@dataclass(slots=True)
class Handled:
    reply: tuple[str, Envelope] | None  # (reply stream, reply envelope)
    finished: bool  # its MULTI (record, reply, ack) went through


@dataclass(frozen=True, slots=True)
class _Finish:
    """An entry to acknowledge, and (when `handled` is not yet finished) its envelope's record
    and reply to write with the acknowledgement."""

    entry: str
    envelope: Envelope
    handled: Handled | None  # None: handled by another member (only the ack remains)
    new: bool  # its handler ran in this batch


class Consumer:
    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        dispatcher: Dispatcher,
        *,
        recipient: str | None = None,
        name: str | None = None,
        read_count: int = READ_COUNT,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.group = group
        self.dispatcher = dispatcher
        self.recipient = recipient
        self.read_count = read_count
        self.name = name or (
            f"{bus.identity}-{socket.gethostname()}-{os.getpid()}-{next(_numbers)}"
        )
        config = bus.config
        self._claim_idle_ms = config.claim_idle_ms
        self._reclaim_every = config.claim_idle_ms / 2000
        self._flush_every = config.claim_idle_ms / 4000
        # What the group handled, shared by the bus's consumers of it (one memory per process).
        self._handled = bus.handled.setdefault((stream, group), OrderedDict())
        self._errors: OrderedDict[str, str] = OrderedDict()  # entry id -> its last failure

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Consume until cancelled. Reports started once the group exists; Redis errors are
        retried forever, a refusal of our credentials (BusAuthError) is raised."""
        backoff = Backoff(f"bus:{self.name}")
        started = False
        while True:
            try:
                await self._create_group()
                if not started:
                    task_status.started()
                    started = True
                await self._serve(backoff)
            except (RedisError, OSError) as error:
                refused = auth_failure(error, self.bus.config.redis_url)
                if refused is not None:
                    raise refused from None
                if isinstance(error, ResponseError) and str(error).startswith("NOGROUP"):
                    log.warning("event=bus_group_lost stream=%s group=%s", self.stream, self.group)
                else:
                    self.bus.metrics.redis_errors.inc()
                    log.info("event=bus_consumer_error stream=%s error=%r", self.stream, str(error))
                await backoff.wait()

    async def _create_group(self) -> None:
        try:
            await self.bus.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if not str(error).startswith("BUSYGROUP"):
                raise

    async def _serve(self, backoff: Backoff) -> None:
        next_reclaim = 0.0
        while True:
            if anyio.current_time() >= next_reclaim:
                await self._reclaim()
                next_reclaim = anyio.current_time() + self._reclaim_every
            wait_ms = int((next_reclaim - anyio.current_time()) * 1000)
            answer: Any = await self.bus.redis.xreadgroup(
                self.group,
                self.name,
                {self.stream: ">"},
                count=self.read_count,
                block=max(1, min(BLOCK_MS, wait_ms)),
            )
            backoff.reset()
            for _stream, entries in answer or ():
                await self._handle(entries, {})

    async def _reclaim(self) -> None:
        pending: list[dict[str, Any]] = await self.bus.redis.xpending_range(
            self.stream, self.group, "-", "+", self.read_count, idle=self._claim_idle_ms
        )
        if not pending:
            return
        deliveries = {item["message_id"].decode(): item["times_delivered"] + 1 for item in pending}
        claimed: Any = await self.bus.redis.xclaim(
            self.stream, self.group, self.name, self._claim_idle_ms, list(deliveries)
        )
        present = [(entry, fields) for entry, fields in claimed if entry is not None]
        got = {entry.decode() for entry, _ in present}
        absent = [entry for entry in deliveries if entry not in got]
        if absent:  # claimed by another member meanwhile, or trimmed away
            async with self.bus.redis.pipeline(transaction=False) as pipe:
                for entry in absent:
                    pipe.xrange(self.stream, entry, entry, count=1)
                found = await pipe.execute()
            for entry, rows in zip(absent, found, strict=True):
                if not rows:
                    await self._dead_letter(entry, b"", "trimmed", "trimmed before handled", 0)
        await self._handle(present, deliveries)

    async def _handle(
        self, entries: list[tuple[bytes, dict[bytes, bytes] | None]], deliveries: dict[str, int]
    ) -> None:
        flush_at = anyio.current_time() + self._flush_every
        passed: list[tuple[str, bytes, Envelope]] = []
        for entry_id, fields in entries:
            entry = entry_id.decode()
            raw = (fields or {}).get(ENVELOPE_FIELD)
            delivered = deliveries.get(entry, 1)
            if delivered > self.bus.config.dead_letter_after:
                detail = self._errors.pop(entry, "not acknowledged in time")
                await self._dead_letter(
                    entry, raw or b"", "too-many-deliveries", detail, delivered - 1
                )
                continue
            try:
                if not isinstance(raw, bytes):
                    raise Rejected("malformed", "the entry has no envelope field")
                envelope = self.bus.verifier.check(
                    raw, stream=self.stream, entry_id=entry, recipient=self.recipient
                )
            except Rejected as error:
                self.bus.reject(Rejection.of(error, self.stream, entry))
                await self._dead_letter(entry, raw or b"", error.reason, error.detail, delivered)
                continue
            passed.append((entry, raw, envelope))
        if not passed:
            return
        unknown = [envelope.id for _, _, envelope in passed if envelope.id not in self._handled]
        records: list[float | None] = (
            await self.bus.redis.zmscore(done_set(self.stream, self.group), unknown)
            if unknown
            else []
        )
        done_elsewhere = {
            envelope_id
            for envelope_id, record in zip(unknown, records, strict=True)
            if record is not None
        }
        finishing: list[_Finish] = []
        for at, (entry, raw, envelope) in enumerate(passed):
            if anyio.current_time() >= flush_at:  # slow handlers: write what is done so far
                await self._finish(finishing, [later for later, _, _ in passed[at:]])
                finishing = []
                flush_at = anyio.current_time() + self._flush_every
            finish = await self._handle_one(entry, raw, envelope, envelope.id in done_elsewhere)
            if finish is not None:
                finishing.append(finish)
        if finishing:
            await self._finish(finishing, [])

    async def _handle_one(
        self, entry: str, raw: bytes, envelope: Envelope, done_elsewhere: bool
    ) -> _Finish | None:
        """Run the handler unless the envelope was handled already; what remains to be
        written for this entry (None: nothing, it failed or went to the dead letters)."""
        handled = self._handled.get(envelope.id)
        if done_elsewhere or handled is not None:  # handled here, or by another member
            self.bus.metrics.duplicates.inc()
            return _Finish(entry, envelope, handled, new=False)
        try:
            with anyio.fail_after(self.bus.config.handler_timeout_s):
                reply = await self.dispatcher.dispatch(envelope)
        except Unhandleable as error:
            await self._dead_letter(entry, raw, error.reason, str(error), 1)
            return None
        except Exception as error:  # the handler's failure: leave it for redelivery
            self.bus.metrics.handler_failures.labels(self.dispatcher.label(envelope)).inc()
            self._errors[entry] = f"{type(error).__name__}: {error}"[:DETAIL_CHARS]
            while len(self._errors) > ERRORS_KEPT:
                self._errors.popitem(last=False)
            log.warning(
                "event=bus_handler_failed type=%s envelope=%s entry=%s error=%r",
                envelope.type,
                envelope.id,
                entry,
                self._errors[entry],
            )
            return None
        answer = None
        if reply is not None:
            try:
                answer = self.bus.reply_to(envelope, reply)
            except (SigningError, ValueError) as error:
                log.error("event=bus_reply_failed envelope=%s error=%r", envelope.id, str(error))
        handled = Handled(answer, finished=False)
        self._handled[envelope.id] = handled  # remembered before anything is written
        while len(self._handled) > self.bus.config.handled_cache:
            self._handled.popitem(last=False)
        return _Finish(entry, envelope, handled, new=True)

    async def _finish(self, finishing: list[_Finish], renew: list[str]) -> None:
        """One transaction for (part of) a batch: for each envelope handled here and not yet
        written, its "handled" record and its reply; the acknowledgement of every entry; and a
        renewed claim on the batch's entries not handled yet (`renew`)."""
        config = self.bus.config
        handled_now: dict[str, Handled] = {}  # each envelope id's record and reply, once
        for item in finishing:
            if item.handled is not None and not item.handled.finished:
                handled_now.setdefault(item.envelope.id, item.handled)
        now_ms = int(self.bus.clock() * 1000)
        ttl_ms = int(config.dedupe_ttl_s * 1000)
        done = done_set(self.stream, self.group)
        async with self.bus.redis.pipeline(transaction=True) as pipe:
            if handled_now:
                pipe.zadd(done, dict.fromkeys(handled_now, now_ms))
                pipe.zremrangebyscore(done, "-inf", now_ms - ttl_ms)
                pipe.pexpire(done, ttl_ms)
            for handled in handled_now.values():
                if handled.reply is not None:
                    stream, reply = handled.reply
                    pipe.xadd(
                        stream,
                        {ENVELOPE_FIELD: reply.to_bytes()},
                        maxlen=config.stream_maxlen,
                        approximate=True,
                    )
            if finishing:  # an XACK of no ids is an error: Redis would refuse the whole flush
                pipe.xack(self.stream, self.group, *(item.entry for item in finishing))
            if renew:  # resets their idle time; JUSTID: not counted as a delivery
                ids: list[Any] = list(renew)
                pipe.xclaim(self.stream, self.group, self.name, 0, ids, justid=True)
            await pipe.execute()
        for item in finishing:
            if item.handled is not None:
                item.handled.finished = True
            self._errors.pop(item.entry, None)
            if item.new:
                self.bus.metrics.handled.labels(self.dispatcher.label(item.envelope)).inc()

    async def _dead_letter(
        self, entry: str, raw: bytes, reason: str, detail: str, attempts: int
    ) -> None:
        """Move an entry to the dead-letter stream: XADD there and XACK here, atomically. (An
        oversized envelope is kept only up to max_envelope_bytes.)"""
        async with self.bus.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                dead_letter_stream(self.stream),
                {
                    ENVELOPE_FIELD: raw[: self.bus.config.max_envelope_bytes],
                    b"reason": reason,
                    b"detail": detail[:DETAIL_CHARS],
                    b"stream": self.stream,
                    b"entry_id": entry,
                    b"group": self.group,
                    b"attempts": attempts,
                },
                maxlen=self.bus.config.stream_maxlen,
                approximate=True,
            )
            pipe.xack(self.stream, self.group, entry)
            await pipe.execute()
        self._errors.pop(entry, None)
        self.bus.metrics.dead_lettered.labels(reason).inc()
        log.warning(
            "event=bus_dead_letter stream=%s entry=%s reason=%s attempts=%d",
            self.stream,
            entry,
            reason,
            attempts,
        )
