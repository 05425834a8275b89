"""Injecting the planned faults into the running cluster, and healing it at the end.

Theory of operation: `FaultInjector.run` takes the planned faults (plan.py) one after another,
each not before its planned time on the run's clock, and skips those that would still be held
when the run's tail begins. `inject` chooses the target when the fault strikes (the leader the
watch sees, or a voter the fault's `pick` points at), breaks something, holds it, undoes it,
and keeps a FaultEvent (kind, variant, targets, start, end, and a note when something did not go
as planned):

- kill: SIGKILL the node; after the hold, start it again on its data directory;
- pause: SIGSTOP the node; SIGCONT after the hold;
- partition: cut every link (both ways) between the leader and the rest, or between a random
  minority of the voters and the others (spares go with the majority); heal after the hold;
- membership: `rejoin` removes a voter (the leader may be the one), then adds it back as a
  learner and promotes it; `grow` adds a spare node as a learner and promotes it, then removes
  it (membership.py makes the changes through the leader, retrying refusals, bounded).

Faults never overlap, so every one is undone before the next. `heal` is the safety net for a
run cut short or a change that did not finish: it resumes the paused node, restarts the killed
one, heals the network and brings the configuration back to the initial voters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .membership import MembershipMover
from .nodes import Cluster
from .plan import Fault
from .watch import ClusterWatch

MEMBERSHIP_WITHIN = 10.0  # seconds one membership step (out, or back) may take


@dataclass(frozen=True, slots=True)
class FaultEvent:
    kind: str
    variant: str
    targets: tuple[str, ...]
    start: float  # seconds on the run's clock
    end: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "variant": self.variant,
            "targets": list(self.targets),
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "note": self.note,
        }


class FaultInjector:
    def __init__(
        self,
        cluster: Cluster,
        watch: ClusterWatch,
        mover: MembershipMover,
        clock: Callable[[], float],
    ) -> None:
        self.cluster = cluster
        self.watch = watch
        self.mover = mover
        self.clock = clock
        self.events: list[FaultEvent] = []
        self.current: Fault | None = None
        self._paused: set[str] = set()

    async def run(self, faults: Sequence[Fault], tail_at: float) -> None:
        """Inject `faults` in order; none that would still be held at `tail_at`."""
        for fault in faults:
            await anyio.sleep(max(fault.at - self.clock(), 0.0))
            if self.clock() + fault.hold > tail_at:
                return
            self.current = fault
            try:
                self.events.append(await self.inject(fault))
            finally:
                self.current = None

    async def inject(self, fault: Fault) -> FaultEvent:
        start = self.clock()
        strike = {
            "kill": self._kill,
            "pause": self._pause,
            "partition": self._partition,
            "membership": self._membership,
        }[fault.kind]
        targets, note = await strike(fault)
        return FaultEvent(fault.kind, fault.variant, targets, start, self.clock(), note)

    async def heal(self, within: float) -> bool:
        """Undo whatever is still broken; True once the initial voters are the configuration
        again (within `within` seconds)."""
        processes = self.cluster.processes
        for node in sorted(self._paused):
            processes.resume(node)
        self._paused.clear()
        for node in sorted(processes.down):
            processes.start(node)
        self.cluster.network.heal()
        return await self.mover.reach(self.cluster.voters, within)

    def _voters(self) -> list[str]:
        return self.watch.voters() or list(self.cluster.voters)

    def _target(self, fault: Fault) -> str:
        leader = self.watch.leader
        if fault.variant == "leader" and leader is not None:
            return leader
        return fault.choose(self._voters())

    async def _kill(self, fault: Fault) -> tuple[tuple[str, ...], str]:
        node = self._target(fault)
        processes = self.cluster.processes
        processes.kill(node)
        await anyio.sleep(fault.hold)
        processes.start(node)
        return (node,), ""

    async def _pause(self, fault: Fault) -> tuple[tuple[str, ...], str]:
        node = self._target(fault)
        processes = self.cluster.processes
        processes.pause(node)
        self._paused.add(node)
        await anyio.sleep(fault.hold)
        processes.resume(node)
        self._paused.discard(node)
        return (node,), ""

    async def _partition(self, fault: Fault) -> tuple[tuple[str, ...], str]:
        """Cut a minority off; the targets are the nodes of the minority."""
        if fault.variant == "leader":
            minority = [self._target(fault)]
        else:
            voters = sorted(self._voters())
            random.Random(fault.pick).shuffle(voters)
            minority = voters[: (len(voters) - 1) // 2]
        rest = [node for node in self.cluster.nodes if node not in minority]
        network = self.cluster.network
        network.partition([minority, rest])
        await anyio.sleep(fault.hold)
        network.heal()
        return tuple(sorted(minority)), ""

    async def _membership(self, fault: Fault) -> tuple[tuple[str, ...], str]:
        before = self._voters()
        if fault.variant == "rejoin":
            node = fault.choose(before)
            during = [voter for voter in before if voter != node]
        else:
            node = self.cluster.spares[0]
            during = [*before, node]
        problems = []
        if not await self.mover.reach(during, MEMBERSHIP_WITHIN):
            problems.append(f"the change to voters {', '.join(during)} did not finish")
        await anyio.sleep(fault.hold)
        if not await self.mover.reach(before, MEMBERSHIP_WITHIN):
            problems.append(f"the change back to voters {', '.join(before)} did not finish")
        return (node,), "; ".join(problems)
