"""Rendering SKILL.md and the agent definition from the card.

Theory of operation: two jinja2 templates ship inside this package (templates/*.j2); each
gets the validated SkillCard and nothing else (plus, for the agent definition, an optional
LiveState), so everything they say is either fixed prose about how to use raft-manager or a
fact from skill.yaml. Front matter is never written by hand in a template: it is built here as
a map and dumped with PyYAML (one line per key, quoted where YAML needs it), so it is always
valid YAML and, for SKILL.md, checked against the Agent Skills rules before it is returned. A
rendering is deterministic (no clock, no environment) except the live section of the agent
definition, which is why the committed files can be compared with a fresh rendering: `drift`
names the files that differ, `write` rewrites them.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from . import spec
from .card import SkillCard
from .live import LiveState
from .paths import SkillFiles

WIDTH = 96  # the rendered files' prose is wrapped at this many characters
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("raft_manager.skill", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # Markdown, not HTML
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _front_matter(data: dict[str, Any]) -> str:
    """`data` as YAML front matter lines (without the --- fences), one line per scalar."""
    text: str = yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000
    )
    return text


def _wrap(text: str, indent: int = 0) -> str:
    """Prose from the card as lines of at most WIDTH characters, continuation lines indented
    by `indent` spaces (for a list item)."""
    return textwrap.fill(
        " ".join(text.split()),
        width=WIDTH,
        subsequent_indent=" " * indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _json(data: Any) -> str:
    return json.dumps(data)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a pipe would end the cell."""
    return text.replace("|", "\\|")


_ENVIRONMENT.filters["front_matter"] = _front_matter
_ENVIRONMENT.filters["cell"] = _cell
_ENVIRONMENT.filters["wrap"] = _wrap
_ENVIRONMENT.filters["json"] = _json


class RenderError(ValueError):
    """A rendering broke the rules it must keep (a bug in the card's checks or a template)."""


def skill_front_matter(card: SkillCard) -> dict[str, Any]:
    front: dict[str, Any] = {"name": card.name, "description": _one_line(card.description)}
    if card.skill.license:
        front["license"] = card.skill.license
    if card.skill.compatibility:
        front["compatibility"] = _one_line(card.skill.compatibility)
    front["metadata"] = {
        "type": card.type,
        "color": card.color,
        "priority": card.priority,
        "capabilities": " ".join(card.capabilities),
        **card.skill.metadata,
    }
    if card.skill.allowed_tools:
        front["allowed-tools"] = list(card.skill.allowed_tools)  # a list: names hold spaces
    return front


def agent_tools(card: SkillCard) -> list[str]:
    """The agent definition's tools: the framework's own, then every MCP tool by the name
    Claude Code gives it (mcp__<server>__<tool>)."""
    mcp = [f"mcp__{card.mcp.server}__{name}" for name in card.mcp_tool_names]
    return [*card.agent.tools, *mcp]


def agent_front_matter(card: SkillCard) -> dict[str, Any]:
    return {
        "name": card.name,
        "description": _one_line(card.description),
        "tools": ", ".join(agent_tools(card)),
        "type": card.type,
        "priority": card.priority,
        "capabilities": list(card.capabilities),
    }


def mcp_config(card: SkillCard) -> dict[str, Any]:
    """The server's entry for an MCP client's mcpServers map (Claude Code's .mcp.json)."""
    command, *args = shlex.split(card.mcp.command)
    return {card.mcp.server: {"command": command, "args": args}}


def render_skill_md(card: SkillCard) -> str:
    text = _ENVIRONMENT.get_template("SKILL.md.j2").render(
        card=card, front=skill_front_matter(card), mcp_config=mcp_config(card)
    )
    problems = spec.skill_md_problems(text, card.name)
    if problems:
        raise RenderError("the rendered SKILL.md breaks the spec: " + "; ".join(problems))
    return text


def render_agent_md(card: SkillCard, live: LiveState | None = None) -> str:
    return _ENVIRONMENT.get_template("agent.md.j2").render(
        card=card, front=agent_front_matter(card), live=live
    )


@dataclass(frozen=True, slots=True)
class Rendering:
    path: Path
    text: str

    @property
    def current(self) -> bool:
        """The file on disk holds exactly this rendering."""
        try:
            return self.path.read_text(encoding="utf-8") == self.text
        except (OSError, UnicodeDecodeError):
            return False


def renderings(card: SkillCard, files: SkillFiles) -> list[Rendering]:
    """The committed files and what they should hold."""
    return [
        Rendering(files.skill_md(card.name), render_skill_md(card)),
        Rendering(files.agent_md(card.name), render_agent_md(card)),
    ]


def drift(card: SkillCard, files: SkillFiles) -> list[Path]:
    """The rendered files that are missing or differ from a fresh rendering."""
    return [rendering.path for rendering in renderings(card, files) if not rendering.current]


def write(card: SkillCard, files: SkillFiles) -> list[Path]:
    """Rewrite the rendered files that drifted; the paths written."""
    written = []
    for rendering in renderings(card, files):
        if not rendering.current:
            rendering.path.parent.mkdir(parents=True, exist_ok=True)
            rendering.path.write_text(rendering.text, encoding="utf-8")
            written.append(rendering.path)
    return written


def _one_line(text: str) -> str:
    return " ".join(text.split())
