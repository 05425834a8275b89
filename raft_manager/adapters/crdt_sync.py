"""The CRDT Synchronizer adapter: operations in, ordered through Raft; the change feed out.

Theory of operation: `crdt.operation` (`{type: CRDT_OPERATION, operation, timestamp, id?}`) is
served by every node: the operation becomes the ledger command `crdt.op` under its id (the
envelope id unless the payload names one), so however often it is sent or handled, it takes
one place in the log; the answer `crdt.operation_result` says committed and that index (the
first one, with `duplicate`, for an id ordered before). `crdt.feed_ack` moves the ledger cursor
the feed publisher resumes from (feed.py), answered with `crdt.feed_ack_result`. The feed
itself goes out from the leader (feed.py). A request that does not fit its model, or that the
ledger refuses, is answered with the reason and changes nothing; one that does not commit in
time is answered `timed-out` (it may still commit: send it again under the same id to learn
its index).
"""

from __future__ import annotations

import anyio

from raft_manager.client import ClientError

from .envelope import Envelope
from .feed import CURSOR, FeedPublisher
from .handlers import Handlers, Reply
from .messages import (
    CRDT_ACK,
    CRDT_ACK_RESULT,
    CRDT_OPERATION,
    CRDT_RESULT,
    CrdtOperation,
    CrdtResult,
    FeedAck,
    FeedAckResult,
    FeedPoint,
)
from .node import AdapterNode


class CrdtAdapter:
    def __init__(self, node: AdapterNode) -> None:
        self.node = node
        self.publisher = FeedPublisher(node)

    def register(self, shared: Handlers, own: Handlers) -> None:
        shared.add(
            CRDT_OPERATION,
            CrdtOperation,
            self.operation,
            invalid=lambda problems: Reply(CRDT_RESULT, _refused(None, "bad-payload", problems)),
        )
        shared.add(
            CRDT_ACK,
            FeedAck,
            self.ack,
            invalid=lambda problems: Reply(
                CRDT_ACK_RESULT, FeedAckResult(ok=False, error="bad-payload", reason=problems)
            ),
        )

    async def run(self) -> None:
        await self.publisher.run()

    async def operation(self, envelope: Envelope, request: CrdtOperation) -> Reply:
        operation_id = request.id or envelope.id
        budget = self.node.budget_s
        try:
            with anyio.fail_after(budget):
                result = await self.node.swarm.order_crdt_operation(
                    operation_id,
                    request.operation,
                    timestamp=request.timestamp,
                    origin=envelope.sender,
                )
        except ClientError as error:
            return Reply(CRDT_RESULT, _refused(operation_id, error.code, str(error)))
        except TimeoutError:
            why = f"not committed within {budget:g} s (send it again with id {operation_id})"
            return Reply(CRDT_RESULT, _refused(operation_id, "timed-out", why))
        answer = CrdtResult(
            ok=True,
            id=operation_id,
            committed=True,
            index=result["index"],
            duplicate=result["duplicate"],
        )
        return Reply(CRDT_RESULT, answer)

    async def ack(self, envelope: Envelope, request: FeedAck) -> Reply:
        try:
            with anyio.fail_after(self.node.budget_s):
                result = await self.node.swarm.set_cursor(CURSOR, request.index, request.position)
        except ClientError as error:
            return Reply(
                CRDT_ACK_RESULT, FeedAckResult(ok=False, error=error.code, reason=str(error))
            )
        except TimeoutError:
            answer = FeedAckResult(ok=False, error="timed-out", reason="the cluster did not answer")
            return Reply(CRDT_ACK_RESULT, answer)
        cursor = FeedPoint.model_validate(result["cursor"])
        return Reply(CRDT_ACK_RESULT, FeedAckResult(ok=True, cursor=cursor, moved=result["moved"]))


def _refused(operation_id: str | None, code: str, reason: str) -> CrdtResult:
    return CrdtResult(ok=False, id=operation_id, committed=False, error=code, reason=reason)
