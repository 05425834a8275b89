"""`raft-manager wal inspect DIR`: verify and describe a node's data directory, read-only.

Exit codes: 0 the directory verifies (a torn tail that opening would cut is reported, not an
error), 1 corruption (the file and offset are printed), 2 not a data directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from raft_manager.storage.inspect import StorageReport, inspect_storage

wal_app = typer.Typer(help="Inspect a node's write-ahead log and snapshots.", no_args_is_help=True)


@wal_app.command("inspect")
def inspect_command(
    directory: Path = typer.Argument(..., help="The node's data directory (holds wal/, snap/)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Segments, index range, hard state, snapshots, and a full verify pass."""
    try:
        report = inspect_storage(directory)
    except FileNotFoundError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    if as_json:
        typer.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        _print_report(Console(), report)
    raise typer.Exit(0 if report.ok else 1)


def _print_report(console: Console, report: StorageReport) -> None:
    segments = Table(title=f"segments in {report.directory}")
    for column in ("file", "bytes", "records", "first index", "last index"):
        segments.add_column(column)
    for segment in report.segments:
        segments.add_row(
            Path(segment["file"]).name,
            str(segment["bytes"]),
            str(segment.get("records", "?")),
            str(segment.get("first_index") or "-"),
            str(segment.get("last_index") or "-"),
        )
    console.print(segments)
    snapshots = Table(title="snapshots")
    for column in ("file", "index", "term", "bytes", "verifies"):
        snapshots.add_column(column)
    for snapshot in report.snapshots:
        verdict = "yes" if snapshot["ok"] else f"NO: {snapshot['error']}"
        snapshots.add_row(
            Path(snapshot["file"]).name,
            str(snapshot["index"]),
            str(snapshot["term"]),
            str(snapshot["bytes"]),
            verdict,
        )
    console.print(snapshots)
    if report.hard_state is not None:
        hard = report.hard_state
        console.print(
            f"hard state: term {hard['term']}, vote {hard['vote']}, commit {hard['commit']}"
        )
        console.print(f"log: entries {report.first_index} to {report.last_index}")
    if report.torn_tail is not None:
        torn = report.torn_tail
        console.print(
            f"torn tail: {torn['bytes']} bytes at offset {torn['offset']} of {torn['file']} "
            "(a write cut short by a crash; opening the storage drops it)",
            markup=False,
        )
    if report.ok:
        console.print("[green]verify: OK[/]")
    else:
        bad = report.corruption or {}
        console.print(
            f"[bold red]verify: CORRUPT[/] {bad.get('file')} at offset {bad.get('offset')}: "
            f"{bad.get('reason')}"
        )
