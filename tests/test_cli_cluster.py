"""The cluster commands against a real local cluster: up, status, health, elect, down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.server.local_cluster import free_base_port, write_config
from raft_manager.server.pid_file import PidFile
from raft_manager.server.processes import is_node_process


def free_base() -> str:
    base = free_base_port(3)
    assert base is not None
    return str(base)


def test_up_status_health_elect_down(tmp_path: Path) -> None:
    runner = CliRunner()
    directory = tmp_path / "local"
    cluster = ["--cluster", str(directory / "cluster.toml")]
    base = free_base()
    up = runner.invoke(
        app, ["cluster", "up", "--dir", str(directory), "--base-port", base, "--json"]
    )
    try:
        assert up.exit_code == 0, up.output
        started = json.loads(up.stdout)
        assert started["leader"] in {"n1", "n2", "n3"}
        assert [node["id"] for node in started["nodes"]] == ["n1", "n2", "n3"]

        again = runner.invoke(app, ["cluster", "up", "--dir", str(directory)])
        assert again.exit_code == 2 and "already up" in again.stderr  # ports are taken

        status = runner.invoke(app, ["status", *cluster, "--json"])
        assert status.exit_code == 0
        report = json.loads(status.stdout)
        assert report["leader"] == started["leader"]
        assert all(node["reachable"] for node in report["nodes"])
        assert {node["role"] for node in report["nodes"]} == {"leader", "follower"}

        addresses = ",".join(node["client_address"] for node in started["nodes"])
        by_address = runner.invoke(app, ["status", "--cluster", addresses, "--json"])
        assert by_address.exit_code == 0
        assert json.loads(by_address.stdout)["leader"] == report["leader"]
        bad = runner.invoke(app, ["status", "--cluster", "nowhere:port"])
        assert bad.exit_code == 2

        health = runner.invoke(app, ["health", *cluster])
        assert health.exit_code == 0 and health.stdout.startswith("healthy")
        health = runner.invoke(app, ["health", *cluster, "--json"])
        assert health.exit_code == 0
        assert json.loads(health.stdout) == {
            "state": "healthy",
            "reason": health_reason(report),
            "leader": report["leader"],
            "term": report["term"],
            "answering": 3,
            "total": 3,
            "down": [],
        }

        stranger = runner.invoke(app, ["elect", "--to", "nosuch", *cluster])
        assert stranger.exit_code == 1
        assert stranger.stderr.strip() == (
            "leadership did not move: transfer_rejected: nosuch is not a voter of this cluster"
        )
        stay = runner.invoke(app, ["elect", "--to", report["leader"], *cluster, "--json"])
        assert stay.exit_code == 0, stay.output
        assert json.loads(stay.stdout) == {
            "old": report["leader"],
            "new": report["leader"],
            "term": report["term"],
        }
        target = next(node for node in ("n1", "n2", "n3") if node != report["leader"])
        elect = runner.invoke(app, ["elect", "--to", target, *cluster, "--json"])
        assert elect.exit_code == 0, elect.output
        moved = json.loads(elect.stdout)
        assert (moved["old"], moved["new"]) == (report["leader"], target)
        assert moved["term"] == report["term"] + 1
    finally:
        down = runner.invoke(app, ["cluster", "down", "--dir", str(directory), "--json"])
    assert down.exit_code == 0
    pids = {node["id"]: node["pid"] for node in started["nodes"]}
    assert json.loads(down.stdout) == {
        "stopped": [{"id": node, "pid": pid} for node, pid in pids.items()],
        "stale": [],
    }
    health = runner.invoke(app, ["health", *cluster])
    assert health.exit_code == 2 and health.stdout.startswith("no quorum")
    health = runner.invoke(app, ["health", *cluster, "--json"])
    assert health.exit_code == 2
    assert json.loads(health.stdout)["state"] == "no_quorum"


def health_reason(report: dict[str, Any]) -> str:
    return f"healthy: leader {report['leader']}, term {report['term']}, all 3 nodes answer"


def test_down_leaves_alone_a_recorded_pid_that_no_longer_runs_its_node(tmp_path: Path) -> None:
    # After a crash or a reboot the pid file's pids may belong to anything: never signal those.
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        PidFile(tmp_path).write({"n1": bystander.pid})
        down = CliRunner().invoke(app, ["cluster", "down", "--dir", str(tmp_path), "--json"])
        assert down.exit_code == 0
        assert json.loads(down.stdout) == {
            "stopped": [],
            "stale": [{"id": "n1", "pid": bystander.pid}],
        }
        assert bystander.poll() is None  # still running
        assert not PidFile(tmp_path).exists()
        text = CliRunner().invoke(app, ["cluster", "down", "--dir", str(tmp_path)])
        assert text.stdout == f"no running cluster recorded in {tmp_path}\n"
    finally:
        bystander.kill()
        bystander.wait()


def test_commands_refuse_a_missing_cluster_file(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["status", "--cluster", str(tmp_path / "none.toml")])
    assert outcome.exit_code == 2 and "no such file" in outcome.stderr


def test_bad_places_and_values_are_clear_errors_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [
        (["status", "--cluster", str(tmp_path)], f"{tmp_path}: cannot be read"),
        (["health", "--cluster", ","], "--cluster names no node"),
        (["cluster", "up", "--dir", str(a_file)], f"--dir {a_file}:"),
        (["node", "--config", "x.toml", "--id", "n1", "--log-level", "bogus"], "bogus"),
    ]
    for argv, says in cases:
        outcome = runner.invoke(app, argv)
        assert outcome.exit_code == 2, (argv, outcome.output)
        assert says in outcome.stderr, (argv, outcome.stderr)
        assert outcome.exception is None or isinstance(outcome.exception, SystemExit), argv
    path = write_config(tmp_path, 3, 7000, "tcp", None)
    for variable, value in [
        ("RAFT_MANAGER_LEDGER", "notjson"),
        ("RAFT_MANAGER_NODES", "[1"),
        ("RAFT_MANAGER_TICK_MS", "abc"),
    ]:
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            outcome = runner.invoke(app, ["status", "--cluster", str(path)])
        assert outcome.exit_code == 2, (variable, outcome.output)
        assert outcome.stderr.startswith("error: "), (variable, outcome.stderr)
    for entry in ("n1", "n2", "n3"):  # every node removed: nothing to ask
        text = path.read_text().replace(f"[nodes.{entry}]", f"[nodes.{entry}]\nremoved = true")
        path.write_text(text)
    outcome = runner.invoke(app, ["status", "--cluster", str(path)])
    assert outcome.exit_code == 2 and "names no node" in outcome.stderr


def test_a_node_process_is_known_by_its_id_and_its_cluster_file(tmp_path: Path) -> None:
    """A reused pid may run another cluster's n1: that one is not this cluster's to stop."""
    argv = ["-m", "raft_manager.cli.node", "--config", "a/cluster.toml", "--id", "n1"]
    lookalike = subprocess.Popen(  # argv as a node's, relative to its own folder
        [sys.executable, "-c", "import time; time.sleep(30)", *argv], cwd=tmp_path
    )
    try:
        assert is_node_process(lookalike.pid, "n1", tmp_path / "a" / "cluster.toml")
        assert not is_node_process(lookalike.pid, "n1", tmp_path / "b" / "cluster.toml")
        assert not is_node_process(lookalike.pid, "n2", tmp_path / "a" / "cluster.toml")
    finally:
        lookalike.kill()
        lookalike.wait()
    assert not is_node_process(lookalike.pid, "n1", tmp_path / "a" / "cluster.toml")
