"""A simulated cluster: Raft cores, in-memory disks, the swarm ledger and a faulty network.

Theory of operation: `SimCluster` plays the runtime for every node, exactly as the contract in
core/raft.py asks: after each input it drains the node's Readies, persisting (MemoryStorage) before
sending, then applying committed entries, serving reads that became safe, and calling advance. A
crash throws away the Raft object and the ledger and keeps only the storage; a restart rebuilds
both from it. With `disk_latency` > 0 a write takes a random number of ticks, as a real
fsync does: the node keeps stepping meanwhile, its leader messages (sendable before persist) leave
at once and everything else waits for the write, and a crash before the write completes loses it.
A node may also keep a real disk (any Storage, opened through the `disks` provider): every write
then goes to both, the disk is reopened on restart, and what it recovers must equal the in-memory
model of what was persisted (the Durability invariant).

Every node runs the swarm ledger (raft_manager/ledger) as its state machine, as a real node does:
a proposal is a validated ledger command in the log envelope, stamped by the proposing node's
virtual clock (`TICK_MS` per tick, plus that node's fixed skew); committed NORMAL entries go to
`Ledger.apply`, linearizable reads are `memory.get` queries. A command proposed with a session is
answered (appended to `answers`) when the node that proposed it applies it in the term it was
proposed in; a crash, a lost term or a snapshot over it leaves it unanswered, and the client
retries. With `clock_every` > 0 a leader that proposed nothing for that many ticks proposes a
`clock` entry, as the node's gateway does, so leases expire on an idle ledger too.

Every persist, commit, apply (with the ledger's result), election and read is reported to the
invariant Checker, which raises on the first violation; after a node restores a snapshot, and
when `audit` asks, its ledger's tasks are checked against the acknowledged submits. A bounded
ring of recent events is kept for the violation report.

Membership: `spares` nodes beyond the `size` initial voters are built with the initial voters as
their configuration, so they start as non-members (they never campaign) and learn the
configuration from the log or a snapshot once added. `conf_change` proposes a change through the
current leader. Commit Durability needs the majority of the committing leader's configuration: so
whenever a node (that leads, or led in its current term and stepped down on its own removal) has
advanced its commit index, the cluster records (term, commit, that node's voters), and a later
report of commit c in term t by any node is checked against the voters of the first advance to c
or beyond in term t (a follower's commit of term t came from the leader of term t).

Scenario tests drive this class by hand (tick, deliver, partition); the random schedules in
schedule.py drive it with seeded faults and the clients of workload.py.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from raft_manager.core import (
    Entry,
    EntryType,
    Message,
    NotLeader,
    ProposalDropped,
    Raft,
    RaftConfig,
    RaftError,
    ReadState,
    RestoredState,
    Role,
    Snapshot,
    sendable_before_persist,
)
from raft_manager.core.errors import ConfChangeRejected
from raft_manager.core.membership import ConfChange, ConfChangeKind
from raft_manager.core.raft import Ready
from raft_manager.ledger import Command, Ledger, encode_entry, parse_command, parse_query
from raft_manager.ledger.commands import Clock, LedgerConfig, MemoryPut
from raft_manager.storage.base import Storage
from raft_manager.storage.memory import MemoryStorage

from .invariants import Checker, InvariantViolation
from .network import LinkFaults, Network

TICK_MS = 100  # virtual milliseconds per tick, on the proposing node's clock
CLOCK = Clock()
LEDGER_CONFIG = LedgerConfig()  # shared: every replica must have the same


# Why a leader refused a membership change, by a phrase of ConfChangeRejected's message.
_REFUSALS = (
    ("another membership change", "in_flight"),
    ("no entry of this leader's term", "term_not_committed"),
    ("has not caught up", "learner_behind"),
    ("being transferred", "transferring"),
)


def _ledger() -> Ledger:
    return Ledger(LEDGER_CONFIG)


class DiskProvider(Protocol):
    """Opens real storage for simulated nodes (injected: the simulator itself touches no files)."""

    def open(self, seed: int, node_id: str) -> Storage: ...

    def discard(self, seed: int) -> None: ...


@dataclass(slots=True)
class ClientRead:
    key: str
    floor: int  # the cluster's commit index when the read was asked
    index: int = -1  # the read index, once known


@dataclass(frozen=True, slots=True)
class Answer:
    """A session's command, applied by the node it was proposed to, in the term it was."""

    session: str
    seq: int
    index: int
    result: dict[str, Any]


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
    ledger: Ledger = field(default_factory=_ledger)
    applied: int = 0  # the last entry applied (NORMAL entries go to the ledger, others do not)
    reads: dict[bytes, ClientRead] = field(default_factory=dict)
    # This node's session proposals not answered yet: index -> (term, session, seq).
    proposed: dict[int, tuple[int, str, int]] = field(default_factory=dict)
    write: Write | None = None
    incarnation: int = 0
    clock_skew_ms: int = 0
    last_proposal: int = 0  # the tick of the last entry this node stamped
    commit_seen: int = 0  # the highest commit index seen in this incarnation's memory
    led_term: int = -1  # the last term this incarnation led

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
        clock_every: int = 0,
        clock_skew_ms: int = 0,
        trace_length: int = 40,
        spares: int = 0,
        **config: Any,
    ) -> None:
        self.initial_voters = tuple(f"n{k}" for k in range(1, size + 1))
        self.ids = tuple(f"n{k}" for k in range(1, size + spares + 1))  # every node, spares too
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.network = Network(random.Random(self.rng.getrandbits(64)), faults)
        self.disk_latency = disk_latency
        self.disks = disks
        self.clock_every = clock_every
        self.base_config = RaftConfig(id=self.ids[0], voters=self.initial_voters, **config)
        self.checker = Checker(self.initial_voters, self.ids)
        # term -> (commit indexes a leader of that term advanced to, its voters at each)
        self._advances: dict[int, tuple[list[int], list[tuple[str, ...]]]] = {}
        self.nodes = {node_id: SimNode(node_id) for node_id in self.ids}
        if clock_skew_ms:
            for node in self.nodes.values():
                node.clock_skew_ms = self.rng.randint(0, clock_skew_ms)
        self.stats: Counter[str] = Counter()
        self.trace: deque[str] = deque(maxlen=trace_length)
        self.answers: list[Answer] = []  # drained by the clients
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
        node.ledger, node.applied = _ledger(), 0
        node.commit_seen, node.led_term = restored.hard_state.commit, -1
        config = replace(self.base_config, id=node_id)
        node_rng = random.Random(f"{self.seed}/{node_id}/{node.incarnation}")
        node.raft = Raft(config, node_rng, restored)
        self.note(f"start {node_id} term={node.raft.term} last={node.raft.log.last_index}")
        if restored.snapshot is not None:
            self._restore(node, restored.snapshot)
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
        """Kill a node: its Raft object, ledger, unanswered proposals and any write in flight are
        lost."""
        node = self.nodes[node_id]
        if not node.up:
            return
        node.raft = None
        node.reads.clear()
        node.proposed.clear()
        torn = " (write lost)" if node.write is not None else ""
        node.write = None
        self.stats["crashes"] += 1
        self.note(f"crash {node.id}{torn}")
        for peer in self.live():  # a dead process's connections close: its peers see it go
            if (node_id, peer.id) not in self.network.blocked:
                self.hint_lost(peer.id, node_id)

    def hint_lost(self, node_id: str, peer: str) -> None:
        """Tell `node_id`'s Raft that its transport lost `peer` (report_unreachable): after a
        crash, or wrongly (a connection that closed while the peer lives on)."""
        node = self.nodes[node_id]
        if node.raft is not None:
            node.raft.report_unreachable(peer)
            self.stats["lost_hints"] += 1
            self.process(node)

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
            raft = node.raft
            if raft is not None:
                raft.tick()
                self.process(node)
                if (
                    self.clock_every
                    and raft.role is Role.LEADER
                    and self.now - node.last_proposal >= self.clock_every
                    and self.propose(node_id, CLOCK) is not None
                ):
                    self.stats["clock_entries"] += 1  # an idle leader moves the ledger's clock
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
        if raft is not None:
            self._note_advance(node, raft)
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

    def _note_advance(self, node: SimNode, raft: Raft) -> None:
        """Record the voters of a leader that advanced its commit index (see the docstring)."""
        if raft.role is Role.LEADER:
            node.led_term = raft.term
        committed = raft.log.committed
        if committed <= node.commit_seen:
            return
        node.commit_seen = committed
        if node.led_term == raft.term:  # leads, or stepped down in this term (removed)
            commits, voters = self._advances.setdefault(raft.term, ([], []))
            if not commits or committed > commits[-1]:
                commits.append(committed)
                voters.append(raft.conf.voters)

    def commit_voters(self, term: int, commit: int) -> tuple[str, ...] | None:
        """The voters of the leader of `term` (or, if it never got there, of the latest earlier
        term: a node's commit may have advanced in memory before a slow write let its Ready out
        in a later term) when it first advanced its commit to `commit` or beyond."""
        for candidate in sorted((t for t in self._advances if t <= term), reverse=True):
            commits, voters = self._advances[candidate]
            position = bisect.bisect_left(commits, commit)
            if position < len(voters):
                return voters[position]
        return None

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
        hard = ready.hard_state
        if hard is not None:
            voters = None
            if hard.commit > checker.commit_index:
                voters = self.commit_voters(hard.term, hard.commit)
                if voters is None:
                    raise AssertionError(f"{node.id} committed {hard.commit} no leader advanced")
            checker.on_commit(node.id, hard.commit, voters)
        if ready.soft_state is not None and ready.soft_state.role is Role.LEADER:
            checker.on_leader(node.id, write.term)
            self.stats["elections"] += 1
            self.note(f"{node.id} leads term {write.term}")
        for msg in ready.messages:
            if not sendable_before_persist(msg):
                self.network.send(msg, self.now)
        if ready.snapshot is not None:
            checker.on_restore(node.id, ready.snapshot)
            self.stats["snapshots_installed"] += 1
            self.note(f"{node.id} installs snapshot {ready.snapshot.meta.index}")
            self._restore(node, ready.snapshot)
        for entry in ready.committed_entries:
            checker.on_apply(node.id, entry)
            self._apply(node, entry)
        for context in ready.failed_reads:
            node.reads.pop(context, None)
        for read_state in ready.read_states:
            self._read_ready(node, read_state)
        if ready.committed_entries or ready.snapshot is not None:
            self._serve_reads(node)

    # -- the state machine -----------------------------------------------------------------------

    def _apply(self, node: SimNode, entry: Entry) -> None:
        if entry.index != node.applied + 1:
            raise AssertionError(f"{node.id} applied {entry.index} after {node.applied}")
        node.applied = entry.index
        if entry.type is not EntryType.NORMAL:
            return
        result = node.ledger.apply(entry)
        self.checker.on_result(node.id, entry, result)
        proposed = node.proposed.pop(entry.index, None)
        if proposed is not None and proposed[0] == entry.term:
            self.answers.append(Answer(proposed[1], proposed[2], entry.index, result))

    def _restore(self, node: SimNode, snapshot: Snapshot) -> None:
        node.ledger.restore(snapshot.data)
        node.applied = snapshot.meta.index
        self.audit(node)

    def audit(self, node: SimNode) -> None:
        """Check the node's tasks against every acknowledged submit it has applied, and its task
        table's coherence."""
        tasks = {task_id: task.payload for task_id, task in node.ledger.tasks.tasks.items()}
        self.checker.on_tasks(node.id, node.applied, tasks)
        self.checker.on_task_table(node.id, [t.view() for t in node.ledger.tasks.tasks.values()])

    # -- clients ---------------------------------------------------------------------------------

    def leader(self) -> SimNode | None:
        """The live node that believes it leads in the highest term, if any."""
        best: SimNode | None = None
        for node in self.live():
            raft = node.core()
            if raft.role is Role.LEADER and (best is None or raft.term > best.core().term):
                best = node
        return best

    def propose(
        self, node_id: str, command: Command, session: str = "", seq: int = 0, ack: int = 0
    ) -> int | None:
        """Stamp `command` with the node's clock and propose it there; its log index, or None
        if the node is down or cannot take proposals. With a session, the command is answered
        in `answers` once this node applies it in the term it was proposed in."""
        raft = self._leading(node_id)
        if raft is None:
            return None  # what Raft.propose would say (NotLeader), without stamping an entry
        node = self.nodes[node_id]
        node.last_proposal = self.now
        data = encode_entry(command, self.now * TICK_MS + node.clock_skew_ms, session, seq, ack)
        try:
            index = raft.propose(data)
        except ProposalDropped:
            return None
        if session:
            node.proposed[index] = (raft.term, session, seq)
        self.stats["proposals"] += 1
        if isinstance(command, MemoryPut):
            what = f"put {command.key}={command.value}"
        else:
            what = f"{command.op} {session}#{seq}" if session else command.op
        self.note(f"propose {what} at {node_id} -> {index}")
        self.process(node)
        return index

    def put(self, node_id: str, key: str, value: str) -> int | None:
        """Propose `memory.put` of key=value (no session: written once, never answered)."""
        if self._leading(node_id) is None:
            return None  # not worth validating a command no one will take
        command = parse_command({"op": "memory.put", "key": key, "value": value})
        return self.propose(node_id, command)

    def _leading(self, node_id: str) -> Raft | None:
        """The node's core if it is up and believes it leads (only then can it propose)."""
        raft = self.nodes[node_id].raft
        return raft if raft is not None and raft.role is Role.LEADER else None

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
        applied = node.applied
        served = [ctx for ctx, read in node.reads.items() if 0 <= read.index <= applied]
        for context in served:
            read = node.reads.pop(context)
            item = node.ledger.query(parse_query({"query": "memory.get", "key": read.key}))["item"]
            value = item["value"] if item is not None else None
            self.checker.on_read(node.id, read.key, read.floor, read.index, applied, value)
            self.stats["reads_served"] += 1

    def compact(self, node_id: str) -> bool:
        """Snapshot a node's state machine at its applied index and compact its log."""
        node = self.nodes[node_id]
        raft = node.raft
        if raft is None or node.applied <= raft.log.offset:
            return False
        snapshot = raft.compact(node.applied, node.ledger.snapshot())
        node.storage.compact(snapshot)
        if node.disk is not None:
            node.disk.compact(snapshot)
        self.checker.on_compact(node_id, snapshot)
        self.stats["compactions"] += 1
        self.note(f"{node_id} compacts to {snapshot.meta.index}")
        return True

    def conf_change(self, kind: ConfChangeKind, node_id: str) -> int | None:
        """Propose a membership change through the current leader: its index, or None when
        there is no leader or it refused (a change in flight, none of its term committed yet,
        a change that does not apply, a learner not caught up): the caller retries later."""
        leader = self.leader()
        if leader is None:
            return None
        raft = leader.core()
        try:
            index = raft.propose_conf_change(ConfChange(kind, node_id))
        except (ConfChangeRejected, NotLeader) as refused:
            self.stats["conf_changes_refused"] += 1
            text = str(refused)
            reason = next(
                (why for key, why in _REFUSALS if key in text), type(refused).__name__.lower()
            )
            self.stats[f"conf_refused.{reason}"] += 1
            self.note(f"conf {kind.value} {node_id} at {leader.id} refused: {refused}")
            return None
        self.stats[f"conf_proposed.{kind.value}"] += 1
        if kind is ConfChangeKind.REMOVE and node_id == leader.id:
            self.stats["conf_proposed.remove_leader"] += 1
        self.note(f"conf {kind.value} {node_id} at {leader.id} -> {index} voters={raft.conf}")
        self.process(leader)
        return index

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
