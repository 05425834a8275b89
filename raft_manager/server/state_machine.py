"""The state machine interface the node runtime drives, and a minimal key-value machine.

Theory of operation (after hashicorp/raft's FSM): `apply` is called once per committed NORMAL
entry, in log order, on every node, and must be deterministic (no clock, no randomness: the same
entries give the same state and results everywhere); `snapshot` returns the whole state as bytes,
and `restore` replaces the state by such bytes. The swarm ledger (a later issue) implements this;
until then `KeyValueStateMachine` serves: commands are JSON objects
{"op": "put", "key": k, "value": v} or {"op": "delete", "key": k}; a command that does not parse
is applied as a no-op with an error result, so one bad entry cannot stop the log.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from raft_manager.core import Entry


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class KeyValueStateMachine:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.applied = 0

    def apply(self, entry: Entry) -> Any:
        self.applied = entry.index
        try:
            command = json.loads(entry.data)
            op, key = command["op"], command["key"]
            if not isinstance(key, str):
                raise TypeError("key must be a string")
        except (ValueError, KeyError, TypeError) as error:
            return {"ok": False, "error": f"bad command: {error}"}
        if op == "put":
            self.data[key] = command.get("value")
            return {"ok": True}
        if op == "delete":
            return {"ok": True, "existed": self.data.pop(key, None) is not None}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return json.dumps({"applied": self.applied, "data": self.data}, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        image = json.loads(data)
        self.data = dict(image["data"])
        self.applied = int(image["applied"])
