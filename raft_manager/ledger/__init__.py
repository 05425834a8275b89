"""The swarm ledger: tasks, agents, leases, memory, decisions and sessions as one deterministic
state machine (floor 1: stdlib and pydantic only). See ledger.py for the theory of operation."""

from .commands import (
    Command,
    LedgerConfig,
    Query,
    encode_entry,
    parse_command,
    parse_query,
)
from .errors import LedgerError
from .ledger import EntryLike, Ledger

__all__ = [
    "Command",
    "EntryLike",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "Query",
    "encode_entry",
    "parse_command",
    "parse_query",
]
