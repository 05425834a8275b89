"""The state machine interface the node runtime drives.

Theory of operation (after hashicorp/raft's FSM): `apply` is called once per committed NORMAL
entry, in log order, on every node, and must be deterministic (no clock, no randomness: the same
entries give the same state and results everywhere); `snapshot` returns the whole state as bytes,
and `restore` replaces the state by such bytes. The swarm ledger (raft_manager/ledger) is the
state machine a node runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from raft_manager.core import Entry


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> Any: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...
