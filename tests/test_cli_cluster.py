"""The cluster commands against a real local cluster: up, status, health, elect, down."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.server.local_cluster import free_base_port


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

        target = next(node for node in ("n1", "n2", "n3") if node != report["leader"])
        elect = runner.invoke(app, ["elect", "--to", target, *cluster, "--json"])
        assert elect.exit_code == 0, elect.output
        moved = json.loads(elect.stdout)
        assert (moved["old"], moved["new"]) == (report["leader"], target)
        assert moved["term"] == report["term"] + 1
    finally:
        down = runner.invoke(app, ["cluster", "down", "--dir", str(directory)])
    assert down.exit_code == 0
    health = runner.invoke(app, ["health", *cluster])
    assert health.exit_code == 2 and health.stdout.startswith("no quorum")


def test_commands_refuse_a_missing_cluster_file(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["status", "--cluster", str(tmp_path / "none.toml")])
    assert outcome.exit_code == 2 and "no such file" in outcome.stderr
