"""One chaos run, from an empty folder to the report.

Theory of operation, in order (every wait bounded):

1. Wire and start (nodes.py): the proxies, the cluster file for `nodes` voters (and one spare
   node when membership faults are asked for), every node process; a leader must answer within
   START_TIMEOUT and no node may exit, else StartError. The run's clock is set to zero.
2. Run for `duration` seconds: the clients (workload.py), the fault injector (faults.py, on the
   seeded plan of plan.py) and the watch (watch.py) at once. At `duration` the clients are told
   to stop and get STOP_GRACE seconds to finish the operation in flight (one still running
   then is cancelled and recorded `info`); a fault still held is cut short.
3. Heal (undo whatever is still broken, the initial voters again), wait until every initial
   voter has applied what the leader had committed, read every key and list the tasks
   (recorded), and check the live cluster: no node exited on its own, each voter's task table
   is coherent (verify/task_tables.py), the voters hold one log and one state (`verify`).
4. Stop the cluster; then, with the nodes gone, check the history (verify/history_check.py)
   and build the report (report.py), and the plot when asked (plot.py).

The node processes are stopped on every way out: `run_chaos` stops them in a `finally`, so a
Ctrl-C (KeyboardInterrupt) or a failure leaves nothing running; SIGTERM cancels the run and
raises Interrupted after the same cleanup. The proxies and the watch end with the run's task
group; a temporary folder (no --dir) is removed. Progress (phase, seconds, operations, the
fault being held) goes to a callback about four times a second.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from raft_manager.client import RaftClient
from raft_manager.client.history import HistoryRecorder, read_history
from raft_manager.server.processes import NodeProcesses
from raft_manager.verify import verify_cluster
from raft_manager.verify.checks import Check
from raft_manager.verify.history_check import check_history
from raft_manager.verify.task_tables import fetch_task_tables, task_table_checks

from .faults import FaultInjector
from .membership import MembershipMover
from .nodes import Cluster, StartError, node_processes, wire_cluster
from .plan import KINDS, TAIL, plan_faults
from .plot import write_plot
from .report import NS, ChaosReport, RunFacts
from .watch import ClusterWatch
from .workload import Workload

START_TIMEOUT = 20.0  # seconds for the first leader (node processes start slowly when loaded)
STOP_GRACE = 3.0  # seconds the clients get to finish their last operation
HEAL_TIMEOUT = 30.0  # seconds to bring the initial voters back
CONVERGE_TIMEOUT = 30.0  # seconds for every voter to apply the leader's commit index
ADMIN_TIMEOUT = 5.0  # seconds one membership change may take
PROGRESS_EVERY = 0.25  # seconds


class Interrupted(Exception):
    """The run was stopped by SIGTERM (the cluster was stopped)."""


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    nodes: int = 3
    duration: float = 30.0
    kinds: tuple[str, ...] = KINDS
    clients: int = 4
    seed: int = 0
    stale: bool = False
    directory: Path | None = None  # None: a temporary folder, removed afterwards
    history: Path | None = None  # None: DIR/history.jsonl
    plot: Path | None = None


@dataclass(slots=True)
class Progress:
    phase: str
    elapsed: float  # seconds of the run (0 before the clients start)
    duration: float
    ok: int = 0
    fail: int = 0
    info: int = 0
    fault: str = ""  # the fault being held, e.g. "partition n1"


def _ignore(progress: Progress) -> None:
    pass


def run_chaos(
    options: ChaosOptions, on_progress: Callable[[Progress], None] = _ignore
) -> ChaosReport:
    """Run it; StartError if the cluster could not start, Interrupted on SIGTERM."""
    with _folder(options.directory) as folder:
        processes = node_processes(folder)
        history_path = options.history or folder / "history.jsonl"
        run = _Run(options, processes, on_progress)
        try:
            with history_path.open("w", encoding="utf-8") as file:
                facts = run.go(HistoryRecorder(file))
        finally:
            processes.close()
        run.progress.phase, run.progress.fault = "checking the history", ""
        on_progress(run.progress)
        ops = read_history(history_path)
        kept = options.history is not None or options.directory is not None
        report = ChaosReport(facts, ops, check_history(ops), str(history_path) if kept else None)
    if options.plot is not None:
        why_not = write_plot(report, options.plot)
        report = replace(
            report, plot_path=None if why_not else str(options.plot), plot_note=why_not or ""
        )
    return report


@contextlib.contextmanager
def _folder(directory: Path | None) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
    else:
        with tempfile.TemporaryDirectory(prefix="raft-manager-chaos-") as folder:
            yield Path(folder)


@dataclass(slots=True)
class _Clock:
    """Seconds since `origin_ns` (monotonic, the history's clock)."""

    origin_ns: int = field(default_factory=time.monotonic_ns)

    def __call__(self) -> float:
        return (time.monotonic_ns() - self.origin_ns) / NS


class _Run:
    def __init__(
        self,
        options: ChaosOptions,
        processes: NodeProcesses,
        on_progress: Callable[[Progress], None],
    ) -> None:
        self.options = options
        self.processes = processes
        self.on_progress = on_progress
        self.clock = _Clock()
        self.progress = Progress("starting the cluster", 0.0, options.duration)
        self.interrupted = False
        self.failure: StartError | None = None
        self.workload: Workload | None = None
        self.injector: FaultInjector | None = None

    def go(self, recorder: HistoryRecorder) -> RunFacts:
        facts = anyio.run(self._main, recorder)
        if self.failure is not None:
            raise self.failure
        if self.interrupted or facts is None:
            raise Interrupted("stopped by SIGTERM")
        return facts

    async def _main(self, recorder: HistoryRecorder) -> RunFacts | None:
        facts = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._on_sigterm, group)
            group.start_soon(self._report_progress)
            try:
                facts = await self._run(group, recorder)
            except StartError as error:
                self.failure = error
            group.cancel_scope.cancel()
        return facts

    async def _on_sigterm(self, group: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                group.cancel_scope.cancel()
                return

    async def _report_progress(self) -> None:
        while True:
            progress = self.progress
            if self.workload is not None:
                counts = self.workload.counts
                progress.ok, progress.fail, progress.info = (
                    counts["ok"],
                    counts["fail"],
                    counts["info"],
                )
            if progress.phase == "running":
                progress.elapsed = min(self.clock(), self.options.duration)
            fault = self.injector.current if self.injector is not None else None
            progress.fault = "" if fault is None else f"{fault.kind} ({fault.variant})"
            self.on_progress(progress)
            await anyio.sleep(PROGRESS_EVERY)

    async def _start(self, group: TaskGroup) -> tuple[Cluster, ClusterWatch]:
        options = self.options
        spares = 1 if "membership" in options.kinds else 0
        cluster = await wire_cluster(self.processes, options.nodes, spares, group)
        for node in cluster.nodes:
            self.processes.start(node)
        watch = ClusterWatch(cluster.members(), self.clock)
        leader = await watch.wait_for_leader(START_TIMEOUT)
        exited = self.processes.exited()
        if exited:
            listed = ", ".join(f"{node} (exit code {code})" for node, code in exited.items())
            folder = self.processes.directory
            raise StartError(f"node processes exited: {listed} (their logs are in {folder})")
        if leader is None:
            raise StartError(f"no leader within {START_TIMEOUT:g} s")
        return cluster, watch

    async def _run(self, group: TaskGroup, recorder: HistoryRecorder) -> RunFacts:
        options = self.options
        cluster, watch = await self._start(group)
        clients = cluster.clients
        readers = [clients[node] for node in cluster.voters]
        self.workload = workload = Workload(
            list(clients.values()), readers, recorder, options.clients, options.seed, options.stale
        )
        async with RaftClient(list(clients.values()), timeout=ADMIN_TIMEOUT) as admin:
            mover = MembershipMover(admin, watch, cluster.config)
            self.injector = injector = FaultInjector(cluster, watch, mover, self.clock)
            self.clock.origin_ns = time.monotonic_ns()
            watch.rebase()
            group.start_soon(watch.run)
            self.progress.phase = "running"
            await self._drive(workload, injector)
            self.progress.phase, self.progress.elapsed = "healing", options.duration
            checks = await self._heal(cluster, watch, injector)
            self.progress.phase = "final reads"
            await workload.final_reads()
            self.progress.phase = "checking the nodes"
            checks += await self._check_nodes(cluster)
        return RunFacts(
            nodes=options.nodes,
            duration=options.duration,
            clients=options.clients,
            kinds=options.kinds,
            seed=options.seed,
            stale=options.stale,
            origin_ns=self.clock.origin_ns,
            events=tuple(injector.events),
            timeline=tuple(watch.timeline),
            leaderships=tuple(watch.leaderships()),
            live_checks=tuple(checks),
        )

    async def _drive(self, workload: Workload, injector: FaultInjector) -> None:
        options = self.options
        plan = plan_faults(options.kinds, options.duration, options.seed)
        stop = anyio.Event()

        async def stop_later() -> None:
            await anyio.sleep(options.duration)
            stop.set()

        async with anyio.create_task_group() as group:
            group.start_soon(injector.run, plan, options.duration - TAIL)
            group.start_soon(stop_later)
            with anyio.move_on_after(options.duration + STOP_GRACE):
                await workload.run(stop)
            group.cancel_scope.cancel()  # a fault still held is cut short: heal undoes it

    async def _heal(
        self, cluster: Cluster, watch: ClusterWatch, injector: FaultInjector
    ) -> list[Check]:
        voters = ", ".join(cluster.voters)
        checks = [
            Check.skipped(f"{event.kind} of {', '.join(event.targets)}: {event.note}")
            for event in injector.events
            if event.note
        ]
        if await injector.heal(HEAL_TIMEOUT):
            checks.append(Check.passed(f"healed: the voters are {voters} again"))
        else:
            checks.append(
                Check.failed(f"not healed: the voters are not {voters} after {HEAL_TIMEOUT:g} s")
            )
        started = self.clock()
        index = await watch.caught_up(cluster.voters, CONVERGE_TIMEOUT)
        if index is None:
            checks.append(
                Check.failed(
                    f"not converged: {voters} did not all apply the leader's commit index "
                    f"within {CONVERGE_TIMEOUT:g} s"
                )
            )
        else:
            took = self.clock() - started
            checks.append(
                Check.passed(f"converged: {voters} applied index {index:,} in {took:.1f} s")
            )
        return checks

    async def _check_nodes(self, cluster: Cluster) -> list[Check]:
        checks = [
            Check.failed(f"{node} exited on its own (exit code {code})")
            for node, code in self.processes.exited().items()
        ]
        voters = {node: cluster.clients[node] for node in cluster.voters}
        checks += task_table_checks(await fetch_task_tables(voters))
        checks += (await verify_cluster(voters)).checks()
        return checks
