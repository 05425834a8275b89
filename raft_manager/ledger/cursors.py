"""Named cursors on the change feed: how far a reader outside the cluster has acknowledged it.

Theory of operation: a reader that must resume where it left off (the CRDT Synchronizer, fed
the change feed over the bus) acknowledges the last event it has taken in, named by its entry's
index and its position among that entry's events (0-based; one entry may emit several). The
cursor is replicated state like any other, so it survives restarts of any node, of the reader
and of whatever carried the events, and a new leader resumes from it. It only moves forward: an
acknowledgement at or behind the cursor (a late or repeated one) leaves it where it is. An
event is acknowledged after it was sent, so its entry comes before the acknowledging one; an
acknowledgement of that entry or a later one is refused (`out_of_range`): taken, it would have
the publisher skip, unsent, every event up to it. Setting a cursor emits no feed event (else
acknowledging the feed would feed it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .commands import Args
from .errors import LedgerError


@dataclass(slots=True)
class Cursors:
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (index, pos)

    def set(self, cmd: Args, index: int) -> dict[str, Any]:
        """Apply `cmd`, the log's entry `index`."""
        name, wanted = cmd["name"], (cmd["index"], cmd["position"])
        if wanted[0] >= index:
            raise LedgerError(
                "out_of_range",
                f"entry {wanted[0]} is not before this acknowledgement (entry {index})",
            )
        current = self.positions.get(name)
        moved = current is None or wanted > current
        if moved:
            self.positions[name] = wanted
        return {"ok": True, "cursor": self.get(name), "moved": moved}

    def get(self, name: str) -> dict[str, int] | None:
        found = self.positions.get(name)
        return None if found is None else {"index": found[0], "position": found[1]}

    def dump(self) -> dict[str, list[int]]:
        return {name: list(self.positions[name]) for name in sorted(self.positions)}

    def load(self, image: dict[str, list[int]]) -> None:
        self.positions = {name: (index, position) for name, (index, position) in image.items()}
