"""`raft-manager demo`: a local 3-node cluster and a small swarm, a leader killed halfway.

Theory of operation: the demo writes a 3-node TCP cluster file into a temporary folder (or
--dir) on free loopback ports, starts the node processes as `cluster up` does, and waits for a
leader. demo_swarm.py then submits 40 tasks with dependencies, runs 4 agents, SIGKILLs the
leader when half the tasks are done, times the re-election, restarts the killed node and audits
the ledger: every task done, each completed exactly once with its final fencing token. The post
hook (`verify`, and followers caught up) runs on the cluster. A summary table (or --json)
follows, and the nodes are stopped unless --keep.

Exit codes: 0 every check passed; 1 a check failed (a task not done or done twice, no
re-election, the post hook failed); 2 bad usage (--dir already holds a cluster, no free ports).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from raft_manager.client import RaftClient
from raft_manager.server.config import load_config
from raft_manager.server.local_cluster import free_base_port, write_config
from raft_manager.server.pid_file import PidFile
from raft_manager.server.processes import stop_nodes

from .cluster import start_node
from .demo_swarm import Audit, SwarmRun, audit, leader_of, run_swarm
from .hooks import run_hook

NODES = 3


def demo_command(
    directory: Path | None = typer.Option(
        None, "--dir", help="Where the cluster lives (default: a new temporary folder)."
    ),
    keep: bool = typer.Option(False, "--keep", help="Leave the cluster running at the end."),
    timeout: float = typer.Option(45.0, "--timeout", min=5.0, help="Seconds for the swarm."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
) -> None:
    """Run a 3-node cluster and a 4-agent swarm through a leader failure; audit the result."""
    console = Console(stderr=as_json)

    def say(line: str) -> None:
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(line)}", soft_wrap=True)

    with _cluster_folder(directory, keep) as folder:
        if (folder / "cluster.toml").exists():
            typer.echo(f"error: {folder} already holds a cluster; give an empty --dir", err=True)
            raise typer.Exit(2)
        base_port = free_base_port(NODES)
        if base_port is None:
            typer.echo("error: no free loopback ports for the demo", err=True)
            raise typer.Exit(2)
        path = write_config(folder, NODES, base_port, "tcp")
        config = load_config(path)
        addresses = {node: spec.client_address for node, spec in config.nodes.items()}
        pids = {node: start_node(folder, path, node) for node in config.nodes}
        pid_file = PidFile(folder)
        pid_file.write(pids)

        def restart(node: str) -> None:
            pids[node] = start_node(folder, path, node)
            pid_file.write(pids)

        try:
            summary = _run(folder, path, addresses, restart, say)
        finally:
            if not keep:
                stop_nodes(pids, path)
                pid_file.delete()
        summary["kept"] = keep
        if keep:
            say(f"the cluster keeps running: raft-manager status --cluster {path}")
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(console, summary)
    raise typer.Exit(0 if summary["ok"] else 1)


def _run(
    folder: Path,
    path: Path,
    addresses: dict[str, str],
    restart: Any,
    say: Any,
) -> dict[str, Any]:
    say(f"starting {NODES} nodes in {folder}")
    leader = anyio.run(_wait_for_leader, addresses)
    if leader is None:
        return {"ok": False, "cluster": str(path), "problems": ["no leader within 15 s"]}
    say(f"{leader[0]} leads term {leader[1]}")
    run: SwarmRun = anyio.run(lambda: run_swarm(addresses, restart, say))
    result: Audit = anyio.run(audit, addresses, run)
    problems = list(result.problems)
    failover = run.failover
    if failover is None or failover.new_leader is None:
        problems.append("the leader was not replaced after the kill")
    say("running the post hook (verify, followers caught up)")
    hook = run_hook("post", task="demo: replication after a leader failover", cluster=str(path))
    for line in hook.output.splitlines():
        say(f"  post: {line}")
    if hook.code != 0:
        problems.append(f"post hook exited {hook.code}")
    return {
        "ok": not problems,
        "cluster": str(path),
        "tasks": result.total,
        "done": result.done,
        "accepted_completions": result.completions,
        "exactly_once": result.exactly_once,
        "agents": len(run.reports),
        "killed_leader": failover.old_leader if failover else None,
        "new_leader": failover.new_leader if failover else None,
        "terms": [failover.old_term, failover.new_term] if failover else None,
        "failover_seconds": round(failover.seconds, 3) if failover and failover.seconds else None,
        "post_hook_exit": hook.code,
        "swarm_seconds": round(run.seconds, 2),
        "problems": problems,
    }


async def _wait_for_leader(addresses: dict[str, str]) -> tuple[str, int] | None:
    async with RaftClient(list(addresses.values()), timeout=2.0) as client:
        with anyio.move_on_after(15.0):
            while True:
                found = await leader_of(client, addresses)
                if found is not None:
                    return found[0], found[1]
                await anyio.sleep(0.05)
    return None


@contextlib.contextmanager
def _cluster_folder(directory: Path | None, keep: bool) -> Iterator[Path]:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        yield directory
    elif keep:
        yield Path(tempfile.mkdtemp(prefix="raft-manager-demo-"))
    else:
        with tempfile.TemporaryDirectory(prefix="raft-manager-demo-") as folder:
            yield Path(folder)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title="raft-manager demo", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [
        ("tasks done", f"{summary.get('done')} / {summary.get('tasks')}"),
        ("accepted completions", str(summary.get("accepted_completions"))),
        ("every task completed exactly once", "yes" if summary.get("exactly_once") else "NO"),
        ("agents", str(summary.get("agents"))),
        ("leader killed", str(summary.get("killed_leader"))),
        ("new leader (terms)", f"{summary.get('new_leader')} {summary.get('terms')}"),
        ("failover", f"{summary.get('failover_seconds')} s"),
        ("post hook exit", str(summary.get("post_hook_exit"))),
        ("swarm run", f"{summary.get('swarm_seconds')} s"),
        ("verdict", "ok" if summary["ok"] else "FAILED: " + "; ".join(summary["problems"])),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
