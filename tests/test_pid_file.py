"""DIR/pids.json: written whole, read back, and refused with a clear error when it is not one."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.server.pid_file import PIDS, PidFile, PidFileError


def test_pids_are_written_read_added_and_popped(tmp_path: Path) -> None:
    pids = PidFile(tmp_path)
    assert pids.read() == {} and not pids.exists()
    pids.write({"n1": 101, "n2": 102})
    pids.add("n3", 103)
    assert pids.read() == {"n1": 101, "n2": 102, "n3": 103}
    assert pids.pop("n2") == 102 and pids.pop("n2") is None
    assert pids.read() == {"n1": 101, "n3": 103}
    assert [path.name for path in tmp_path.iterdir()] == [PIDS]  # no partial file left
    pids.delete()
    assert not pids.exists()
    pids.delete()  # nothing to delete: fine


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not JSON"),
        ('["n1", 101]', "not a map"),
        ('{"n1": "101"}', "not a map"),
        ('{"n1": -5}', "not a map"),
        ('{"n1": true}', "not a map"),
    ],
)
def test_a_file_that_is_not_a_map_of_pids_is_refused_by_name(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / PIDS).write_text(content)
    with pytest.raises(PidFileError, match=problem) as raised:
        PidFile(tmp_path).read()
    assert str(tmp_path / PIDS) in str(raised.value)


def test_cluster_down_refuses_a_damaged_pid_file_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / PIDS).write_text("{damaged")
    down = CliRunner().invoke(app, ["cluster", "down", "--dir", str(tmp_path)])
    assert down.exit_code == 2
    assert "is not JSON" in down.stderr and "Traceback" not in down.output
    assert (tmp_path / PIDS).read_text() == "{damaged"
