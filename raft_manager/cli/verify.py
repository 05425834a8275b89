"""`raft-manager verify`: do the nodes hold the same committed log and the same state?

The comparison itself is raft_manager/verify/consistency.py; this module parses the options,
runs it and prints the report: one line per check, or with --json one JSON object.
"""

from __future__ import annotations

import json
from functools import partial

import anyio
import typer

from raft_manager.verify import verify_cluster

from .cluster import CLUSTER_HELP, resolve_cluster


def verify_command(
    cluster: str | None = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (shape above)."),
    timeout: float = typer.Option(
        5.0, "--timeout", min=0.1, help="Seconds a node gets to answer one request."
    ),
    wait: float = typer.Option(
        5.0, "--wait", min=0.0, help="Seconds to wait for every node to apply the checkpoint."
    ),
) -> None:
    """Check log and state consistency across every node that answers.

    Compares the committed log entry by entry as (index, term, type, crc32c) over the range
    every node still holds (from the newest snapshot point, whose term is compared too, to the
    lowest commit index), then proposes a checkpoint through Raft and compares the SHA-256 of
    every node's state right after applying it. Nodes that do not answer are reported and
    left out; if the checkpoint cannot commit (no quorum), the logs are still compared and the
    state is reported as not compared.

    JSON: {"consistent": true|false|null, "exit_code": 0|1|2, "nodes": [{"id", "reachable",
    "first_index", "snapshot_index", "snapshot_term", "commit_index", "applied_index",
    "last_index", "term"} or {"id", "reachable": false, "error"}], "log": {"from", "to",
    "compared", "divergence": null or {"index", "holders": [{"nodes", "term", "type",
    "crc32c"}]}} or null, "state": {"compared", "checkpoint", "digests": {id: sha256 or null},
    "divergence": null or [{"digest", "nodes"}], "note"} or null}. Details in
    docs/verification.md.

    Exit codes: 0 consistent; 1 a divergence (the first differing index and the nodes are
    printed); 2 no node answers, or bad usage.
    """
    members = resolve_cluster(cluster)
    report = anyio.run(partial(verify_cluster, members.clients, timeout=timeout, wait=wait))
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for check in report.checks():
            typer.echo(check.line())
    raise typer.Exit(report.exit_code)
