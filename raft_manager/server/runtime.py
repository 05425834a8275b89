"""The node runtime: drives the Raft core with real time, real storage and a real transport.

Theory of operation: one anyio task group runs three things.

- The ticker calls `raft.tick()` every `tick_seconds` and wakes the Ready loop.
- The transport delivers each inbound message to `raft.step()` and wakes the Ready loop.
- The Ready loop takes one Ready at a time and carries out the core's contract: messages a leader
  may send before persisting go out at once; the hard state, entries and snapshot are written
  with one fsync (in a worker thread, so the event loop keeps stepping and ticking meanwhile);
  then the other messages go out; the snapshot is restored, the committed entries applied in
  order and their proposers answered; reads whose index is applied are answered; `advance`.
  Everything proposed while a write is in flight lands in the next Ready: proposals batch
  themselves (group commit).

A proposal is answered when its entry is applied at its index with its term; if another entry
is applied there (leadership changed), it fails with ProposalLost and may be retried. Once the
applied index has moved `snapshot_every` entries past the last snapshot, the state machine is
snapshotted and the log compacted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from raft_manager.core import (
    EntryType,
    Message,
    ProposalDropped,
    Raft,
    RaftError,
    Role,
    sendable_before_persist,
)
from raft_manager.core.raft import Ready
from raft_manager.storage.base import Storage
from raft_manager.transport.base import Transport

from .metrics import NodeMetrics
from .state_machine import StateMachine

log = logging.getLogger("raft_manager.server")


class ProposalLost(RaftError):
    """The entry was overwritten by a new leader before it committed; it may be retried."""


@dataclass(slots=True)
class _Waiter:
    """One client waiting for a proposal or a read. Its deadline is enforced by the ticker
    (`NodeRuntime._expire`), which is much cheaper than a cancel scope per request."""

    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: Exception | None = None

    def resolve(self, result: Any = None, error: Exception | None = None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()

    async def wait(self) -> Any:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


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
    ) -> None:
        self.raft = raft
        self.storage = storage
        self.transport = transport
        self.state_machine = state_machine
        self.tick_seconds = tick_seconds
        self.snapshot_every = snapshot_every
        self.metrics = metrics
        self._wakeup = anyio.Event()
        self._proposals: dict[int, tuple[int, _Waiter]] = {}  # index -> (term, waiter)
        self._reads: dict[bytes, _Waiter] = {}
        self._safe_reads: list[tuple[int, _Waiter]] = []  # (read index, waiter)
        self._read_counter = 0
        self._snapshot_index = raft.log.offset
        if raft.snapshot is not None:  # a restart: the log resumes after the snapshot
            state_machine.restore(raft.snapshot.data)

    # -- running -------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as group:
            await group.start(self.transport.serve, group, self._deliver)
            group.start_soon(self._ticker)
            group.start_soon(self._ready_loop)
            task_status.started()

    def _wake(self) -> None:
        self._wakeup.set()

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
            self._expire(anyio.current_time())

    def _expire(self, now: float) -> None:
        """Fail the proposals and reads whose deadline passed."""
        late = TimeoutError("no answer before the deadline")
        for index, (_, waiter) in list(self._proposals.items()):
            if waiter.deadline <= now:
                del self._proposals[index]
                waiter.resolve(error=late)
        for context, waiter in list(self._reads.items()):
            if waiter.deadline <= now:
                del self._reads[context]
                waiter.resolve(error=late)
        for _, waiter in self._safe_reads:
            if waiter.deadline <= now:
                waiter.resolve(error=late)  # answered already; dropped when its index applies

    async def _ready_loop(self) -> None:
        raft = self.raft
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            while raft.has_ready():
                ready = raft.ready()
                await self._handle(ready)
                raft.advance(ready)
                self._maybe_compact()

    async def _handle(self, ready: Ready) -> None:
        send = self.transport.send
        later = []
        for msg in ready.messages:
            if sendable_before_persist(msg):
                send(msg)
            else:
                later.append(msg)
        if ready.must_sync:
            started = time.perf_counter()
            await anyio.to_thread.run_sync(
                self.storage.save, ready.hard_state, ready.entries, ready.snapshot
            )
            if self.metrics is not None:
                self.metrics.fsync_latency.observe(time.perf_counter() - started)
        for msg in later:
            send(msg)
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
        for entry in ready.committed_entries:
            result = self.state_machine.apply(entry) if entry.type is EntryType.NORMAL else None
            waiting = self._proposals.pop(entry.index, None)
            if waiting is not None:
                term, proposer = waiting
                if term == entry.term:
                    proposer.resolve(result)
                else:
                    proposer.resolve(error=ProposalLost(f"entry {entry.index} was overwritten"))
        for context in ready.failed_reads:
            waiter = self._reads.pop(context, None)
            if waiter is not None:
                waiter.resolve(error=ProposalDropped("leadership changed before the read"))
        for read_state in ready.read_states:
            waiter = self._reads.pop(read_state.context, None)
            if waiter is not None:
                self._safe_reads.append((read_state.index, waiter))
        applied = self.raft.log.applied
        if ready.committed_entries:
            applied = max(applied, ready.committed_entries[-1].index)
        self._answer_reads(applied)

    def _answer_reads(self, applied: int) -> None:
        still_waiting = []
        for index, waiter in self._safe_reads:
            if index <= applied:
                waiter.resolve(index)
            else:
                still_waiting.append((index, waiter))
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

    async def propose(self, data: bytes, timeout: float = 5.0) -> Any:
        """Replicate `data` and return what the state machine answered when it applied it.

        Raises NotLeader (with a leader hint), ProposalDropped, ProposalLost or TimeoutError.
        """
        started = time.perf_counter()
        index = self.raft.propose(data)
        waiter = _Waiter(anyio.current_time() + timeout)
        self._proposals[index] = (self.raft.term, waiter)
        self._wake()
        try:
            result = await waiter.wait()
        finally:
            self._proposals.pop(index, None)
        if self.metrics is not None:
            self.metrics.proposals.inc()
            self.metrics.commit_latency.observe(time.perf_counter() - started)
        return result

    async def read_barrier(self, timeout: float = 5.0) -> int:
        """Wait until reading the local state machine is linearizable; returns the read index."""
        self._read_counter += 1
        context = f"{self.raft.id}/{self._read_counter}".encode()
        waiter = _Waiter(anyio.current_time() + timeout)
        self._reads[context] = waiter
        try:
            self.raft.read_index(context)
        except RaftError:
            self._reads.pop(context, None)
            raise
        self._wake()
        try:
            index: int = await waiter.wait()
            return index
        finally:
            self._reads.pop(context, None)

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
        self._wake()
        with anyio.fail_after(timeout):
            while raft.role is Role.LEADER or raft.leader is None:
                await anyio.sleep(self.tick_seconds / 2)
        return {"old": old, "new": raft.leader, "term": raft.term}

    def status(self) -> dict[str, Any]:
        raft = self.raft
        return {
            "id": raft.id,
            "role": raft.role.value,
            "term": raft.term,
            "leader": raft.leader,
            "commit_index": raft.log.committed,
            "applied_index": raft.log.applied,
            "last_index": raft.log.last_index,
            # Equal on every node that applied the same entries in the same order.
            "state_digest": hashlib.sha256(self.state_machine.snapshot()).hexdigest()[:16],
        }

    @property
    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER
