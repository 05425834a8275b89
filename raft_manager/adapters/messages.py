"""The peer adapters' messages: each type that travels between raft-manager and the swarm's four
peers, and the pydantic model of its payload.

Theory of operation: this module is docs/protocol.md in code. A type's payload is checked
against its model when it arrives (Handlers), and built from it when it is sent, so neither
side can drift from the other; tests/test_adapter_messages.py checks that every example in the
document parses with its model. Requests from peers forbid unknown fields (a typo is an error,
not a silent default). Numbers that raft-manager sends are integers (milliseconds,
microseconds, counts): a float's text differs between languages, and a signature covers the
text. Every request has a result type, and a result says whether it worked: `ok`, or `error`
(a stable code) and `reason` (for people).

Who sends what, and where (streams.py names the streams):

    to raft-manager (any node)         quorum.change_request, crdt.operation, crdt.feed_ack,
                                       security.attest_request, bench.run_request
    to raft-manager.<node> (one node)  security.keys, security.attest_request
    to quorum-manager                  quorum.report (published); quorum.change_result (reply)
    to crdt-synchronizer               crdt.change, crdt.feed_gap (published);
                                       crdt.operation_result, crdt.feed_ack_result (replies)
    to security-manager                security.auth_failures (published); security.keys_result,
                                       security.attestation (replies)
    to performance-benchmarker         bench.metrics (published); bench.run_result (reply)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from raft_manager.transport.base import parse_address
from raft_manager.transport.keys import KEY_ID

NODE_ID = r"^[A-Za-z0-9_-]{1,64}$"
OPERATION_ID = r"^[A-Za-z0-9._:@/+-]{1,200}$"  # the ledger's Ident

# types
QUORUM_CHANGE = "quorum.change_request"
QUORUM_RESULT = "quorum.change_result"
QUORUM_REPORT = "quorum.report"
CRDT_OPERATION = "crdt.operation"
CRDT_RESULT = "crdt.operation_result"
CRDT_CHANGE = "crdt.change"
CRDT_GAP = "crdt.feed_gap"
CRDT_ACK = "crdt.feed_ack"
CRDT_ACK_RESULT = "crdt.feed_ack_result"
SECURITY_KEYS = "security.keys"
SECURITY_KEYS_RESULT = "security.keys_result"
SECURITY_ATTEST = "security.attest_request"
SECURITY_ATTESTATION = "security.attestation"
SECURITY_FAILURES = "security.auth_failures"
BENCH_METRICS = "bench.metrics"
BENCH_RUN = "bench.run_request"
BENCH_RESULT = "bench.run_result"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Message(BaseModel):
    """What raft-manager sends: a peer may ignore fields it does not know."""

    model_config = ConfigDict(frozen=True)


class _Result(_Message):
    ok: bool
    error: str | None = None  # a stable code: bad-payload, rejected, timed-out, busy, ...
    reason: str | None = None


# -- Quorum Manager ----------------------------------------------------------------------------


class ChangeRequest(_Request):
    """add: a voter, safely (a learner first, promoted once it caught up); add_learner: a
    learner only; promote: a learner to voter; remove: any member (the leader too)."""

    action: Literal["add", "add_learner", "promote", "remove"]
    node: str = Field(pattern=NODE_ID)
    address: str | None = None  # Raft address (add, add_learner)
    client_address: str | None = None  # client address (add, add_learner)
    timeout_ms: int | None = Field(default=None, ge=1, le=3_600_000)

    @model_validator(mode="after")
    def _addresses(self) -> ChangeRequest:
        adding = self.action in ("add", "add_learner")
        given = (self.address, self.client_address)
        if adding:
            if None in given:
                raise ValueError(f"{self.action} needs address and client_address")
            for address in given:
                parse_address(str(address))
        elif given != (None, None):
            raise ValueError(f"{self.action} takes no addresses")
        return self


class MemberEntry(_Message):
    id: str
    role: Literal["voter", "learner"]
    address: str | None
    client_address: str | None


class ChangeResult(_Result):
    action: str | None = None
    node: str | None = None
    outcome: Literal["applied", "rejected", "timed_out"]
    members: list[MemberEntry] | None = None  # after the change, when applied


class MemberHealth(_Message):
    id: str
    role: Literal["voter", "learner"]
    state: str | None  # its Raft role (leader, follower, ...), None when it did not answer
    reachable: bool
    lag: int | None  # entries its log is behind the leader's
    applied_index: int | None


class QuorumReport(_Message):
    reporter: str  # the node that sent it (the leader)
    trigger: Literal["period", "change"]
    leader: str | None
    term: int
    health: Literal["healthy", "degraded", "no_quorum"]
    reason: str
    members: list[MemberHealth]


# -- CRDT Synchronizer -------------------------------------------------------------------------


class CrdtOperation(_Request):
    type: Literal["CRDT_OPERATION"]
    operation: JsonValue
    timestamp: JsonValue = None
    id: str | None = Field(default=None, pattern=OPERATION_ID)  # default: the envelope id

    @model_validator(mode="after")
    def _present(self) -> CrdtOperation:
        if self.operation is None:
            raise ValueError("operation is required")
        return self


class CrdtResult(_Result):
    id: str | None = None  # the operation id
    committed: bool
    index: int | None = None  # its place in the log
    duplicate: bool = False  # ordered before under this id: index is that first place


class FeedPoint(_Message):
    """One event of the change feed: entry `index`, its `position`-th event (0-based)."""

    index: int = Field(ge=1)
    position: int = Field(ge=0)


class FeedChange(_Message):
    index: int
    position: int
    term: int
    ts: int  # the ledger's time, Unix ms
    kind: str
    data: dict[str, Any] | None  # None when `truncated`
    prev: FeedPoint | None  # the event before it on the feed; None: a chain starts here
    truncated: bool = False  # data did not fit in an envelope; read the state instead


class FeedGap(_Message):
    after: FeedPoint | None  # the last event sent before the gap
    resume_index: int  # the next crdt.change comes from this index, with prev null


class FeedAck(_Request):
    index: int = Field(ge=1)
    position: int = Field(default=0, ge=0, le=1_000_000)


class FeedAckResult(_Result):
    cursor: FeedPoint | None = None
    moved: bool = False


# -- Security Manager --------------------------------------------------------------------------


class KeySpec(_Request):
    key_id: str = Field(pattern=KEY_ID.pattern)
    secret_hex: str | None = None
    secret_base64: str | None = None
    not_before: AwareDatetime | None = None
    expires: AwareDatetime | None = None


class KeysRequest(_Request):
    install: list[KeySpec] = Field(default_factory=list, max_length=16)
    expire: dict[str, AwareDatetime] = Field(default_factory=dict, max_length=16)  # id -> when
    revoke: list[str] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _something(self) -> KeysRequest:
        if not (self.install or self.expire or self.revoke):
            raise ValueError("give keys to install, expire or revoke")
        return self


class KeysResult(_Result):
    node: str
    key_ids: list[str] = Field(default_factory=list)  # installed after the change
    signing_key_id: str | None = None


class AttestRequest(_Request):
    nonce: str | None = Field(default=None, max_length=128)  # echoed


class Attestation(_Result):
    node: str
    nonce: str | None = None
    key_ids: list[str] = Field(default_factory=list)
    signing_key_id: str | None = None
    frames_authenticated: bool = False
    signatures_required: bool = False
    members: list[str] | None = None  # the cluster's members as the leader sees them


class RejectionReport(_Message):
    reason: str
    detail: str
    stream: str
    entry_id: str
    envelope_id: str | None
    sender: str | None
    key_id: str | None


class AuthFailures(_Message):
    node: str
    rejections: list[RejectionReport]  # bus envelopes refused at the gate since the last report
    omitted: int  # further rejections not listed
    frames: dict[str, int]  # Raft frames dropped for failing authentication, by reason


# -- Performance Benchmarker -------------------------------------------------------------------


class Latency(_Message):
    count: int  # samples in the period
    p50_us: int | None
    p99_us: int | None


class MetricsSnapshot(_Message):
    node: str
    role: str
    term: int
    commit_index: int
    period_ms: int
    proposals_per_s: int  # accepted by this node as leader
    commits_per_s: int  # the commit index's progress
    elections: int  # terms begun in the period
    commit_latency: Latency  # proposal to applied, on the leader
    fsync_latency: Latency


class BenchRequest(_Request):
    count: int = Field(default=1000, ge=1, le=100_000)
    concurrency: int = Field(default=8, ge=1, le=64)
    duration_ms: int = Field(default=5000, ge=1, le=600_000)


class BenchLatency(_Message):
    p50_us: int | None
    p99_us: int | None
    max_us: int | None


class BenchResult(_Result):
    node: str
    count: int | None = None
    concurrency: int | None = None
    duration_ms: int | None = None
    completed: int = 0
    failed: int = 0
    elapsed_ms: int = 0
    per_s: int = 0
    latency: BenchLatency | None = None
    stopped_by: Literal["count", "duration"] | None = None


MODELS: dict[str, type[BaseModel]] = {
    QUORUM_CHANGE: ChangeRequest,
    QUORUM_RESULT: ChangeResult,
    QUORUM_REPORT: QuorumReport,
    CRDT_OPERATION: CrdtOperation,
    CRDT_RESULT: CrdtResult,
    CRDT_CHANGE: FeedChange,
    CRDT_GAP: FeedGap,
    CRDT_ACK: FeedAck,
    CRDT_ACK_RESULT: FeedAckResult,
    SECURITY_KEYS: KeysRequest,
    SECURITY_KEYS_RESULT: KeysResult,
    SECURITY_ATTEST: AttestRequest,
    SECURITY_ATTESTATION: Attestation,
    SECURITY_FAILURES: AuthFailures,
    BENCH_METRICS: MetricsSnapshot,
    BENCH_RUN: BenchRequest,
    BENCH_RESULT: BenchResult,
}
"""Every type, to the model of its payload."""
