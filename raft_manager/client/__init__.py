"""The client library: leader discovery, redirects, retries, sessions."""

from .client import ClientError, RaftClient, SyncRaftClient

__all__ = ["ClientError", "RaftClient", "SyncRaftClient"]
