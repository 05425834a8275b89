"""The agent card as data: the model of skill.yaml.

Theory of operation: skill.yaml at the repository root is the one source of the skill's facts:
the card of the original ruflo agent (name, type, color, description, capabilities, priority,
the pre and post hooks), the entry points (the `raft-manager` command and its MCP server with
the tools it serves), what goes in SKILL.md's front matter beyond name and description, and
what the agent definition needs (its tools, its responsibilities, its peers). SKILL.md and
agents/raft-manager.md are rendered from this model (render.py), so they cannot disagree with
it. Every section forbids keys it does not know and names the keys it allows; `load_card`
reports every problem at once, one line each, as `where: what` (where is the dotted path of
keys and list positions). Nothing here touches a cluster.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import spec, strict_yaml

Capability = Literal[
    "leader_election",
    "log_replication",
    "follower_management",
    "membership_changes",
    "consistency_verification",
]
Priority = Literal["low", "medium", "high", "critical"]
AgentType = Literal["coordinator", "worker", "specialist", "monitor"]


class CardError(ValueError):
    """skill.yaml is missing, not YAML, or breaks the model; `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    """A map of skill.yaml: frozen; a key it does not know is an error (naming the allowed ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Line = Annotated[str, Field(min_length=1, pattern=r"^[^\n]+$")]  # one line of text
Text = Annotated[str, Field(min_length=1)]


class Hook(Section):
    """One hook script of the card."""

    script: str = Field(min_length=1)  # its path, relative to the repository root
    when: Line  # when it runs, e.g. "before an operation on the cluster"
    checks: Text  # what it checks, for the SKILL.md and agent body

    @field_validator("script")
    @classmethod
    def _relative(cls, script: str) -> str:
        path = PurePosixPath(script)
        if path.is_absolute() or ".." in path.parts or "\\" in script:
            raise ValueError(f"{script!r}: must be a path inside the repository, like hooks/pre")
        return script


class Hooks(Section):
    pre: Hook
    post: Hook


class Cli(Section):
    command: str = Field(min_length=1, pattern=r"^\S+$")


class McpTool(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: Line
    cli: Line  # the equivalent command line, for the tables of SKILL.md


class Mcp(Section):
    command: Line  # how to start the server, e.g. "raft-manager mcp"
    server: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")  # the name MCP clients register it by
    transport: Literal["stdio"]
    tools: list[McpTool] = Field(min_length=1)

    @field_validator("tools")
    @classmethod
    def _unique(cls, tools: list[McpTool]) -> list[McpTool]:
        names = [tool.name for tool in tools]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"tool(s) listed twice: {', '.join(repeated)}")
        return tools


class SkillFrontMatter(Section):
    """What SKILL.md's front matter holds besides name and description."""

    license: str | None = Field(default=None, min_length=1)
    compatibility: str | None = Field(default=None, min_length=1, max_length=spec.MAX_COMPATIBILITY)
    allowed_tools: list[Line] = Field(default_factory=list)  # rendered as `allowed-tools`
    metadata: dict[str, str] = Field(default_factory=dict)


class Responsibility(Section):
    title: Line
    duty: Text
    commands: list[str] = Field(default_factory=list)


class Collaborator(Section):
    peer: Line
    how: Text


class AgentDefinition(Section):
    """What agents/raft-manager.md needs beyond the card."""

    tools: list[str] = Field(min_length=1)  # the framework's tools, e.g. Bash, Read
    responsibilities: list[Responsibility] = Field(min_length=1)
    collaborators: list[Collaborator] = Field(default_factory=list)


class SkillCard(Section):
    """skill.yaml."""

    name: str
    type: AgentType
    color: str
    description: str
    capabilities: list[Capability] = Field(min_length=1)
    priority: Priority
    hooks: Hooks
    cli: Cli
    mcp: Mcp
    skill: SkillFrontMatter = Field(default_factory=SkillFrontMatter)
    agent: AgentDefinition

    @field_validator("name")
    @classmethod
    def _skill_name(cls, name: str) -> str:
        problems = spec.name_problems(name)
        if problems:
            raise ValueError("; ".join(problem.removeprefix("name: ") for problem in problems))
        return name

    @field_validator("color")
    @classmethod
    def _hex_color(cls, color: str) -> str:
        if not re.fullmatch(r"#[0-9A-Fa-f]{6}", color):
            raise ValueError(f'{color!r} is not a color like "#2196F3" (# and six hex digits)')
        return color

    @field_validator("description")
    @classmethod
    def _says_what_and_when(cls, description: str) -> str:
        problems = spec.description_problems(description)
        if problems:
            raise ValueError(problems[0].removeprefix("description: "))
        if "use when" not in description.lower():
            raise ValueError("must also say when to use the skill, in a sentence 'Use when ...'")
        return description

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, capabilities: list[str]) -> list[str]:
        repeated = sorted({c for c in capabilities if capabilities.count(c) > 1})
        if repeated:
            raise ValueError(f"listed twice: {', '.join(repeated)}")
        return capabilities

    @property
    def mcp_tool_names(self) -> list[str]:
        return [tool.name for tool in self.mcp.tools]


def parse_card(data: Any) -> SkillCard:
    """The card from already-loaded YAML data, or CardError with every problem."""
    if not isinstance(data, dict):
        raise CardError(["the file must be a YAML map of keys to values"])
    try:
        return SkillCard.model_validate(data)
    except ValidationError as error:
        raise CardError([_problem(detail) for detail in error.errors()]) from None


def load_card(path: Path) -> SkillCard:
    """The card in the skill.yaml at `path`, or CardError (a missing file is FileNotFoundError)."""
    try:
        data = strict_yaml.load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise CardError([f"not UTF-8 text: {error}"]) from None
    except strict_yaml.YamlError as error:
        raise CardError([f"not valid YAML: {error}"]) from None
    return parse_card(data)


def _problem(detail: Any) -> str:
    loc = tuple(detail["loc"])
    if detail["type"] == "extra_forbidden":
        where = ".".join(str(part) for part in loc[:-1]) or "top level"
        allowed = ", ".join(_section_at(loc[:-1]).model_fields)
        return f"{where}: unknown key {loc[-1]} (allowed here: {allowed})"
    where = ".".join(str(part) for part in loc) or "top level"
    message = str(detail["msg"]).removeprefix("Value error, ")
    if detail["type"] in ("literal_error", "string_pattern_mismatch", "enum"):
        message += f" (got {detail['input']!r})"
    elif detail["type"] == "missing":
        message = "missing (required)"
    return f"{where}: {message}"


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    """The model of the map at `loc` in the card (keys and list positions)."""
    model: type[BaseModel] = SkillCard
    annotation: Any = SkillCard
    for part in loc:
        if isinstance(part, int):  # a position in a list: its items' type
            annotation = get_args(annotation)[0]
        else:
            annotation = model.model_fields[part].annotation
        candidates = [annotation, *get_args(annotation)]  # X, or the X of `X | None`
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
    return model
