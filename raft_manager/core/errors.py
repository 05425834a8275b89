"""Typed errors raised by the Raft core.

Theory of operation: the core never prints or logs. Everything it refuses, it refuses by raising one
of these, so a runtime can map each to a client answer (redirect, retry, reject) and the tests can
assert on the exact cause.
"""

from __future__ import annotations

from .types import NodeId


class RaftError(Exception):
    """Base class of every error the core raises."""


class ConfigError(RaftError):
    """A RaftConfig value is out of range or inconsistent."""


class InvalidMessage(RaftError):
    """A message is malformed or names values that cannot exist; it was not applied."""


class NotLeader(RaftError):
    """The operation needs the leader. `leader` is the last known leader, if any."""

    def __init__(self, leader: NodeId | None) -> None:
        self.leader = leader
        hint = f"; try {leader}" if leader is not None else "; no leader is known"
        super().__init__(f"this node is not the leader{hint}")


class ProposalDropped(RaftError):
    """The leader refused a proposal (leadership transfer in progress, or too much uncommitted)."""


class ReadyMisuse(RaftError):
    """The runtime broke the Ready/advance contract (two readies without an advance, say)."""


class SnapshotError(RaftError):
    """A compaction request names an index that cannot be snapshotted."""


class ConfChangeRejected(ProposalDropped):
    """A membership change that cannot be made now: invalid for the current configuration, a
    learner not caught up, another change in flight, or no entry of this term committed yet."""
