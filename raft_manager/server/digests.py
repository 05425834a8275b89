"""Digests of the state machine: the current one, and one per checkpoint entry applied.

Theory of operation: a digest is the SHA-256 of the state machine's snapshot bytes, so two
replicas that applied the same entries in the same order have equal digests (the snapshot is
canonical: see the ledger). Replicas apply at different moments, so comparing their current
digests is a race; instead a leader proposes a CHECKPOINT entry and every node notes its
digest right after applying it (`Checkpoints.record`): then all digests at that index are
comparable whenever they are read. The notes live in memory only, outside the replicated state
(noting one changes nothing a digest covers), bounded to the newest `KEEP`; a node that
restarts applies its log again and notes them again, and a node that installs a snapshot past
a checkpoint never applies it and has no note for it.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

KEEP = 64


class Snapshotting(Protocol):
    def snapshot(self) -> bytes: ...


def state_digest(state_machine: Snapshotting) -> str:
    """SHA-256 (hex) of the state machine's snapshot: equal on replicas in the same state."""
    return hashlib.sha256(state_machine.snapshot()).hexdigest()


class Checkpoints:
    """The digest noted at each checkpoint index applied, the newest `keep` of them."""

    def __init__(self, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError("keep at least one checkpoint")
        self.keep = keep
        self._digests: dict[int, str] = {}

    def record(self, index: int, digest: str) -> str:
        self._digests[index] = digest
        while len(self._digests) > self.keep:
            del self._digests[next(iter(self._digests))]
        return digest

    def get(self, index: int) -> str | None:
        return self._digests.get(index)
