"""The messages Raft nodes exchange, and their validation.

Theory of operation: one dataclass per message type; every message carries its sender (`frm`),
recipient (`to`) and the sender's term. Nothing changes a message once it is made; the classes
are not frozen only because a frozen dataclass costs twice as much to make (1.9 against 0.8 us
for an AppendEntries on this project's machine), and every write makes several on its critical
path (as Entry, core/types.py). The core validates each message it is given with
`validate_message` before it looks at it: a message whose fields cannot exist (a negative index,
entries that do not chain, an entry from a future term, an unknown type) raises InvalidMessage and
changes nothing. A message that is well formed but stale or out of protocol (an old term, an answer
nobody asked for) is not an error: the protocol itself says to ignore it or answer it.

Heartbeats carry a read round: a counter the leader raises at every broadcast. A follower echoes it,
and a round acknowledged by a quorum proves the leader was still the leader when that round went
out. ReadIndex and lease reads are both built on that one mechanism (see read_only.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidMessage
from .types import ConfState, Entry, EntryType, NodeId, SnapshotMeta


@dataclass(slots=True, kw_only=True)
class Message:
    frm: NodeId
    to: NodeId
    term: int


@dataclass(slots=True, kw_only=True)
class AppendEntries(Message):
    """Replicate `entries` after (prev_index, prev_term); tell the follower the commit index."""

    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


@dataclass(slots=True, kw_only=True)
class AppendResponse(Message):
    """Success: the follower's log matches the leader's up to `index`.

    Rejection: `index` is the prev_index that did not match; `hint_term` is the follower's term at
    that index (0 when its log is shorter) and `hint_index` is the first index the follower holds
    with that term (or its last index + 1 when its log is shorter), so the leader can skip a whole
    conflicting term per round trip.
    """

    index: int
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0


@dataclass(slots=True, kw_only=True)
class Heartbeat(Message):
    """Leader liveness; carries a commit index the follower surely holds and a read round."""

    commit: int
    round: int


@dataclass(slots=True, kw_only=True)
class HeartbeatResponse(Message):
    round: int


@dataclass(slots=True, kw_only=True)
class RequestVote(Message):
    """A (pre-)vote request. For a pre-vote, `term` is the term the sender would campaign in.

    `transfer` marks a campaign started by TimeoutNow: voters then ignore leader stickiness.
    """

    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(slots=True, kw_only=True)
class VoteResponse(Message):
    granted: bool
    pre_vote: bool = False


@dataclass(slots=True, kw_only=True)
class InstallSnapshot(Message):
    """One chunk of the leader's snapshot, starting at byte `offset`; `done` on the last one."""

    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


@dataclass(slots=True, kw_only=True)
class SnapshotAck(Message):
    """The follower holds the first `received` bytes of the snapshot at `snapshot_index`."""

    snapshot_index: int
    received: int


@dataclass(slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leadership transfer: start an election at once, skipping pre-vote."""


@dataclass(slots=True, kw_only=True)
class ReadIndexRequest(Message):
    """A follower forwards a linearizable read to the leader."""

    context: bytes


@dataclass(slots=True, kw_only=True)
class ReadIndexResponse(Message):
    """The leader's answer: the read is safe once `index` is applied. index -1: it was refused."""

    context: bytes
    index: int


def sendable_before_persist(msg: Message) -> bool:
    """May this message go out while the Ready that produced it is still being written?

    True for a leader's messages to its followers: they depend only on the leader's term and vote,
    made durable before it could win, and the leader counts its own log towards commit only once
    durable (Raft dissertation 10.2.1). Everything else waits for the fsync.
    """
    return isinstance(msg, AppendEntries | Heartbeat | InstallSnapshot)


MESSAGE_TYPES: tuple[type[Message], ...] = (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    VoteResponse,
    InstallSnapshot,
    SnapshotAck,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
)

_INT_FIELDS: dict[type[Message], tuple[str, ...]] = {
    AppendEntries: ("prev_index", "prev_term", "commit"),
    AppendResponse: ("index", "hint_index", "hint_term"),
    Heartbeat: ("commit", "round"),
    HeartbeatResponse: ("round",),
    RequestVote: ("last_index", "last_term"),
    VoteResponse: (),
    InstallSnapshot: ("offset",),
    SnapshotAck: ("snapshot_index", "received"),
    TimeoutNow: (),
    ReadIndexRequest: (),
    ReadIndexResponse: (),
}


_BOOL_FIELDS: dict[type[Message], tuple[str, ...]] = {
    AppendResponse: ("reject",),
    RequestVote: ("pre_vote", "transfer"),
    VoteResponse: ("granted", "pre_vote"),
    InstallSnapshot: ("done",),
}


def _is_int(value: object) -> bool:
    return type(value) is int


def _check_entries(msg: AppendEntries) -> None:
    expected = msg.prev_index + 1
    previous_term = msg.prev_term
    for entry in msg.entries:
        if not isinstance(entry, Entry):
            raise InvalidMessage(f"entry {entry!r} is not an Entry")
        if not (_is_int(entry.index) and _is_int(entry.term)):
            raise InvalidMessage("entry index and term must be integers")
        if entry.index != expected:
            raise InvalidMessage(
                f"entries do not chain: expected index {expected}, got {entry.index}"
            )
        if entry.term < previous_term or entry.term > msg.term or entry.term < 1:
            raise InvalidMessage(
                f"entry {entry.index} has term {entry.term}, outside [{previous_term}, {msg.term}]"
            )
        if not isinstance(entry.type, EntryType) or not isinstance(entry.data, bytes):
            raise InvalidMessage(f"entry {entry.index} has a bad type or payload")
        expected += 1
        previous_term = entry.term


def _check_conf(conf: object) -> None:
    if not isinstance(conf, ConfState):
        raise InvalidMessage("snapshot meta carries no configuration")
    ids = conf.voters + conf.learners
    if not conf.voters or not all(isinstance(node, str) and node for node in ids):
        raise InvalidMessage("snapshot configuration needs voters, named by non-empty strings")


def validate_message(msg: object, to: NodeId) -> Message:
    """Return `msg` if it is a well-formed message for node `to`, else raise InvalidMessage."""
    kind = type(msg)
    if kind not in _INT_FIELDS:
        raise InvalidMessage(f"unknown message type {kind.__name__}")
    assert isinstance(msg, Message)
    if not (isinstance(msg.frm, str) and msg.frm and isinstance(msg.to, str)):
        raise InvalidMessage("sender and recipient must be non-empty strings")
    if msg.to != to:
        raise InvalidMessage(f"message for {msg.to!r} delivered to {to!r}")
    if msg.frm == to:
        raise InvalidMessage("a node does not send messages to itself")
    if not _is_int(msg.term) or msg.term < 0:
        raise InvalidMessage(f"bad term {msg.term!r}")
    for name in _INT_FIELDS[kind]:
        value = getattr(msg, name)
        if not _is_int(value) or value < 0:
            raise InvalidMessage(f"{kind.__name__}.{name} must be a non-negative integer")
    for name in _BOOL_FIELDS.get(kind, ()):
        if type(getattr(msg, name)) is not bool:
            raise InvalidMessage(f"{kind.__name__}.{name} must be a bool")
    if isinstance(msg, AppendEntries):
        if not isinstance(msg.entries, tuple):
            raise InvalidMessage("entries must be a tuple")
        if msg.prev_term > msg.term or (msg.prev_index == 0) != (msg.prev_term == 0):
            raise InvalidMessage("prev_term is inconsistent with prev_index or term")
        _check_entries(msg)
    elif isinstance(msg, InstallSnapshot):
        meta = msg.meta
        if not isinstance(meta, SnapshotMeta) or not isinstance(msg.data, bytes):
            raise InvalidMessage("snapshot chunk has a bad meta or payload")
        if not (_is_int(meta.index) and _is_int(meta.term)) or meta.index < 1 or meta.term < 1:
            raise InvalidMessage("snapshot meta must name a positive index and term")
        if meta.term > msg.term:
            raise InvalidMessage("snapshot meta has a future term")
        _check_conf(meta.conf)
    elif isinstance(msg, ReadIndexRequest | ReadIndexResponse):
        if not isinstance(msg.context, bytes):
            raise InvalidMessage("read context must be bytes")
        if isinstance(msg, ReadIndexResponse) and (not _is_int(msg.index) or msg.index < -1):
            raise InvalidMessage("read index must be an integer >= -1")
    elif isinstance(msg, AppendResponse) and msg.index == 0 and msg.reject:
        raise InvalidMessage("a rejection must name the index that did not match")
    return msg
