"""The wire format of Raft messages between nodes: versioned msgpack frames.

Theory of operation: a frame is one msgpack array

    [version, cluster id, sender id, message type code, field, field, ...]

with the message's own fields in the order its dataclass declares them (the sender and term
included; the recipient is implied by the connection). Entries travel as [index, term, type, data]
arrays, snapshot metadata as [index, term, voters, learners, contexts]. On a byte stream each
frame is preceded by its length (u32, big-endian), and a frame longer than the receiver's cap is
refused before it is read.

Decoding is strict and total: anything that is not exactly a frame of this version, for this
cluster, with fields of the right shapes, raises FrameError with a short reason (which a transport
counts, per reason, and drops); nothing else escapes. Whether the message makes sense to Raft is
then core's validate_message's business.

Optionally an `Authenticator` (transport/auth.py) wraps each frame in a MAC: `encode` seals
what it built, and `decode` opens the seal before it looks at anything else, so a frame that
fails authentication is refused (FrameError) without its body being decoded. Off by default.
"""

from __future__ import annotations

import operator
import struct
import threading
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Protocol

import msgpack

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryType,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotAck,
    SnapshotMeta,
    TimeoutNow,
    VoteResponse,
)
from raft_manager.core.messages import MESSAGE_TYPES

PROTOCOL_VERSION = 1
LENGTH_PREFIX = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 64 << 20

# Type codes are part of the protocol: append new ones, never renumber.
_CODES: dict[type[Message], int] = {
    AppendEntries: 1,
    AppendResponse: 2,
    Heartbeat: 3,
    HeartbeatResponse: 4,
    RequestVote: 5,
    VoteResponse: 6,
    InstallSnapshot: 7,
    SnapshotAck: 8,
    TimeoutNow: 9,
    ReadIndexRequest: 10,
    ReadIndexResponse: 11,
}
if set(_CODES) != set(MESSAGE_TYPES):  # a new message type needs a code before it can travel
    raise ImportError("the wire codec lacks a type code for some core message")
_ENTRY_TYPES = {entry_type.value: entry_type for entry_type in EntryType}
_HEAD = 4  # version, cluster, sender, code


_packers = threading.local()
KEEP_PACKER_BYTES = 256 << 10


def pack(value: Any) -> bytes:
    """`value` in msgpack (bytes as bin), by this thread's own Packer: msgpack.packb makes a
    Packer per call, which is a third of the cost of packing a small frame (1.10 against
    0.68 us for a client request). A Packer keeps its buffer at the largest size it packed,
    so one that packed more than KEEP_PACKER_BYTES (a snapshot chunk, a log page), or failed
    part-way, is let go."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True)
    try:
        frame: bytes = packer.pack(value)
    except BaseException:
        _packers.packer = None  # it may have grown before it failed
        raise
    if len(frame) > KEEP_PACKER_BYTES:
        _packers.packer = None
    return frame


class FrameError(ValueError):
    """A frame that cannot be accepted; `reason` is short and stable, fit to count drops by."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Authenticator(Protocol):
    def seal(self, frame: bytes) -> bytes:
        """The frame with its authentication; FrameError when it cannot be sealed."""
        ...

    def open(self, sealed: bytes) -> bytes:
        """The frame inside, once authenticated; FrameError otherwise."""
        ...


def _field_names(kind: type[Message]) -> tuple[str, ...]:
    """The fields a frame carries after its head, in declared order: all but the sender (in the
    head) and the recipient (implied by the connection)."""
    return tuple(field.name for field in fields(kind) if field.name not in ("frm", "to"))


def _encode_entries(entries: tuple[Entry, ...]) -> list[list[Any]]:
    return [[entry.index, entry.term, entry.type, entry.data] for entry in entries]


def _encode_meta(meta: SnapshotMeta) -> list[Any]:
    conf = meta.conf
    return [meta.index, meta.term, list(conf.voters), list(conf.learners), dict(conf.contexts)]


def encode(msg: Message, cluster_id: str, authenticator: Authenticator | None = None) -> bytes:
    """The frame for `msg` (without the length prefix), sealed when an authenticator is given
    (which may raise FrameError)."""
    layout = _LAYOUTS[type(msg)]
    body = [PROTOCOL_VERSION, cluster_id, msg.frm, layout.code, *layout.values(msg)]
    for position, convert in layout.encoders:
        body[position] = convert(body[position])
    frame = pack(body)
    return frame if authenticator is None else authenticator.seal(frame)


class FrameEncoder:
    """`encode` for one cluster, which encodes a leader's burst of appends once, not once per
    follower: the frame carries no recipient, and the appends to followers at the same place in
    the log are alike but for it. The last AppendEntries' frame is kept and used again for the
    next one that has the same sender, term, position and commit and the same entries (the same
    Entry objects: slices of one log, so the first and the last decide). Frames are sealed per
    message, never kept sealed (a kept frame may outlive its key). With quorum fan-out (the
    node's default) a 3-node leader sends new entries to one follower, so this pays in larger
    clusters, and without fan-out."""

    def __init__(self, cluster_id: str, authenticator: Authenticator | None = None) -> None:
        self.cluster_id = cluster_id
        self.authenticator = authenticator
        self._last: tuple[AppendEntries, bytes] | None = None

    def __call__(self, msg: Message) -> bytes:
        if type(msg) is not AppendEntries:
            return encode(msg, self.cluster_id, self.authenticator)
        last = self._last
        if last is not None and _alike(last[0], msg):
            frame = last[1]
        else:
            frame = encode(msg, self.cluster_id)
            self._last = (msg, frame)
        return frame if self.authenticator is None else self.authenticator.seal(frame)


def _alike(a: AppendEntries, b: AppendEntries) -> bool:
    """Would the two encode to the same frame? (Their recipients are not encoded.)"""
    ea, eb = a.entries, b.entries
    return (
        a.term == b.term
        and a.prev_index == b.prev_index
        and a.prev_term == b.prev_term
        and a.commit == b.commit
        and a.frm == b.frm
        and len(ea) == len(eb)
        and (not ea or (ea[0] is eb[0] and ea[-1] is eb[-1]))
    )


def _decode_entries(value: Any) -> tuple[Entry, ...]:
    if not isinstance(value, list):
        raise FrameError("bad-field", "entries must be an array")
    entries = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 4):
            raise FrameError("bad-field", "an entry must be [index, term, type, data]")
        index, term, code, data = item
        entry_type = _ENTRY_TYPES.get(code) if type(code) is int else None
        if entry_type is None or type(index) is not int or type(term) is not int:
            raise FrameError("bad-field", "an entry has a bad index, term or type")
        if not isinstance(data, bytes):
            raise FrameError("bad-field", "entry data must be bytes")
        entries.append(Entry(index, term, entry_type, data))
    return tuple(entries)


def _decode_meta(value: Any) -> SnapshotMeta:
    if not (isinstance(value, list) and len(value) == 5):
        raise FrameError(
            "bad-field", "snapshot meta must be [index, term, voters, learners, contexts]"
        )
    index, term, voters, learners, contexts = value
    if type(index) is not int or type(term) is not int:
        raise FrameError("bad-field", "snapshot meta index and term must be integers")
    for ids in (voters, learners):
        if not (isinstance(ids, list) and all(isinstance(node, str) for node in ids)):
            raise FrameError("bad-field", "snapshot configuration must list node ids")
    if not (
        isinstance(contexts, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in contexts.items())
    ):
        raise FrameError("bad-field", "member contexts must map node ids to strings")
    conf = ConfState(tuple(voters), tuple(learners), tuple(contexts.items()))
    return SnapshotMeta(index, term, conf)


# The fields that are not plain msgpack values: (encoder, decoder) by field name.
_Convert = Callable[[Any], Any]
_NESTED: dict[str, tuple[_Convert, _Convert]] = {
    "entries": (_encode_entries, _decode_entries),
    "meta": (_encode_meta, _decode_meta),
}


class _Layout:
    """How one message type travels: its type code, its fields' names, one call that reads all
    their values, and the fields converted on the way out and in (by position in the frame)."""

    __slots__ = ("code", "decoders", "encoders", "kind", "names", "values")

    def __init__(self, kind: type[Message], code: int) -> None:
        self.kind, self.code, self.names = kind, code, _field_names(kind)
        read = operator.attrgetter(*self.names)  # a tuple of values when there are several
        self.values: Callable[[Message], tuple[Any, ...]] = (
            read if len(self.names) > 1 else lambda msg: (read(msg),)
        )
        at = [(_HEAD + i, _NESTED[name]) for i, name in enumerate(self.names) if name in _NESTED]
        self.encoders = [(position, pair[0]) for position, pair in at]
        self.decoders = [(position, pair[1]) for position, pair in at]


_LAYOUTS = {kind: _Layout(kind, code) for kind, code in _CODES.items()}
_BY_CODE = {layout.code: layout for layout in _LAYOUTS.values()}


def decode(
    frame: bytes, cluster_id: str, recipient: NodeId, authenticator: Authenticator | None = None
) -> Message:
    """The message in `frame`, addressed to `recipient`; raises FrameError. With an
    authenticator, the frame must be sealed and its seal is checked first."""
    if authenticator is not None:
        frame = authenticator.open(frame)
    try:
        body = msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise FrameError("undecodable", type(error).__name__) from None
    if not isinstance(body, list) or len(body) < _HEAD:
        raise FrameError("not-a-frame")
    version, cluster, sender, code = body[:_HEAD]
    if version != PROTOCOL_VERSION:
        raise FrameError("bad-version", repr(version))
    if cluster != cluster_id:
        raise FrameError("wrong-cluster", repr(cluster))
    if not (isinstance(sender, str) and sender):
        raise FrameError("bad-sender")
    layout = _BY_CODE.get(code) if type(code) is int else None
    if layout is None:
        raise FrameError("unknown-type", repr(code))
    if len(body) != _HEAD + len(layout.names):
        raise FrameError("bad-arity", f"{layout.kind.__name__} takes {len(layout.names)} fields")
    for position, convert in layout.decoders:
        body[position] = convert(body[position])
    values = dict(zip(layout.names, body[_HEAD:], strict=True))
    return layout.kind(frm=sender, to=recipient, **values)  # the fields' shapes: validate_message
