"""The chaos harness: its seeded plan, its membership steps, its report, bad usage; and real
runs: every fault kind on a 3-node cluster ends linearizable, stale reads through partitions
are caught (the harness can fail), Ctrl-C and a failed start leave nothing running."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from raft_manager.chaos import run as chaos_run
from raft_manager.chaos.faults import FaultEvent
from raft_manager.chaos.membership import next_change
from raft_manager.chaos.plan import KINDS, TAIL, WARMUP, Fault, parse_kinds, plan_faults
from raft_manager.chaos.plot import write_plot
from raft_manager.chaos.report import ChaosReport, RunFacts
from raft_manager.chaos.watch import Sample
from raft_manager.cli.main import app
from raft_manager.client.history import HistoryOp
from raft_manager.verify.checks import Check
from raft_manager.verify.history_check import check_history

runner = CliRunner()


# -- the plan --------------------------------------------------------------------------------


def test_the_plan_is_decided_by_the_seed_and_fits_the_run() -> None:
    assert plan_faults(KINDS, 60, 7) == plan_faults(KINDS, 60, 7)
    assert plan_faults(KINDS, 60, 7) != plan_faults(KINDS, 60, 8)
    for seed in range(50):
        faults = plan_faults(KINDS, 30, seed)
        assert {fault.kind for fault in faults} == set(KINDS)  # every kind, early on
        assert {fault.kind for fault in faults[:4]} == set(KINDS)
        assert faults[0].at == WARMUP
        for before, after in itertools.pairwise(faults):
            assert before.at + before.hold < after.at  # one at a time, a gap between
        assert faults[-1].at + faults[-1].hold <= 30 - TAIL
    assert plan_faults(("pause",), 10, 1) and {f.kind for f in plan_faults(("pause",), 10, 1)} == {
        "pause"
    }
    assert plan_faults((), 60, 1) == []
    assert plan_faults(KINDS, 2, 1) == []  # too short for any fault


def test_a_fault_picks_its_target_among_sorted_candidates() -> None:
    fault = Fault("kill", 1.0, 1.0, "voter", 0.5)
    assert fault.choose(["n3", "n1", "n2"]) == "n2"
    assert Fault("kill", 1.0, 1.0, "voter", 0.0).choose(["n3", "n1"]) == "n1"
    assert Fault("kill", 1.0, 1.0, "voter", 0.999).choose(["n3", "n1"]) == "n3"


def test_fault_kinds_are_parsed_and_unknown_ones_refused() -> None:
    assert parse_kinds("kill,pause") == ("kill", "pause")
    assert parse_kinds(" partition , kill,partition") == ("partition", "kill")
    assert parse_kinds("none") == () == parse_kinds("")
    with pytest.raises(ValueError, match="unknown fault kind 'flood'"):
        parse_kinds("kill,flood")


# -- membership steps ------------------------------------------------------------------------


def test_membership_moves_one_change_at_a_time() -> None:
    voters = {"n1": "voter", "n2": "voter", "n3": "voter"}
    assert next_change(voters, ["n1", "n2", "n3"]) is None
    assert next_change(voters, ["n1", "n3"]) == ("remove", "n2")
    assert next_change(voters, ["n1", "n2", "n3", "n4"]) == ("add_learner", "n4")
    assert next_change({**voters, "n4": "learner"}, ["n1", "n2", "n3", "n4"]) == (
        "promote",
        "n4",
    )
    assert next_change({**voters, "n4": "learner"}, ["n1", "n2", "n3"]) == ("remove", "n4")
    # back to the initial voters: the removed one is added first, then promoted
    assert next_change({"n1": "voter", "n3": "voter"}, ["n1", "n2", "n3"]) == ("add_learner", "n2")


# -- the report ------------------------------------------------------------------------------

S = 1_000_000_000  # ns


def _op(process: int, op: str, kind: str, invoke: float, complete: float, **data: Any) -> HistoryOp:
    if kind != "ok":
        data["error"] = "timeout" if kind == "info" else "cas_failed"
    return HistoryOp(process, op, kind, int(invoke * S), int(complete * S), data)


def _report(ops: list[HistoryOp], checks: tuple[Check, ...] = ()) -> ChaosReport:
    facts = RunFacts(
        nodes=3,
        duration=10.0,
        clients=2,
        kinds=KINDS,
        seed=1,
        stale=False,
        origin_ns=0,
        events=(FaultEvent("kill", "leader", ("n1",), 2.0, 3.5),),
        timeline=(Sample(0.0, "n1", 1), Sample(2.1, None, 1), Sample(2.6, "n2", 2)),
        leaderships=(("n1", 1), ("n2", 2)),
        live_checks=checks,
    )
    return ChaosReport(facts, ops, check_history(ops))


def test_the_report_counts_outcomes_failovers_and_the_longest_gap() -> None:
    ops = [
        _op(1, "put", "ok", 0.1, 0.2, key="a", value="x", version=5),
        _op(2, "get", "ok", 1.0, 1.9, key="a", found=True, value="x", version=5),
        _op(1, "put", "info", 2.0, 4.0, key="a", value="y"),
        _op(2, "cas", "fail", 5.0, 5.5, key="a", value="z", expected="q"),
        _op(2, "get", "ok", 6.0, 6.5, key="a", found=True, value="y", version=9),
    ]
    report = _report(ops)
    assert report.verdict == "linearizable" and report.exit_code == 0
    assert report.outcomes() == {"ok": 3, "fail": 1, "info": 1}
    assert report.by_op()["get"] == {"ok": 2}
    assert report.faults() == {"kill": 1}
    assert report.failovers == 1
    assert report.longest_unavailability() == pytest.approx((4.6, 1.9))  # 1.9 s to 6.5 s
    rates = dict(report.throughput())
    assert rates[0.0] == rates[1.5] == rates[6.5] == 2.0 and rates[3.0] == 0.0
    data = report.as_dict()
    assert data["operations"]["ok_per_second"] == 0.3 and data["operations"]["total"] == 5
    assert data["longest_unavailability"] == {"seconds": 4.6, "from": 1.9}
    assert ("verdict", "linearizable") in report.rows()


def test_the_verdict_follows_the_worst_finding() -> None:
    stale = [
        _op(1, "put", "ok", 0.1, 0.2, key="a", value="x", version=5),
        _op(1, "put", "ok", 0.3, 0.4, key="a", value="y", version=6),
        _op(2, "get", "ok", 0.5, 0.6, key="a", found=True, value="x", version=5),
    ]
    assert _report(stale).verdict == "non-linearizable"
    assert _report(stale).exit_code == 1
    fine = stale[:2]
    broken = (Check.failed("not converged"),)
    assert _report(fine, broken).verdict == "violation"
    assert _report(fine, broken).exit_code == 1
    assert _report(fine, (Check.skipped("a note"),)).exit_code == 0


def test_the_plot_is_skipped_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert write_plot(_report([]), tmp_path / "p.png") == "matplotlib is not installed: no plot"
    assert not (tmp_path / "p.png").exists()


def test_the_plot_is_a_png_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ops = [
        _op(1, "put", "ok", t / 10, t / 10 + 0.05, key="a", value=t, version=t)
        for t in range(1, 90)
    ]
    assert write_plot(_report(ops), tmp_path / "p.png") is None
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- bad usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "4"], "--nodes must be 3 or 5, not 4"),
        (["--faults", "kill,flood"], "--faults: unknown fault kind 'flood'"),
        (["--duration", "-5"], "--duration must be 2 to 86400 seconds, not -5"),
        (["--duration", "0"], "--duration must be 2 to 86400 seconds, not 0"),
        (["--clients", "0"], "--clients must be 1 to 64, not 0"),
        (["--seed", "-1"], "--seed must be 0 or more, not -1"),
        (["--history", "/nowhere/at/all/h.jsonl"], "--history: the folder /nowhere/at/all"),
    ],
)
def test_bad_usage_is_refused_with_a_clear_error(args: list[str], message: str) -> None:
    outcome = runner.invoke(app, ["chaos", *args])
    assert outcome.exit_code == 2, outcome.output
    assert f"error: {message}" in outcome.stderr


def test_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("")
    outcome = runner.invoke(app, ["chaos", "--dir", str(tmp_path)])
    assert outcome.exit_code == 2 and "is not an empty folder" in outcome.stderr


# -- real runs -------------------------------------------------------------------------------


def _chaos(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    outcome = runner.invoke(app, ["chaos", "--json", "--dir", str(tmp_path / "run"), *args])
    assert outcome.stdout, outcome.stderr
    report: dict[str, Any] = json.loads(outcome.stdout)
    assert not (tmp_path / "run" / "pids.json").exists()  # the cluster is stopped
    return outcome.exit_code, report


def test_every_fault_kind_on_a_three_node_cluster_ends_linearizable(tmp_path: Path) -> None:
    code, report = _chaos(
        tmp_path, "--nodes", "3", "--duration", "14", "--clients", "4", "--seed", "0"
    )
    failed = [check["text"] for check in report["checks"] if check["verdict"] == "FAIL"]
    assert code == 0 and report["verdict"] == "linearizable", failed
    assert set(report["faults"]) == set(KINDS)
    assert len(report["fault_log"]) == sum(report["faults"].values())
    operations = report["operations"]
    assert operations["ok"] > 1_000 and operations["ok_per_second"] > 50
    assert {"get", "put", "cas", "delete", "task.submit", "task.claim"} <= set(operations["by_op"])
    assert report["leaders"][0]["leader"] is not None
    assert report["longest_unavailability"]["seconds"] < 10
    texts = [check["text"] for check in report["checks"]]
    assert any(text.startswith("converged: n1, n2, n3") for text in texts)
    assert any(text.startswith("healed: the voters are n1, n2, n3") for text in texts)
    # From 1, or from the last snapshot when the run passed snapshot_every entries (the faster
    # nodes since 2026-11-27 commit about 12,600 entries in this run and compact at 10,000).
    assert any(
        text.startswith("log: entries ") and text.endswith("agree on n1, n2, n3") for text in texts
    )
    assert report["history"] == str(tmp_path / "run" / "history.jsonl")
    # the history it kept is the one it checked
    recheck = runner.invoke(app, ["check-history", report["history"]])
    assert recheck.exit_code == 0, recheck.output


def test_stale_reads_through_partitions_are_reported_non_linearizable(tmp_path: Path) -> None:
    code, report = _chaos(
        tmp_path,
        "--stale",
        "--faults",
        "partition",
        "--duration",
        "8",
        "--clients",
        "4",
        "--seed",
        "1",
        "--history",
        str(tmp_path / "stale.jsonl"),
    )
    assert code == 1 and report["verdict"] == "non-linearizable"
    assert report["faults"]["partition"] >= 1 and set(report["faults"]) == {"partition"}
    failed = [check["text"] for check in report["checks"] if check["verdict"] == "FAIL"]
    assert failed and all("not linearizable" in text for text in failed), failed
    assert "saw a stale write" in failed[0]
    assert report["history"] == str(tmp_path / "stale.jsonl")


def test_a_cluster_that_cannot_start_is_stopped_and_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chaos_run, "START_TIMEOUT", 0.0)  # no leader can be that fast
    args = ["chaos", "--dir", str(tmp_path / "run"), "--duration", "5", "--json"]
    outcome = runner.invoke(app, args)
    assert outcome.exit_code == 4, outcome.output
    message = "error: the cluster could not start: no leader within 0 s"
    assert message in outcome.stderr
    assert json.loads(outcome.stdout) == {"error": message, "exit_code": 4}
    assert not (tmp_path / "run" / "pids.json").exists()


def test_ctrl_c_stops_every_node(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    command = [sys.executable, "-m", "raft_manager.cli", "chaos", "--dir", str(folder)]
    # A handled SIGINT here is a default one in the child, as in a terminal, even when this test
    # runs where SIGINT is ignored (a background job), which the child would inherit.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [*command, "--duration", "60", "--faults", "pause,kill"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 30  # the nodes started
        while time.monotonic() < deadline and not pids:
            pids = _pids(folder)
            time.sleep(0.1)
        deadline = time.monotonic() + 4  # into the faults (a node paused, or killed)
        while time.monotonic() < deadline:
            pids |= _pids(folder)
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert b"interrupted: the cluster was stopped" in stderr
    assert pids and not (folder / "pids.json").exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _pids(folder: Path) -> set[int]:
    try:
        return set(json.loads((folder / "pids.json").read_text()).values())
    except (OSError, ValueError):
        return set()


@pytest.mark.slow
def test_a_sixty_second_chaos_run(tmp_path: Path) -> None:
    """What CI runs: a minute of every fault kind on 3 nodes."""
    code, report = _chaos(tmp_path, "--duration", "60", "--clients", "4", "--seed", "7")
    failed = [check["text"] for check in report["checks"] if check["verdict"] == "FAIL"]
    assert code == 0 and report["verdict"] == "linearizable", failed
    assert set(report["faults"]) == set(KINDS) and sum(report["faults"].values()) >= 12
    assert report["operations"]["ok"] > 5_000
