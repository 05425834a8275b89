"""The client protocol's requests: every op round-trips; anything malformed is refused."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raft_manager.transport.client_protocol import (
    LOG_PAGE_MAX,
    MAX_SESSION_CHARS,
    BadRequest,
    Request,
    decode_request,
    decode_response,
    encode_request,
    error_response,
    ok_response,
)
from raft_manager.transport.codec import FrameError

REQUESTS = [
    Request(1, "command", {"op": "task.submit", "payload": [1, "two"]}, "session-a", 7, 5),
    Request(2, "query", {"query": "memory.get", "key": "k"}, stale=True),
    Request(3, "query", {"query": "task.list"}),
    Request(4, "status"),
    Request(11, "status", digest=True),
    Request(5, "transfer", target="n2"),
    Request(6, "transfer"),
    Request(7, "log", start=0, count=0),
    Request(8, "log", start=120, count=LOG_PAGE_MAX),
    Request(9, "checkpoint"),
    Request(10, "digest", index=42),
]


@pytest.mark.parametrize("request_", REQUESTS)
def test_every_op_survives_a_round_trip(request_: Request) -> None:
    assert decode_request(encode_request(request_)) == request_


def _frame(**fields: object) -> bytes:
    return msgpack.packb({"v": 1, "id": 1, **fields}, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "frame",
    [
        _frame(op="propose", data=b"x"),  # the pre-ledger op is gone
        _frame(op="command", body=[1, 2]),
        _frame(op="command", body={}, session=3),
        _frame(op="command", body={}, seq="1"),
        _frame(op="command", body={}, ack=1.5),
        _frame(op="command", body={}, session="s" * (MAX_SESSION_CHARS + 1)),  # kept an hour
        _frame(op="command", body={}, seq=-1),
        _frame(op="command", body={}, ack=-1),
        _frame(op="query", body="task.list"),
        _frame(op="query", body={}, stale="yes"),
        _frame(op="transfer", target=2),
        _frame(op="log", count=1),  # no from
        _frame(op="log", **{"from": -1}, count=1),
        _frame(op="log", **{"from": "1"}, count=1),
        _frame(op="log", **{"from": True}, count=1),
        _frame(op="log", **{"from": 1}),  # no count
        _frame(op="log", **{"from": 1}, count=LOG_PAGE_MAX + 1),
        _frame(op="log", **{"from": 1}, count=-1),
        _frame(op="log", **{"from": 1}, count=2.0),
        _frame(op="digest"),
        _frame(op="digest", index=0),
        _frame(op="digest", index="7"),
        _frame(op="digest", index=False),
        _frame(op="status", digest=1),
        _frame(op="status", digest="yes"),
        msgpack.packb({"v": 2, "id": 1, "op": "status"}),
        msgpack.packb({"v": 1, "id": "1", "op": "status"}),
        msgpack.packb([1, 2, 3]),
        b"\xc1",
    ],
)
def test_malformed_requests_are_refused_as_bad_requests(frame: bytes) -> None:
    with pytest.raises(FrameError) as raised:
        decode_request(frame)
    assert raised.value.reason == "bad-request"


def test_a_refusal_carries_the_request_id_when_it_was_readable() -> None:
    """So the client can match the bad_request answer to its request (else it would wait)."""
    with pytest.raises(BadRequest) as raised:
        decode_request(_frame(op="log", **{"from": -1}, count=1))
    assert raised.value.request_id == 1 and "from" in str(raised.value)
    with pytest.raises(BadRequest) as raised:
        decode_request(_frame(op="gossip"))
    assert raised.value.request_id == 1 and "unknown op" in str(raised.value)
    with pytest.raises(BadRequest) as raised:
        decode_request(msgpack.packb({"v": 1, "id": "7", "op": "log"}))
    assert raised.value.request_id == 0


@given(st.binary(max_size=200))
def test_garbage_raises_frame_error_and_nothing_else(blob: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_request(blob)


def test_responses_round_trip() -> None:
    assert decode_response(ok_response(3, {"ok": True, "n": 1})) == {
        "id": 3,
        "ok": True,
        "result": {"ok": True, "n": 1},
    }
    refused = decode_response(error_response(4, "not_leader", "ask n2", "n2", "127.0.0.1:1"))
    assert refused["code"] == "not_leader" and refused["leader_address"] == "127.0.0.1:1"
    with pytest.raises(FrameError):
        decode_response(msgpack.packb({"id": 1}))
