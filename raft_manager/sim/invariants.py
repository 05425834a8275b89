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
- Commit Durability: when the commit index first reaches i, a majority of the voters of the
  committing leader's configuration (passed in by the caller, who knows it: membership changes)
  hold entry i durably (what makes an acknowledged write survive any minority of crashes).
- Linearizable Read: a read is served at an index no lower than any commit index reached before it
  began, and returns the value the committed prefix gives at the index it was served at.

The ledger's properties are judged on the reference apply stream: the results of the first
replica to apply each index (a later index is always first applied by a replica that applied, or
restored a snapshot of, everything before it). The checker decodes each entry itself, keeps the
ledger's clock as the largest entry timestamp so far, and learns from the results which writes,
claims, renewals and completions took effect:

- Deterministic Apply: every replica's result for an index equals the reference result (a replica
  restored from a snapshot included).
- Lease Exclusion: a task is claimed only when no other lease on it is still valid on the ledger
  clock, and a renew, complete or fail is accepted only from the holder, with its fencing token,
  before its lease ends. (The workload registers no agents and cancels nothing, so a lease ends
  only by complete, fail or expiry.)
- Exactly Once: a command retried under the same session and request number gets the result of
  its first apply, or is refused as `stale_request`; and no two tasks in a ledger carry the same
  payload marker (the workload gives each submit its own).
- Acknowledged Submit: a node that has applied the index at which a submit was acknowledged holds
  that task (checked by `on_tasks`: after a snapshot restore and at the end of a run), and its
  task table is coherent (`on_task_table`: holders, tokens and leases agree with the states).

The ledger rules themselves are pure verdicts in raft_manager/ledger/audit.py, shared with
raft_manager/verify, which judges the same rules on histories recorded by clients and on task
tables fetched from live nodes; this module supplies the facts and the context (node, entry).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raft_manager.core import Entry, EntryType, NodeId, Snapshot
from raft_manager.core.membership import ConfChange
from raft_manager.ledger.audit import (
    Lease,
    claim_conflict,
    holder_conflict,
    missing_submits,
    repeated_markers,
    task_table_problems,
)
from raft_manager.ledger.commands import Args

Result = dict[str, Any]


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
    def __init__(self, voters: Sequence[NodeId], nodes: Sequence[NodeId] = ()) -> None:
        # The default majority for Commit Durability, when on_commit is not told the voters.
        self.voters = tuple(voters)
        # Every node gets a shadow: the initial voters and any that may join later (`nodes`).
        self.shadows: dict[NodeId, DurableShadow] = {v: DurableShadow() for v in (*voters, *nodes)}
        self.conf_frontier = 0  # the highest index a replica applied
        self.leaders: dict[int, NodeId] = {}
        self.entry_chains: dict[tuple[int, int], int] = {}
        self.committed: list[int] = [0]  # committed[i]: chain of the committed prefix at i
        # The reference apply stream: its results, clock and what took effect.
        self.results: dict[int, Result] = {}
        self.frontier = 0  # the highest index a replica applied a NORMAL entry at
        self.ledger_now = 0
        self.counts: Counter[str] = Counter()  # what the workload got done, for the report
        self._writes: dict[str, tuple[list[int], list[Any]]] = defaultdict(lambda: ([], []))
        self._requests: dict[tuple[str, int], int] = {}  # (session, seq): index first applied
        self._leases: dict[str, Lease] = {}  # task id: its latest lease not given back
        self._acknowledged: list[tuple[int, str]] = []  # (index answered at, task id)
        self._effects: dict[str, Callable[[NodeId, Args, Result], None]] = {
            "memory.put": self._put,
            "task.claim": self._claim,
            "task.renew": self._holder_acts,
            "task.complete": self._holder_acts,
            "task.fail": self._holder_acts,
        }

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

    def on_commit(self, node: NodeId, commit: int, voters: Sequence[NodeId] | None = None) -> None:
        """`node` has commit index `commit`; `voters` is the configuration of the leader that
        advanced the commit index there (default: `self.voters`)."""
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
        majority_of = self.voters if voters is None else tuple(voters)
        shadows = self.shadows
        holders = sum(
            1
            for voter in majority_of
            if voter in shadows and shadows[voter].chain_at(commit) == self.committed[-1]
        )
        if holders * 2 <= len(majority_of):
            self._fail(
                "Commit Durability",
                f"{node} committed {commit} but only {holders} of {len(majority_of)} voters "
                f"{sorted(majority_of)} hold it",
            )

    def on_apply(self, node: NodeId, entry: Entry) -> None:
        index = entry.index
        if index > self.commit_index or self.shadows[node].chain_at(index) != self.committed[index]:
            self._fail("State Machine Safety", f"{node} applied an uncommitted entry at {index}")
        if index > self.conf_frontier:
            self.conf_frontier = index
            if entry.type is EntryType.CONF_CHANGE:
                change = ConfChange.decode(entry.data)
                kind = change.kind.value if change is not None else "garbage"
                self.counts[f"conf.{kind}"] += 1  # committed membership changes, by kind

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

    # -- the ledger ------------------------------------------------------------------------------

    def on_result(self, node: NodeId, entry: Entry, result: Result) -> None:
        """`node`'s ledger applied `entry` (a committed NORMAL entry) and returned `result`."""
        index = entry.index
        if index <= self.frontier:
            first = self.results.get(index)
            if result != first:
                self._fail(
                    "Deterministic Apply",
                    f"{node} applied entry {index} with result {result}; the first replica to "
                    f"apply it got {first}",
                )
            return
        self.frontier = index
        self.results[index] = result
        try:
            envelope = json.loads(entry.data)
            ts, session, seq, command = envelope["ts"], envelope["s"], envelope["q"], envelope["c"]
            effect = self._effects.get(command["op"])
        except (ValueError, TypeError, KeyError):
            return  # not a ledger entry: hand-made tests propose raw bytes
        self.ledger_now = max(self.ledger_now, ts)
        if session:
            first_index = self._requests.setdefault((session, seq), index)
            if first_index != index:
                self._retried(node, session, seq, first_index, index, result)
                return
        if result.get("ok"):
            if effect is not None:
                effect(node, command, result)
        elif result.get("error") == "stale_token":
            self.counts["stale_holders_refused"] += 1

    def _retried(
        self, node: NodeId, session: str, seq: int, first_index: int, index: int, result: Result
    ) -> None:
        first = self.results[first_index]
        if result == first:
            self.counts["retries_deduplicated"] += 1
        elif result.get("error") == "stale_request":
            self.counts["retries_refused_stale"] += 1
        else:
            self._fail(
                "Exactly Once",
                f"{node}: request {seq} of session {session} was applied at {first_index} "
                f"({first}) and again at {index} ({result})",
            )

    def _put(self, node: NodeId, command: Args, result: Result) -> None:
        indexes, values = self._writes[command["key"]]
        indexes.append(self.frontier)
        values.append(command["value"])

    def _claim(self, node: NodeId, command: Args, result: Result) -> None:
        task_id, now = result["task_id"], self.ledger_now
        if task_id is None:
            return  # nothing to claim
        held = self._leases.get(task_id)
        problem = claim_conflict(task_id, held, command["agent"], now)
        if problem is not None:
            self._fail("Lease Exclusion", f"{node}, entry {self.frontier}: {problem}")
        if held is not None:
            self.counts["leases_expired"] += 1
        self._leases[task_id] = Lease(
            command["agent"], result["fencing_token"], result["lease_until"]
        )
        self.counts["task.claim"] += 1

    def _holder_acts(self, node: NodeId, command: Args, result: Result) -> None:
        task_id, op, now = command["task_id"], command["op"], self.ledger_now
        held = self._leases.get(task_id)
        problem = holder_conflict(task_id, held, op, command["agent"], command["token"], now)
        if problem is not None or held is None:
            self._fail("Lease Exclusion", f"{node}, entry {self.frontier}: {problem}")
        elif op == "task.renew":
            held.until = result["lease_until"]
        else:
            del self._leases[task_id]
        self.counts[op] += 1

    def on_submit_acknowledged(self, index: int, task_id: str) -> None:
        """A client was answered, at `index`, that task `task_id` is in the ledger."""
        self._acknowledged.append((index, task_id))
        self.counts["submits_acknowledged"] += 1

    def on_tasks(self, node: NodeId, applied: int, tasks: Mapping[str, Any]) -> None:
        """`node`, applied through `applied`, holds `tasks` (task id: payload)."""
        for index, task_id in missing_submits(self._acknowledged, applied, tasks):
            self._fail(
                "Acknowledged Submit",
                f"{node} applied through {applied} but does not hold task {task_id}, "
                f"acknowledged at {index}",
            )
        for marker, count in repeated_markers(tasks.values()):
            self._fail(
                "Exactly Once",
                f"{node} holds {count} tasks with payload marker {marker}: one submit "
                "applied more than once",
            )

    def on_task_table(self, node: NodeId, tasks: Sequence[Mapping[str, Any]]) -> None:
        """`node`'s ledger holds these task views: is the table coherent?"""
        for problem in task_table_problems(tasks):
            self._fail("Lease Exclusion", f"{node}: {problem}")

    # -- reads -----------------------------------------------------------------------------------

    def value_at(self, key: str, index: int) -> Any:
        """The value of `key` after entry `index`, as the reference apply stream wrote it."""
        indexes, values = self._writes.get(key, ((), ()))
        position = bisect.bisect_right(indexes, index)
        return values[position - 1] if position else None

    def on_read(
        self, node: NodeId, key: str, floor: int, read_index: int, applied: int, value: Any
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
