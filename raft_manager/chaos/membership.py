"""Membership changes during a chaos run: move the configuration to the voters wanted.

Theory of operation: `MembershipMover.reach(voters, within)` looks at the configuration as the
leader reports it (a fresh poll of the ClusterWatch), derives the next single-server change
towards voters that are exactly `voters` and no learner (`next_change`: promote a wanted
learner, add a wanted non-member as a learner with its addresses, remove an unwanted learner,
then an unwanted voter, the leader included), makes it through the leader and looks again,
until the configuration is the one wanted or `within` seconds have passed. A change refused or
unanswered (another change not committed yet, a learner still catching up, no leader for the
moment) is retried after RETRY seconds, after looking again: the steps are derived from what the
leader reports, never remembered, so a change that took effect though its answer was lost is
not made twice, and the same call both makes a fault (take a voter out, grow by a spare) and
heals it (bring the initial voters back).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import anyio

from raft_manager.client import ClientError, RaftClient
from raft_manager.server.config import ClusterConfig

from .watch import ClusterWatch

RETRY = 0.2  # seconds before a refused or unanswered change is looked at again


def next_change(roles: Mapping[str, str], wanted: Collection[str]) -> tuple[str, str] | None:
    """(kind, node) of the next change from `roles` (node -> voter or learner) towards voters
    `wanted` and no learner; None when there is none to make."""
    learners = sorted(node for node, role in roles.items() if role == "learner")
    voters = sorted(node for node, role in roles.items() if role == "voter")
    for node in learners:
        if node in wanted:
            return "promote", node
    for node in sorted(wanted):
        if node not in roles:
            return "add_learner", node
    for node in [*learners, *voters]:
        if node not in wanted:
            return "remove", node
    return None


class MembershipMover:
    def __init__(self, client: RaftClient, watch: ClusterWatch, config: ClusterConfig) -> None:
        self.client = client
        self.watch = watch
        self.config = config
        self.changes = 0  # changes acknowledged so far

    async def reach(self, voters: Collection[str], within: float) -> bool:
        """True once the leader reports exactly `voters` as voters and no learner; False if
        that did not happen within `within` seconds."""
        with anyio.move_on_after(within):
            while True:
                await self.watch.poll()
                roles = self.watch.roles()
                change = None if roles is None else next_change(roles, voters)
                if roles is not None and change is None:
                    return True
                if change is not None:
                    try:
                        await self.client.members(self._body(*change))
                        self.changes += 1
                        continue
                    except (ClientError, TimeoutError):
                        pass  # looked at again after the pause
                await anyio.sleep(RETRY)
        return False

    def _body(self, kind: str, node: str) -> dict[str, Any]:
        body = {"kind": kind, "node": node}
        if kind == "add_learner":
            spec = self.config.nodes[node]
            body |= {"address": spec.address, "client_address": spec.client_address}
        return body
