"""Watching the cluster during a chaos run: who leads, and who the voters are.

Theory of operation: `ClusterWatch.run` asks every node for its status (cluster_view.statuses:
all at once, each with a short timeout, so a paused or partitioned node costs one timeout, not
the watch) every INTERVAL seconds, over one client it keeps open for the run (its connections
serve every poll), and keeps the answers. The leader is the one of the highest
term that answers (an old leader cut off by a partition may still believe it leads, in an older
term); the voters are the members the leader reports. Each change of (leader, term) is kept
with the time it was seen, on the run's clock: the leader timeline the report counts failovers
in and the plot draws. A leader that was not seen (elected and replaced between two polls) is
not counted; a node that stops answering for a while and answers again as leader of the same
term is one leadership, not two.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from raft_manager.client import RaftClient
from raft_manager.client.cluster_view import Members, leader_of, statuses

INTERVAL = 0.2  # seconds between two polls
STATUS_TIMEOUT = 0.5  # seconds a node gets to report its status


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds on the run's clock
    leader: str | None
    term: int


class ClusterWatch:
    def __init__(self, members: Members, clock: Callable[[], float]) -> None:
        self.members = members
        self.clock = clock
        self.latest: dict[str, dict[str, Any]] = {}
        self.timeline: list[Sample] = []
        self._polls = itertools.count()
        self._newest = -1  # the newest poll whose answers are kept
        self._client: RaftClient | None = None  # open while `run` runs

    async def poll(self) -> None:
        """Ask every node now (the watch's own loop and a fault injector may both ask: an
        answer older than the one kept is dropped)."""
        number = next(self._polls)
        answers = await statuses(self.members, STATUS_TIMEOUT, client=self._client)
        if number < self._newest:
            return
        self._newest, self.latest = number, answers
        leader, term = leader_of(self.latest)
        last = self.timeline[-1] if self.timeline else None
        if last is None or (last.leader, last.term) != (leader, term):
            self.timeline.append(Sample(self.clock(), leader, term))

    async def run(self) -> None:
        """Poll until cancelled."""
        addresses = list(self.members.clients.values())
        async with RaftClient(addresses, timeout=STATUS_TIMEOUT) as client:
            self._client = client
            try:
                while True:
                    await self.poll()
                    await anyio.sleep(INTERVAL)
            finally:
                self._client = None

    @property
    def leader(self) -> str | None:
        return self.timeline[-1].leader if self.timeline else None

    def roles(self) -> dict[str, str] | None:
        """The members by role (voter or learner) as the leader reported them last, or None
        when no leader answered."""
        leader = self.leader
        status = self.latest.get(leader) if leader is not None else None
        if status is None:
            return None
        return {member["id"]: member["role"] for member in status["members"]}

    def voters(self) -> list[str]:
        roles = self.roles() or {}
        return [node for node, role in roles.items() if role == "voter"]

    async def wait_for_leader(self, timeout: float) -> str | None:
        """Poll until a leader answers (its id), or None after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while True:
                await self.poll()
                if self.leader is not None:
                    return self.leader
                await anyio.sleep(INTERVAL / 4)
        return None

    def rebase(self) -> None:
        """Start the timeline again from the leader seen last, at the clock's now (call it
        when the clock is set to zero)."""
        last = self.timeline[-1:]
        self.timeline = [Sample(self.clock(), s.leader, s.term) for s in last]

    async def caught_up(self, nodes: Sequence[str], within: float) -> int | None:
        """Poll until every one of `nodes` answers and has applied the commit index the
        leader reported first; that index, or None if that did not happen within `within`
        seconds."""
        target: int | None = None
        with anyio.move_on_after(within):
            while True:
                await self.poll()
                leader = self.latest.get(self.leader or "")
                if target is None and leader is not None:
                    target = int(leader["commit_index"])
                answers = [self.latest.get(node) for node in nodes]
                if target is not None and all(
                    a is not None and a["applied_index"] >= target for a in answers
                ):
                    return target
                await anyio.sleep(INTERVAL / 2)
        return None

    def leaderships(self) -> list[tuple[str, int]]:
        """Every (leader, term) seen, in order, each once."""
        seen: dict[tuple[str, int], None] = {}
        for sample in self.timeline:
            if sample.leader is not None:
                seen[sample.leader, sample.term] = None
        return list(seen)
