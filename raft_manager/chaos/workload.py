"""The clients of a chaos run: memory operations and task cycles, every one recorded.

Theory of operation: each of N clients has its own RaftClient (its own session, leader
discovery and retries) and runs one operation at a time until told to stop, each chosen by the
client's own seeded RNG and recorded in the shared history (client/recording.py):

- memory, on KEYS keys: get; put; cas against the version or the value the client last read
  (so some succeed and some fail); delete. Every written value is unique (`c<client>-<n>`), so
  a read shows exactly which write it saw. With `stale`, a get is a stale read of the local
  state of a voter chosen at random (a follower, or a leader cut off from the others), which
  may return what was overwritten: the checker must then say so.
- tasks: submit (payload marker `c<client>-<n>`: a submit applied twice would show two tasks
  with one marker), claim under a LEASE_SECONDS lease as agent `agent<client>`, then complete
  the claimed task under its fencing token.

A client whose operation ends indeterminate (`info`: it may still take effect at any moment)
goes on as a new process (its number plus N), as Jepsen does: a process's operations never
overlap, and an info operation stays open forever. Every operation is bounded by the client's
timeout, and the loop by the stop event. `final_reads` reads every key and lists the tasks
once the cluster has healed, so a write acknowledged and then lost shows up in the history.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient, SwarmClient
from raft_manager.client.history import HistoryRecorder
from raft_manager.client.recording import RecordingMemory, RecordingTasks, outcome

KEYS = tuple(f"k{n}" for n in range(8))
LEASE_SECONDS = 2.0
OP_TIMEOUT = 2.0  # seconds one operation may take, retries included
ATTEMPT_TIMEOUT = 0.5  # seconds one node gets to answer before the next is tried
TASK_SHARE = 0.2  # of the operations
_ERRORS = (ClientError, TimeoutError, OSError)


class Workload:
    def __init__(
        self,
        addresses: Sequence[str],
        readers: Sequence[str],
        recorder: HistoryRecorder,
        clients: int,
        seed: int,
        stale: bool,
    ) -> None:
        """`addresses`: every node's client address; `readers`: those stale gets read from."""
        self.addresses = list(addresses)
        self.readers = list(readers)
        self.recorder = recorder
        self.clients = clients
        self.seed = seed
        self.stale = stale
        self.counts: Counter[str] = Counter()  # operations by outcome: ok, fail, info

    async def run(self, stop: anyio.Event) -> None:
        """Run the clients until `stop` is set (each finishes the operation it is in)."""
        async with anyio.create_task_group() as group:
            for index in range(self.clients):
                group.start_soon(self._client, index, stop)

    async def final_reads(self) -> None:
        """Read every key (linearizably) and list every task, as process `final`."""
        async with self._raft() as raft:
            swarm = SwarmClient(raft)
            memory = RecordingMemory(swarm, self.recorder, "final")
            for key in KEYS:
                await self._counted(memory.get(key))
            await self._counted(RecordingTasks(swarm, self.recorder, "final").list_tasks())

    def _raft(self) -> RaftClient:
        return RaftClient(self.addresses, timeout=OP_TIMEOUT, attempt_timeout=ATTEMPT_TIMEOUT)

    async def _counted(self, operation: Awaitable[Any]) -> str:
        """Run one recorded operation; its outcome (ok, fail or info), counted."""
        try:
            await operation
            kind = "ok"
        except _ERRORS as error:
            kind = outcome(error)[0]
        self.counts[kind] += 1
        return kind

    async def _client(self, index: int, stop: anyio.Event) -> None:
        async with self._raft() as raft:
            client = _Client(self, index, SwarmClient(raft))
            while not stop.is_set():
                if await self._counted(client.step()) == "info":
                    client.process += self.clients


class _Client:
    """One client's choices and what it remembers: the item it last read of each key, and
    the task it holds."""

    def __init__(self, workload: Workload, index: int, swarm: SwarmClient) -> None:
        self.workload = workload
        self.swarm = swarm
        self.rng = random.Random(workload.seed * 1000 + index)
        self.agent = f"agent{index}"
        self.process = index
        self.index = index
        self.steps = 0
        self.last: dict[str, dict[str, Any] | None] = {}
        self.held: dict[str, Any] | None = None

    async def step(self) -> None:
        """One recorded operation; raises what it raised."""
        self.steps += 1
        value = f"c{self.index}-{self.steps}"
        recorder = self.workload.recorder
        if self.rng.random() < TASK_SHARE:
            await self._task(RecordingTasks(self.swarm, recorder, self.process), value)
        else:
            await self._memory(RecordingMemory(self.swarm, recorder, self.process), value)

    async def _memory(self, memory: RecordingMemory, value: str) -> None:
        rng, key = self.rng, self.rng.choice(KEYS)
        choice = rng.random()
        item = self.last.get(key)
        if choice < 0.4:
            at = rng.choice(self.workload.readers) if self.workload.stale else None
            self.last[key] = await memory.get(key, at=at)
        elif choice < 0.7:
            await memory.put(key, value)
        elif choice < 0.8:
            await memory.cas(key, value, expected_version=item["version"] if item else 0)
        elif choice < 0.9:
            await memory.cas(key, value, expected=item["value"] if item else None)
        else:
            await memory.delete(key)

    async def _task(self, tasks: RecordingTasks, marker: str) -> None:
        """Complete the task held (given up whatever the answer: an unknown or refused
        completion leaves it to its lease), else submit one or claim one."""
        if self.held is not None:
            task, self.held = self.held, None
            await tasks.complete(task["task_id"], self.agent, task["fencing_token"])
        elif self.rng.random() < 0.5:
            await tasks.submit({"marker": marker})
        else:
            claimed = await tasks.claim(self.agent, lease_seconds=LEASE_SECONDS)
            if claimed["task_id"] is not None:
                self.held = claimed
