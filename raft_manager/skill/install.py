"""Installing the skill where an agent framework looks for it.

Theory of operation: an install puts two things under a target folder (default: the current
directory): the skill folder, named after the skill, and the agent definition. For Claude Code
they go to TARGET/.claude/skills/<name>/ and TARGET/.claude/agents/<name>.md; for Codex and
for any other Agent Skills client ("generic") to TARGET/.agents/skills/<name>/ and
TARGET/.agents/agents/<name>.md. SKILL.md and the agent definition are rendered from the card
(identical to the committed files, which a test keeps in step). The skill folder holds
SKILL.md, every other file of the repository's skills/<name>/ folder, and the card's hook
scripts under hooks/ with their mode (the executable bit) kept; a hook script the repository
does not have yet is reported as missing, not faked.

Nothing is written unless everything can be: the target must be an existing, writable
directory, and every folder on the way to the destinations must be a directory (or not exist
yet). The new skill folder is built next to its destination and swapped in whole, so a
re-install replaces the previous one (no stale files) and an interrupted one leaves the old
one in place. The result says what was written and how to wire the hooks and the MCP server
for that framework (for Claude Code: the .claude/settings.json PreToolUse/PostToolUse hooks
and the .mcp.json server entry).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .card import SkillCard
from .paths import SkillFiles
from .render import mcp_config, render_agent_md, render_skill_md
from .spec import SKILL_FILE

Framework = Literal["claude-code", "codex", "generic"]
FRAMEWORKS: tuple[Framework, ...] = ("claude-code", "codex", "generic")
_BASE = {"claude-code": ".claude", "codex": ".agents", "generic": ".agents"}
HOOK_EVENTS = {"pre": "PreToolUse", "post": "PostToolUse"}
HOOK_TIMEOUT_SECONDS = 60


class InstallError(ValueError):
    """The install was refused; nothing was written."""


@dataclass(frozen=True, slots=True)
class Installed:
    framework: Framework
    target: Path
    skill_dir: Path
    agent_file: Path
    hooks: dict[str, Path]  # stage -> the installed script
    missing_hooks: list[str]  # the card's scripts the repository does not have
    settings: dict[str, Any] | None  # the hooks block for the framework's settings, if any
    mcp_servers: dict[str, Any]  # the server's entry for an MCP client's mcpServers map
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agent": self.framework,
            "target": str(self.target),
            "skill_dir": str(self.skill_dir),
            "agent_file": str(self.agent_file),
            "hooks": {stage: str(path) for stage, path in self.hooks.items()},
            "missing_hooks": self.missing_hooks,
            "settings": self.settings,
            "mcp_servers": self.mcp_servers,
            "notes": self.notes,
        }


def destinations(card: SkillCard, target: Path, framework: Framework) -> tuple[Path, Path]:
    """(the skill folder, the agent definition file) for `framework` under `target`."""
    base = target / _BASE[framework]
    return base / "skills" / card.name, base / "agents" / f"{card.name}.md"


def install(card: SkillCard, files: SkillFiles, target: Path, framework: Framework) -> Installed:
    """Install the skill under `target` for `framework`; InstallError (nothing written) when
    the target is unusable."""
    if framework not in FRAMEWORKS:
        raise InstallError(
            f"unknown agent framework {framework!r} (one of {', '.join(FRAMEWORKS)})"
        )
    target = target.expanduser().absolute()
    skill_dir, agent_file = destinations(card, target, framework)
    _check_target(target, skill_dir, agent_file)
    skill_md, agent_md = render_skill_md(card), render_agent_md(card)  # SKILL.md: checked
    hooks = {stage: files.script(hook.script) for stage, hook in _stages(card)}
    present = {stage: path for stage, path in hooks.items() if path.is_file()}

    skill_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{card.name}.", dir=skill_dir.parent))
    try:
        staging = scratch / card.name
        source = files.skill_dir(card.name)
        if source.is_dir():
            shutil.copytree(source, staging, symlinks=False)
        staging.mkdir(exist_ok=True)
        (staging / SKILL_FILE).write_text(skill_md, encoding="utf-8")
        installed_hooks = {}
        for stage, script in present.items():
            copy = staging / "hooks" / stage
            copy.parent.mkdir(exist_ok=True)
            shutil.copy2(script, copy)  # keeps the mode: an executable stays executable
            installed_hooks[stage] = skill_dir / "hooks" / stage
        _swap_in(staging, skill_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    agent_file.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(agent_file, agent_md)

    missing = [card_hook.script for stage, card_hook in _stages(card) if stage not in present]
    notes = [f"{script} does not exist in {files.root} yet: not installed" for script in missing]
    return Installed(
        framework,
        target,
        skill_dir,
        agent_file,
        installed_hooks,
        missing,
        claude_settings(installed_hooks, card) if framework == "claude-code" else None,
        mcp_config(card),
        notes,
    )


def claude_settings(hooks: dict[str, Path], card: SkillCard) -> dict[str, Any] | None:
    """The `hooks` block of Claude Code's settings.json running the installed scripts around
    every call of the skill's MCP tools; None when no hook script was installed."""
    if not hooks:
        return None
    matcher = f"mcp__{card.mcp.server}__.*"
    return {
        "hooks": {
            HOOK_EVENTS[stage]: [
                {
                    "matcher": matcher,
                    "hooks": [
                        {
                            "type": "command",
                            "command": shlex.quote(str(path)),
                            "timeout": HOOK_TIMEOUT_SECONDS,
                        }
                    ],
                }
            ]
            for stage, path in hooks.items()
        }
    }


def _stages(card: SkillCard) -> list[tuple[str, Any]]:
    return [("pre", card.hooks.pre), ("post", card.hooks.post)]


def _check_target(target: Path, skill_dir: Path, agent_file: Path) -> None:
    if not target.exists():
        raise InstallError(f"target {target} does not exist")
    if not target.is_dir():
        raise InstallError(f"target {target} is not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        raise InstallError(f"target {target} is not writable")
    for destination in (skill_dir, agent_file):
        for folder in reversed(destination.relative_to(target).parents[:-1]):
            path = target / folder
            if path.exists() and not path.is_dir():
                raise InstallError(f"{path} is in the way: it is a file, not a directory")
            if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
                raise InstallError(f"{path} is not writable")
    if skill_dir.exists() and not skill_dir.is_dir():
        raise InstallError(f"{skill_dir} is in the way: it is a file, not a directory")
    if agent_file.is_dir():
        raise InstallError(f"{agent_file} is in the way: it is a directory, not a file")


def _swap_in(staging: Path, destination: Path) -> None:
    """Put the staged folder at `destination`, replacing what was there."""
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        destination.rename(old)
    staging.rename(destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)
