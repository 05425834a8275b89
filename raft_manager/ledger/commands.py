"""The ledger's commands and queries: pydantic models, validated at the edge.

Theory of operation: a client's command is validated here (by the node that receives it, before
it is proposed), so a malformed or oversized command gets a clear `invalid_command` error and
never reaches the log. A valid command is normalized (`model_dump`: defaults filled in) and goes
into the log inside an envelope stamped with the leader's clock:

    {"ts": ms, "s": session id, "q": request number, "a": acknowledged below, "c": command}

The state machine trusts what the log holds and does not validate it again (one pydantic pass
per entry on every replica would cost more than applying it). Queries are read-only and never
enter the log. `LedgerConfig` holds the settings every replica must share.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import LedgerError
from .json_values import finite

Args = dict[str, Any]
"""A command as the log holds it: the model's `model_dump`, every field present. The state
machine reads these dicts directly (a model per entry would cost 3.5 us on every replica)."""

Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@/+-]+$")
]
Key = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Seconds = Annotated[float, Field(ge=0.001, le=10_000_000)]  # the ledger's clock counts ms


class LedgerConfig(BaseModel):
    """Settings that every replica must share (they shape what apply does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_payload_bytes: int = Field(default=65_536, ge=16, le=16 << 20)
    session_timeout_seconds: float = Field(default=3600.0, gt=0)
    max_results_per_session: int = Field(default=10_000, ge=1)
    feed_keep: int = Field(default=10_000, ge=1)  # change-feed events kept in memory
    crdt_dedupe_seconds: float = Field(default=3600.0, gt=0)  # CRDT operation ids remembered
    finished_task_retention_seconds: float = Field(default=3600.0, gt=0)  # then forgotten
    max_finished_tasks: int = Field(default=10_000, ge=1)  # beyond: the first finished go
    dead_agent_retention_seconds: float = Field(default=3600.0, gt=0)  # after death: forgotten
    closed_decision_retention_seconds: float = Field(default=3600.0, gt=0)  # after closing


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


DEFAULT_MAX_PAYLOAD_BYTES = LedgerConfig().max_payload_bytes


def _check_size(value: Any, info: ValidationInfo) -> Any:
    """At most `max_payload_bytes` of JSON (compact, UTF-8: as the value is stored), and no
    NaN or infinity (JSON has none: the value would be stored as null)."""
    if not finite(value):
        raise ValueError("NaN and infinity are not finite numbers: JSON has no such value")
    limit = (info.context or {}).get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES)
    size = len(pydantic_core.to_json(value))
    if size > limit:
        raise ValueError(f"{size} bytes of JSON, more than the {limit} allowed")
    return value


class TaskSubmit(_Command):
    op: Literal["task.submit"] = "task.submit"
    id: Ident | None = None
    queue: Ident = "default"
    payload: JsonValue = None
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    depends_on: list[Ident] = Field(default_factory=list, max_length=1000)
    max_attempts: int = Field(default=3, ge=1, le=1000)

    _payload_size = field_validator("payload")(_check_size)

    @field_validator("depends_on")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a dependency is named twice")
        return value


class TaskClaim(_Command):
    op: Literal["task.claim"] = "task.claim"
    agent: Ident
    queues: list[Ident] = Field(default_factory=lambda: ["default"], min_length=1, max_length=64)
    lease_seconds: Seconds = 30.0


class TaskRenew(_Command):
    op: Literal["task.renew"] = "task.renew"
    task_id: Ident
    agent: Ident
    token: int = Field(ge=1)
    lease_seconds: Seconds | None = None  # default: the claim's lease


class TaskComplete(_Command):
    op: Literal["task.complete"] = "task.complete"
    task_id: Ident
    agent: Ident
    token: int = Field(ge=1)
    result: JsonValue = None

    _result_size = field_validator("result")(_check_size)


class TaskFail(_Command):
    op: Literal["task.fail"] = "task.fail"
    task_id: Ident
    agent: Ident
    token: int = Field(ge=1)
    reason: Text = ""


class TaskCancel(_Command):
    op: Literal["task.cancel"] = "task.cancel"
    task_id: Ident
    reason: Text = ""


class AgentRegister(_Command):
    op: Literal["agent.register"] = "agent.register"
    agent_id: Ident
    capabilities: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    heartbeat_timeout_seconds: Seconds = 30.0


class AgentHeartbeat(_Command):
    op: Literal["agent.heartbeat"] = "agent.heartbeat"
    agent_id: Ident


class AgentDeregister(_Command):
    op: Literal["agent.deregister"] = "agent.deregister"
    agent_id: Ident


class MemoryPut(_Command):
    op: Literal["memory.put"] = "memory.put"
    namespace: Ident = "default"
    key: Key
    value: JsonValue
    ttl_seconds: Seconds | None = None

    _value_size = field_validator("value")(_check_size)


class MemoryDelete(_Command):
    op: Literal["memory.delete"] = "memory.delete"
    namespace: Ident = "default"
    key: Key


class MemoryCas(_Command):
    """Compare-and-set: on the current value (`expected_value`; an absent key never matches)
    or on the version (`expected_version`; 0 means absent). Exactly one of the two: `compare`
    says which, and is "version" when only an expected_version is given."""

    op: Literal["memory.cas"] = "memory.cas"
    namespace: Ident = "default"
    key: Key
    value: JsonValue
    expected_value: JsonValue = None
    expected_version: int | None = Field(default=None, ge=0)
    compare: Literal["value", "version"] = "value"
    ttl_seconds: Seconds | None = None

    _value_size = field_validator("value", "expected_value")(_check_size)

    @model_validator(mode="before")
    @classmethod
    def _version_when_named(cls, data: Any) -> Any:
        named = isinstance(data, dict) and data.get("expected_version") is not None
        return {**data, "compare": "version"} if named and "compare" not in data else data

    @model_validator(mode="after")
    def _one_comparison(self) -> MemoryCas:
        if self.compare == "version" and self.expected_version is None:
            raise ValueError("compare on version needs expected_version")
        by_version = self.compare == "version"
        if self.expected_version is not None and not by_version:
            raise ValueError("exactly one comparison: expected_version goes with compare=version")
        if by_version and self.expected_value is not None:
            raise ValueError("exactly one comparison: expected_value goes with compare=value")
        return self


class DecisionPropose(_Command):
    op: Literal["decision.propose"] = "decision.propose"
    id: Ident | None = None
    question: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["approve", "reject"], min_length=2, max_length=32
    )
    voters: list[Ident] | None = Field(default=None, min_length=1, max_length=10_000)
    deadline_seconds: Seconds = 300.0

    @model_validator(mode="after")
    def _distinct(self) -> DecisionPropose:
        if len(set(self.options)) != len(self.options):
            raise ValueError("an option is listed twice")
        if self.voters is not None and len(set(self.voters)) != len(self.voters):
            raise ValueError("a voter is listed twice")
        return self


class DecisionVote(_Command):
    op: Literal["decision.vote"] = "decision.vote"
    decision_id: Ident
    voter: Ident
    option: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    reason: Text = ""


class CrdtOperation(_Command):
    """An operation of the swarm's CRDTs, given its place in the total order: the ledger keeps
    no CRDT state; it puts the operation on the change feed at its log index. `id` names one
    operation: sent again (within crdt_dedupe_seconds) it is answered with its first index."""

    op: Literal["crdt.op"] = "crdt.op"
    id: Ident
    origin: Ident | None = None  # who sent it (the bus sender)
    operation: JsonValue
    timestamp: JsonValue = None  # the operation's own clock (Lamport, HLC, vector): opaque here

    _operation_size = field_validator("operation", "timestamp")(_check_size)

    @field_validator("operation")
    @classmethod
    def _present(cls, value: JsonValue) -> JsonValue:
        if value is None:
            raise ValueError("an operation is required")
        return value


class CursorSet(_Command):
    """A reader of the change feed acknowledges the events up to and including event
    `position` (0-based) of entry `index`; a cursor only moves forward."""

    op: Literal["cursor.set"] = "cursor.set"
    name: Ident
    index: int = Field(ge=1)
    position: int = Field(default=0, ge=0, le=1_000_000)


class Clock(_Command):
    """No change but the time: the leader proposes one when the ledger is idle, so leases,
    heartbeats, TTLs and deadlines expire on time."""

    op: Literal["clock"] = "clock"


Command = Annotated[
    TaskSubmit
    | TaskClaim
    | TaskRenew
    | TaskComplete
    | TaskFail
    | TaskCancel
    | AgentRegister
    | AgentHeartbeat
    | AgentDeregister
    | MemoryPut
    | MemoryDelete
    | MemoryCas
    | DecisionPropose
    | DecisionVote
    | CrdtOperation
    | CursorSet
    | Clock,
    Field(discriminator="op"),
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskGet(_Query):
    query: Literal["task.get"] = "task.get"
    task_id: Ident


class TaskList(_Query):
    query: Literal["task.list"] = "task.list"
    state: Literal["waiting", "pending", "claimed", "done", "failed", "cancelled"] | None = None
    queue: Ident | None = None
    agent: Ident | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class AgentList(_Query):
    query: Literal["agent.list"] = "agent.list"


class MemoryGet(_Query):
    query: Literal["memory.get"] = "memory.get"
    namespace: Ident = "default"
    key: Key


class MemoryList(_Query):
    query: Literal["memory.list"] = "memory.list"
    namespace: Ident = "default"
    prefix: str = ""
    limit: int = Field(default=100, ge=1, le=10_000)


class DecisionGet(_Query):
    query: Literal["decision.get"] = "decision.get"
    decision_id: Ident


class DecisionList(_Query):
    query: Literal["decision.list"] = "decision.list"
    state: Literal["open", "approved", "rejected", "expired"] | None = None


class FeedRead(_Query):
    query: Literal["feed"] = "feed"
    from_index: int = Field(default=1, ge=1)
    limit: int = Field(default=100, ge=1, le=10_000)


class CursorGet(_Query):
    query: Literal["cursor.get"] = "cursor.get"
    name: Ident


Query = Annotated[
    TaskGet
    | TaskList
    | AgentList
    | MemoryGet
    | MemoryList
    | DecisionGet
    | DecisionList
    | FeedRead
    | CursorGet,
    Field(discriminator="query"),
]
QUERY_ADAPTER: TypeAdapter[Query] = TypeAdapter(Query)


def explain(error: ValidationError) -> str:
    """Every problem pydantic found, as `field: message; ...` (what invalid_command says)."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "command"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def parse_command(raw: object, config: LedgerConfig | None = None) -> Command:
    """A validated command, or LedgerError("invalid_command") saying every problem."""
    limit = config.max_payload_bytes if config is not None else DEFAULT_MAX_PAYLOAD_BYTES
    try:
        return COMMAND_ADAPTER.validate_python(raw, context={"max_payload_bytes": limit})
    except ValidationError as error:
        raise LedgerError("invalid_command", explain(error)) from None


def parse_query(raw: object) -> Query:
    """A validated query, or LedgerError("invalid_command")."""
    try:
        return QUERY_ADAPTER.validate_python(raw)
    except ValidationError as error:
        raise LedgerError("invalid_command", explain(error)) from None


def encode_entry(command: Command, ts: int, session: str = "", seq: int = 0, ack: int = 0) -> bytes:
    """The log entry for a validated command, stamped by the leader (serialized by pydantic's
    own encoder, straight to bytes: a fifth of the time json.dumps of model_dump takes)."""
    head = b'{"ts":%d,"s":%b,"q":%d,"a":%d,"c":' % (ts, pydantic_core.to_json(session), seq, ack)
    return head + type(command).__pydantic_serializer__.to_json(command) + b"}"
