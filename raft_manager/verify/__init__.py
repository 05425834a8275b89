"""Consistency verification: the cross-node log and state check, and the hooks' cluster checks."""

from .checks import Check, Verdict, exit_code
from .consistency import Report, verify_cluster

__all__ = ["Check", "Report", "Verdict", "exit_code", "verify_cluster"]
