"""A deterministic Raft cluster simulator: virtual time, a faulty network, crashes, invariants."""
