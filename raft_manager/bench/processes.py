"""The part of a system under measurement that its node processes provide.

Theory of operation: each system runs its nodes as `NodeProcesses` (server/processes.py: one OS
process per node, output in DIR/<node>.log, stopped on every way out of a run) and shares
through `ProcessSystem` what the workloads need of them: the nodes, their pids, SIGKILL one and
start it again (the failover trials), and `check`, which names a node that exited on its own
(it could not bind its ports, it crashed) as a BenchError.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_manager.server.processes import NodeProcesses

from .system import BenchError


class ProcessSystem:
    """The part of a system (system.py) that its node processes provide."""

    def __init__(self, processes: NodeProcesses) -> None:
        self._processes = processes

    @property
    def nodes(self) -> Sequence[str]:
        return self._processes.nodes

    @property
    def pids(self) -> dict[str, int]:
        return self._processes.pids

    def kill(self, node: str) -> None:
        self._processes.kill(node)

    def restart(self, node: str) -> None:
        self._processes.start(node)

    def check(self) -> None:
        """BenchError naming the first node that exited without being killed."""
        for node, code in self._processes.exited().items():
            log = self._processes.directory / f"{node}.log"
            raise BenchError(f"node {node} exited with code {code} (its output: {log})")
