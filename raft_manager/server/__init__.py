"""The node runtime: the Raft core driven by real time, storage and transport."""
