"""A minimal HTTP/1.1 client for JSON POSTs to one endpoint (etcd's JSON gateway, in the bench).

Theory of operation: keep-alive connections to one HOST:PORT, each carrying one request at a
time; a request takes an idle connection or opens one, so there are as many connections as
requests in flight, and gives it back once its response is read whole. Responses are framed by
Content-Length (what etcd's gateway sends); anything else, a connection that breaks, or a
request cancelled midway (a timeout) closes that connection, which is then never reused; a
connection that breaks closes the idle ones too (the server has likely gone away).
`post` returns the status code and the decoded JSON body; HttpError for what it cannot read.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from raft_manager.transport.base import parse_address

MAX_HEADER_BYTES = 16384
MAX_BODY_BYTES = 1 << 20
_BROKEN = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class HttpError(Exception):
    """A response that could not be read (or a connection that could not be made)."""


class _Connection:
    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)


class HttpJson:
    """POST JSON bodies to http://ADDRESS; `close` ends the idle connections."""

    def __init__(self, address: str) -> None:
        self.host, self.port = parse_address(address)
        self._idle: list[_Connection] = []

    async def post(self, path: str, body: bytes) -> tuple[int, Any]:
        connection = self._idle.pop() if self._idle else await self._connect()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            await connection.stream.send(head.encode() + body)
            status, payload = await _response(connection.reader)
        except _BROKEN as error:  # the server likely went away: drop the idle ones too
            await anyio.aclose_forcefully(connection.stream)
            await self.close()
            raise HttpError(f"connection broke: {error!r}") from None
        except BaseException:  # HttpError, or cancelled midway: the connection is unusable
            await anyio.aclose_forcefully(connection.stream)
            raise
        self._idle.append(connection)
        return status, payload

    async def _connect(self) -> _Connection:
        try:
            return _Connection(await anyio.connect_tcp(self.host, self.port))
        except OSError as error:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {error}") from None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await anyio.aclose_forcefully(connection.stream)


async def _response(reader: BufferedByteReceiveStream) -> tuple[int, Any]:
    try:
        head = await reader.receive_until(b"\r\n\r\n", MAX_HEADER_BYTES)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError(f"a body of {length} bytes")
        body = await reader.receive_exactly(length) if length else b"{}"
        return status, json.loads(body)
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound) as error:
        raise HttpError(f"connection ended: {type(error).__name__}") from None
    except (IndexError, KeyError, ValueError) as error:
        raise HttpError(f"unreadable response: {error!r}") from None
