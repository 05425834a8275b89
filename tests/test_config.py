"""Cluster configuration: sources, priorities and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from raft_manager.server.config import ConfigError, load_config

GOOD = """
cluster_id = "swarm"
tick_ms = 20
[nodes.n1]
address = "127.0.0.1:7001"
client_address = "127.0.0.1:8001"
data_dir = "data/n1"
[nodes.n2]
address = "[::1]:7002"
client_address = "[::1]:8002"
data_dir = "/var/lib/raft/n2"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_defaults_and_resolved_data_dirs(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD))
    assert config.cluster_id == "swarm" and config.tick_ms == 20
    assert config.election_ticks == 6 and config.pre_vote and config.check_quorum
    assert config.nodes["n1"].data_dir == tmp_path / "data" / "n1"
    assert config.nodes["n2"].data_dir == Path("/var/lib/raft/n2")


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, GOOD)
    monkeypatch.setenv("RAFT_MANAGER_TICK_MS", "33")
    assert load_config(path).tick_ms == 33
    assert load_config(path, {"tick_ms": 44}).tick_ms == 44


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("tick_ms = 20", "tik_ms = 20"), "tik_ms: Extra inputs are not permitted"),
        (("127.0.0.1:8001", "nowhere"), "bad address 'nowhere'"),
        (("127.0.0.1:8001", "127.0.0.1:99999"), "bad port"),
        (("[::1]:7002", "127.0.0.1:7001"), "both use 127.0.0.1:7001"),
        (("tick_ms = 20", "tick_ms = 0"), "tick_ms"),
        (("tick_ms = 20", "election_ticks = 1"), "election_ticks"),
        (('data_dir = "data/n1"', 'data_dir = "data/n1"\nport = 3'), "port: Extra inputs"),
        (("[nodes.n2]", "[nodes.n1]"), "not valid TOML"),  # a node named twice
        (("[nodes.n1]", "[nodes.'bad id!']"), "node id"),
        (('data_dir = "data/n1"', 'data_dir = "data/n1"\ndial = { n9 = "127.0.0.1:1" }'), "n9"),
        (
            ('data_dir = "data/n1"', 'data_dir = "data/n1"\ndial = { n2 = "nowhere" }'),
            "bad address",
        ),
        (('data_dir = "/var/lib/raft/n2"', 'data_dir = "data/../data/n1"'), "both use data_dir"),
    ],
)
def test_bad_files_are_refused_with_the_problem_named(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError, match=r"cluster\.toml") as caught:
        load_config(path)
    assert problem in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_node_flags_override_settings_and_bad_ones_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from raft_manager.cli.main import app
    from raft_manager.cli.node import parse_overrides

    assert parse_overrides(["tick_ms=20", "pre_vote=false", "cluster_id=blue"]) == {
        "tick_ms": 20,
        "pre_vote": False,
        "cluster_id": "blue",
    }
    path = _write(tmp_path, GOOD)
    for bad in (["--set", "tick_ms"], ["--set", "tik_ms=3"], ["--set", "tick_ms=-1"]):
        outcome = CliRunner().invoke(app, ["node", "--config", str(path), "--id", "n1", *bad])
        assert outcome.exit_code == 2, outcome.output
        assert "error:" in outcome.stderr
    outcome = CliRunner().invoke(app, ["node", "--config", str(path), "--id", "n9"])
    assert outcome.exit_code == 2 and "not in the cluster" in outcome.stderr
