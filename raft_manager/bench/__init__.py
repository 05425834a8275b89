"""`raft-manager bench`'s engine: raft-manager and its peers measured side by side.

Floor 4 (like verify/): it drives node processes through the client library and imports the
server floor only for the local cluster layout (server/local_cluster.py); the CLI face
(cli/bench.py) and benchmarks/cluster_bench.py use it. One module per concept: the system
surface (system.py), node processes (processes.py), the systems (protocol_system.py with
raft_manager_system.py and pysyncobj_system.py + pysyncobj_node.py; etcd_system.py with
http_json.py; redis_server.py for the Redis transport), the measurements (workloads.py), a run
(runner.py), and its report (report.py) and latency CDF plot (plot.py).
"""

from .runner import PEERS, TRANSPORTS, BenchPlan, BenchReport, SystemResult, run_bench
from .system import BenchError

__all__ = [
    "PEERS",
    "TRANSPORTS",
    "BenchError",
    "BenchPlan",
    "BenchReport",
    "SystemResult",
    "run_bench",
]
