"""hooks/pre and hooks/post find raft-manager without an activated venv, and only hand over."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HOOKS = Path(__file__).resolve().parent.parent / "hooks"


def stub(path: Path, name: str) -> Path:
    """A fake raft-manager that says who it is and what it was asked."""
    path.mkdir(parents=True, exist_ok=True)
    program = path / "raft-manager"
    program.write_text(f"#!/bin/sh\nprintf '{name} %s\\n' \"$*\"\n")
    program.chmod(0o755)
    return program


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A copy of the hooks in a repository whose .venv holds a fake raft-manager."""
    hooks = tmp_path / "repo" / "hooks"
    hooks.mkdir(parents=True)
    shutil.copy2(HOOKS / "pre", hooks / "pre")
    (hooks / "post").symlink_to("pre")
    stub(tmp_path / "repo" / ".venv" / "bin", "venv")
    return tmp_path / "repo"


def run(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", **env}
    return subprocess.run(
        [str(script), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_shipped_hooks_are_executable_and_one_script() -> None:
    assert os.access(HOOKS / "pre", os.X_OK) and os.access(HOOKS / "post", os.X_OK)
    assert (HOOKS / "post").resolve() == (HOOKS / "pre").resolve()


def test_the_repository_venv_is_the_last_resort(repository: Path) -> None:
    done = run(repository / "hooks" / "post", "--cluster", "c.toml")
    assert (done.returncode, done.stdout) == (0, "venv hooks check post --cluster c.toml\n")
    assert run(repository / "hooks" / "pre").stdout == "venv hooks check pre\n"


def test_path_comes_before_the_venv_and_raft_manager_bin_before_both(
    repository: Path, tmp_path: Path
) -> None:
    on_path = stub(tmp_path / "path", "path").parent
    path = f"{on_path}:/usr/bin:/bin"
    assert run(repository / "hooks" / "pre", PATH=path).stdout == "path hooks check pre\n"
    chosen = stub(tmp_path / "chosen", "chosen")
    done = run(repository / "hooks" / "pre", PATH=path, RAFT_MANAGER_BIN=str(chosen))
    assert done.stdout == "chosen hooks check pre\n"


def test_a_link_from_elsewhere_finds_the_repository_and_its_phase(
    repository: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "raft-manager-post").symlink_to(repository / "hooks" / "post")
    assert run(elsewhere / "raft-manager-post").stdout == "venv hooks check post\n"
    (elsewhere / "check").symlink_to(repository / "hooks" / "pre")
    wrong = run(elsewhere / "check")
    assert wrong.returncode == 2 and "run this hook as hooks/pre or hooks/post" in wrong.stderr


def test_no_raft_manager_anywhere_exits_2_saying_where_it_looked(repository: Path) -> None:
    shutil.rmtree(repository / ".venv")
    missing = run(repository / "hooks" / "pre")
    assert missing.returncode == 2 and "raft-manager not found" in missing.stderr
    assert "RAFT_MANAGER_BIN" in missing.stderr
