"""Shared helpers for the scenario tests (test_scenarios_*.py).

Two ways to drive the Raft core:

- `make` builds one `Raft` object from a hand-written persisted state; `flush` plays the runtime
  for one Ready (persist, send, apply, advance) and returns it so a test can look at its messages.
- `Net` wires several `Raft` objects together with a FIFO, loss-free network that the test
  controls message by message (block links, hold messages, crash and restart nodes). Every Ready
  is persisted to a MemoryStorage and reported to the simulator's invariant Checker, so the Raft
  safety properties are checked throughout these hand-made scenarios too.
- `RecordingCluster` is a SimCluster that also records every Ready and delivered message.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from raft_manager.core import (
    Entry,
    EntryType,
    HardState,
    Message,
    Raft,
    RaftConfig,
    RequestVote,
    RestoredState,
    Role,
    VoteResponse,
)
from raft_manager.core.raft import Ready
from raft_manager.ledger import parse_query
from raft_manager.sim.cluster import SimCluster, SimNode
from raft_manager.sim.invariants import Checker, DurableShadow
from raft_manager.storage.memory import MemoryStorage

VOTERS3 = ("a", "b", "c")


def entry(index: int, term: int) -> Entry:
    """A normal entry whose payload is derived from (index, term), so that entries with the same
    index and term are identical wherever they appear (the Log Matching property)."""
    return Entry(index, term, EntryType.NORMAL, f"i{index}=t{term}".encode())


def log_of(terms: Sequence[int], start: int = 1) -> list[Entry]:
    """Entries start, start+1, ... with the given terms."""
    return [entry(start + k, term) for k, term in enumerate(terms)]


def terms_of(raft: Raft) -> list[int]:
    return [e.term for e in raft.log.entries]


def config(node_id: str, voters: Sequence[str] = VOTERS3, **overrides: Any) -> RaftConfig:
    """A RaftConfig for direct-drive tests. Pre-vote and check-quorum are off unless asked for, so
    that a test can elect a node by ticking it alone (check-quorum's leader stickiness makes a
    freshly started node ignore vote requests for an election timeout)."""
    settings: dict[str, Any] = {"pre_vote": False, "check_quorum": False}
    settings.update(overrides)
    return RaftConfig(id=node_id, voters=tuple(voters), **settings)


def make(
    node_id: str,
    voters: Sequence[str] = VOTERS3,
    *,
    seed: int = 0,
    term: int = 0,
    vote: str | None = None,
    commit: int = 0,
    entries: Sequence[Entry] = (),
    **overrides: Any,
) -> Raft:
    """A Raft node restored from the given persisted hard state and log."""
    restored = RestoredState(HardState(term, vote, commit), None, list(entries))
    return Raft(config(node_id, voters, **overrides), random.Random(seed), restored)


def flush(raft: Raft) -> Ready:
    """Play the runtime for one Ready: it is persisted, sent and applied, then advanced."""
    ready = raft.ready()
    raft.advance(ready)
    return ready


def step(raft: Raft, msg: Message) -> list[Message]:
    """Deliver one message and return what the node sends in answer."""
    raft.step(msg)
    return flush(raft).messages


def tick_until_campaign(raft: Raft, max_ticks: int = 100) -> int:
    """Tick a follower until it starts a (pre-)campaign; returns the ticks it took."""
    for ticks in range(1, max_ticks + 1):
        raft.tick()
        if raft.role is not Role.FOLLOWER:
            return ticks
    raise AssertionError(f"{raft.id} did not campaign within {max_ticks} ticks")


def grant_all(raft: Raft, messages: Iterable[Message]) -> None:
    """Answer every vote request in `messages` with a grant from its recipient."""
    for msg in messages:
        if isinstance(msg, RequestVote):
            raft.step(
                VoteResponse(
                    frm=msg.to, to=raft.id, term=msg.term, granted=True, pre_vote=msg.pre_vote
                )
            )


def make_leader(node_id: str = "a", voters: Sequence[str] = VOTERS3, **kwargs: Any) -> Raft:
    """A node made leader by ticking it into a campaign and granting it every vote it asks for."""
    raft = make(node_id, voters, **kwargs)
    for _ in range(3):  # at most: pre-vote round, vote round
        if raft.role is Role.FOLLOWER:
            tick_until_campaign(raft)
        grant_all(raft, flush(raft).messages)
        if raft.role is Role.LEADER:
            flush(raft)
            return raft
    raise AssertionError(f"{node_id} did not become leader")


def of_type(messages: Iterable[Message], kind: type[Any]) -> list[Any]:
    return [m for m in messages if isinstance(m, kind)]


class Net:
    """A deterministic FIFO network between directly driven Raft nodes.

    Every Ready is persisted to the node's MemoryStorage (so that `crash` / `restart` reload
    exactly what was durable) and reported to an invariant Checker. Messages between blocked
    links, or to or from a crashed node, are dropped; messages for which `hold` returns True are
    set aside in `held` until the test releases them.
    """

    def __init__(self, rafts: Iterable[Raft]) -> None:
        self.nodes: dict[str, Raft] = {raft.id: raft for raft in rafts}
        voters = sorted({v for raft in self.nodes.values() for v in raft.conf.voters})
        self.checker = Checker(voters)
        for node_id in self.nodes:  # learners: shadowed, but not counted towards a majority
            self.checker.shadows.setdefault(node_id, DurableShadow())
        self.storage: dict[str, MemoryStorage] = {}
        self.down: set[str] = set()
        self.blocked: set[tuple[str, str]] = set()
        self.queue: deque[Message] = deque()
        self.held: list[Message] = []
        self.hold: Callable[[Message], bool] | None = None
        self.delivered: list[Message] = []
        self.readies: dict[str, list[Ready]] = defaultdict(list)
        self.leaders: list[tuple[str, int]] = []
        # What each node had durably at construction.
        for node_id, raft in self.nodes.items():
            storage = MemoryStorage()
            storage.hard_state = HardState(raft.term, raft.vote, raft.log.committed)
            storage.entries = list(raft.log.entries)
            self.storage[node_id] = storage
            self.checker.on_persist(node_id, storage.entries, None, False)
        for node_id, raft in self.nodes.items():
            self.checker.on_commit(node_id, raft.log.committed)
        self.configs = {node_id: raft.config for node_id, raft in self.nodes.items()}
        for node_id in list(self.nodes):
            self.pump(node_id)

    def __getitem__(self, node_id: str) -> Raft:
        return self.nodes[node_id]

    # -- runtime --------------------------------------------------------------------------------

    def pump(self, node_id: str) -> None:
        raft = self.nodes[node_id]
        storage, checker = self.storage[node_id], self.checker
        while raft.has_ready():
            ready = raft.ready()
            storage.save(ready.hard_state, ready.entries, ready.snapshot)
            checker.on_persist(node_id, ready.entries, ready.snapshot, raft.role is Role.LEADER)
            if ready.hard_state is not None:
                checker.on_commit(node_id, ready.hard_state.commit)
            if ready.soft_state is not None and ready.soft_state.role is Role.LEADER:
                checker.on_leader(node_id, raft.term)
                self.leaders.append((node_id, raft.term))
            for committed in ready.committed_entries:
                checker.on_apply(node_id, committed)
            self.readies[node_id].append(ready)
            self.queue.extend(ready.messages)
            raft.advance(ready)

    def _lost(self, msg: Message) -> bool:
        return msg.frm in self.down or msg.to in self.down or (msg.frm, msg.to) in self.blocked

    def deliver_all(self, max_messages: int = 100_000) -> int:
        """Deliver until nothing is in flight; returns how many messages were delivered."""
        count = 0
        while self.queue:
            msg = self.queue.popleft()
            if self._lost(msg):
                continue
            if self.hold is not None and self.hold(msg):
                self.held.append(msg)
                continue
            self.delivered.append(msg)
            self.nodes[msg.to].step(msg)
            self.pump(msg.to)
            count += 1
            assert count < max_messages, "the network did not quiesce"
        return count

    def release_held(self) -> None:
        """Put every held message back in flight (they are delivered by the next deliver_all)."""
        self.queue.extend(self.held)
        self.held = []

    def tick(self, *node_ids: str) -> None:
        for node_id in node_ids or tuple(self.nodes):
            if node_id not in self.down:
                self.nodes[node_id].tick()
                self.pump(node_id)

    def run(self, ticks: int, *node_ids: str) -> None:
        for _ in range(ticks):
            self.tick(*node_ids)
            self.deliver_all()

    def campaign(self, node_id: str, max_ticks: int = 100) -> None:
        """Tick only `node_id` until it sends vote requests, then let the votes fly."""
        for _ in range(max_ticks):
            before = len(self.queue)
            self.tick(node_id)
            fresh = list(self.queue)[before:]
            if any(isinstance(m, RequestVote) and m.frm == node_id for m in fresh):
                self.deliver_all()
                return
        raise AssertionError(f"{node_id} did not campaign within {max_ticks} ticks")

    def elect(self, node_id: str, max_rounds: int = 5) -> Raft:
        """Campaign until `node_id` leads (a round can be lost to votes already cast)."""
        raft = self.nodes[node_id]
        for _ in range(max_rounds):
            self.campaign(node_id)
            if raft.role is Role.LEADER:
                return raft
        raise AssertionError(f"{node_id} did not win an election in {max_rounds} rounds")

    # -- faults ---------------------------------------------------------------------------------

    def block(self, a: str, b: str) -> None:
        """Cut the link between a and b in both directions."""
        self.blocked.update({(a, b), (b, a)})

    def crash(self, node_id: str) -> None:
        self.down.add(node_id)

    def restart(self, node_id: str, seed: int = 1) -> Raft:
        """Rebuild a crashed node from what it had persisted."""
        self.down.discard(node_id)
        raft = Raft(self.configs[node_id], random.Random(seed), self.storage[node_id].load())
        self.nodes[node_id] = raft
        self.pump(node_id)
        return raft

    def sent(self, kind: type[Any], *, frm: str | None = None, to: str | None = None) -> list[Any]:
        """Delivered messages of a type, optionally filtered by sender and recipient."""
        return [
            m
            for m in self.delivered
            if isinstance(m, kind) and (frm is None or m.frm == frm) and (to is None or m.to == to)
        ]


class RecordingCluster(SimCluster):
    """A SimCluster that remembers every Ready its nodes handed out and every message it delivered.

    Readies are recorded by wrapping each Raft object's `ready` method (before its first Ready),
    which leaves the simulator's own runtime loop untouched.
    """

    def __init__(self, size: int, seed: int, **kwargs: Any) -> None:
        self.readies: list[tuple[int, str, Ready]] = []
        self.delivered: list[Message] = []
        super().__init__(size, seed, **kwargs)

    def process(self, node: SimNode) -> None:
        raft = node.raft
        if raft is not None and "ready" not in vars(raft):
            original = raft.ready
            node_id = node.id

            def recording_ready() -> Ready:
                ready = original()
                self.readies.append((self.now, node_id, ready))
                return ready

            raft.ready = recording_ready  # type: ignore[method-assign]
        super().process(node)

    def deliver(self, msg: Message) -> None:
        if self.nodes[msg.to].up:
            self.delivered.append(msg)
        super().deliver(msg)

    def read_states(self, node_id: str) -> list[tuple[int, bytes]]:
        """(index, context) of every ReadState node_id's Readies carried."""
        return [
            (rs.index, rs.context)
            for _, nid, ready in self.readies
            if nid == node_id
            for rs in ready.read_states
        ]

    def failed_reads(self, node_id: str) -> list[bytes]:
        return [
            ctx for _, nid, ready in self.readies if nid == node_id for ctx in ready.failed_reads
        ]


def run_until(cluster: SimCluster, predicate: Callable[[], bool], max_ticks: int) -> int:
    """Tick the cluster until `predicate` holds; returns the ticks it took (0: held already)."""
    for ticks in range(max_ticks + 1):
        if predicate():
            return ticks
        if ticks < max_ticks:
            cluster.tick()
    raise AssertionError(f"condition not reached within {max_ticks} ticks; trace: {cluster.trace}")


def has_stable_leader(cluster: SimCluster) -> bool:
    """A leader exists and has committed an entry of its own term (so it can serve reads)."""
    node = cluster.leader()
    if node is None:
        return False
    raft = node.core()
    return raft.log.term(raft.log.committed) == raft.term


def stable_leader(cluster: SimCluster, max_ticks: int = 200) -> SimNode:
    run_until(cluster, lambda: has_stable_leader(cluster), max_ticks)
    node = cluster.leader()
    assert node is not None
    return node


MEMORY_LIST = parse_query({"query": "memory.list", "limit": 10_000})


def memory(node: SimNode) -> dict[str, Any]:
    """The node's shared memory (the ledger's default namespace), key: value."""
    return {item["key"]: item["value"] for item in node.ledger.query(MEMORY_LIST)["items"]}


def committed_everywhere(cluster: SimCluster, index: int, node_ids: Iterable[str]) -> bool:
    return all(cluster.nodes[n].applied >= index for n in node_ids)
