"""`raft-manager wal inspect`: what it reports, its exit codes, and that it changes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from raft_manager.cli.main import app
from raft_manager.core import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from raft_manager.storage import FileStorage


def _make_node_dir(directory: Path) -> None:
    storage = FileStorage(directory, segment_bytes=4096)
    storage.load()
    for index in range(1, 121):
        storage.save(
            HardState(2, "n1", index - 1), [Entry(index, 2, EntryType.NORMAL, b"x" * 60)], None
        )
    storage.compact(Snapshot(SnapshotMeta(80, 2, ConfState(("n1", "n2", "n3"))), b"image"))
    storage.close()


def _fingerprint(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _inspect(directory: Path) -> tuple[int, dict[str, object]]:
    outcome = CliRunner().invoke(app, ["wal", "inspect", str(directory), "--json"])
    return outcome.exit_code, json.loads(outcome.stdout)


def test_a_healthy_directory_verifies_and_is_described(tmp_path: Path) -> None:
    _make_node_dir(tmp_path)
    code, report = _inspect(tmp_path)
    assert code == 0
    assert report["ok"] is True and report["corruption"] is None
    assert report["hard_state"] == {"term": 2, "vote": "n1", "commit": 119}
    assert (report["first_index"], report["last_index"]) == (81, 120)
    snapshots = report["snapshots"]
    assert isinstance(snapshots, list) and [s["index"] for s in snapshots] == [80]
    segments = report["segments"]
    assert isinstance(segments, list) and len(segments) >= 2  # older segments were deleted
    assert segments[-1]["last_index"] == 120
    assert report["torn_tail"] is None


def test_the_text_report_names_the_verdict(tmp_path: Path) -> None:
    _make_node_dir(tmp_path)
    outcome = CliRunner().invoke(app, ["wal", "inspect", str(tmp_path)])
    assert outcome.exit_code == 0
    assert "verify: OK" in outcome.stdout
    assert "entries 81 to 120" in outcome.stdout


def test_a_torn_tail_is_reported_and_left_alone(tmp_path: Path) -> None:
    _make_node_dir(tmp_path)
    last = sorted((tmp_path / "wal").glob("*.wal"))[-1]
    end = _inspect(tmp_path)[1]["segments"][-1]["bytes"]  # where the records stop
    with last.open("r+b") as file:  # the start of a record header, cut short
        file.seek(end)
        file.write(b"\x07\x00\x00")
    before = _fingerprint(tmp_path)
    code, report = _inspect(tmp_path)
    assert code == 0
    cut = last.stat().st_size - end  # those 3 bytes and the zeros after them
    assert report["torn_tail"] == {"file": str(last), "offset": end, "bytes": cut}
    assert _fingerprint(tmp_path) == before


def test_corruption_exits_1_with_the_file_and_offset(tmp_path: Path) -> None:
    _make_node_dir(tmp_path)
    first = sorted((tmp_path / "wal").glob("*.wal"))[0]
    blob = bytearray(first.read_bytes())
    blob[200] ^= 0x10
    first.write_bytes(bytes(blob))
    before = _fingerprint(tmp_path)
    code, report = _inspect(tmp_path)
    assert code == 1
    corruption = report["corruption"]
    assert isinstance(corruption, dict) and corruption["file"] == str(first)
    assert isinstance(corruption["offset"], int) and corruption["offset"] <= 200
    assert _fingerprint(tmp_path) == before
    outcome = CliRunner().invoke(app, ["wal", "inspect", str(tmp_path)])
    assert outcome.exit_code == 1 and "CORRUPT" in outcome.stdout


def test_a_directory_without_a_wal_exits_2(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["wal", "inspect", str(tmp_path / "nothing")])
    assert outcome.exit_code == 2
    assert "not a raft-manager data directory" in outcome.stderr
