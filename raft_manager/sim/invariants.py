"""The Raft safety properties, checked incrementally after every simulated step.

Theory of operation: every entry is identified by a chain hash, hash(previous chain, term, type,
data), so two logs agree up to index i exactly when their chains at i are equal. The checker keeps
a shadow of each node's *durable* log (chains only) in step with what the runtime persisted, one
global map (index, term) -> chain, and the chain of the cluster's committed prefix. With those,
each property is a constant-time comparison at the moment it can first break:

- Election Safety: at most one leader per term (checked when a node becomes leader).
- Leader Append-Only: a leader never overwrites its own persisted entries (checked on persist).
- Log Matching: equal (index, term) implies equal chains (checked for every persisted entry).
- Leader Completeness: a new leader's log holds the whole committed prefix.
- State Machine Safety: every applied entry and every snapshot matches the committed prefix.
- Commit Durability: when the commit index first reaches i, a majority of voters hold entry i
  durably (what makes an acknowledged write survive any minority of crashes).
- Linearizable Read: a read is served at an index no lower than any commit index reached before it
  began, and returns the value the committed prefix gives at the index it was served at.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from raft_manager.core import Entry, EntryType, NodeId, Snapshot

from .kv import decode_put


class InvariantViolation(Exception):
    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"{invariant}: {detail}")


def chain(previous: int, entry: Entry) -> int:
    return hash((previous, entry.term, entry.type, entry.data))


@dataclass(slots=True)
class DurableShadow:
    """Chains of one node's persisted log: offset (snapshot) chain, then one per entry."""

    offset: int = 0
    offset_chain: int = 0
    chains: list[int] = field(default_factory=list)

    @property
    def last_index(self) -> int:
        return self.offset + len(self.chains)

    def chain_at(self, index: int) -> int | None:
        if index == self.offset:
            return self.offset_chain
        position = index - self.offset - 1
        if 0 <= position < len(self.chains):
            return self.chains[position]
        return None


class Checker:
    def __init__(self, voters: Sequence[NodeId]) -> None:
        self.voters = tuple(voters)
        self.shadows: dict[NodeId, DurableShadow] = {v: DurableShadow() for v in voters}
        self.leaders: dict[int, NodeId] = {}
        self.entry_chains: dict[tuple[int, int], int] = {}
        self.committed: list[int] = [0]  # committed[i]: chain of the committed prefix at i
        self._writes: dict[str, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))

    @property
    def commit_index(self) -> int:
        return len(self.committed) - 1

    def _fail(self, invariant: str, detail: str) -> None:
        raise InvariantViolation(invariant, detail)

    def on_persist(
        self, node: NodeId, entries: Sequence[Entry], snapshot: Snapshot | None, is_leader: bool
    ) -> None:
        shadow = self.shadows[node]
        if snapshot is not None:
            meta = snapshot.meta
            known = self.entry_chains.get((meta.index, meta.term))
            if known is None:
                self._fail("Log Matching", f"{node} installed a snapshot of unknown entry {meta}")
            elif meta.index > self.commit_index or self.committed[meta.index] != known:
                self._fail("State Machine Safety", f"{node} installed uncommitted snapshot {meta}")
            shadow.offset, shadow.offset_chain, shadow.chains = meta.index, known or 0, []
        if not entries:
            return
        first = entries[0].index
        if is_leader and first <= shadow.last_index:
            self._fail("Leader Append-Only", f"leader {node} overwrote its log from {first}")
        del shadow.chains[first - shadow.offset - 1 :]
        previous = shadow.chain_at(first - 1)
        assert previous is not None, f"{node} persisted entries that do not attach at {first}"
        entry_chains = self.entry_chains
        for entry in entries:
            previous = chain(previous, entry)
            known = entry_chains.setdefault((entry.index, entry.term), previous)
            if known != previous:
                self._fail(
                    "Log Matching",
                    f"{node} holds entry ({entry.index}, term {entry.term}) with another prefix",
                )
            shadow.chains.append(previous)

    def on_compact(self, node: NodeId, snapshot: Snapshot) -> None:
        shadow = self.shadows[node]
        index = snapshot.meta.index
        found = shadow.chain_at(index)
        if found is None or index > self.commit_index or self.committed[index] != found:
            self._fail("State Machine Safety", f"{node} snapshotted uncommitted index {index}")
        del shadow.chains[: index - shadow.offset]
        shadow.offset, shadow.offset_chain = index, found or 0

    def on_commit(self, node: NodeId, commit: int, log: Sequence[Entry], log_offset: int) -> None:
        """`node` has commit index `commit`; `log` are its durable entries after `log_offset`."""
        shadow = self.shadows[node]
        known = self.commit_index
        if commit <= known:
            mine = shadow.chain_at(commit)
            if mine is not None and mine != self.committed[commit]:
                self._fail("State Machine Safety", f"{node} committed another entry at {commit}")
            return
        for index in range(known + 1, commit + 1):
            mine = shadow.chain_at(index)
            if mine is None:
                self._fail("State Machine Safety", f"{node} committed {index} it does not hold")
            self.committed.append(mine or 0)
            entry = log[index - log_offset - 1]
            if entry.type is EntryType.NORMAL:
                key, value = decode_put(entry.data)
                indexes, values = self._writes[key]
                indexes.append(index)
                values.append(value)
        holders = sum(
            1 for voter in self.voters if self.shadows[voter].chain_at(commit) == self.committed[-1]
        )
        if holders * 2 <= len(self.voters):
            self._fail(
                "Commit Durability",
                f"{node} committed {commit} but only {holders} of {len(self.voters)} hold it",
            )

    def on_apply(self, node: NodeId, entry: Entry) -> None:
        index = entry.index
        if index > self.commit_index or self.shadows[node].chain_at(index) != self.committed[index]:
            self._fail("State Machine Safety", f"{node} applied an uncommitted entry at {index}")

    def on_restore(self, node: NodeId, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        chain_there = self.entry_chains.get((meta.index, meta.term))
        if meta.index > self.commit_index or chain_there != self.committed[meta.index]:
            self._fail("State Machine Safety", f"{node} restored an uncommitted snapshot {meta}")

    def on_leader(self, node: NodeId, term: int) -> None:
        holder = self.leaders.setdefault(term, node)
        if holder != node:
            self._fail("Election Safety", f"{holder} and {node} both lead term {term}")
        commit = self.commit_index
        if self.shadows[node].chain_at(commit) != self.committed[commit]:
            self._fail(
                "Leader Completeness",
                f"{node} leads term {term} without committed entry {commit}",
            )

    def value_at(self, key: str, index: int) -> str | None:
        indexes, values = self._writes.get(key, ((), ()))
        position = bisect.bisect_right(indexes, index)
        return values[position - 1] if position else None

    def on_read(
        self, node: NodeId, key: str, floor: int, read_index: int, applied: int, value: str | None
    ) -> None:
        if read_index < floor:
            self._fail(
                "Linearizable Read",
                f"{node} served a read at index {read_index}, below {floor} committed before it",
            )
        expected = self.value_at(key, applied)
        if value != expected:
            self._fail(
                "Linearizable Read",
                f"{node} read {key}={value!r} at {applied}; the committed log says {expected!r}",
            )
