"""Floor 4: the swarm's peers over Redis streams.

The bus (bus.py: connection, sending; consumer.py: consumer groups, redelivery, dead letters,
deduplication), its envelope (envelope.py), its security gate (signing.py; the keys are
transport/keys.py, shared with Raft frame authentication), its names (streams.py), counters
(metrics.py) and the handler registry peer adapters build on (handlers.py).

The peer adapters, started with a node by service.py: the message contract (messages.py), what
they share (node.py), the Quorum Manager (quorum.py, membership.py), the CRDT Synchronizer
(crdt_sync.py, feed.py), the Security Manager (security.py, key_updates.py, auth_reports.py)
and the Performance Benchmarker (benchmarker.py, metrics_snapshot.py, bench_run.py).
"""

from .bus import Bus
from .consumer import Consumer
from .envelope import Envelope, EnvelopeError, canonical_bytes, parse_envelope
from .errors import BusAuthError, BusError, BusUnavailable
from .handlers import Dispatcher, Handlers, Replies, Reply, Unhandleable
from .metrics import BusMetrics
from .signing import Rejected, Rejection, SigningError, Verifier, sign
from .streams import (
    RAFT_MANAGER,
    ROLES,
    dead_letter_stream,
    reply_stream,
    request_stream,
)

__all__ = [
    "RAFT_MANAGER",
    "ROLES",
    "Bus",
    "BusAuthError",
    "BusError",
    "BusMetrics",
    "BusUnavailable",
    "Consumer",
    "Dispatcher",
    "Envelope",
    "EnvelopeError",
    "Handlers",
    "Rejected",
    "Rejection",
    "Replies",
    "Reply",
    "SigningError",
    "Unhandleable",
    "Verifier",
    "canonical_bytes",
    "dead_letter_stream",
    "parse_envelope",
    "reply_stream",
    "request_stream",
    "sign",
]
