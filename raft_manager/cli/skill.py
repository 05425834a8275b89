"""`raft-manager skill validate|render|install`: the skill's card, its renderings, installing it.

Theory of operation: skill.yaml (the repository root's, or --skill-file PATH) is loaded into the
card model (raft_manager/skill/card.py). `validate` checks the card, the rendered SKILL.md
against the Agent Skills rules and the agent definition's front matter (or, with --skill-dir,
any skill folder, an installed one for example), and prints one line per problem. `render`
rewrites skills/<name>/SKILL.md and agents/<name>.md next to skill.yaml from the card; with
--check it only reports the files that drifted. `install` puts the skill folder and the agent
definition where an agent framework looks and prints how to wire the hooks and the MCP server.

Exit codes: validate 0 valid, 1 invalid (one line per problem), 2 bad usage or a file or
folder missing; render 0 written or up to date, 1 (--check) a rendered file drifted, 2 bad
usage, skill.yaml missing or invalid; install 0 installed, 2 bad usage, skill.yaml missing or
invalid, or a bad target (not a directory, not writable, something in the way; nothing is
written).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:  # imported where used: jinja2 and the models cost every other command ~70 ms
    from raft_manager.skill.card import SkillCard
    from raft_manager.skill.install import Installed
    from raft_manager.skill.paths import SkillFiles

skill_app = typer.Typer(
    help="The agent skill: validate skill.yaml and the files rendered from it, render, install.",
    no_args_is_help=True,
)
BAD_USAGE = 2
Function = TypeVar("Function", bound=Callable[..., Any])


class AgentFramework(StrEnum):
    CLAUDE_CODE = "claude-code"
    CODEX = "codex"
    GENERIC = "generic"


SkillFileOption = Annotated[
    Path | None,
    typer.Option(
        "--skill-file",
        help="The skill.yaml to use (default: the one at the repository root).",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def command(name: str) -> Callable[[Function], Function]:
    """Register a `skill` command; its docstring is its help, each paragraph rewrapped."""

    def register(function: Function) -> Function:
        skill_app.command(name, help=help_of(function))(function)
        return function

    return register


def help_of(function: Callable[..., Any]) -> str:
    """A command's docstring as help text: paragraphs kept, lines within them joined (the
    terminal wraps them)."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


def load_skill(skill_file: Path | None) -> tuple[SkillCard, SkillFiles]:
    """The card and its files; exit 2 with every problem when skill.yaml is missing or
    invalid (for the commands that need a valid card)."""
    from raft_manager.skill.card import CardError, load_card
    from raft_manager.skill.paths import locate

    try:
        files = locate(skill_file)
        return load_card(files.card), files
    except FileNotFoundError as error:
        _fail(f"error: skill.yaml: {error}")
    except CardError as error:
        _fail("\n".join(f"error: skill.yaml: {problem}" for problem in error.problems))


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(BAD_USAGE)


@command("validate")
def validate_command(
    skill_file: SkillFileOption = None,
    skill_dir: Annotated[
        Path | None,
        typer.Option(
            "--skill-dir",
            help="Validate this skill folder (e.g. an installed one) instead of the repository's.",
            file_okay=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check skill.yaml, the rendered SKILL.md (Agent Skills rules) and the agent definition.

    With --skill-dir DIR: check only that folder's SKILL.md against the Agent Skills rules (its
    name must equal the folder's). Prints one line per problem, `FILE: problem`. --json:
    {"valid", "checked": [files], "problems": [{"file", "problem"}]}. Exit codes: 0 valid, 1
    invalid, 2 bad usage or skill.yaml / the folder missing.
    """
    from raft_manager.skill import spec
    from raft_manager.skill.paths import locate

    if skill_dir is not None and skill_file is not None:
        _fail("error: give --skill-file or --skill-dir, not both")
    if skill_dir is not None:
        if not skill_dir.is_dir():
            _fail(f"error: --skill-dir: {skill_dir} is not a directory")
        checked = [skill_dir / spec.SKILL_FILE]
        problems = [(checked[0], problem) for problem in spec.skill_dir_problems(skill_dir)]
    else:
        try:
            files = locate(skill_file)
        except FileNotFoundError as error:
            _fail(f"error: skill.yaml: {error}")
        checked, problems = _repository_problems(files)
    if as_json:
        document = {
            "valid": not problems,
            "checked": [str(path) for path in checked],
            "problems": [{"file": str(path), "problem": text} for path, text in problems],
        }
        typer.echo(json.dumps(document))
    elif problems:
        for path, text in problems:
            typer.echo(f"{path}: {text}")
    else:
        typer.echo(f"valid: {', '.join(str(path) for path in checked)}")
    raise typer.Exit(1 if problems else 0)


def _repository_problems(files: SkillFiles) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files checked, their problems): the card; when it is valid, the rendered files."""
    from raft_manager.skill import spec
    from raft_manager.skill.card import CardError, load_card

    try:
        card = load_card(files.card)
    except CardError as error:
        return [files.card], [(files.card, problem) for problem in error.problems]
    skill_dir, agent_md = files.skill_dir(card.name), files.agent_md(card.name)
    problems = [(files.card, problem) for problem in _rendering_problems(card, files)]
    problems += [(skill_dir / spec.SKILL_FILE, text) for text in spec.skill_dir_problems(skill_dir)]
    problems += [(agent_md, text) for text in _agent_problems(agent_md, card)]
    return [files.card, skill_dir / spec.SKILL_FILE, agent_md], problems


def _rendering_problems(card: SkillCard, files: SkillFiles) -> list[str]:
    from raft_manager.skill.render import RenderError, drift

    try:
        stale = drift(card, files)
    except RenderError as error:
        return [str(error)]
    return [
        f"{path} is not the rendering of skill.yaml (run: raft-manager skill render)"
        for path in stale
    ]


def _agent_problems(path: Path, card: SkillCard) -> list[str]:
    """The agent definition needs front matter with its name, a description and tools."""
    from raft_manager.skill import spec

    if not path.is_file():
        return ["missing (run: raft-manager skill render)"]
    try:
        front, _ = spec.split_front_matter(path.read_text(encoding="utf-8"))
    except (spec.FrontMatterError, OSError, UnicodeDecodeError) as error:
        return [str(error)]
    problems = []
    if front.get("name") != card.name:
        problems.append(f"name: must be {card.name!r}")
    problems += spec.description_problems(front.get("description"))
    if not isinstance(front.get("tools"), str) or not front["tools"].strip():
        problems.append("tools: must be a comma-separated list of tool names")
    return problems


@command("render")
def render_command(
    skill_file: SkillFileOption = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if a rendered file drifted.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Rewrite skills/NAME/SKILL.md and agents/NAME.md (next to skill.yaml) from skill.yaml.

    --json: {"written": [files], "drifted": [files]} (with --check nothing is written).
    Exit codes: 0 written or already up to date, 1 with --check: a file drifted, 2 bad usage
    or skill.yaml missing or invalid.
    """
    from raft_manager.skill.render import RenderError, drift, write

    card, files = load_skill(skill_file)
    try:
        drifted = drift(card, files)
        written = [] if check else write(card, files)
    except RenderError as error:
        _fail(f"error: {error}")
    except OSError as error:
        _fail(f"error: cannot write: {error}")
    if as_json:
        document = {"written": [str(p) for p in written], "drifted": [str(p) for p in drifted]}
        typer.echo(json.dumps(document))
    elif check:
        for path in drifted:
            typer.echo(f"{path}: differs from the rendering of skill.yaml")
        if not drifted:
            typer.echo("up to date")
    else:
        for path in written:
            typer.echo(f"wrote {path}")
        if not written:
            typer.echo("up to date")
    raise typer.Exit(1 if check and drifted else 0)


@command("install")
def install_command(
    target: Annotated[
        Path, typer.Option("--target", help="The project (or home) folder to install into.")
    ] = Path(),
    agent: Annotated[
        AgentFramework, typer.Option("--agent", help="The agent framework to install for.")
    ] = AgentFramework.CLAUDE_CODE,
    skill_file: SkillFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Install the skill folder and the agent definition where an agent framework finds them.

    claude-code: TARGET/.claude/skills/NAME/ and TARGET/.claude/agents/NAME.md; codex and
    generic: TARGET/.agents/skills/NAME/ and TARGET/.agents/agents/NAME.md. The skill folder
    gets SKILL.md and the hook scripts (hooks/pre, hooks/post). Installing again replaces the
    previous install. Prints how to wire the hooks and the MCP server. --json: {"agent",
    "target", "skill_dir", "agent_file", "hooks", "missing_hooks", "settings" (Claude Code's
    settings.json hooks block, or null), "mcp_servers", "notes"}. Exit codes: 0 installed, 2
    bad usage, skill.yaml missing or invalid, or a bad target (nothing written).
    """
    from raft_manager.skill.install import InstallError, install
    from raft_manager.skill.render import RenderError

    card, files = load_skill(skill_file)
    try:
        installed = install(card, files, target, agent.value)
    except (InstallError, RenderError) as error:
        _fail(f"error: nothing installed: {error}")
    except OSError as error:
        _fail(f"error: install failed: {error}")
    if as_json:
        typer.echo(json.dumps(installed.as_dict()))
    else:
        typer.echo(wiring(installed, card))


def wiring(installed: Installed, card: SkillCard) -> str:
    """What was installed and how to wire it, for people."""
    hooks = ", ".join(f"hooks/{stage}" for stage in installed.hooks) or "no hooks"
    lines = [
        f"installed the {card.name} skill for {installed.framework}:",
        f"  skill folder      {installed.skill_dir} (SKILL.md, {hooks})",
        f"  agent definition  {installed.agent_file}",
        *(f"note: {note}" for note in installed.notes),
        "",
    ]
    mcp = json.dumps({"mcpServers": installed.mcp_servers}, indent=2)
    if installed.framework == "claude-code":
        if installed.settings is not None:
            lines += [
                "Wire the hooks: merge this into .claude/settings.json (or"
                " ~/.claude/settings.json). They run around every raft-manager MCP tool call;"
                " a pre hook exiting 2 blocks the call:",
                json.dumps(installed.settings, indent=2),
                "",
            ]
        lines += ["Register the MCP server: add this to .mcp.json at the project root:", mcp]
    else:
        for stage, path in installed.hooks.items():
            lines.append(
                f"Run {path} {'before' if stage == 'pre' else 'after'} each operation on the"
                " cluster (task text in $TASK or --task; exit 0 ok, 1 a check failed, 2 the"
                " cluster cannot be reached)."
            )
        server = card.mcp.server
        entry = installed.mcp_servers[server]
        lines += [
            "",
            "Register the MCP server with your client; for Codex, in ~/.codex/config.toml:",
            f"[mcp_servers.{server}]",
            f"command = {json.dumps(entry['command'])}",
            f"args = {json.dumps(entry['args'])}",
            "",
            "Other MCP clients take the usual mcpServers entry:",
            mcp,
        ]
    return "\n".join(lines)
