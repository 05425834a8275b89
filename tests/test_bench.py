"""`raft-manager bench`: the command on a real 3-node cluster (short runs), its option checks,
the peers' harnesses when they are installed, and the measuring and reporting pieces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

from raft_manager.bench import BenchPlan, BenchReport, SystemResult, plot
from raft_manager.bench.processes import ProcessSystem
from raft_manager.bench.report import BEGIN, END, markdown, ratios, to_json, write_docs
from raft_manager.bench.runner import SYSTEMS, measure
from raft_manager.bench.system import BenchError, WriteFailed
from raft_manager.bench.workloads import Samples, open_loop, sequential, throughput
from raft_manager.cli.main import app
from raft_manager.server import processes
from raft_manager.server.processes import NodeProcesses

FIGURES = {"throughput", "p50_ms", "p99_ms", "p99_at_load_ms", "failover_s", "fsync"}
BENCH = [sys.executable, "-m", "raft_manager.cli", "bench"]
SHORT = BenchPlan(seconds=0.5, trials=1, in_flight=200, rate=1000.0)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BENCH, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bench_measures_a_real_cluster_and_prints_the_documented_json(tmp_path: Path) -> None:
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\nHand-written history.\n")
    run = _bench(
        *("--compare", "none", "--duration", "0.5", "--trials", "1", "--json"),
        *("--dir", str(tmp_path), "--write-docs", str(docs)),
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert list(report) == ["systems"] and list(report["systems"]) == ["raft-manager"]
    figures = report["systems"]["raft-manager"]
    assert set(figures) == FIGURES
    assert figures["fsync"] is True
    assert figures["throughput"] > 50
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] < 5000
    assert 0 < figures["p99_at_load_ms"] < 10_000
    assert 0 < figures["failover_s"] < 10
    text = docs.read_text()
    assert text.startswith("# Performance\n\nHand-written history.\n")
    assert BEGIN in text and END in text and "| raft-manager |" in text
    assert not [path for path in tmp_path.iterdir() if path.name.startswith("raft-manager-bench")]


def test_sigterm_stops_every_node_before_the_command_exits(tmp_path: Path) -> None:
    bench = subprocess.Popen(
        [*BENCH, "--compare", "none", "--duration", "5", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bench.stderr is not None
        for line in bench.stderr:  # bounded: the run ends on its own within a minute
            if "sequential writes" in line:
                break
        children = Path(f"/proc/{bench.pid}/task/{bench.pid}/children").read_text().split()
        assert len(children) == 3
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 143
    finally:
        bench.kill()
        bench.wait()
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--transport", "udp"], "--transport must be one of tcp, redis"),
        (["--compare", "pysyncobj,zookeeper"], "--compare: unknown system 'zookeeper'"),
        (["--plot", "cdf.svg"], "--plot: cdf.svg must end in .png"),
        (["--write-docs", "no/such/folder/performance.md"], "--write-docs: no folder"),
        (["--nodes", "2"], "Invalid value for '--nodes'"),
        (["--duration", "0"], "Invalid value for '--duration'"),
        (["--trials", "0"], "Invalid value for '--trials'"),
    ],
)
def test_bad_options_exit_2_with_a_clear_error(args: list[str], message: str) -> None:
    outcome = CliRunner().invoke(app, ["bench", *args])
    assert outcome.exit_code == 2, outcome.output
    assert message in " ".join(outcome.stderr.replace("│", " ").split())


@pytest.mark.parametrize("name", ["pysyncobj", "etcd"])
def test_a_peer_is_measured_like_raft_manager_when_installed(name: str, tmp_path: Path) -> None:
    missing, launch = SYSTEMS[name]
    if (why := missing()) is not None:
        pytest.skip(f"{name}: {why}")

    async def run() -> SystemResult:
        with launch(tmp_path, SHORT) as system:
            return await measure(system, SHORT, lambda line: None)

    result = anyio.run(run)
    assert result.name == name and result.fsync is (name == "etcd")
    assert result.failed_writes == 0
    assert result.sequential.completed > 0 and result.throughput.rate > 0
    assert result.at_load.completed == SHORT.rate * SHORT.seconds
    assert len(result.failover.latencies) == 1 and 0 < result.failover.latencies[0] < 10


async def test_open_loop_latency_runs_from_the_schedule_not_from_the_send() -> None:
    lock = anyio.Lock()

    async def write() -> None:  # capacity 100 writes/s, offered 200/s
        async with lock:
            await anyio.sleep(0.01)

    samples = await open_loop(write, rate=200, seconds=0.25)
    assert samples.completed == 50 and samples.failed == 0
    # the 50th write was scheduled at 0.245 s and done at about 0.5 s: a closed loop would
    # have called every write 10 ms long
    assert samples.percentile_ms(0.99) > 150
    assert min(samples.latencies) < 0.03


async def test_failed_writes_are_counted_not_timed() -> None:
    calls = 0

    async def write() -> None:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.001)
        if calls % 2:
            raise WriteFailed("refused")

    measured = await sequential(write, 0.1)
    assert measured.failed and measured.completed
    assert len(measured.latencies) == measured.completed
    flat_out = await throughput(write, 4, 0.1)
    assert flat_out.failed and flat_out.rate > 0


def test_percentiles_are_nearest_rank_with_failed_writes_ranked_last() -> None:
    samples = Samples(latencies=[k / 1000 for k in range(1, 101)])
    assert samples.percentile_ms(0.5) == pytest.approx(50)
    assert samples.percentile_ms(0.99) == pytest.approx(99)
    assert Samples().percentile_ms(0.5) is None and Samples().median is None
    one_failed = Samples(latencies=[k / 1000 for k in range(1, 100)], failed=1)
    assert one_failed.percentile_ms(0.99) == pytest.approx(99)  # 99 of 100 committed
    two_failed = Samples(latencies=[k / 1000 for k in range(1, 100)], failed=2)
    assert two_failed.percentile_ms(0.99) is None  # it lies among the writes never committed
    assert Samples(latencies=[1.0, 2.0], failed=3).median is None


def _result(
    name: str, fsync: bool, rate: float, latency_ms: float, failover_s: float
) -> SystemResult:
    latencies = [latency_ms / 1000] * 10
    return SystemResult(
        name,
        fsync,
        "test setup",
        Samples(latencies=list(latencies), completed=10, seconds=1.0),
        Samples(completed=round(rate), seconds=1.0),
        Samples(latencies=list(latencies), completed=10, seconds=1.0),
        Samples(latencies=[failover_s], completed=1),
    )


def _report() -> BenchReport:
    report = BenchReport(BenchPlan())
    report.results = [
        _result("raft-manager", True, 20_000, 1.0, 0.5),
        _result("pysyncobj", False, 10_000, 2.0, 1.0),
    ]
    report.skipped["etcd"] = "not installed (no etcd binary on PATH)"
    return report


def test_ratios_above_one_mean_raft_manager_is_better() -> None:
    assert ratios(_report())["pysyncobj"] == {
        "throughput": 2.0,
        "p50_ms": 2.0,
        "p99_ms": 2.0,
        "p99_at_load_ms": 2.0,
        "failover_s": 2.0,
    }
    systems = to_json(_report())["systems"]
    assert list(systems) == ["raft-manager", "pysyncobj"]
    assert systems["pysyncobj"]["fsync"] is False and set(systems["pysyncobj"]) == FIGURES


def test_the_docs_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\nbefore\n")
    write_docs(docs, markdown(_report(), "cdf.png"))  # no section yet: appended
    first = docs.read_text()
    assert first.startswith("# Performance\n\nbefore\n\n" + BEGIN)
    assert first.count(BEGIN) == 1 and "pysyncobj does not fsync" in first
    assert "etcd: not installed" in first and "![latency CDFs](cdf.png)" in first
    docs.write_text(first + "\nafter\n")
    write_docs(docs, markdown(_report(), None))
    again = docs.read_text()
    assert again.startswith("# Performance\n\nbefore\n") and again.endswith("\nafter\n")
    assert again.count(BEGIN) == again.count(END) == 1 and "latency CDFs" not in again


def test_node_processes_are_stopped_on_every_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "STOP_GRACE", 0.5)
    python = [sys.executable, "-c"]
    argv = {
        "calm": [*python, "import time; time.sleep(60)"],
        "stubborn": [
            *python,
            "import signal, time; signal.signal(15, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(60)",
        ],
    }
    with pytest.raises(RuntimeError), closing(NodeProcesses(tmp_path, argv.__getitem__)) as nodes:
        nodes.start_all(argv)
        pids = nodes.pids
        deadline = time.monotonic() + 10  # it ignores SIGTERM once it says "up"
        while "up" not in (tmp_path / "stubborn.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("a run failing midway")
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_node_that_exits_by_itself_is_reported(tmp_path: Path) -> None:
    argv = {"n1": [sys.executable, "-c", "raise SystemExit(3)"]}
    with closing(NodeProcesses(tmp_path, argv.__getitem__)) as nodes:
        nodes.start_all(argv)
        system = ProcessSystem(nodes)
        deadline = time.monotonic() + 10
        with pytest.raises(BenchError, match="node n1 exited with code 3"):
            while time.monotonic() < deadline:
                system.check()
                time.sleep(0.01)


def test_the_latency_cdfs_need_matplotlib_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(plot.importlib, "import_module", missing)
    assert plot.plot_cdfs(_report(), tmp_path / "cdf.png") == (
        "matplotlib is not installed: no latency CDF plot"
    )
    assert not (tmp_path / "cdf.png").exists()


def test_the_latency_cdfs_are_drawn_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    report = _report()
    report.results[1].at_load.failed = 5  # its curve stops short of 1
    assert plot.plot_cdfs(report, tmp_path / "cdf.png") is None
    assert (tmp_path / "cdf.png").read_bytes().startswith(b"\x89PNG")
