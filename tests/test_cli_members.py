"""The membership commands against a real local cluster: cluster add / remove (the leader
included), members list / add / promote / remove, their JSON and their refusals."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from test_cli_cluster import free_base
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.cli.members import _marked_removed


def _members(output: str) -> dict[str, str]:
    listed = json.loads(output)["members"]
    assert all(set(member) == {"id", "address", "role"} for member in listed)
    return {member["id"]: member["role"] for member in listed}


def test_a_local_cluster_grows_and_shrinks_and_loses_its_leader(tmp_path: Path) -> None:
    runner = CliRunner()
    directory = tmp_path / "local"
    cluster = ["--cluster", str(directory / "cluster.toml")]
    base = free_base()
    up = runner.invoke(
        app, ["cluster", "up", "--dir", str(directory), "--base-port", base, "--json"]
    )
    try:
        assert up.exit_code == 0, up.output
        leader = json.loads(up.stdout)["leader"]
        added = runner.invoke(app, ["cluster", "add", "--dir", str(directory), "--json"])
        assert added.exit_code == 0, added.output
        assert _members(added.stdout) == dict.fromkeys(("n1", "n2", "n3", "n4"), "voter")
        assert "join = true" in (directory / "cluster.toml").read_text()

        path = directory / "cluster.toml"  # a header as a person may have edited it
        path.write_text(path.read_text().replace(f"[nodes.{leader}]", f'[ nodes."{leader}" ]  # 1'))
        removed = runner.invoke(
            app, ["cluster", "remove", leader, "--dir", str(directory), "--json"]
        )
        assert removed.exit_code == 0, removed.output
        assert f'[ nodes."{leader}" ]  # 1\nremoved = true\n' in path.read_text()
        assert leader not in _members(removed.stdout) and len(_members(removed.stdout)) == 3
        listed = runner.invoke(app, ["members", "list", *cluster, "--json"])
        assert listed.exit_code == 0 and _members(listed.stdout) == _members(removed.stdout)
        health = runner.invoke(app, ["health", *cluster])
        assert health.exit_code == 0, health.output  # the removed node is not counted
        put = runner.invoke(app, ["memory", "put", "k", "1", *cluster, "--json"])
        assert put.exit_code == 0, put.output  # the three left elected a leader

        refused = runner.invoke(app, ["members", "remove", "n9", *cluster])
        assert refused.exit_code == 1 and "not a member" in refused.stderr
        bad = runner.invoke(
            app, ["members", "add", "n9", "nowhere", "--client-address", "127.0.0.1:1", *cluster]
        )
        assert bad.exit_code == 2
        promote = runner.invoke(app, ["members", "promote", "n2", "--wait", "0", *cluster])
        assert promote.exit_code == 1 and "not a learner" in promote.stderr
    finally:
        runner.invoke(app, ["cluster", "down", "--dir", str(directory)])


def test_a_removed_node_is_marked_in_its_table_however_its_header_is_written() -> None:
    text = (
        '[nodes.n1]\naddress = "a"\n'
        "[ nodes.'n2' ]  # literal quotes\nremoved = false\naddress = \"b\"\n"
        '[nodes."n3"]\naddress = "c"\n'
    )
    marked = _marked_removed(text, "n2")
    assert marked is not None
    assert tomllib.loads(marked)["nodes"] == {
        "n1": {"address": "a"},
        "n2": {"removed": True, "address": "b"},  # replaced, not a second key
        "n3": {"address": "c"},
    }
    assert tomllib.loads(_marked_removed(text, "n3") or "")["nodes"]["n3"]["removed"] is True
    assert _marked_removed(text, "n4") is None
