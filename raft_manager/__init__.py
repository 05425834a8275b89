"""raft-manager: a Raft consensus coordinator for AI-agent swarms."""

__version__ = "0.1.0"
