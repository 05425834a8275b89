"""Comparing replicas: their committed logs index by index, and their state digests.

Theory of operation: Raft's Log Matching and State Machine Safety properties say that every
node's committed prefix is the same log and that nodes which applied the same prefix hold the
same state. A node answers for the indexes it still holds: its snapshot point (index and term
only: the entries below it were compacted away) and its committed entries after it, each as
(term, type, CRC32C of the data). The comparable range is therefore from the newest snapshot
point any node has (`common_range`: below it that node holds nothing) to the lowest commit
index (above it some node has not committed yet, and uncommitted entries may differ
legitimately). Within it, two records agree when their terms are equal and, if both are
entries, their types and checksums too; a snapshot point agrees with any entry of its term
(same index and term means the same entry, by Log Matching). `first_divergence` names the
first index where two nodes disagree and who holds what there. State digests are compared
only at one index (a checkpoint every node applied); `digest_groups` groups the nodes by what
they hold.

Everything here is pure: the answers are validated as they come in (`LogHead.parse`,
`records`), so a node that answers nonsense is reported, never trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raft_manager.core import EntryType


@dataclass(frozen=True, slots=True)
class Record:
    """What one node holds at one index: an entry (term, type, crc32c), or its snapshot point
    (term only: type and crc are None)."""

    term: int
    type: int | None = None
    crc: int | None = None

    def agrees(self, other: Record) -> bool:
        if self.term != other.term:
            return False
        if self.type is None or other.type is None:
            return True
        return (self.type, self.crc) == (other.type, other.crc)

    def describe(self) -> str:
        if self.type is None:
            return f"a snapshot at term {self.term}"
        return f"term {self.term} {_type_name(self.type)} crc32c {self.crc or 0:08x}"

    def as_dict(self) -> dict[str, Any]:
        kind = None if self.type is None else _type_name(self.type)
        return {"term": self.term, "type": kind, "crc32c": self.crc}


def _type_name(entry_type: int) -> str:
    return EntryType(entry_type).name if entry_type in set(EntryType) else str(entry_type)


HEAD_FIELDS = (
    "first_index",
    "snapshot_index",
    "snapshot_term",
    "commit_index",
    "applied_index",
    "last_index",
    "term",
)


@dataclass(frozen=True, slots=True)
class LogHead:
    """A node's log bounds as its `log` answer gave them."""

    node: str
    first_index: int
    snapshot_index: int
    snapshot_term: int
    commit_index: int
    applied_index: int
    last_index: int
    term: int

    @classmethod
    def parse(cls, answer: Any) -> LogHead:
        """Validate a `log` answer's bounds; ValueError says what is wrong."""
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise ValueError("a log answer must be a map with a string id")
        values: list[int] = []
        for name in HEAD_FIELDS:
            value = answer.get(name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
            values.append(value)
        head = cls(answer["id"], *values)
        if head.first_index != head.snapshot_index + 1:
            raise ValueError("first_index must follow snapshot_index")
        if not head.snapshot_index <= head.applied_index <= head.commit_index <= head.last_index:
            raise ValueError("the indexes must satisfy snapshot <= applied <= commit <= last")
        return head

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.node, **{name: getattr(self, name) for name in HEAD_FIELDS}}


def common_range(heads: Iterable[LogHead]) -> tuple[int, int]:
    """(low, high): the indexes every node can answer for, from the newest snapshot point (at
    least 1) to the lowest commit index; empty when low > high."""
    listed = list(heads)
    if not listed:
        raise ValueError("no log to compare")
    low = max(1, *(head.snapshot_index for head in listed))
    return low, min(head.commit_index for head in listed)


def records(head: LogHead, entries: Any, low: int, high: int) -> dict[int, Record]:
    """What one node's page says about each index in [low, high]: its snapshot point if it
    lies there, and its committed entries ([index, term, type, crc32c] each, consecutive, all
    in the window, none at or below the snapshot point, and every one the node holds there).
    ValueError if the page is not that."""
    found: dict[int, Record] = {}
    if low <= head.snapshot_index <= high and head.snapshot_index > 0:
        found[head.snapshot_index] = Record(head.snapshot_term)
    if not isinstance(entries, list):
        raise ValueError("entries must be a list")
    expected = None
    for item in entries:
        if not (isinstance(item, list) and len(item) == 4 and all(type(v) is int for v in item)):
            raise ValueError(f"an entry must be [index, term, type, crc32c], not {item!r}")
        index, term, entry_type, crc = item
        if expected is not None and index != expected:
            raise ValueError(f"entry {index} does not follow entry {expected - 1}")
        if not (low <= index <= high and head.snapshot_index < index <= head.commit_index):
            raise ValueError(f"entry {index} lies outside the page or the committed log")
        found[index] = Record(term, entry_type, crc)
        expected = index + 1
    held = range(max(low, head.snapshot_index), min(high, head.commit_index) + 1)
    if len(found) < len(held):
        missing = next(index for index in held if index not in found)
        raise ValueError(f"the page leaves out entry {missing}, which the node holds")
    return found


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first index where nodes disagree, and what each group of nodes holds there."""

    index: int
    holders: tuple[tuple[Record, tuple[str, ...]], ...]

    def describe(self) -> str:
        held = "; ".join(
            f"{', '.join(nodes)} {'holds' if len(nodes) == 1 else 'hold'} {rec.describe()}"
            for rec, nodes in self.holders
        )
        return f"entry {self.index:,} differs: {held}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "holders": [{"nodes": list(nodes), **rec.as_dict()} for rec, nodes in self.holders],
        }


def first_divergence(
    views: Mapping[str, Mapping[int, Record]], low: int, high: int
) -> Divergence | None:
    """The first index in [low, high] where two nodes' records disagree, or None."""
    for index in range(low, high + 1):
        held = {node: view[index] for node, view in views.items() if index in view}
        distinct = set(held.values())
        if len(distinct) < 2:
            continue
        if all(a.agrees(b) for a in distinct for b in distinct):
            continue  # a snapshot point and the entries of its term
        groups: dict[Record, list[str]] = {}
        for node in sorted(held):
            groups.setdefault(held[node], []).append(node)
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1]))
        return Divergence(index, tuple((rec, tuple(nodes)) for rec, nodes in ordered))
    return None


def digest_groups(digests: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The nodes grouped by the digest they hold, the largest group first: one group when the
    states agree."""
    groups: dict[str, list[str]] = {}
    for node in sorted(digests):
        groups.setdefault(digests[node], []).append(node)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[1]))
