"""One agent process for the process-level tests: it claims and completes tasks (its answer is
its own name) until a stop file appears, then writes what it completed, lost and failed as
JSON. Usage: python agent_process.py --agent A --out FILE --stop FILE ADDRESS..."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio

from raft_manager.client import RaftClient
from raft_manager.client.worker import work


async def main(args: argparse.Namespace) -> None:
    stop = Path(args.stop)

    async def handler(payload: Any) -> Any:
        return {"agent": args.agent, "payload": payload}

    async with RaftClient(args.addresses, timeout=20.0) as client:
        report = await work(
            client,
            args.agent,
            handler,
            lease_seconds=args.lease,
            idle_wait=0.2,
            should_stop=stop.exists,
        )
    Path(args.out).write_text(
        json.dumps({"completed": report.completed, "lost": report.lost, "failed": report.failed})
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("addresses", nargs="+")
    anyio.run(main, parser.parse_args())
