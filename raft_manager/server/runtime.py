"""The node runtime: drives the Raft core with real time, real storage and a real transport.

Theory of operation: one anyio task group runs the transport and the ticker, and the event loop
runs the Ready pass.

- The ticker calls `raft.tick()` every `tick_seconds` and wakes the Ready pass.
- The transport delivers each inbound message to `raft.step()` and wakes the Ready pass.
- Waking schedules one Ready pass as a callback of the event loop (at most one is pending): it
  runs once the loop has delivered everything that arrived in its turn, so a burst of messages
  and proposals is one Ready. A callback, not a task waiting on an event: a task's wake-up and an
  event per wait cost 20-30 us on every hop of a write on this project's 2-core machine. What the
  pass raises stops the runtime (`run` raises it), as a failing task would.
- The Ready pass takes one Ready at a time and carries out the core's contract: messages a leader
  may send before persisting go out at once; the hard state, entries and snapshot are written
  with one fsync, on the event loop itself; then the other messages go out; the snapshot is
  restored, the committed entries applied in order and their proposers answered; reads whose
  index is applied are answered; `advance`. A Ready that needs no fsync (new commit index only)
  is applied and its proposers answered before the commit index is written and its messages go
  out, so the client hears first. Everything that arrives while a write is in flight waits in
  the socket buffers and lands in the next Ready: proposals batch themselves (group commit).

"Go out" means written to the sockets there and then: the connections the node's messages and
answers travel on share one PendingWrites (transport/framed.py), flushed at the end of each of
those steps, so a follower's answer leaves before it applies, and a leader's appends before its
fsync, without waiting for the loop's next turn.

Why the fsync blocks the loop: a write in a worker thread costs two thread hops per Ready, and
on this 2-core machine, with three nodes and a client busy, those hops measured 0.3-0.6 ms each
on the critical path of every commit (the thread waits for a core); done inline, throughput rose
from 20,900 to 26,200 proposals/s and the sequential p50 fell from 2.2 to 1.7 ms. The price,
as in etcd: a disk that stalls longer than an election timeout stalls the node's heartbeats too.

A proposal is answered when its entry is applied at its index with its term; if another entry
is applied there (leadership changed), it fails with ProposalLost and may be retried. Once the
applied index has moved `snapshot_every` entries past the last snapshot, the state machine is
snapshotted and the log compacted. At a CHECKPOINT entry the runtime notes the digest of the
state machine (digests.py), which is how replicas are compared at one index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from raft_manager.core import (
    ConfState,
    Entry,
    EntryType,
    Message,
    ProposalDropped,
    Raft,
    RaftError,
    Role,
    sendable_before_persist,
)
from raft_manager.core.membership import ConfChange
from raft_manager.core.raft import Ready
from raft_manager.storage.base import Storage
from raft_manager.transport.base import Transport
from raft_manager.transport.framed import PendingWrites

from .digests import Checkpoints, state_digest
from .log_view import log_page
from .metrics import NodeMetrics
from .state_machine import StateMachine

log = logging.getLogger("raft_manager.server")


class ProposalLost(RaftError):
    """The entry was overwritten by a new leader before it committed; it may be retried."""


Answer = Callable[[Any, Exception | None], None]
"""Called once with (result, None) or (None, error) when a proposal or read is decided."""


@dataclass(slots=True)
class _Pending:
    """One proposal or read waiting for its answer. Its deadline is enforced by the ticker
    (`NodeRuntime._expire`), which is much cheaper than a cancel scope per request."""

    deadline: float  # time.monotonic()
    answer: Answer
    term: int = 0  # a proposal's term: it succeeds only if applied with this term
    proposed_at: float = 0.0  # time.perf_counter() when proposed, for the latency histogram
    decided: bool = False

    def resolve(self, result: Any = None, error: Exception | None = None) -> None:
        if not self.decided:
            self.decided = True
            self.answer(result, error)


class _Outcome:
    """An answer an async caller can await."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: Any = None
        self.error: Exception | None = None

    def __call__(self, result: Any, error: Exception | None) -> None:
        self.result, self.error = result, error
        self.done.set()

    async def wait(self) -> Any:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


def _expire_from(waiting: dict[Any, _Pending], now: float, late: Exception) -> None:
    for key in [key for key, pending in waiting.items() if pending.deadline <= now]:
        waiting.pop(key).resolve(error=late)


class NodeRuntime:
    def __init__(
        self,
        raft: Raft,
        storage: Storage,
        transport: Transport,
        state_machine: StateMachine,
        *,
        tick_seconds: float = 0.05,
        snapshot_every: int = 10_000,
        metrics: NodeMetrics | None = None,
        on_conf_change: Callable[[ConfState, ConfState], None] | None = None,
        pending_writes: PendingWrites | None = None,
    ) -> None:
        self.raft = raft
        self.storage = storage
        self.transport = transport
        self.state_machine = state_machine
        self.tick_seconds = tick_seconds
        self.snapshot_every = snapshot_every
        self.metrics = metrics
        self.on_conf_change = on_conf_change
        self.pending_writes = pending_writes or PendingWrites()  # shared by the node's connections
        self._conf_seen: tuple[ConfState, ConfState] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # while running
        self._pass: asyncio.Handle | None = None  # the Ready pass scheduled, if any
        self._failed: asyncio.Future[None] | None = None
        self._proposals: dict[int, _Pending] = {}  # by log index
        self._checkpoint: tuple[int, int, _Outcome] | None = None  # (index, term, its answer)
        self._reads: dict[bytes, _Pending] = {}  # by read context
        self._safe_reads: list[tuple[int, _Pending]] = []  # (read index, reader)
        self._read_counter = 0
        self._digest = (-1, "")  # (applied index, digest of the state at it)
        self.checkpoints = Checkpoints()
        self._snapshot_index = raft.log.offset
        if raft.snapshot is not None:  # a restart: the log resumes after the snapshot
            state_machine.restore(raft.snapshot.data)

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._loop = asyncio.get_running_loop()
        self._failed = self._loop.create_future()
        try:
            async with anyio.create_task_group() as group:
                serve = partial(self.transport.serve, lost=self._peer_lost)
                await group.start(serve, group, self._deliver)
                self._notice_conf()
                group.start_soon(self._ticker)
                self._wake()
                task_status.started()
                await self._failed  # until cancelled, or a Ready pass failed
        finally:  # no pass after the runtime stopped (its storage may be closed next)
            self._loop = None
            if self._pass is not None:
                self._pass.cancel()

    def _wake(self) -> None:
        if self._pass is None and self._loop is not None:
            self._pass = self._loop.call_soon(self._ready_pass)

    def _peer_lost(self, peer: str) -> None:
        """The transport lost its connection to `peer`: a leader probes it from now on, a
        follower that lost its leader campaigns soon (Raft.report_unreachable)."""
        self.raft.report_unreachable(peer)
        self._wake()

    def _deliver(self, msg: Message) -> None:
        try:
            self.raft.step(msg)
        except RaftError as error:
            log.warning("event=message_refused from=%s error=%r", msg.frm, str(error))
            return
        self._wake()

    async def _ticker(self) -> None:
        while True:
            await anyio.sleep(self.tick_seconds)
            self.raft.tick()
            self._wake()
            self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        """Fail the proposals and reads whose deadline passed."""
        late = TimeoutError("no answer before the deadline")
        _expire_from(self._proposals, now, late)
        _expire_from(self._reads, now, late)
        for _, pending in self._safe_reads:
            if pending.deadline <= now:
                pending.resolve(error=late)  # dropped from the list when its index applies

    def _ready_pass(self) -> None:
        self._pass = None
        raft = self.raft
        try:
            while raft.has_ready():
                ready = raft.ready()
                self._handle(ready)
                raft.advance(ready)
                self._maybe_compact()
                self._notice_conf()
        except Exception as error:  # a failed fsync, say: the node must stop, not carry on
            assert self._failed is not None
            if not self._failed.done():
                self._failed.set_exception(error)
            self._loop = None  # no pass after a failed one

    def _notice_conf(self) -> None:
        """Tell the node when the configuration (or the committed one) changed: a membership
        change was appended, committed or rolled back, or came with a snapshot; so it can
        reach new members, and let go of removed ones once their removal is committed."""
        seen = (self.raft.conf, self.raft.committed_conf)
        if seen != self._conf_seen:
            if self._conf_seen is None or seen[0] != self._conf_seen[0]:
                log.info(
                    "event=configuration node=%s voters=%s learners=%s",
                    self.raft.id,
                    ",".join(seen[0].voters),
                    ",".join(seen[0].learners) or "-",
                )
            self._conf_seen = seen
            if self.on_conf_change is not None:
                self.on_conf_change(*seen)

    def _handle(self, ready: Ready) -> None:
        send, flush = self.transport.send, self.pending_writes.flush
        if not ready.must_sync:
            # Nothing to wait for: answer the proposers first, then tell the peers (a waiting
            # client is served before the followers start on the new commit index).
            self._take_effect(ready)
            flush()
            if ready.hard_state is not None:  # the commit index alone: a small write, no fsync
                self.storage.save(ready.hard_state, (), None, sync=False)
            for msg in ready.messages:
                send(msg)
            flush()
            return
        later = []
        for msg in ready.messages:
            if sendable_before_persist(msg):
                send(msg)
            else:
                later.append(msg)
        flush()  # what may be sent goes out before the fsync
        started = time.perf_counter()
        self.storage.save(ready.hard_state, ready.entries, ready.snapshot)
        fsync_seconds = time.perf_counter() - started
        for msg in later:
            send(msg)
        flush()
        if self.metrics is not None:  # after the sends: a follower's ack does not wait for it
            self.metrics.fsync_latency.observe(fsync_seconds)
        self._take_effect(ready)
        flush()

    def _take_effect(self, ready: Ready) -> None:
        """Everything in a Ready after its write: log a role change, restore the snapshot,
        apply the committed entries, answer proposers and readers."""
        if ready.soft_state is not None:
            log.info(
                "event=role_change node=%s role=%s leader=%s term=%d",
                self.raft.id,
                ready.soft_state.role.value,
                ready.soft_state.leader,
                self.raft.term,
            )
        if ready.snapshot is not None:
            self.state_machine.restore(ready.snapshot.data)
            self._snapshot_index = ready.snapshot.meta.index
        self._apply(ready.committed_entries)
        for context in ready.failed_reads:
            reader = self._reads.pop(context, None)
            if reader is not None:
                reader.resolve(error=ProposalDropped("leadership changed before the read"))
        for read_state in ready.read_states:
            reader = self._reads.pop(read_state.context, None)
            if reader is not None:
                self._safe_reads.append((read_state.index, reader))
        applied = self.raft.log.applied
        if ready.committed_entries:
            applied = max(applied, ready.committed_entries[-1].index)
        self._answer_reads(applied)

    def _apply(self, entries: list[Entry]) -> None:
        """Apply committed entries in order and answer their proposers. The commit latency
        histogram takes one sample per batch, its oldest proposal: a batch commits as a whole,
        and a sample per entry cost 4% of a busy leader's time."""
        oldest: _Pending | None = None
        for entry in entries:
            result: Any = None
            if entry.type is EntryType.NORMAL:
                result = self.state_machine.apply(entry)
            elif entry.type is EntryType.CHECKPOINT:
                result = self.checkpoints.record(entry.index, state_digest(self.state_machine))
            proposer = self._proposals.pop(entry.index, None)
            if proposer is None:
                continue
            if proposer.term == entry.term:
                proposer.resolve(result)
                oldest = oldest or proposer
            else:
                proposer.resolve(error=ProposalLost(f"entry {entry.index} was overwritten"))
        if oldest is not None and self.metrics is not None:
            self.metrics.commit_latency.observe(time.perf_counter() - oldest.proposed_at)

    def _answer_reads(self, applied: int) -> None:
        still_waiting = []
        for index, reader in self._safe_reads:
            if index <= applied:
                reader.resolve(index)
            else:
                still_waiting.append((index, reader))
        self._safe_reads = still_waiting

    def _maybe_compact(self) -> None:
        applied = self.raft.log.applied
        if applied - self._snapshot_index < self.snapshot_every or applied <= self.raft.log.offset:
            return
        snapshot = self.raft.compact(applied, self.state_machine.snapshot())
        self.storage.compact(snapshot)
        self._snapshot_index = applied
        log.info("event=snapshot node=%s index=%d", self.raft.id, applied)

    # -- clients -------------------------------------------------------------------------------

    async def change_membership(self, change: ConfChange, timeout: float = 5.0) -> None:
        """Make one membership change and wait until it is committed and applied. Raises
        NotLeader, ConfChangeRejected, ProposalLost or TimeoutError."""
        await self._await_applied(self.raft.propose_conf_change(change), timeout).wait()

    async def checkpoint(self, timeout: float = 5.0) -> dict[str, Any]:
        """Propose a checkpoint and wait until it is applied here; returns {"index", "term",
        "digest"}: the digest of this node's state right after it. Every node that applies it
        notes its own (see `digest_at`). A checkpoint asked for while one this leader proposed
        is on its way gets that one's answer: each costs every node a hash of its whole state,
        so a burst of requests makes one entry. Raises like `propose`."""
        shared = self._checkpoint
        if (
            shared is None
            or shared[2].done.is_set()
            or shared[1] != self.raft.term
            or not self.is_leader  # one that stepped down: proposing raises NotLeader
        ):
            index = self.raft.propose_checkpoint()
            shared = self._checkpoint = (index, self.raft.term, self._await_applied(index, timeout))
        index, term, outcome = shared
        return {"index": index, "term": term, "digest": await outcome.wait()}

    def _await_applied(self, index: int, timeout: float) -> _Outcome:
        """What applying the entry this node just proposed at `index` gives, once it does
        (its wait() raises ProposalLost or TimeoutError)."""
        outcome = _Outcome()
        deadline = time.monotonic() + timeout
        self._proposals[index] = _Pending(deadline, outcome, self.raft.term, time.perf_counter())
        self._wake()
        return outcome

    def submit(self, commands: Sequence[bytes], answers: Sequence[Answer], timeout: float) -> None:
        """Propose `commands` as one batch; each answer is called once, with what the state
        machine returned when it applied its command, or with ProposalLost or TimeoutError.

        Raises NotLeader (with a leader hint) or ProposalDropped at once, answering none.
        """
        if len(answers) != len(commands):
            raise ValueError("give one answer per command")
        raft = self.raft
        last = raft.propose_batch(commands)
        deadline, term, now = time.monotonic() + timeout, raft.term, time.perf_counter()
        for index, answer in enumerate(answers, last - len(commands) + 1):
            self._proposals[index] = _Pending(deadline, answer, term, now)
        if self.metrics is not None:
            self.metrics.proposals += len(commands)
        self._wake()

    async def propose(self, data: bytes, timeout: float = 5.0) -> Any:
        """Replicate `data` and return what the state machine answered when it applied it.

        Raises NotLeader (with a leader hint), ProposalDropped, ProposalLost or TimeoutError.
        """
        outcome = _Outcome()
        self.submit((data,), (outcome,), timeout)
        return await outcome.wait()

    def read(self, answer: Answer, timeout: float) -> None:
        """Ask for a linearizable read: `answer` gets the read index once reading the local
        state machine is linearizable, or an error. Raises NotLeader when no leader is known."""
        self._read_counter += 1
        context = f"{self.raft.id}/{self._read_counter}".encode()
        self.raft.read_index(context)
        self._reads[context] = _Pending(time.monotonic() + timeout, answer)
        self._wake()

    async def read_barrier(self, timeout: float = 5.0) -> int:
        """Wait until reading the local state machine is linearizable; returns the read index."""
        outcome = _Outcome()
        self.read(outcome, timeout)
        index: int = await outcome.wait()
        return index

    async def transfer(self, target: str | None, timeout: float = 5.0) -> dict[str, Any]:
        """Hand leadership to `target` (default: the most up-to-date follower) and wait for it.

        Returns {"old", "new", "term"}; raises NotLeader, TransferRejected or TimeoutError.
        """
        raft = self.raft
        if target is None and raft.role is Role.LEADER:
            followers = {peer: p.match for peer, p in raft.progress.items() if peer != raft.id}
            target = max(sorted(followers), key=followers.__getitem__, default=None)
        if target is None:
            raise ProposalDropped("no follower to hand leadership to")
        old = raft.id
        raft.transfer_leadership(target)
        if target == old:  # it leads already (transfer_leadership raised NotLeader otherwise)
            return {"old": old, "new": old, "term": raft.term}
        self._wake()
        with anyio.fail_after(timeout):
            while raft.role is Role.LEADER or raft.leader is None:
                await anyio.sleep(self.tick_seconds / 2)
        return {"old": old, "new": raft.leader, "term": raft.term}

    def digest_at(self, index: int) -> dict[str, Any]:
        """The digest this node noted at checkpoint `index`: None when it has not applied that
        far yet, or never applied the checkpoint (a snapshot took it past), or forgot it."""
        return {
            "index": index,
            "digest": self.checkpoints.get(index),
            "applied_index": self.raft.log.applied,
        }

    def log_page(self, start: int, count: int) -> dict[str, Any]:
        """This node's log bounds and its committed entries in [start, start + count) as
        [index, term, type, crc32c]: a local read (see log_view.py)."""
        raft = self.raft
        return {"id": raft.id, "term": raft.term, **log_page(raft.log, start, count)}

    def status(self, digest: bool = False) -> dict[str, Any]:
        """This node's view; with `digest`, the state digest too (see `_state_digest`)."""
        raft = self.raft
        view = {
            "id": raft.id,
            "role": raft.role.value,
            "term": raft.term,
            "leader": raft.leader,
            "commit_index": raft.log.committed,
            "applied_index": raft.log.applied,
            "last_index": raft.log.last_index,
        }
        if digest:
            view["state_digest"] = self._state_digest()
        return view

    def _state_digest(self) -> str:
        """Equal on every node that applied the same entries in the same order; computed again
        only when the applied index moved."""
        applied = self.raft.log.applied
        if self._digest[0] != applied:
            self._digest = (applied, state_digest(self.state_machine))
        return self._digest[1]

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER
