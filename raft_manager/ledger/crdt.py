"""CRDT operations ordered through the log: each gets its place (the log index) and goes on the
change feed, once.

Theory of operation: the swarm's CRDT Synchronizer merges operations on its own; what it needs
from consensus is one order that every replica agrees on. So the ledger keeps no CRDT state:
an operation is applied by emitting a `crdt.operation` event at its log index. To make a
resubmission harmless (a sender that timed out and sent again, a bus message handled twice),
each operation carries an id, remembered with a digest of its content for `retention_ms` of
ledger time: the same id and content again is answered with the first index (`duplicate`),
the same id with other content is a `conflict`. The memory is pruned by timers, so it is bounded
by the rate of operations times the retention, and it is in snapshots (a replica restored
from one refuses the same duplicates).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError
from .tasks import Emit
from .timers import Timers

CRDT = "crdt"


def _digest(cmd: Args) -> str:
    content = {"operation": cmd["operation"], "timestamp": cmd["timestamp"]}
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


@dataclass(slots=True)
class Ordered:
    index: int
    digest: str
    forget_at: int  # ledger ms


@dataclass(slots=True)
class CrdtLog:
    timers: Timers
    retention_ms: int
    seen: dict[str, Ordered] = field(default_factory=dict)  # operation id -> where it went

    def order(self, cmd: Args, index: int, now: int, emit: Emit) -> dict[str, Any]:
        digest = _digest(cmd)
        known = self.seen.get(cmd["id"])
        if known is not None:
            if known.digest != digest:
                raise LedgerError(
                    "conflict", f"operation {cmd['id']} was ordered with other content"
                )
            return {"ok": True, "index": known.index, "duplicate": True}
        forget_at = now + self.retention_ms
        self.seen[cmd["id"]] = Ordered(index, digest, forget_at)
        self.timers.schedule(forget_at, CRDT, cmd["id"])
        emit(
            "crdt.operation",
            {
                "id": cmd["id"],
                "origin": cmd["origin"],
                "operation": cmd["operation"],
                "timestamp": cmd["timestamp"],
            },
        )
        return {"ok": True, "index": index, "duplicate": False}

    def expire(self, operation_id: str, now: int) -> None:
        known = self.seen.get(operation_id)
        if known is not None and known.forget_at <= now:
            del self.seen[operation_id]

    def dump(self) -> list[list[Any]]:
        return [
            [operation_id, known.index, known.digest, known.forget_at]
            for operation_id, known in sorted(self.seen.items())
        ]

    def load(self, image: list[list[Any]]) -> None:
        self.seen = {}
        for operation_id, index, digest, forget_at in image:
            self.seen[operation_id] = Ordered(index, digest, forget_at)
            self.timers.schedule(forget_at, CRDT, operation_id)
