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
    {"v": 1, "id": n, "op": "status", "digest": bool (optional, false)}
        this node's view (role, term, indexes, leader); with `digest`, also the SHA-256 of its
        state (a full snapshot of it: costly on a large ledger, so only when asked)
    {"v": 1, "id": n, "op": "transfer", "target": id, or "" for the most up-to-date follower}
    {"v": 1, "id": n, "op": "log", "from": index >= 0, "count": 0..LOG_PAGE_MAX}
        this node's log bounds and its committed entries in [from, from + count), each as
        [index, term, type, crc32c of its data]; answered locally by any node (log_view.py)
    {"v": 1, "id": n, "op": "checkpoint"}
        the leader proposes a CHECKPOINT entry; answered once it is applied there with
        {"index", "term", "digest"}; every node notes its state's digest at that index
        (requests made while one is on its way share it: each costs every node a hash of
        its whole state)
    {"v": 1, "id": n, "op": "digest", "index": index >= 1}
        the digest this node noted at checkpoint `index` (None if it has none), and its
        applied index; answered locally by any node

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

from .codec import FrameError, pack

CLIENT_PROTOCOL_VERSION = 1
OPS = ("command", "query", "members", "status", "transfer", "log", "checkpoint", "digest")
ERROR_CODES = (
    "not_leader",
    "lost",
    "dropped",
    "timeout",
    "bad_request",
    "invalid_command",
    "conf_rejected",
    "transfer_rejected",
    "unavailable",
)
MAX_REQUEST_BYTES = 16 << 20
MAX_SESSION_CHARS = 128  # a session id is written into every entry and kept an hour
LOG_PAGE_MAX = 4096  # entries in one `log` answer: about 50 KB, 2-4 ms for the node to build


@dataclass(slots=True)
class Request:  # not frozen: a frozen dataclass's __init__ costs twice as much
    id: int
    op: str
    body: dict[str, Any] = field(default_factory=dict)
    session: str = ""
    seq: int = 0
    ack: int = 0
    stale: bool = False
    target: str = ""
    start: int = 0  # log: the first index asked for ("from" on the wire)
    count: int = 0  # log: how many indexes from there
    index: int = 0  # digest: the checkpoint's index
    digest: bool = False  # status: include the state digest


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
    elif request.op == "log":
        message.update({"from": request.start, "count": request.count})
    elif request.op == "digest":
        message["index"] = request.index
    elif request.op == "status" and request.digest:
        message["digest"] = True
    return pack(message)


class BadRequest(FrameError):
    """A request refused as malformed (reason `bad-request`); `request_id` is its id when the
    id itself was readable (else 0), so the refusal can be matched to the request."""

    def __init__(self, detail: str, request_id: int = 0) -> None:
        super().__init__("bad-request", detail)
        self.request_id = request_id


def decode_request(frame: bytes) -> Request:
    """Raise BadRequest for anything but a well-formed request. The body of a command or query
    is only checked to be a map here: the ledger validates the rest."""
    try:
        message = msgpack.unpackb(frame, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise BadRequest(f"undecodable: {type(error).__name__}") from None
    if not isinstance(message, dict) or message.get("v") != CLIENT_PROTOCOL_VERSION:
        raise BadRequest("not a request of this protocol version")
    request_id, op = message.get("id"), message.get("op")
    if type(request_id) is not int:
        raise BadRequest("a request needs an integer id")
    if op not in OPS:
        raise BadRequest(f"unknown op {op!r}", request_id)
    try:
        return _decode_fields(request_id, op, message)
    except ValueError as error:
        raise BadRequest(str(error), request_id) from None


def _decode_fields(request_id: int, op: str, message: dict[str, Any]) -> Request:
    """The request's op-specific fields; ValueError names the first one that is wrong."""
    if op in ("command", "query", "members") and not isinstance(message.get("body"), dict):
        raise ValueError(f"{op} needs a map body")
    if op == "command":
        session, seq, ack = message.get("session", ""), message.get("seq", 0), message.get("ack", 0)
        if not isinstance(session, str) or type(seq) is not int or type(ack) is not int:
            raise ValueError("a command needs a string session and integer seq/ack")
        if len(session) > MAX_SESSION_CHARS or seq < 0 or ack < 0:
            raise ValueError(f"a session is at most {MAX_SESSION_CHARS} characters, seq/ack >= 0")
        return Request(request_id, op, message["body"], session, seq, ack)
    if op == "query":
        stale = message.get("stale", False)
        if type(stale) is not bool:
            raise ValueError("stale must be true or false")
        return Request(request_id, op, message["body"], stale=stale)
    if op == "members":
        return Request(request_id, op, message["body"])
    if op == "transfer":
        target = message.get("target", "")
        if not isinstance(target, str):
            raise ValueError("transfer needs a string target")
        return Request(request_id, op, target=target)
    if op == "log":
        start, count = message.get("from"), message.get("count")
        if type(start) is not int or start < 0:
            raise ValueError("log needs an integer from >= 0")
        if type(count) is not int or not 0 <= count <= LOG_PAGE_MAX:
            raise ValueError(f"log needs an integer count in 0..{LOG_PAGE_MAX}")
        return Request(request_id, op, start=start, count=count)
    if op == "digest":
        index = message.get("index")
        if type(index) is not int or index < 1:
            raise ValueError("digest needs an integer index >= 1")
        return Request(request_id, op, index=index)
    if op == "status":
        digest = message.get("digest", False)
        if type(digest) is not bool:
            raise ValueError("digest must be true or false")
        return Request(request_id, op, digest=digest)
    return Request(request_id, op)


def ok_response(request_id: int, result: Any) -> bytes:
    return pack({"id": request_id, "ok": True, "result": result})


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
    return pack(body)


def decode_response(frame: bytes) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(frame, raw=False)
    except Exception as error:  # msgpack raises several unrelated types on garbage
        raise FrameError("bad-response", type(error).__name__) from None
    if not isinstance(body, dict) or type(body.get("id")) is not int or "ok" not in body:
        raise FrameError("bad-response", "not a response")
    return body
