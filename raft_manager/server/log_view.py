"""A page of a node's committed log, reduced to checksums: what `raft-manager verify` compares.

Theory of operation: the node answers from the log it holds in memory (everything after its
newest snapshot), with no ReadIndex: the question is what this node holds, not what the
cluster decided. The page is the window [start, start + count) cut to the committed entries
the node still holds, (snapshot index, commit index]; each entry is reduced to
[index, term, type, CRC32C of its data], so a page of LOG_PAGE_MAX entries stays small. The
snapshot's (index, term) comes with every page, so a node that compacted can still be compared
at the point where its log starts.
"""

from __future__ import annotations

from typing import Any

from crc32c import crc32c

from raft_manager.core.log import RaftLog


def log_page(log: RaftLog, start: int, count: int) -> dict[str, Any]:
    """The log's bounds and its committed entries in [start, start + count)."""
    first = log.offset + 1
    low, high = max(start, first), min(start + count - 1, log.committed)
    held = log.entries[low - first : high - first + 1] if low <= high else []
    return {
        "first_index": first,
        "snapshot_index": log.offset,
        "snapshot_term": log.offset_term,
        "commit_index": log.committed,
        "applied_index": log.applied,
        "last_index": log.last_index,
        "entries": [
            [entry.index, entry.term, int(entry.type), crc32c(entry.data)] for entry in held
        ],
    }
