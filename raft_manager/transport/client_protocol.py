"""The client protocol spoken on each node's client address: msgpack requests and responses.

Theory of operation: a client sends length-prefixed msgpack maps on one connection and may have
many requests in flight; each carries an `id` that its response echoes. Requests:

    {"v": 1, "id": n, "op": "command", "body": {...}, "session": str, "seq": n, "ack": n}
        a ledger command (see raft_manager/ledger/commands.py), replicated through the log;
        `ack` is the lowest request number of the session still awaiting its answer
    {"v": 1, "id": n, "op": "query", "body": {...}, "stale": bool}
        a ledger query: linearizable (ReadIndex) unless `stale`, when any node answers locally
    {"v": 1, "id": n, "op": "members", "body": {"kind": "list"} or a change}
        list the members, or add / promote / remove one (see raft_manager/server/members.py)
    {"v": 1, "id": n, "op": "status"}
    {"v": 1, "id": n, "op": "transfer", "target": id, or "" for the most up-to-date follower}

Responses: {"id": n, "ok": true, "result": ...} or {"id": n, "ok": false, "code": CODE,
"error": text, "leader": id or None, "leader_address": client address or None}, where CODE is
one of the ERROR_CODES below. `not_leader` carries the leader's client address when it is known,
so a client follows the redirect instead of guessing. A command the ledger refused by its rules
is a successful response whose result is `{"ok": false, "error": ..., "message": ...}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from .codec import FrameError

CLIENT_PROTOCOL_VERSION = 1
OPS = ("command", "query", "members", "status", "transfer")
ERROR_CODES = (
    "not_leader",
    "lost",
    "dropped",
    "timeout",
    "bad_request",
    "invalid_command",
    "conf_rejected",
    "unavailable",
)
MAX_REQUEST_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    body: dict[str, Any] = field(default_factory=dict)
    session: str = ""
    seq: int = 0
    ack: int = 0
    stale: bool = False
    target: str = ""


def encode_request(request: Request) -> bytes:
    message: dict[str, Any] = {"v": CLIENT_PROTOCOL_VERSION, "id": request.id, "op": request.op}
    if request.op == "command":
        message.update(body=request.body, session=request.session, seq=request.seq)
        message["ack"] = request.ack
    elif request.op == "query":
        message.update(body=request.body, stale=request.stale)
    elif request.op == "members":
        message["body"] = request.body
    elif request.op == "transfer":
        message["target"] = request.target
    return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def decode_request(frame: bytes) -> Request:
    """Raise FrameError (reason `bad-request`) for anything but a well-formed request. The body
    of a command or query is only checked to be a map here: the ledger validates the rest."""
    try:
        message = msgpack.unpackb(frame, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise FrameError("bad-request", f"undecodable: {type(error).__name__}") from None
    if not isinstance(message, dict) or message.get("v") != CLIENT_PROTOCOL_VERSION:
        raise FrameError("bad-request", "not a request of this protocol version")
    request_id, op = message.get("id"), message.get("op")
    if type(request_id) is not int or op not in OPS:
        raise FrameError("bad-request", "a request needs an integer id and a known op")
    if op in ("command", "query", "members") and not isinstance(message.get("body"), dict):
        raise FrameError("bad-request", f"{op} needs a map body")
    if op == "command":
        session, seq, ack = message.get("session", ""), message.get("seq", 0), message.get("ack", 0)
        if not isinstance(session, str) or type(seq) is not int or type(ack) is not int:
            raise FrameError("bad-request", "a command needs a string session and integer seq/ack")
        return Request(request_id, op, message["body"], session, seq, ack)
    if op == "query":
        stale = message.get("stale", False)
        if type(stale) is not bool:
            raise FrameError("bad-request", "stale must be true or false")
        return Request(request_id, op, message["body"], stale=stale)
    if op == "members":
        return Request(request_id, op, message["body"])
    if op == "transfer":
        target = message.get("target", "")
        if not isinstance(target, str):
            raise FrameError("bad-request", "transfer needs a string target")
        return Request(request_id, op, target=target)
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
