"""`python -m raft_manager.cli` runs the command line."""

from .main import app

app()
