"""The client library: leader discovery, redirects, retries, sessions; a typed swarm facade."""

from .client import ClientError, RaftClient, SyncRaftClient
from .swarm import SwarmClient

__all__ = ["ClientError", "RaftClient", "SwarmClient", "SyncRaftClient"]
