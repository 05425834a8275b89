"""Plain values shared by every part of the Raft core.

Theory of operation: these are immutable records (named tuples and frozen dataclasses) that the
core hands to the runtime and takes back from it: log entries, the durable hard state, the cluster
configuration, snapshots and read states. They carry no behaviour beyond cheap derived values, so
that the storage, transport and simulator floors can depend on them without pulling in the protocol.
Node ids are strings; every collection of ids that the core iterates over is kept sorted so that
runs are deterministic whatever PYTHONHASHSEED is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import NamedTuple, Protocol

NodeId = str


class EntryType(IntEnum):
    """What a log entry carries."""

    NORMAL = 0  # an opaque command for the state machine
    NOOP = 1  # appended by every new leader; the state machine skips it
    CONF_CHANGE = 2  # a membership change (see membership.py)
    CHECKPOINT = 3  # a marker with no data: the state machine skips it; runtimes note a digest


@dataclass(slots=True)
class Entry:
    """One log entry. `data` is opaque to the core.

    Entries are shared, not copied, between the log, Readies and messages: nothing may change one
    after it is made. (Not frozen only because a frozen dataclass costs four times as much to make,
    and the leader makes one per proposal.)
    """

    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


# Bytes an entry costs in a message besides its payload (index, term and type fields); used
# for byte-bounded batching.
ENTRY_OVERHEAD_BYTES = 24


class HardState(NamedTuple):
    """The state that must be durable before any message that depends on it is sent."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class SoftState(NamedTuple):
    """Volatile facts a runtime may want to show: who leads and what this node is."""

    leader: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class ConfState:
    """The cluster configuration: voters decide elections and commits; learners only replicate.
    `contexts` holds, per member added by a membership change, the change's context (opaque to
    the core; the runtime keeps the member's addresses there), so that it survives compaction."""

    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()
    contexts: tuple[tuple[NodeId, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", tuple(sorted(set(self.voters))))
        object.__setattr__(self, "learners", tuple(sorted(set(self.learners))))
        object.__setattr__(self, "contexts", tuple(sorted(dict(self.contexts).items())))

    def context(self, node: NodeId) -> str:
        return dict(self.contexts).get(node, "")

    @property
    def members(self) -> tuple[NodeId, ...]:
        return tuple(sorted(set(self.voters) | set(self.learners)))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot sits in the log and which configuration was in force there."""

    index: int
    term: int
    conf: ConfState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state machine image at `meta.index`; `data` is opaque to the core."""

    meta: SnapshotMeta
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read became safe: serve it once the state machine has applied `index`."""

    index: int
    context: bytes


class RestoredState(NamedTuple):
    """What a node reloads from durable storage when it (re)starts."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry]


class RandomSource(Protocol):
    """The core's only source of randomness, injected so runs are reproducible."""

    def randrange(self, start: int, stop: int, /) -> int: ...
