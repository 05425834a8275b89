"""Durable state of a Raft node: log entries, hard state and snapshots."""
