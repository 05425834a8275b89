"""`raft-manager node --config FILE --id ID`: run one node in the foreground until SIGTERM/SIGINT.

Exit codes: 0 stopped by a signal, 2 bad configuration (unknown key, bad address, port in use,
unknown node id), 3 the node's data directory is corrupt (the file and offset are printed).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import anyio
import typer

from raft_manager.server.config import ConfigError, load_config
from raft_manager.server.node import run_node
from raft_manager.storage import CorruptionError


def node_command(
    config: Path = typer.Option(..., "--config", help="The cluster's TOML file."),
    node_id: str = typer.Option(..., "--id", help="Which of the file's nodes this is."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run one node of the cluster in the foreground."""
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s {node_id} %(levelname)s %(name)s: %(message)s",
    )
    try:
        cluster = load_config(config)
        # uvloop when installed (a faster event loop for the same asyncio code).
        use_uvloop = importlib.util.find_spec("uvloop") is not None
        anyio.run(run_node, cluster, node_id, backend_options={"use_uvloop": use_uvloop})
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except CorruptionError as error:
        typer.echo(f"error: the data directory is corrupt: {error}", err=True)
        raise typer.Exit(3) from None
