"""The node processes of one system under measurement: start, SIGKILL, restart, stop them all.

Theory of operation: a system names its nodes and the command line of each; `NodeProcesses`
runs them as children of the bench (a node's output appended to DIR/<node>.log), kills one with
SIGKILL and reaps it (the failover trials), starts it again with the same command line, and
reports a node that exited on its own (`check`: it could not bind its ports, it crashed). On
`close` every node still running gets SIGTERM (or the system's choice: SIGKILL for one whose
data is thrown away anyway and whose graceful stop is slow), and SIGKILL if it has not exited
within STOP_SECONDS; the systems open it with `contextlib.closing`, so that every way out of a run
(an error, Ctrl-C) stops the nodes. `ProcessSystem` is what every system built on such
processes shares: its nodes, SIGKILL, restart and the check.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .system import BenchError

STOP_SECONDS = 5.0


class NodeProcesses:
    """Use as `with closing(NodeProcesses(directory, argv)) as processes: ...`."""

    def __init__(
        self,
        directory: Path,
        argv: Mapping[str, Sequence[str]],
        stop: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.directory = directory
        self._argv = dict(argv)
        self._stop = stop  # what `close` sends first
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def nodes(self) -> list[str]:
        return list(self._argv)

    @property
    def pids(self) -> dict[str, int]:
        """The running nodes' process ids."""
        return {node: process.pid for node, process in self._running.items()}

    def start_all(self) -> None:
        for node in self._argv:
            self.start(node)

    def start(self, node: str) -> None:
        with (self.directory / f"{node}.log").open("ab") as log:
            self._running[node] = subprocess.Popen(
                list(self._argv[node]), stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self, node: str) -> None:
        """SIGKILL one node and reap it."""
        process = self._running.pop(node)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def check(self) -> None:
        """BenchError naming the first node that exited without being killed."""
        for node, process in self._running.items():
            code = process.poll()
            if code is not None:
                log = self.directory / f"{node}.log"
                raise BenchError(f"node {node} exited with code {code} (its output: {log})")

    def close(self) -> None:
        running = [process for process in self._running.values() if process.poll() is None]
        for process in running:
            process.send_signal(self._stop)
        for process in running:
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._running.clear()


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
        self._processes.check()
