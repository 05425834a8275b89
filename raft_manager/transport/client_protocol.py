"""The client protocol spoken on each node's client address: msgpack requests and responses.

Theory of operation: a client sends length-prefixed msgpack maps on one connection and may have
many requests in flight; each carries an `id` that its response echoes. Requests:

    {"v": 1, "id": n, "op": "propose", "data": bytes, "session": str, "seq": n}
    {"v": 1, "id": n, "op": "read", "key": str}      linearizable read of the key-value machine
    {"v": 1, "id": n, "op": "status"}
    {"v": 1, "id": n, "op": "transfer", "key": target id, or "" for the most up-to-date follower}

Responses: {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "code": CODE,
"error": text, "leader": id or None, "leader_address": client address or None}, where CODE is
one of the ERROR_CODES below. `not_leader` carries the leader's client address when it is known,
so a client follows the redirect instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from .codec import FrameError

CLIENT_PROTOCOL_VERSION = 1
OPS = ("propose", "read", "status", "transfer")
ERROR_CODES = ("not_leader", "lost", "dropped", "timeout", "bad_request", "unavailable")
MAX_REQUEST_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    data: bytes = b""
    key: str = ""
    session: str = ""
    seq: int = 0


def encode_request(request: Request) -> bytes:
    body: dict[str, Any] = {"v": CLIENT_PROTOCOL_VERSION, "id": request.id, "op": request.op}
    if request.op == "propose":
        body.update(data=request.data, session=request.session, seq=request.seq)
    elif request.op in ("read", "transfer"):
        body["key"] = request.key
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_request(frame: bytes) -> Request:
    """Raise FrameError (reason `bad-request`) for anything but a well-formed request."""
    try:
        body = msgpack.unpackb(frame, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise FrameError("bad-request", f"undecodable: {type(error).__name__}") from None
    if not isinstance(body, dict) or body.get("v") != CLIENT_PROTOCOL_VERSION:
        raise FrameError("bad-request", "not a request of this protocol version")
    request_id, op = body.get("id"), body.get("op")
    if type(request_id) is not int or op not in OPS:
        raise FrameError("bad-request", "a request needs an integer id and a known op")
    if op == "propose":
        data, session, seq = body.get("data"), body.get("session", ""), body.get("seq", 0)
        if not isinstance(data, bytes) or not isinstance(session, str) or type(seq) is not int:
            raise FrameError("bad-request", "propose needs bytes data, a session and a seq")
        return Request(request_id, op, data=data, session=session, seq=seq)
    if op in ("read", "transfer"):
        key = body.get("key")
        if not isinstance(key, str):
            raise FrameError("bad-request", f"{op} needs a string key")
        return Request(request_id, op, key=key)
    return Request(request_id, op)


def ok_response(request_id: int, result: Any) -> bytes:
    return msgpack.packb({"id": request_id, "ok": True, "result": result}, use_bin_type=True)  # type: ignore[no-any-return]


def error_response(
    request_id: int,
    code: str,
    error: str,
    leader: str | None = None,
    leader_address: str | None = None,
) -> bytes:
    body = {
        "id": request_id,
        "ok": False,
        "code": code,
        "error": error,
        "leader": leader,
        "leader_address": leader_address,
    }
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_response(frame: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(frame, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise FrameError("bad-response", type(error).__name__) from None
    if not isinstance(body, dict) or type(body.get("id")) is not int or "ok" not in body:
        raise FrameError("bad-response", "not a response")
    return body
