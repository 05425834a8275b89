"""The simulator's state machine: a tiny key-value register fed by `key=value` commands.

Theory of operation: deterministic apply of committed entries in index order; no-op entries only
move the applied index. Its snapshot is canonical JSON, so equal states give equal bytes.
"""

from __future__ import annotations

import json

from raft_manager.core import Entry, EntryType


def encode_put(key: str, value: str) -> bytes:
    return f"{key}={value}".encode()


def decode_put(data: bytes) -> tuple[str, str]:
    key, _, value = data.decode().partition("=")
    return key, value


class KVStateMachine:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied = 0

    def apply(self, entry: Entry) -> None:
        if entry.index != self.applied + 1:
            raise AssertionError(f"applied {entry.index} after {self.applied}: out of order")
        if entry.type is EntryType.NORMAL:
            key, value = decode_put(entry.data)
            self.data[key] = value
        self.applied = entry.index

    def snapshot(self) -> bytes:
        return json.dumps({"applied": self.applied, "data": self.data}, sort_keys=True).encode()

    def restore(self, blob: bytes) -> None:
        image = json.loads(blob)
        self.data = dict(image["data"])
        self.applied = int(image["applied"])
