"""The Agent Skills specification's rules for a skill folder (https://agentskills.io/specification).

Theory of operation: a skill is a folder holding SKILL.md, which opens with YAML front matter
between two `---` lines and continues with Markdown. The front matter may hold only name,
description, license, compatibility, metadata and allowed-tools. `name` is required: 1 to 64
characters, lowercase ASCII letters, digits and hyphens, no hyphen at either end and no two in
a row, and equal to the folder's name. `description` is required: not blank, at most 1,024
characters (it should say what the skill does and when to use it). `compatibility`, when
given, is 1 to 500 characters; `license` a non-empty string; `metadata` a map of strings to
strings; `allowed-tools` a space-delimited string or a list of strings. Every function here
returns problems as one-line strings (an empty list: valid) instead of stopping at the first,
so `raft-manager skill validate` can print them all. The spec also allows Unicode lowercase
letters in names; this validator keeps to ASCII, as the skill's own name does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import strict_yaml

SKILL_FILE = "SKILL.md"
ALLOWED_KEYS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
MAX_NAME = 64
MAX_DESCRIPTION = 1024
MAX_COMPATIBILITY = 500
_FENCE = "---"


class FrontMatterError(ValueError):
    """SKILL.md has no front matter, or it is not a YAML map."""


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(the front matter as a map, the Markdown body after it), or FrontMatterError."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != _FENCE:
        raise FrontMatterError("does not open with front matter (a first line of ---)")
    closing = [number for number, line in enumerate(lines) if line.rstrip("\r\n") == _FENCE]
    if len(closing) < 2:
        raise FrontMatterError("front matter is not closed (no second line of ---)")
    end = closing[1]
    try:
        front = strict_yaml.load("".join(lines[1:end]))
    except strict_yaml.YamlError as error:
        raise FrontMatterError(f"front matter is not valid YAML: {error}") from None
    if not isinstance(front, dict):
        raise FrontMatterError("front matter is not a YAML map of keys to values")
    return front, "".join(lines[end + 1 :])


def name_problems(name: object) -> list[str]:
    """What is wrong with `name` as a skill name (empty: nothing)."""
    if not isinstance(name, str) or not name:
        return ["name: must be a non-empty string"]
    problems = []
    if len(name) > MAX_NAME:
        problems.append(f"name: {len(name)} characters, at most {MAX_NAME} allowed")
    if name.startswith("-") or name.endswith("-"):
        problems.append(f"name: {name!r} must not start or end with a hyphen")
    if "--" in name:
        problems.append(f"name: {name!r} must not contain two hyphens in a row")
    if not re.fullmatch(r"[a-z0-9-]+", name):
        problems.append(f"name: {name!r} may hold only lowercase letters a-z, digits and hyphens")
    return problems


def description_problems(description: object) -> list[str]:
    if not isinstance(description, str) or not description.strip():
        return ["description: must be a non-empty string"]
    if len(description) > MAX_DESCRIPTION:
        return [f"description: {len(description)} characters, at most {MAX_DESCRIPTION} allowed"]
    return []


def front_matter_problems(front: dict[str, Any], folder: str | None = None) -> list[str]:
    """Every rule the front matter breaks; `folder` is the name of the skill's folder (its
    name must equal it), None to skip that rule."""
    problems = []
    unknown = sorted(str(key) for key in front if key not in ALLOWED_KEYS)
    if unknown:
        problems.append(
            f"unknown front matter key(s) {', '.join(unknown)} (allowed: {', '.join(ALLOWED_KEYS)})"
        )
    if "name" not in front:
        problems.append("name: missing (required)")
    else:
        problems += name_problems(front["name"])
        if folder is not None and front["name"] != folder:
            problems.append(f"name: {front['name']!r} must equal the folder's name {folder!r}")
    if "description" not in front:
        problems.append("description: missing (required)")
    else:
        problems += description_problems(front["description"])
    if "license" in front and (not isinstance(front["license"], str) or not front["license"]):
        problems.append("license: must be a non-empty string")
    if "compatibility" in front:
        value = front["compatibility"]
        if not isinstance(value, str) or not value:
            problems.append("compatibility: must be a non-empty string")
        elif len(value) > MAX_COMPATIBILITY:
            problems.append(
                f"compatibility: {len(value)} characters, at most {MAX_COMPATIBILITY} allowed"
            )
    if "metadata" in front:
        problems += _metadata_problems(front["metadata"])
    if "allowed-tools" in front:
        tools = front["allowed-tools"]
        if not isinstance(tools, str) and not (
            isinstance(tools, list) and all(isinstance(tool, str) for tool in tools)
        ):
            problems.append("allowed-tools: must be a space-delimited string or a list of strings")
    return problems


def _metadata_problems(metadata: object) -> list[str]:
    if not isinstance(metadata, dict):
        return ["metadata: must be a map of string keys to string values"]
    return [
        f"metadata: {key!r}: keys and values must be strings (got {type(value).__name__})"
        for key, value in metadata.items()
        if not isinstance(key, str) or not isinstance(value, str)
    ]


def skill_md_problems(text: str, folder: str | None = None) -> list[str]:
    """Every rule SKILL.md's text breaks (its front matter; the body is free Markdown)."""
    try:
        front, _ = split_front_matter(text)
    except FrontMatterError as error:
        return [str(error)]
    return front_matter_problems(front, folder)


def skill_dir_problems(folder: Path) -> list[str]:
    """Every rule the skill folder breaks: SKILL.md must exist and be valid, named like the
    folder. (The caller checks that `folder` is a directory.)"""
    path = folder / SKILL_FILE
    if not path.is_file():
        return [f"{SKILL_FILE} is missing"]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [f"{SKILL_FILE} cannot be read: {error}"]
    return skill_md_problems(text, folder.name)
