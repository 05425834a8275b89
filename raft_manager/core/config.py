"""Tunables of one Raft node, validated once at construction.

Theory of operation: every protocol timer is counted in ticks, never in seconds; the runtime decides
how long a tick is (the node issue uses 50 ms heartbeats). A node's election timeout is drawn from
(election_tick, 2 * election_tick] each time it resets (strictly above election_tick: see
raft.py). Byte and count limits bound the work a single message or a single slow peer can cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .types import NodeId


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: NodeId
    # Initial voters, used only when the node starts with no snapshot (a fresh cluster).
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Serve reads from the leader lease (no heartbeat round) while it holds; needs check_quorum.
    lease_read: bool = False
    # Ticks by which a follower's clock may run fast against the leader's: the lease is shortened
    # by this much so that no other leader can exist while it holds.
    max_clock_drift_ticks: int = 1
    max_msg_bytes: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 32 << 20
    snapshot_chunk_bytes: int = 1 << 20
    # Send new entries at once only to as many followers as a commit needs (the furthest
    # along), and stream to the others when they answer a heartbeat behind: the surplus
    # followers' work then does not compete with a commit's for the CPUs (docs/protocol.md).
    quorum_fanout: bool = False
    # A learner is promoted only after a replication round shorter than this many ticks
    # (None: one election timeout).
    promotion_round_ticks: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError("id must be a non-empty string")
        if not self.voters and not self.learners:
            raise ConfigError("the initial configuration names no members")
        if set(self.voters) & set(self.learners):
            raise ConfigError("a node cannot be both voter and learner")
        if self.heartbeat_tick < 1:
            raise ConfigError("heartbeat_tick must be >= 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election_tick must be greater than heartbeat_tick")
        if self.lease_read and not self.check_quorum:
            raise ConfigError("lease_read needs check_quorum: a lease is only safe with it")
        if self.promotion_round_ticks is not None and self.promotion_round_ticks < 1:
            raise ConfigError("promotion_round_ticks must be >= 1")
        if not 0 <= self.max_clock_drift_ticks < self.election_tick:
            raise ConfigError("max_clock_drift_ticks must be in [0, election_tick)")
        for name in (
            "max_msg_bytes",
            "max_inflight_msgs",
            "max_inflight_bytes",
            "snapshot_chunk_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
