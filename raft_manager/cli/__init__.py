"""The `raft-manager` command line."""
