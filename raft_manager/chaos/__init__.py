"""Fault injection against real node processes: the loopback proxy, faults, the chaos run."""
