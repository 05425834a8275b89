"""Who is in the cluster and where: member addresses, and membership changes asked by clients.

Theory of operation: the initial members' addresses come from the cluster file; a member added
later brings its addresses in the context of its membership change (JSON: address and client
address), which the core keeps with the configuration, snapshots included, so every node can
reach every member (nodes named in the cluster file are reachable before this node knows they
joined, so a node that is still catching up can answer a leader that joined after it started).
`Directory` resolves a configuration into addresses; `Membership` serves
the client protocol's `members` op: list the members, or make one change (add a voter or a
learner, promote, remove) and wait until it is committed.
"""

from __future__ import annotations

import json
from typing import Any

from raft_manager.core import ConfState
from raft_manager.core.errors import ConfChangeRejected
from raft_manager.core.membership import ConfChange, ConfChangeKind
from raft_manager.transport.base import parse_address

from .config import ClusterConfig
from .runtime import NodeRuntime

KINDS = {kind.value: kind for kind in ConfChangeKind}


def member_context(address: str, client_address: str) -> str:
    return json.dumps({"address": address, "client_address": client_address}, sort_keys=True)


class Directory:
    def __init__(self, config: ClusterConfig) -> None:
        self._static = {
            node_id: (spec.address, spec.client_address) for node_id, spec in config.nodes.items()
        }
        self._seen_members: set[str] = set()

    def peers(self, conf: ConfState, committed: ConfState) -> dict[str, tuple[str, str]]:
        """Whom to keep connections to: the members of both configurations (a member whose
        removal is not committed yet may still lead), and the nodes of the cluster file that
        were never members as far as this node knows (a node that has not caught up may not
        know yet that one of them joined, and leads it). A member is dropped once its removal
        is committed."""
        self._seen_members.update(conf.members, committed.members)
        found = {
            node: pair for node, pair in self._static.items() if node not in self._seen_members
        }
        found.update(self.addresses(committed))
        found.update(self.addresses(conf))
        return found

    def addresses(self, conf: ConfState) -> dict[str, tuple[str, str]]:
        """(address, client address) of each member whose addresses are known."""
        found = {}
        for member in conf.members:
            try:
                context = json.loads(conf.context(member))
                found[member] = (context["address"], context["client_address"])
            except (ValueError, KeyError, TypeError):
                if member in self._static:
                    found[member] = self._static[member]
        return found

    def describe(self, conf: ConfState) -> list[dict[str, Any]]:
        addresses = self.addresses(conf)
        return [
            {
                "id": member,
                "role": "voter" if member in conf.voters else "learner",
                "address": addresses.get(member, ("", ""))[0] or None,
                "client_address": addresses.get(member, ("", ""))[1] or None,
            }
            for member in conf.members
        ]


class Membership:
    def __init__(self, runtime: NodeRuntime, directory: Directory) -> None:
        self.runtime = runtime
        self.directory = directory

    def members(self) -> dict[str, Any]:
        return {"members": self.directory.describe(self.runtime.raft.conf)}

    async def handle(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """`{"kind": "list"}`, or a change: `{"kind": "add_voter"|"add_learner", "node": id,
        "address": host:port, "client_address": host:port}`, `{"kind": "promote"|"remove",
        "node": id}`. Raises ConfChangeRejected for a change that cannot be made."""
        kind = body.get("kind")
        if kind == "list":
            return self.members()
        change = self._change(kind, body)
        await self.runtime.change_membership(change, timeout)
        return self.members()

    @staticmethod
    def _change(kind: object, body: dict[str, Any]) -> ConfChange:
        if not isinstance(kind, str) or kind not in KINDS:
            raise ConfChangeRejected(f"kind must be list or one of {', '.join(KINDS)}")
        node = body.get("node")
        if not isinstance(node, str) or not node.replace("-", "").replace("_", "").isalnum():
            raise ConfChangeRejected("node must be an id of letters, digits, '-' and '_'")
        context = ""
        if KINDS[kind] in (ConfChangeKind.ADD_VOTER, ConfChangeKind.ADD_LEARNER):
            address, client_address = body.get("address"), body.get("client_address")
            try:
                parse_address(str(address))
                parse_address(str(client_address))
            except ValueError as error:
                raise ConfChangeRejected(f"a new member needs addresses: {error}") from None
            context = member_context(str(address), str(client_address))
        return ConfChange(KINDS[kind], node, context)
