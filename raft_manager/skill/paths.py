"""Where the skill's files live.

Theory of operation: the skill's sources are files of the source checkout, not of the Python
package: skill.yaml at the repository root, the rendered skills/<name>/SKILL.md and
agents/<name>.md next to it, and the hook scripts the card names (hooks/pre, hooks/post). In
the editable install this project uses, the repository root is the parent of the
raft_manager package directory. A `--skill-file PATH` names another skill.yaml; its folder
then plays the root (so a test can render into a temporary copy). `locate` fails with
FileNotFoundError, naming the path it looked at, when skill.yaml is not there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import raft_manager

from .spec import SKILL_FILE

CARD_FILE = "skill.yaml"
REPOSITORY_ROOT = Path(raft_manager.__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class SkillFiles:
    """The files of the skill whose skill.yaml is `card`."""

    card: Path

    @property
    def root(self) -> Path:
        return self.card.parent

    def skill_dir(self, name: str) -> Path:
        return self.root / "skills" / name

    def skill_md(self, name: str) -> Path:
        return self.skill_dir(name) / SKILL_FILE

    def agent_md(self, name: str) -> Path:
        return self.root / "agents" / f"{name}.md"

    def script(self, relative: str) -> Path:
        return self.root / relative


def locate(skill_file: Path | None = None) -> SkillFiles:
    """The skill's files, from `skill_file` or the repository root's skill.yaml."""
    card = skill_file if skill_file is not None else REPOSITORY_ROOT / CARD_FILE
    if not card.is_file():
        hint = "" if skill_file is not None else " (the skill ships with the source checkout)"
        raise FileNotFoundError(f"{card}: no such file{hint}")
    return SkillFiles(card.resolve())
