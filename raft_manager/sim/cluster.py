"""A simulated cluster: Raft cores, in-memory disks, the KV state machine and a faulty network.

Theory of operation: `SimCluster` plays the runtime for every node, exactly as the contract in
core/raft.py asks: after each input it drains the node's Readies, persisting (MemoryStorage) before
sending, then applying committed entries, serving reads that became safe, and calling advance. A
crash throws away the Raft object and the state machine and keeps only the storage; a restart
rebuilds both from it. With `disk_latency` > 0 a write takes a random number of ticks, as a real
fsync does: the node keeps stepping meanwhile, its leader messages (sendable before persist) leave
at once and everything else waits for the write, and a crash before the write completes loses it.
A node may also keep a real disk (any Storage, opened through the `disks` provider): every write
then goes to both, the disk is reopened on restart, and what it recovers must equal the in-memory
model of what was persisted (the Durability invariant). Every persist, commit,
apply, election and read is reported to the invariant Checker, which raises on the first
violation. A bounded ring of recent events is kept for the violation report.

Scenario tests drive this class by hand (tick, deliver, partition); the random schedules in
schedule.py drive it with seeded faults.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from raft_manager.core import (
    Message,
    NotLeader,
    ProposalDropped,
    Raft,
    RaftConfig,
    RaftError,
    ReadState,
    RestoredState,
    Role,
    sendable_before_persist,
)
from raft_manager.core.raft import Ready
from raft_manager.storage.base import Storage
from raft_manager.storage.memory import MemoryStorage

from .invariants import Checker, InvariantViolation
from .kv import KVStateMachine, encode_put
from .network import LinkFaults, Network


class DiskProvider(Protocol):
    """Opens real storage for simulated nodes (injected: the simulator itself touches no files)."""

    def open(self, seed: int, node_id: str) -> Storage: ...

    def discard(self, seed: int) -> None: ...


@dataclass(slots=True)
class ClientRead:
    key: str
    floor: int  # the cluster's commit index when the read was asked
    index: int = -1  # the read index, once known


@dataclass(slots=True)
class Write:
    """A Ready being written to disk."""

    ready: Ready
    durable_at: int  # the tick at which the write completes
    term: int  # the node's term and role when the Ready was taken
    was_leader: bool


@dataclass(slots=True)
class SimNode:
    id: str
    storage: MemoryStorage = field(default_factory=MemoryStorage)  # the model of what is durable
    disk: Storage | None = None  # a real storage written alongside, when the cluster has disks
    raft: Raft | None = None
    kv: KVStateMachine = field(default_factory=KVStateMachine)
    reads: dict[bytes, ClientRead] = field(default_factory=dict)
    write: Write | None = None
    incarnation: int = 0

    @property
    def up(self) -> bool:
        return self.raft is not None

    def core(self) -> Raft:
        if self.raft is None:
            raise RuntimeError(f"node {self.id} is down")
        return self.raft


class SimCluster:
    def __init__(
        self,
        size: int,
        seed: int,
        *,
        faults: LinkFaults | None = None,
        disk_latency: int = 0,
        disks: DiskProvider | None = None,
        trace_length: int = 40,
        **config: Any,
    ) -> None:
        self.ids = tuple(f"n{k}" for k in range(1, size + 1))
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.network = Network(random.Random(self.rng.getrandbits(64)), faults)
        self.disk_latency = disk_latency
        self.disks = disks
        self.base_config = RaftConfig(id=self.ids[0], voters=self.ids, **config)
        self.checker = Checker(self.ids)
        self.nodes = {node_id: SimNode(node_id) for node_id in self.ids}
        self.stats: Counter[str] = Counter()
        self.trace: deque[str] = deque(maxlen=trace_length)
        self._read_counter = 0
        for node_id in self.ids:
            self.restart(node_id)

    # -- node lifecycle --------------------------------------------------------------------------

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.up:
            return
        node.incarnation += 1
        restored = node.storage.load()
        if self.disks is not None:
            restored = self._reopen_disk(node, restored)
        node.kv = KVStateMachine()
        if restored.snapshot is not None:
            node.kv.restore(restored.snapshot.data)
        config = replace(self.base_config, id=node_id)
        node_rng = random.Random(f"{self.seed}/{node_id}/{node.incarnation}")
        node.raft = Raft(config, node_rng, restored)
        self.note(f"start {node_id} term={node.raft.term} last={node.raft.log.last_index}")
        self.process(node)

    def _reopen_disk(self, node: SimNode, expected: RestoredState) -> RestoredState:
        if node.disk is not None:
            node.disk.close()
        node.disk = self.disks.open(self.seed, node.id) if self.disks else None
        assert node.disk is not None
        recovered = node.disk.load()
        if recovered != expected:
            raise InvariantViolation(
                "Durability",
                f"{node.id} recovered {len(recovered.entries)} entries, hard state "
                f"{recovered.hard_state} from disk; {len(expected.entries)} entries, "
                f"{expected.hard_state} were persisted",
            )
        return recovered

    def close(self) -> None:
        """Release the nodes' disks (and let the provider delete them)."""
        for node in self.nodes.values():
            if node.disk is not None:
                node.disk.close()
                node.disk = None
        if self.disks is not None:
            self.disks.discard(self.seed)

    def crash(self, node_id: str) -> None:
        """Kill a node: its Raft object, state machine and any write in flight are lost."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.raft = None
        node.reads.clear()
        torn = " (write lost)" if node.write is not None else ""
        node.write = None
        self.stats["crashes"] += 1
        self.note(f"crash {node.id}{torn}")

    # -- driving ---------------------------------------------------------------------------------

    def live(self) -> list[SimNode]:
        return [node for node in self.nodes.values() if node.raft is not None]

    def tick(self, node_ids: Iterable[str] | None = None) -> None:
        """Advance virtual time one tick: tick the nodes, then deliver what is due."""
        self.now += 1
        for node in self.nodes.values():
            if node.write is not None and node.write.durable_at <= self.now:
                self._complete_write(node)
        for node_id in node_ids if node_ids is not None else self.ids:
            node = self.nodes[node_id]
            if node.raft is not None:
                node.raft.tick()
                self.process(node)
        self.deliver_due()

    def deliver_due(self) -> None:
        network = self.network
        while (msg := network.next_due(self.now)) is not None:
            self.deliver(msg)

    def deliver(self, msg: Message) -> None:
        node = self.nodes[msg.to]
        if node.raft is None:
            return
        self.stats["delivered"] += 1
        node.raft.step(msg)
        self.process(node)

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick()

    def process(self, node: SimNode) -> None:
        """Drain a node's Readies following the runtime contract."""
        raft = node.raft
        while raft is not None and node.write is None and raft.has_ready():
            ready = raft.ready()
            for msg in ready.messages:
                if sendable_before_persist(msg):
                    self.network.send(msg, self.now)
            latency = self.rng.randint(0, self.disk_latency) if self.disk_latency else 0
            node.write = Write(ready, self.now + latency, raft.term, raft.role is Role.LEADER)
            if latency:
                return
            self._complete_write(node)

    def _complete_write(self, node: SimNode) -> None:
        write, raft = node.write, node.raft
        assert write is not None and raft is not None
        node.write = None
        self._handle_ready(node, write)
        raft.advance(write.ready)
        self.process(node)

    def _handle_ready(self, node: SimNode, write: Write) -> None:
        checker, storage, ready = self.checker, node.storage, write.ready
        storage.save(ready.hard_state, ready.entries, ready.snapshot)
        if node.disk is not None:
            node.disk.save(ready.hard_state, ready.entries, ready.snapshot)
        checker.on_persist(node.id, ready.entries, ready.snapshot, write.was_leader)
        if ready.hard_state is not None:
            checker.on_commit(node.id, ready.hard_state.commit, storage.entries, storage.offset)
        if ready.soft_state is not None and ready.soft_state.role is Role.LEADER:
            checker.on_leader(node.id, write.term)
            self.stats["elections"] += 1
            self.note(f"{node.id} leads term {write.term}")
        for msg in ready.messages:
            if not sendable_before_persist(msg):
                self.network.send(msg, self.now)
        if ready.snapshot is not None:
            checker.on_restore(node.id, ready.snapshot)
            node.kv.restore(ready.snapshot.data)
            self.stats["snapshots_installed"] += 1
            self.note(f"{node.id} installs snapshot {ready.snapshot.meta.index}")
        for entry in ready.committed_entries:
            checker.on_apply(node.id, entry)
            node.kv.apply(entry)
        for context in ready.failed_reads:
            node.reads.pop(context, None)
        for read_state in ready.read_states:
            self._read_ready(node, read_state)
        if ready.committed_entries or ready.snapshot is not None:
            self._serve_reads(node)

    # -- clients ---------------------------------------------------------------------------------

    def leader(self) -> SimNode | None:
        """The live node that believes it leads in the highest term, if any."""
        best: SimNode | None = None
        for node in self.live():
            raft = node.core()
            if raft.role is Role.LEADER and (best is None or raft.term > best.core().term):
                best = node
        return best

    def propose(self, node_id: str, key: str, value: str) -> int | None:
        node = self.nodes[node_id]
        if node.raft is None:
            return None
        try:
            index = node.raft.propose(encode_put(key, value))
        except (NotLeader, ProposalDropped):
            return None
        self.stats["proposals"] += 1
        self.note(f"propose {key}={value} at {node_id} -> {index}")
        self.process(node)
        return index

    def read(self, node_id: str, key: str) -> bytes | None:
        node = self.nodes[node_id]
        if node.raft is None:
            return None
        self._read_counter += 1
        context = f"read-{self._read_counter}".encode()
        try:
            node.raft.read_index(context)
        except NotLeader:
            return None
        node.reads[context] = ClientRead(key, self.checker.commit_index)
        self.stats["reads"] += 1
        self.process(node)
        return context

    def _read_ready(self, node: SimNode, read_state: ReadState) -> None:
        pending = node.reads.get(read_state.context)
        if pending is not None:
            pending.index = read_state.index
            self._serve_reads(node)

    def _serve_reads(self, node: SimNode) -> None:
        applied = node.kv.applied
        served = [ctx for ctx, read in node.reads.items() if 0 <= read.index <= applied]
        for context in served:
            read = node.reads.pop(context)
            value = node.kv.data.get(read.key)
            self.checker.on_read(node.id, read.key, read.floor, read.index, applied, value)
            self.stats["reads_served"] += 1

    def compact(self, node_id: str) -> bool:
        """Snapshot a node's state machine at its applied index and compact its log."""
        node = self.nodes[node_id]
        raft = node.raft
        if raft is None or node.kv.applied <= raft.log.offset:
            return False
        snapshot = raft.compact(node.kv.applied, node.kv.snapshot())
        node.storage.compact(snapshot)
        if node.disk is not None:
            node.disk.compact(snapshot)
        self.checker.on_compact(node_id, snapshot)
        self.stats["compactions"] += 1
        self.note(f"{node_id} compacts to {snapshot.meta.index}")
        return True

    def transfer(self, target: str) -> bool:
        leader = self.leader()
        if leader is None:
            return False
        try:
            leader.core().transfer_leadership(target)
        except RaftError:
            return False
        self.note(f"transfer {leader.id} -> {target}")
        self.process(leader)
        return True

    # -- network ---------------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        groups_list = [sorted(group) for group in groups]
        self.network.partition(*groups_list)
        self.note(f"partition {groups_list}")

    def isolate(self, node_id: str) -> None:
        self.network.isolate(node_id, self.ids)
        self.note(f"isolate {node_id}")

    def cut(self, frm: str, to: str) -> None:
        self.network.cut(frm, to)
        self.note(f"cut {frm}->{to}")

    def heal(self) -> None:
        self.network.heal()
        self.note("heal")

    def note(self, event: str) -> None:
        self.trace.append(f"t={self.now} {event}")
