"""The skill: skill.yaml's model, the Agent Skills rules, the rendered files (and their drift),
`skill validate|render|install` and `agent render [--live]`."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port
from test_mcp import TOOLS as ISSUE_TOOLS
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.skill import install as install_module
from raft_manager.skill import spec
from raft_manager.skill.card import CardError, load_card, parse_card
from raft_manager.skill.paths import REPOSITORY_ROOT, locate
from raft_manager.skill.render import render_agent_md, render_skill_md

CARD = REPOSITORY_ROOT / "skill.yaml"
SKILL_MD = REPOSITORY_ROOT / "skills" / "raft-manager" / "SKILL.md"
AGENT_MD = REPOSITORY_ROOT / "agents" / "raft-manager.md"
TOOLS = load_card(CARD).mcp_tool_names
CAPABILITIES = [
    "leader_election",
    "log_replication",
    "follower_management",
    "membership_changes",
    "consistency_verification",
]


def card_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CARD.read_text())
    return data


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(CardError) as caught:
        parse_card(data)
    return caught.value.problems


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


# --- the card -------------------------------------------------------------------------------


def test_the_card_keeps_the_original_agent_card() -> None:
    card = load_card(CARD)
    assert (card.name, card.type, card.color, card.priority) == (
        "raft-manager",
        "coordinator",
        "#2196F3",
        "high",
    )
    assert card.capabilities == CAPABILITIES
    assert (card.hooks.pre.script, card.hooks.post.script) == ("hooks/pre", "hooks/post")
    assert "health" in card.hooks.pre.checks and "election" in card.hooks.pre.checks
    assert "consistency" in card.hooks.post.checks and "replication" in card.hooks.post.checks
    assert (card.cli.command, card.mcp.command, card.mcp.transport) == (
        "raft-manager",
        "raft-manager mcp",
        "stdio",
    )
    assert set(card.mcp_tool_names) == ISSUE_TOOLS


def test_the_card_lists_exactly_the_tools_the_mcp_server_serves() -> None:
    from raft_manager.mcp_server import TOOLS as SERVED

    assert load_card(CARD).mcp_tool_names == [tool.name for tool in SERVED]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d.update(colour="#2196F3"),
            "top level: unknown key colour (allowed here: name,",
        ),
        (lambda d: d["hooks"]["pre"].update(shell="bash"), "hooks.pre: unknown key shell"),
        (
            lambda d: d["capabilities"].append("telepathy"),
            "capabilities.5: Input should be 'leader_election'",
        ),
        (lambda d: d.update(color="blue"), "color: 'blue' is not a color like \"#2196F3\""),
        (lambda d: d.update(color="#2196F"), "color: '#2196F' is not a color"),
        (lambda d: d.update(priority="urgent"), "priority: Input should be 'low'"),
        (lambda d: d.update(type="overlord"), "type: Input should be 'coordinator'"),
        (lambda d: d.pop("hooks"), "hooks: missing (required)"),
        (lambda d: d.update(name="Raft_Manager"), "name: 'Raft_Manager' may hold only lowercase"),
        (lambda d: d.update(description="Manages Raft."), "description: must also say when"),
        (lambda d: d["capabilities"].append("log_replication"), "listed twice: log_replication"),
        (
            lambda d: d["mcp"]["tools"].append(d["mcp"]["tools"][0]),
            "mcp.tools: tool(s) listed twice: status",
        ),
        (lambda d: d["hooks"]["post"].update(script="../hooks/post"), "hooks.post.script: "),
        (lambda d: d["skill"].update(metadata={"version": 1}), "skill.metadata.version: "),
    ],
)
def test_a_bad_card_is_refused_with_a_clear_problem(change: Any, expected: str) -> None:
    data = card_data()
    change(data)
    problems = problems_of(data)
    assert any(expected in problem for problem in problems), problems


def test_every_problem_of_a_card_is_reported_at_once() -> None:
    data = card_data()
    data.update(color="blue", priority="urgent", colour="x")
    data["mcp"]["tools"][2]["args"] = "none"
    problems = problems_of(data)
    assert [problem.split(":")[0] for problem in problems] == [
        "color",
        "priority",
        "mcp.tools.2",
        "top level",
    ], problems
    assert problems[2] == "mcp.tools.2: unknown key args (allowed here: name, description, cli)"


def test_a_card_file_that_is_not_the_right_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "skill.yaml"
    for text, expected in [
        ("name: a\nname: b\n", "key 'name' is given twice"),
        ("name: [unclosed\n", "not valid YAML: line"),
        ("- a list\n", "the file must be a YAML map"),
    ]:
        path.write_text(text)
        with pytest.raises(CardError) as caught:
            load_card(path)
        assert expected in caught.value.problems[0], caught.value.problems
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(CardError, match="not UTF-8 text"):
        load_card(path)


# --- the Agent Skills rules ----------------------------------------------------------------


def test_the_committed_skill_md_follows_the_agent_skills_rules() -> None:
    assert SKILL_MD.parent.name == "raft-manager"
    assert spec.skill_dir_problems(SKILL_MD.parent) == []
    front, body = spec.split_front_matter(SKILL_MD.read_text())
    assert set(front) <= set(spec.ALLOWED_KEYS)
    assert front["name"] == "raft-manager"
    assert len(front["description"]) <= spec.MAX_DESCRIPTION
    assert "Use when" in front["description"]
    assert all(isinstance(value, str) for value in front["metadata"].values())
    assert len(body.splitlines()) < 500  # the spec's advice for SKILL.md
    for command in (
        "cluster up --nodes 3 --dir DIR",
        "cluster down",
        "task submit",
        "task claim --agent",
        "task complete",
        "task fail",
        "task list",
        "memory put",
        "memory cas",
        "decision propose",
        "decision vote",
        "raft-manager health",
        "raft-manager status",
        "raft-manager elect --to",
        "raft-manager verify --json",
        "members list",
        "members add",
        "members promote",
        "members remove",
        "hooks run pre",
        "hooks run post",
    ):
        assert command in body, command
    for tool in TOOLS:
        assert f"| `{tool}` |" in body, tool


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Raft-Manager", "may hold only lowercase"),
        ("raft_manager", "may hold only lowercase"),
        ("raft manager", "may hold only lowercase"),
        ("rafté", "may hold only lowercase"),
        ("-raft", "must not start or end with a hyphen"),
        ("raft-", "must not start or end with a hyphen"),
        ("raft--manager", "two hyphens in a row"),
        ("a" * 65, "65 characters, at most 64"),
        ("", "must be a non-empty string"),
        (7, "must be a non-empty string"),
    ],
)
def test_bad_skill_names_are_refused(name: object, expected: str) -> None:
    problems = spec.front_matter_problems({"name": name, "description": "Does x. Use when y."})
    assert any(expected in problem for problem in problems), problems


def test_good_skill_names_pass() -> None:
    for name in ("a", "raft-manager", "pdf2-x", "a" * 64):
        assert spec.name_problems(name) == []


def test_the_name_must_equal_the_folder() -> None:
    front = {"name": "raft-manager", "description": "d"}
    assert spec.front_matter_problems(front, "raft-manager") == []
    assert "must equal the folder's name 'other'" in spec.front_matter_problems(front, "other")[0]


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        ({"name": "a"}, "description: missing"),
        ({"name": "a", "description": "   "}, "description: must be a non-empty string"),
        ({"name": "a", "description": "x" * 1025}, "1025 characters, at most 1024"),
        ({"name": "a", "description": ["a list"]}, "description: must be a non-empty string"),
        ({"description": "d"}, "name: missing"),
        ({"name": "a", "description": "d", "metadata": {"k": 1}}, "metadata: 'k'"),
        ({"name": "a", "description": "d", "metadata": ["k"]}, "metadata: must be a map"),
        ({"name": "a", "description": "d", "metadata": {"k": {"n": "v"}}}, "metadata: 'k'"),
        ({"name": "a", "description": "d", "version": "1"}, "unknown front matter key(s) version"),
        ({"name": "a", "description": "d", "compatibility": "x" * 501}, "at most 500"),
        ({"name": "a", "description": "d", "compatibility": ""}, "compatibility: must be"),
        ({"name": "a", "description": "d", "allowed-tools": 3}, "allowed-tools: must be"),
        ({"name": "a", "description": "d", "license": 3}, "license: must be"),
    ],
)
def test_bad_front_matter_is_refused(front: dict[str, Any], expected: str) -> None:
    problems = spec.front_matter_problems(front)
    assert any(expected in problem for problem in problems), problems


def test_optional_front_matter_in_its_allowed_shapes_passes() -> None:
    base = {"name": "a", "description": "d", "license": "MIT", "metadata": {"k": "v"}}
    assert spec.front_matter_problems({**base, "allowed-tools": "Read Bash(git:*)"}) == []
    assert spec.front_matter_problems({**base, "allowed-tools": ["Read", "Bash(git log:*)"]}) == []
    assert spec.front_matter_problems({**base, "compatibility": "x" * 500}) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\n", "does not open with front matter"),
        ("---\nname: a\n", "front matter is not closed"),
        ("---\nname: [a\n---\n", "front matter is not valid YAML"),
        ("---\n- a\n---\n", "not a YAML map"),
        ("---\nname: a\nname: b\n---\n", "key 'name' is given twice"),
    ],
)
def test_broken_front_matter_is_refused(text: str, expected: str) -> None:
    assert expected in spec.skill_md_problems(text)[0]


# --- the renderings and their drift --------------------------------------------------------


def test_skill_md_is_the_rendering_of_skill_yaml() -> None:
    assert SKILL_MD.read_text() == render_skill_md(load_card(CARD)), (
        "skills/raft-manager/SKILL.md drifted from skill.yaml: run `raft-manager skill render`"
    )


def test_the_agent_definition_is_the_rendering_of_skill_yaml() -> None:
    assert AGENT_MD.read_text() == render_agent_md(load_card(CARD)), (
        "agents/raft-manager.md drifted from skill.yaml: run `raft-manager skill render`"
    )


def test_the_agent_definition_names_its_tools_and_duties() -> None:
    front, body = spec.split_front_matter(AGENT_MD.read_text())
    assert front["name"] == "raft-manager"
    tools = front["tools"].split(", ")
    assert tools[:2] == ["Bash", "Read"]
    assert [f"mcp__raft-manager__{tool}" for tool in TOOLS] == tools[-len(TOOLS) :]
    for duty in ("Leader election", "Log replication", "Consistency management"):
        assert f"### {duty}" in body
    for duty in ("Membership changes", "Recovery coordination"):
        assert f"### {duty}" in body
    for peer in ("Quorum Manager", "CRDT Synchronizer", "Security Manager", "Performance"):
        assert f"**{peer}" in body
    assert "raft-manager hooks run pre" in body and "raft-manager verify --json" in body


def copy_of_the_skill(tmp_path: Path, hooks: tuple[str, ...] = ()) -> Path:
    """A repository-like folder holding skill.yaml, its renderings and the given hooks."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(CARD, root / "skill.yaml")
    shutil.copytree(SKILL_MD.parent, root / "skills" / "raft-manager")
    (root / "agents").mkdir()
    shutil.copy(AGENT_MD, root / "agents" / "raft-manager.md")
    for hook in hooks:
        script = root / "hooks" / hook
        script.parent.mkdir(exist_ok=True)
        script.write_text(f"#!/bin/sh\necho {hook}\n")
        script.chmod(0o755)
    return root / "skill.yaml"


def test_render_check_finds_drift_and_render_fixes_it(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    assert invoke("skill", "render", "--skill-file", str(card), "--check").exit_code == 0
    card.write_text(card.read_text().replace("priority: high", "priority: critical"))
    checked = invoke("skill", "render", "--skill-file", str(card), "--check", "--json")
    assert checked.exit_code == 1
    drifted = json.loads(checked.stdout)["drifted"]
    assert {Path(path).name for path in drifted} == {"SKILL.md", "raft-manager.md"}
    assert json.loads(checked.stdout)["written"] == []
    rendered = invoke("skill", "render", "--skill-file", str(card))
    assert rendered.exit_code == 0 and rendered.stdout.count("wrote ") == 2
    assert "priority: critical" in (card.parent / "agents" / "raft-manager.md").read_text()
    assert invoke("skill", "render", "--skill-file", str(card), "--check").exit_code == 0


def test_render_refuses_an_invalid_card(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    card.write_text(card.read_text().replace('color: "#2196F3"', "color: blue"))
    result = invoke("skill", "render", "--skill-file", str(card))
    assert result.exit_code == 2
    assert "error: skill.yaml: color: 'blue' is not a color" in result.stderr


# --- skill validate ------------------------------------------------------------------------


def test_validate_passes_on_the_repository() -> None:
    result = invoke("skill", "validate", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is True and document["problems"] == []
    assert {Path(path).name for path in document["checked"]} == {
        "skill.yaml",
        "SKILL.md",
        "raft-manager.md",
    }


def test_validate_prints_one_line_per_problem(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    text = card.read_text().replace('color: "#2196F3"', "color: blue")
    card.write_text(text.replace("priority: high", "priority: urgent"))
    result = invoke("skill", "validate", "--skill-file", str(card))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{card}: color: 'blue' is not a color")
    assert lines[1].startswith(f"{card}: priority: Input should be")


def test_validate_reports_a_drifted_or_broken_rendering(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    skill_md = card.parent / "skills" / "raft-manager" / "SKILL.md"
    skill_md.write_text(skill_md.read_text().replace("name: raft-manager", "name: Raft"))
    result = invoke("skill", "validate", "--skill-file", str(card), "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert {
        "file": str(card),
        "problem": f"{skill_md} is not the rendering of skill.yaml (run:"
        " raft-manager skill render)",
    } in problems
    assert any(
        p["file"] == str(skill_md) and "may hold only lowercase" in p["problem"] for p in problems
    )


def test_validate_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = invoke("skill", "validate", "--skill-file", str(tmp_path / "skill.yaml"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    no_dir = invoke("skill", "validate", "--skill-dir", str(tmp_path / "nowhere"))
    assert no_dir.exit_code == 2 and "is not a directory" in no_dir.stderr
    both = invoke("skill", "validate", "--skill-file", str(CARD), "--skill-dir", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.stderr


def test_validate_a_skill_folder(tmp_path: Path) -> None:
    folder = tmp_path / "other-name"
    folder.mkdir()
    empty = invoke("skill", "validate", "--skill-dir", str(folder))
    assert empty.exit_code == 1 and "SKILL.md is missing" in empty.stdout
    shutil.copy(SKILL_MD, folder / "SKILL.md")
    renamed = invoke("skill", "validate", "--skill-dir", str(folder))
    assert renamed.exit_code == 1
    assert "must equal the folder's name 'other-name'" in renamed.stdout


def test_locate_fails_clearly_without_skill_yaml(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        locate(tmp_path / "skill.yaml")
    assert locate().card == CARD.resolve()


# --- skill install -------------------------------------------------------------------------

WHERE = {
    "claude-code": (".claude/skills/raft-manager", ".claude/agents/raft-manager.md"),
    "codex": (".agents/skills/raft-manager", ".agents/agents/raft-manager.md"),
    "generic": (".agents/skills/raft-manager", ".agents/agents/raft-manager.md"),
}


@pytest.mark.parametrize("agent", ["claude-code", "codex", "generic"])
def test_install_gives_a_valid_skill_folder(tmp_path: Path, agent: str) -> None:
    card = copy_of_the_skill(tmp_path, hooks=("pre",))
    target = tmp_path / "project"
    target.mkdir()
    result = invoke(
        "skill", "install", "--target", str(target), "--agent", agent,
        "--skill-file", str(card), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    installed = json.loads(result.stdout)
    skill_dir, agent_file = (target / path for path in WHERE[agent])
    assert (installed["skill_dir"], installed["agent_file"]) == (str(skill_dir), str(agent_file))
    assert spec.skill_dir_problems(skill_dir) == []
    assert invoke("skill", "validate", "--skill-dir", str(skill_dir)).exit_code == 0
    assert (skill_dir / "SKILL.md").read_text() == SKILL_MD.read_text()
    assert agent_file.read_text() == AGENT_MD.read_text()
    hook = skill_dir / "hooks" / "pre"
    assert hook.read_text() == "#!/bin/sh\necho pre\n"
    assert hook.stat().st_mode & stat.S_IXUSR
    assert installed["hooks"] == {"pre": str(hook)}
    assert installed["missing_hooks"] == ["hooks/post"]
    assert installed["mcp_servers"] == {
        "raft-manager": {"command": "raft-manager", "args": ["mcp"]}
    }
    if agent == "claude-code":
        entry = installed["settings"]["hooks"]["PreToolUse"][0]
        assert entry["matcher"] == "mcp__raft-manager__.*"
        assert entry["hooks"] == [{"type": "command", "command": str(hook), "timeout": 60}]
        assert "PostToolUse" not in installed["settings"]["hooks"]  # no hooks/post to run
    else:
        assert installed["settings"] is None


def test_install_prints_how_to_wire_the_hooks(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path, hooks=("pre", "post"))
    result = invoke("skill", "install", "--target", str(tmp_path), "--skill-file", str(card))
    assert result.exit_code == 0, result.output
    settings = result.stdout[result.stdout.index("{") : result.stdout.index("\n}\n") + 2]
    hooks = json.loads(settings)["hooks"]
    post = tmp_path / ".claude" / "skills" / "raft-manager" / "hooks" / "post"
    assert hooks["PostToolUse"][0]["hooks"][0]["command"] == str(post)
    assert ".claude/settings.json" in result.stdout and ".mcp.json" in result.stdout
    codex = invoke(
        "skill", "install", "--target", str(tmp_path), "--agent", "codex",
        "--skill-file", str(card),
    )  # fmt: skip
    assert codex.exit_code == 0
    assert "[mcp_servers.raft-manager]" in codex.stdout and "hooks/pre before" in codex.stdout


def test_install_again_replaces_the_previous_install(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    arguments = ("skill", "install", "--target", str(tmp_path), "--skill-file", str(card))
    assert invoke(*arguments).exit_code == 0
    skill_dir = tmp_path / ".claude" / "skills" / "raft-manager"
    (skill_dir / "stale.txt").write_text("from an older install")
    (skill_dir / "SKILL.md").write_text("edited")
    again = invoke(*arguments, "--json")
    assert again.exit_code == 0
    assert sorted(path.name for path in skill_dir.iterdir()) == ["SKILL.md"]
    assert (skill_dir / "SKILL.md").read_text() == SKILL_MD.read_text()
    leftovers = [p.name for p in skill_dir.parent.iterdir() if p.name != "raft-manager"]
    assert leftovers == []  # no staging or backup folder left behind


def test_install_refuses_a_bad_target_and_writes_nothing(tmp_path: Path) -> None:
    card = copy_of_the_skill(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    result = invoke("skill", "install", "--target", str(a_file), "--skill-file", str(card))
    assert result.exit_code == 2
    assert f"error: nothing installed: target {a_file} is not a directory" in result.stderr
    missing = invoke("skill", "install", "--target", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "nowhere").exists()

    project = tmp_path / "project"
    project.mkdir()
    (project / ".claude").write_text("a file in the way")
    blocked = invoke("skill", "install", "--target", str(project), "--skill-file", str(card))
    assert blocked.exit_code == 2 and "is in the way" in blocked.stderr
    assert sorted(p.name for p in project.iterdir()) == [".claude"]

    (project / ".claude").unlink()
    (project / ".claude" / "agents" / "raft-manager.md").mkdir(parents=True)
    dir_in_the_way = invoke("skill", "install", "--target", str(project), "--skill-file", str(card))
    assert dir_in_the_way.exit_code == 2 and "it is a directory" in dir_in_the_way.stderr
    assert not (project / ".claude" / "skills").exists()


def test_install_refuses_a_target_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, for whom permission bits do not stop a write: ask os.access.
    card = copy_of_the_skill(tmp_path)
    target = tmp_path / "read-only"
    target.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        install_module.os,
        "access",
        lambda path, mode: (
            real_access(path, mode) and not (Path(path) == target and mode & os.W_OK)
        ),
    )
    result = invoke("skill", "install", "--target", str(target), "--skill-file", str(card))
    assert result.exit_code == 2 and "is not writable" in result.stderr
    assert list(target.iterdir()) == []


def test_the_install_command_offers_every_framework() -> None:
    from raft_manager.cli.skill import AgentFramework

    assert [framework.value for framework in AgentFramework] == list(install_module.FRAMEWORKS)


def test_install_usage_errors_exit_2(tmp_path: Path) -> None:
    bad_agent = invoke("skill", "install", "--target", str(tmp_path), "--agent", "cursor")
    assert bad_agent.exit_code == 2
    no_card = invoke("skill", "install", "--skill-file", str(tmp_path / "skill.yaml"))
    assert no_card.exit_code == 2 and "no such file" in no_card.stderr
    assert list(tmp_path.iterdir()) == []


# --- agent render --------------------------------------------------------------------------


def test_agent_render_prints_the_agent_definition() -> None:
    result = invoke("agent", "render")
    assert result.exit_code == 0
    assert result.stdout == AGENT_MD.read_text()
    as_json = json.loads(invoke("agent", "render", "--json").stdout)
    assert as_json == {"markdown": AGENT_MD.read_text(), "live": None}


def test_agent_render_live_says_when_the_cluster_cannot_be_reached() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    result = invoke("agent", "render", "--live", "--cluster", nowhere)
    assert result.exit_code == 2
    assert result.stdout.startswith(AGENT_MD.read_text())
    assert "## Live cluster state" in result.stdout
    assert f"**The cluster could not be reached**: no node answered (asked {nowhere})" in (
        " ".join(result.stdout.split())
    )
    as_json = invoke("agent", "render", "--live", "--cluster", nowhere, "--json")
    assert as_json.exit_code == 2
    live = json.loads(as_json.stdout)["live"]
    assert live["reachable"] is False and live["health"]["state"] == "no_quorum"


def test_agent_render_live_refuses_a_bad_cluster_option(tmp_path: Path) -> None:
    result = invoke("agent", "render", "--live", "--cluster", str(tmp_path / "none.toml"))
    assert result.exit_code == 2 and "error" in result.stderr


def test_agent_render_live_against_a_running_cluster(tmp_path: Path) -> None:
    from cluster_helpers import running_cluster

    with running_cluster(tmp_path) as cluster:
        result = invoke("agent", "render", "--live", "--cluster", str(cluster.config), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    live = document["live"]
    assert live["reachable"] is True and live["leader"] in {"n1", "n2", "n3"}
    assert {node["membership"] for node in live["nodes"]} == {"voter"}
    assert sorted(node["role"] for node in live["nodes"]).count("leader") == 1
    markdown = " ".join(document["markdown"].split())
    assert f"leader **{live['leader']}**, term {live['term']}" in markdown
    assert f"| {live['leader']} | leader | voter |" in markdown
    assert "Health: **healthy" in markdown or "Health: **degraded" in markdown
