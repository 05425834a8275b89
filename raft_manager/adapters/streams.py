"""The bus's names: which Redis keys hold which messages.

Theory of operation: every name is scoped by the cluster id, so several clusters can share one
Redis. A peer role (quorum-manager, crdt-synchronizer, security-manager,
performance-benchmarker, and raft-manager itself) has one request stream, read by a consumer
group named after the role, so each request is handled by one member of the group. Every
requester (an identity, unique per process, such as raft-manager.n1) has one reply stream,
where the replies to its requests arrive. A consumed stream's messages that cannot be handled
go to its dead-letter stream, and the records of handled envelope ids (see consumer.py) live
under keys derived from the stream and group.

    bus:<cluster>:requests:<role>        requests to a role
    bus:<cluster>:replies:<identity>     replies to one requester
    <stream>:dead                        messages of <stream> that could not be handled
    <stream>:done:<group>                envelope ids the group handled (a sorted set: id ->
                                         when, pruned after dedupe_ttl_s)
"""

from __future__ import annotations

import re

from raft_manager.server.config import PEER_ROLES

RAFT_MANAGER = "raft-manager"
ROLES = (RAFT_MANAGER, *PEER_ROLES)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # roles, identities, cluster ids


def check_name(kind: str, value: str) -> str:
    if not NAME.match(value):
        raise ValueError(
            f"{kind} {value!r}: use 1-128 letters, digits, '.', '_', '-' (starting with a "
            "letter or digit)"
        )
    return value


def request_stream(cluster_id: str, role: str) -> str:
    return f"bus:{check_name('cluster id', cluster_id)}:requests:{check_name('role', role)}"


def reply_stream(cluster_id: str, identity: str) -> str:
    return f"bus:{check_name('cluster id', cluster_id)}:replies:{check_name('identity', identity)}"


def dead_letter_stream(stream: str) -> str:
    return f"{stream}:dead"


def done_set(stream: str, group: str) -> str:
    return f"{stream}:done:{group}"


def parse_stream(stream: str) -> tuple[str, str, str] | None:
    """(cluster id, 'requests' or 'replies', role or identity) for a bus stream name, else None."""
    parts = stream.split(":")
    if len(parts) != 4 or parts[0] != "bus" or parts[2] not in ("requests", "replies"):
        return None
    if not (NAME.match(parts[1]) and NAME.match(parts[3])):
        return None
    return parts[1], parts[2], parts[3]
