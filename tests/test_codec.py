"""The node-to-node wire codec: round trips, and strict refusal of anything else."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_manager.core import (
    AppendEntries,
    AppendResponse,
    ConfState,
    Entry,
    EntryType,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InvalidMessage,
    Message,
    Raft,
    RaftConfig,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    SnapshotAck,
    SnapshotMeta,
    TimeoutNow,
    VoteResponse,
)
from raft_manager.transport.auth import FrameAuthenticator
from raft_manager.transport.codec import (
    KEEP_PACKER_BYTES,
    LENGTH_PREFIX,
    PROTOCOL_VERSION,
    FrameEncoder,
    FrameError,
    decode,
    encode,
    pack,
)
from raft_manager.transport.framed import FrameBuffer
from raft_manager.transport.keys import Key, KeyRing

CLUSTER = "swarm-1"
ints = st.integers(min_value=0, max_value=2**40)
ids = st.sampled_from(["n1", "n2", "n3", "agent-7"])
entries = st.lists(
    st.tuples(ints, ints, st.sampled_from(list(EntryType)), st.binary(max_size=64)).map(
        lambda t: Entry(*t)
    ),
    max_size=8,
).map(tuple)
metas = st.builds(
    SnapshotMeta,
    ints,
    ints,
    st.builds(ConfState, st.lists(ids, min_size=1).map(tuple), st.just(())),
)


def _message(kind: type[Message], **fields: Any) -> st.SearchStrategy[Message]:
    return st.builds(kind, frm=ids, to=st.just("n2"), term=ints, **fields)


messages = st.one_of(
    _message(AppendEntries, prev_index=ints, prev_term=ints, entries=entries, commit=ints),
    _message(AppendResponse, index=ints, reject=st.booleans(), hint_index=ints, hint_term=ints),
    _message(Heartbeat, commit=ints, round=ints),
    _message(HeartbeatResponse, round=ints),
    _message(
        RequestVote,
        last_index=ints,
        last_term=ints,
        pre_vote=st.booleans(),
        transfer=st.booleans(),
    ),
    _message(VoteResponse, granted=st.booleans(), pre_vote=st.booleans()),
    _message(
        InstallSnapshot, meta=metas, offset=ints, data=st.binary(max_size=64), done=st.booleans()
    ),
    _message(SnapshotAck, snapshot_index=ints, received=ints),
    _message(TimeoutNow),
    _message(ReadIndexRequest, context=st.binary(max_size=16)),
    _message(ReadIndexResponse, context=st.binary(max_size=16), index=ints),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_survives_a_round_trip(msg: Message) -> None:
    assert decode(encode(msg, CLUSTER), CLUSTER, "n2") == msg


def test_frames_behind_their_length_prefixes_come_back_whole_from_a_stream() -> None:
    msg = Heartbeat(frm="n1", to="n2", term=4, commit=9, round=2)
    frame = encode(msg, CLUSTER)
    stream = (LENGTH_PREFIX.pack(len(frame)) + frame) * 2
    frames = FrameBuffer(1 << 20).feed(stream)
    assert [decode(frame, CLUSTER, "n2") for frame in frames] == [msg, msg]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_frame_error_and_nothing_else(blob: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode(blob, CLUSTER, "n2")


@settings(max_examples=200, deadline=None)
@given(messages, st.data())
def test_every_truncation_of_a_frame_is_refused(msg: Message, data: st.DataObject) -> None:
    frame = encode(msg, CLUSTER)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    with pytest.raises(FrameError):
        decode(frame[:cut], CLUSTER, "n2")


def _frame(*body: Any) -> bytes:
    return msgpack.packb(list(body), use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_frame(PROTOCOL_VERSION + 1, CLUSTER, "n1", 4, 1, 1), "bad-version"),
        (_frame(PROTOCOL_VERSION, "other", "n1", 4, 1, 1), "wrong-cluster"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "", 4, 1, 1), "bad-sender"),
        (_frame(PROTOCOL_VERSION, CLUSTER, 7, 4, 1, 1), "bad-sender"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", 99, 1, 1), "unknown-type"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", "4", 1, 1), "unknown-type"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", 4, 1), "bad-arity"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", 1, 1, 0, 0, "entries", 0), "bad-field"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", 1, 1, 0, 0, [[1, 1, 0, "text"]], 0), "bad-field"),
        (_frame(PROTOCOL_VERSION, CLUSTER, "n1", 1, 1, 0, 0, [[1, 1, 9, b""]], 0), "bad-field"),
        (
            _frame(PROTOCOL_VERSION, CLUSTER, "n1", 7, 1, [1, 1, "n1", []], 0, b"", True),
            "bad-field",
        ),
        (msgpack.packb({"version": 1}), "not-a-frame"),
        (b"\xc1", "undecodable"),
    ],
)
def test_malformed_frames_name_their_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode(frame, CLUSTER, "n2")
    assert caught.value.reason == reason


def test_a_well_framed_but_impossible_message_is_refused_by_the_core() -> None:
    # The codec checks shapes; the core checks meaning: a negative index never reaches the log.
    frame = _frame(PROTOCOL_VERSION, CLUSTER, "n1", 1, 5, -3, 1, [], 0)
    msg = decode(frame, CLUSTER, "n2")
    node = Raft(RaftConfig(id="n2", voters=("n1", "n2", "n3")), random.Random(1))
    with pytest.raises(InvalidMessage):
        node.step(msg)
    assert node.term == 0


def _appends(log: tuple[Entry, ...], **changes: Any) -> tuple[AppendEntries, AppendEntries]:
    fields: dict[str, Any] = dict(term=3, prev_index=9, prev_term=2, entries=log, commit=8)
    first = AppendEntries(frm="n1", to="n2", **fields)
    return first, AppendEntries(**{**fields, "frm": "n1", "to": "n3", **changes})


def test_a_burst_of_alike_appends_is_encoded_once_and_each_decodes_to_its_own() -> None:
    log = (Entry(10, 3, EntryType.NORMAL, b"a" * 50), Entry(11, 3, EntryType.NORMAL, b"b"))
    encoder = FrameEncoder(CLUSTER)
    to_n2, to_n3 = _appends(log)
    frame = encoder(to_n2)
    assert encoder(to_n3) is frame  # the frame carries no recipient
    assert decode(frame, CLUSTER, "n2") == to_n2 and decode(frame, CLUSTER, "n3") == to_n3


@pytest.mark.parametrize(
    "change",
    [
        {"term": 4},
        {"prev_index": 10},
        {"prev_term": 3},
        {"commit": 9},
        {"frm": "n4"},
        {"entries": ()},
        # the same indexes and terms, other entries (a new leader's log): other objects
        {
            "entries": (
                Entry(10, 3, EntryType.NORMAL, b"A" * 50),
                Entry(11, 3, EntryType.NORMAL, b"b"),
            )
        },
    ],
)
def test_an_append_that_differs_from_the_last_is_encoded_again(change: dict[str, Any]) -> None:
    log = (Entry(10, 3, EntryType.NORMAL, b"a" * 50), Entry(11, 3, EntryType.NORMAL, b"b"))
    encoder = FrameEncoder(CLUSTER)
    first, second = _appends(log, **change)
    encoder(first)
    assert decode(encoder(second), CLUSTER, "n3") == second


def test_alike_appends_are_sealed_each_with_the_key_valid_when_sent() -> None:
    """A kept frame is kept unsealed: the key it would carry may have expired meanwhile."""
    now = [1000.0]
    ring = KeyRing(
        [Key("old", b"s" * 32, expires=1500.0), Key("new", b"t" * 32, not_before=1400.0)]
    )
    sealer = FrameAuthenticator(ring, skew=0, clock=lambda: now[0])
    encoder = FrameEncoder(CLUSTER, sealer)
    to_n2, to_n3 = _appends((Entry(10, 3, EntryType.NORMAL, b"x"),))
    early = encoder(to_n2)
    now[0] = 1600.0  # "old" expired: the same append sent again must carry "new"
    late = encoder(to_n3)
    assert early[2:5] == b"old" and late[2:5] == b"new"
    assert decode(late, CLUSTER, "n3", sealer) == to_n3


def test_pack_is_msgpack_and_survives_a_failed_pack_and_a_large_one() -> None:
    small = {"id": 1, "ok": True, "result": {"data": b"\x00\x01", "text": "x"}}
    assert pack(small) == msgpack.packb(small, use_bin_type=True)
    with pytest.raises(TypeError):
        pack({"half": [1, object()]})  # fails mid-way: what is packed next starts clean
    assert pack(small) == msgpack.packb(small, use_bin_type=True)
    large = {"chunk": bytes(KEEP_PACKER_BYTES + 1)}  # its Packer is let go, not kept that big
    assert pack(large) == msgpack.packb(large, use_bin_type=True)
    assert pack(small) == msgpack.packb(small, use_bin_type=True)
