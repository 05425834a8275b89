"""`raft-manager node --config FILE --id ID`: run one node in the foreground until SIGTERM/SIGINT.

With an [adapters] section in the cluster file, the node runs the swarm's peer adapters too
(raft_manager/adapters/service.py: the bus to the Quorum Manager, CRDT Synchronizer, Security
Manager and Performance Benchmarker over Redis streams).

Exit codes: 0 stopped by a signal, 2 bad configuration (unknown key, bad address, port in use,
unknown node id, a data directory another process holds), 3 the node's data directory is
corrupt (the file and offset are printed).
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import typer

from raft_manager.server.collector import tune_collector
from raft_manager.server.config import ConfigError, load_config
from raft_manager.server.node import run_node
from raft_manager.storage import CorruptionError, StorageError

from .logs import LogLevel, setup_logging


def parse_overrides(settings: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, each VALUE a TOML value (a bare word is taken as a string)."""
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, separator, value = setting.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set {setting!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    return overrides


def node_command(
    config: Path = typer.Option(..., "--config", help="The cluster's TOML file."),
    node_id: str = typer.Option(..., "--id", help="Which of the file's nodes this is."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="Override a cluster setting, as KEY=VALUE in TOML (e.g. --set tick_ms=20); beats "
        "the file and RAFT_MANAGER_* variables. Repeatable.",
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.INFO, "--log-level", case_sensitive=False, help="The least severe lines logged."
    ),
    as_json: bool = typer.Option(False, "--json", help="Log as JSON lines (cli/logs.py)."),
) -> None:
    """Run one node of the cluster in the foreground (logging to stderr)."""
    setup_logging(log_level, sys.stderr, as_json=as_json, fields={"node": node_id})
    try:
        cluster = load_config(config, parse_overrides(settings))
        # uvloop when installed (a faster event loop for the same asyncio code).
        use_uvloop = importlib.util.find_spec("uvloop") is not None
        services = []
        if cluster.adapters is not None:  # imported only then: the bus costs 0.1 s of a start
            from raft_manager.adapters.service import adapter_services

            services = adapter_services(cluster)
        tune_collector()
        anyio.run(run_node, cluster, node_id, services, backend_options={"use_uvloop": use_uvloop})
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except CorruptionError as error:
        typer.echo(f"error: the data directory is corrupt: {error}", err=True)
        raise typer.Exit(3) from None
    except StorageError as error:  # its data directory is another process's
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    # `python -m raft_manager.cli.node --config F --id ID`: the same command without importing
    # every other command first (0.15 s of a node's start; local_cluster.node_argv uses it).
    typer.run(node_command)
