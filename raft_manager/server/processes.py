"""Node processes on this machine: starting them, and stopping them again.

Theory of operation: `spawn` is the one way a node process starts here (its output appended to
DIR/<node>.log, in a session of its own, so a Ctrl-C in the terminal reaches only whoever
started it). Two kinds of owner use it:

- `NodeProcesses`, for a harness that lives as long as its nodes (the bench, the chaos run):
  start one (again, on the same data, after a kill), SIGKILL and reap one, SIGSTOP and SIGCONT
  one, tell which ended without being killed, and `close`: SIGCONT (a stopped process cannot
  act on a signal), the stop signal (SIGTERM unless the owner chose SIGKILL), SIGKILL after a
  grace period, each process waited for. With a `pid_file`, the running pids are kept there
  while they run (pid_file.py), where `cluster down --dir` finds them if the harness itself dies.
- commands that start nodes and exit (`cluster up`, `members add`, the demo's `--keep`): they
  keep the pids in that file; `stop_nodes` stops such processes by pid, the same way, but only
  a pid that still runs that node's command line for that cluster file (/proc/PID/cmdline and
  cwd): a pid file outlives its processes (a crash, a reboot), and their pids may since belong
  to something else, another cluster's node included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from .local_cluster import NODE_MODULE
from .pid_file import PidFile

STOP_GRACE = 5.0  # seconds a node gets to stop on its stop signal before it is killed
REAP_SECONDS = 5.0  # how long a killed process is waited for


def spawn(directory: Path, node: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start one node process in the background (output appended to DIR/<node>.log)."""
    with (directory / f"{node}.log").open("ab") as log:
        return subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs (a child of ours that exited is reaped on the way)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child: alive, as far as kill(0) can tell
    return reaped == 0


def is_node_process(pid: int, node: str, config: Path) -> bool:
    """Whether `pid` runs `node`'s node process of the cluster file `config`, as started by
    node_argv; where there is no /proc to tell, whether it runs at all."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except FileNotFoundError:
        return not Path("/proc/self").exists() and process_alive(pid)
    except OSError:
        return False
    if NODE_MODULE.encode() not in argv:
        return False
    given = {
        flag: argv[at + 1].decode(errors="replace")
        for at, flag in enumerate(argv[:-1])
        if flag in (b"--id", b"--config")
    }
    named = given.get(b"--config")
    return (
        given.get(b"--id") == node
        and named is not None
        and ((cwd / named).resolve() == config.resolve())
    )


def stop_nodes(pids: Mapping[str, int], config: Path, grace: float = STOP_GRACE) -> list[str]:
    """Stop the node processes in `pids` (node -> pid) of the cluster file `config`: SIGCONT and
    SIGTERM each, then SIGKILL whichever still runs after `grace` seconds. A pid that no longer
    runs that node's process of that cluster is left alone; those nodes are returned."""
    stale = [node for node, pid in pids.items() if not is_node_process(pid, node, config)]
    _stop([pid for node, pid in pids.items() if node not in stale], grace)
    return stale


def _stop(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and process_alive(pid):
            time.sleep(0.05)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class NodeProcesses:
    """The node processes of one harness, by node id; `argv(node)` is a node's command line.
    Use `close` (or `contextlib.closing`) so that every way out stops them."""

    def __init__(
        self,
        directory: Path,
        argv: Callable[[str], Sequence[str]],
        *,
        stop: signal.Signals = signal.SIGTERM,
        pid_file: PidFile | None = None,
    ) -> None:
        self.directory = directory
        self._argv = argv
        self._stop = stop
        self._pid_file = pid_file
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self.down: set[str] = set()  # killed by the harness and not started again yet

    @property
    def nodes(self) -> list[str]:
        """Every node started so far, in the order they were first started."""
        return list(self._processes)

    @property
    def pids(self) -> dict[str, int]:
        """The process id of each node not killed."""
        return {node: p.pid for node, p in self._processes.items() if node not in self.down}

    def start_all(self, nodes: Iterable[str]) -> None:
        for node in nodes:
            self.start(node)

    def start(self, node: str) -> None:
        self._processes[node] = spawn(self.directory, node, self._argv(node))
        self.down.discard(node)
        self._save()

    def kill(self, node: str) -> None:
        """SIGKILL one node and reap it."""
        process = self._processes[node]
        self.down.add(node)
        process.kill()
        process.wait(REAP_SECONDS)
        self._save()

    def pause(self, node: str) -> None:
        self._processes[node].send_signal(signal.SIGSTOP)

    def resume(self, node: str) -> None:
        self._processes[node].send_signal(signal.SIGCONT)

    def exited(self) -> dict[str, int]:
        """The nodes whose process ended without being killed, with its exit code."""
        return {
            node: code
            for node, process in self._processes.items()
            if node not in self.down and (code := process.poll()) is not None
        }

    def close(self) -> None:
        """Stop every node process and wait for each (idempotent)."""
        live = [process for process in self._processes.values() if process.poll() is None]
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.send_signal(self._stop)
        deadline = time.monotonic() + STOP_GRACE
        for process in live:
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(REAP_SECONDS)
        if self._pid_file is not None:
            self._pid_file.delete()

    def _save(self) -> None:
        if self._pid_file is not None:
            self._pid_file.write(self.pids)
