"""The node's view of the replicated log, in memory.

Theory of operation: the log is a snapshot base (offset, offset_term) followed by a Python list of
entries, `entries[k].index == offset + 1 + k`. Three cursors move along it, never backwards except
`stable` (a follower may truncate a suffix it had persisted):

    offset  <=  applied  <=  committed  <=  last_index
                              stable    <=  last_index

`stable` is the last index the runtime has reported durable; entries above it are handed out in the
next Ready for persisting. `committed` never exceeds what this node holds. A snapshot received from
the leader replaces the log and waits in `pending_snapshot` until the runtime persists and applies
it. This module knows nothing of roles, peers or messages: it answers questions about one log.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidMessage
from .types import ENTRY_OVERHEAD_BYTES, Entry, Snapshot


class RaftLog:
    __slots__ = (
        "applied",
        "committed",
        "entries",
        "offset",
        "offset_term",
        "pending_snapshot",
        "stable",
    )

    def __init__(self, offset: int, offset_term: int, entries: list[Entry], commit: int) -> None:
        if entries and entries[0].index != offset + 1:
            raise ValueError(f"entries start at {entries[0].index}, expected {offset + 1}")
        self.offset = offset
        self.offset_term = offset_term
        self.entries = entries
        self.stable = self.last_index
        self.committed = min(max(commit, offset), self.last_index)
        self.applied = offset
        self.pending_snapshot: Snapshot | None = None

    # -- reading ---------------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int | None:
        """The term at `index`, or None when it was compacted away or does not exist yet."""
        if index == self.offset:
            return self.offset_term
        position = index - self.offset - 1
        if 0 <= position < len(self.entries):
            return self.entries[position].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction (section 5.4.1): is (last_index, last_term) at least ours?"""
        my_term = self.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index)

    def first_index_of_term(self, index: int) -> int:
        """The first index at or below `index` (and above the offset) whose term equals index's."""
        term = self.term(index)
        position = index - self.offset - 1
        while position > 0 and self.entries[position - 1].term == term:
            position -= 1
        return self.offset + 1 + position

    def last_index_of_term(self, term: int) -> int | None:
        """The last index in this log that holds `term`, or None when no entry does."""
        for position in range(len(self.entries) - 1, -1, -1):
            entry_term = self.entries[position].term
            if entry_term == term:
                return self.offset + 1 + position
            if entry_term < term:
                return None
        return self.offset if self.offset_term == term and self.offset else None

    def slice(self, low: int, high: int, max_bytes: int) -> tuple[list[Entry], int]:
        """Entries [low, high) cut at `max_bytes` (but at least one entry), and their size."""
        start = low - self.offset - 1
        if start < 0:
            raise IndexError(f"index {low} was compacted (log starts after {self.offset})")
        chunk = self.entries[start : high - self.offset - 1]
        total = 0
        for count, entry in enumerate(chunk):
            size = len(entry.data) + ENTRY_OVERHEAD_BYTES
            if total + size > max_bytes and count > 0:
                return chunk[:count], total
            total += size
        return chunk, total

    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.stable - self.offset :]

    def has_unstable(self) -> bool:
        return self.stable < self.last_index

    def entries_to_apply(self) -> list[Entry]:
        return self.entries[self.applied - self.offset : self.committed - self.offset]

    def has_entries_to_apply(self) -> bool:
        return self.applied < self.committed

    # -- changing --------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Leader-side append at the end of the log."""
        self.entries.extend(entries)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry that is new or conflicts with ours; 0 if all match."""
        for entry in entries:
            if self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """Follower-side AppendEntries. Returns the last index known to match, or None."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvalidMessage(
                    f"entry {conflict} conflicts with the committed prefix "
                    f"(commit {self.committed})"
                )
            self._truncate_and_append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def _truncate_and_append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if first <= self.last_index:
            del self.entries[first - self.offset - 1 :]
            self.stable = min(self.stable, first - 1)
        self.entries.extend(entries)

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            self.committed = min(index, self.last_index)

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to `index` if it holds an entry of `term` (the Figure 8 rule)."""
        if index > self.committed and self.term(index) == term:
            self.committed = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        """The runtime made entries up to (index, term) durable; ignore it if they were replaced."""
        if index > self.stable and self.term(index) == term:
            self.stable = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log by a snapshot from the leader; it is pending until persisted.

        The snapshot goes out in the next Ready, which the runtime applies before any entry after
        it, so `applied` moves to the snapshot at once.
        """
        self.offset = snapshot.meta.index
        self.offset_term = snapshot.meta.term
        self.entries = []
        self.stable = self.committed = self.applied = snapshot.meta.index
        self.pending_snapshot = snapshot

    def compact(self, index: int) -> None:
        """Drop the entries up to `index`, which a snapshot now covers."""
        term = self.term(index)
        if term is None or index > self.applied:
            raise ValueError(f"cannot compact to {index}")
        del self.entries[: index - self.offset]
        self.offset = index
        self.offset_term = term
