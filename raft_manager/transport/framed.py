"""Length-prefixed frames (u32 big-endian length, then the frame) on an asyncio connection.

Theory of operation: `FramedConnection` is an asyncio protocol, driven by the event loop's
callbacks rather than by a task per connection. What arrives is buffered and every whole frame
in the buffer goes to `on_frames` at once (a burst of pipelined frames is one call); a length
above the cap, or a connection that ends inside a frame, is a FrameError: the connection cannot
be resynchronized, so it is closed and the error handed to `on_closed`. A clean end between
frames closes it with no error.

`put` writes a frame without waiting: the frames put during one turn of the event loop are
joined and written by one callback early in the next turn (a burst of a thousand answers is one
system call; one of more than BATCH_BYTES goes out in pieces, so the reader starts on it
sooner). Connections may share a `PendingWrites`, whose owner writes what they all hold at once
when it knows a step is over (the node, when a Ready's messages are all sent: a follower's answer
to its leader goes out before it applies the entries the Ready committed), instead of a loop
turn later. While the kernel's buffer is full (`pause_writing`) frames are held; `capacity` bounds
the frames held and waiting together, and `put` returns False for a frame that did not fit or
whose connection is gone. With `backpressure`, the connection also stops reading while its
writes are held: a server whose client does not read its answers stops taking that client's
requests instead of holding answers without bound.

With `tls` (a context, the side, the name to check), the connection speaks TLS itself, through
memory BIOs: every byte that arrives goes to the TLS object from the first one, so nothing is
ever read as a frame before the handshake has passed (an upgrade of a plain connection, as
loop.start_tls does, races uvloop's reading of an accepted socket). `secured` resolves True
once the handshake passed, False when it failed or took longer than `handshake_seconds`; a
failed one closes the connection with FrameError("tls-handshake").

Why callbacks rather than anyio streams: every message on the hot path of a write passes here,
and a stream costs a task wake-up for each read and each write (a read also stops and restarts
the socket's watcher). On this project's 2-core machine the callbacks cut a sequential write's
CPU on every process; see docs/performance.md. The node runs on asyncio (anyio's asyncio
backend, uvloop when installed), so nothing is lost in portability that was in use.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from .base import parse_address
from .codec import LENGTH_PREFIX, FrameError
from .tls import HANDSHAKE_SECONDS

BATCH_BYTES = 64 << 10  # a burst is written in pieces of about this size
FramesHandler = Callable[[list[bytes]], None]
ClosedHandler = Callable[[Exception | None], None]


class FrameBuffer:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self, max_frame_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame `data` completes, in order; FrameError for a length above the cap."""
        buffer, prefix, frames, at = self._buffer, LENGTH_PREFIX.size, [], 0
        buffer.extend(data)
        while len(buffer) - at >= prefix:
            (length,) = LENGTH_PREFIX.unpack_from(buffer, at)
            if length > self._max:
                raise FrameError("oversized", f"{length} bytes announced, cap {self._max}")
            if len(buffer) - at - prefix < length:
                break
            frames.append(bytes(buffer[at + prefix : at + prefix + length]))
            at += prefix + length
        del buffer[:at]
        return frames

    def __len__(self) -> int:
        """Bytes of a frame not yet complete."""
        return len(self._buffer)


class PendingWrites:
    """The connections whose frames wait to be written: `flush` writes them all, and runs by
    itself early in the loop's next turn after the first frame waits."""

    def __init__(self) -> None:
        self._waiting: list[FramedConnection] = []

    def add(self, link: FramedConnection) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self.flush)
        self._waiting.append(link)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for link in waiting:
            link.flush()


class FramedConnection(asyncio.Protocol):
    def __init__(
        self,
        max_frame_bytes: int,
        on_frames: FramesHandler,
        on_closed: ClosedHandler | None = None,
        *,
        capacity: int | None = None,
        backpressure: bool = False,
        tls: Tls | None = None,
        handshake_seconds: float = HANDSHAKE_SECONDS,
        pending_writes: PendingWrites | None = None,
    ) -> None:
        self._pending_writes = pending_writes or PendingWrites()
        self._frames = FrameBuffer(max_frame_bytes)
        self._on_frames = on_frames
        self._on_closed = on_closed
        self._capacity = capacity
        self._backpressure = backpressure
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._error: Exception | None = None
        self._batch: list[bytes] | None = None  # frames put in this turn of the loop
        self._batch_bytes = 0
        self._held: list[bytes] = []  # writes waiting for the kernel's buffer to drain
        self._held_frames = 0
        self._paused = False
        self._ended = False
        self.unsent = 0  # frames put but not written when the connection closed
        self.secured: asyncio.Future[bool] = self._loop.create_future()
        self._tls = tls
        self._handshake_seconds = handshake_seconds
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._tls_object: ssl.SSLObject | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        # Called with what `on_frames` raised (serve_framed fails with it).
        self.on_error: Callable[[Exception], None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self._tls is None:
            self.secured.set_result(True)
            return
        context, server_side, hostname = self._tls
        self._tls_object = context.wrap_bio(
            self._tls_in, self._tls_out, server_side=server_side, server_hostname=hostname
        )
        self._handshake_timer = self._loop.call_later(
            self._handshake_seconds, self._refuse, TimeoutError("TLS handshake took too long")
        )
        self._shake()

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._tls_object is not None:
            data = self._decrypt(data)
            if not data:
                return
        try:
            frames = self._frames.feed(data)
        except FrameError as error:
            self.abort(error)
            return
        if frames:
            try:
                self._on_frames(frames)
            except Exception as error:  # a bug in the handler: its owner must hear of it
                self.abort()
                if self.on_error is None:
                    raise  # the event loop logs it
                self.on_error(error)

    def eof_received(self) -> bool:
        if len(self._frames):
            self._error = FrameError("truncated", f"{len(self._frames)} bytes left")
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ended:
            return
        self._ended = True
        self.transport = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if not self.secured.done():
            self.secured.set_result(False)
        self.unsent = self._held_frames + len(self._batch or ())
        self._held.clear()
        self._held_frames = 0
        self._batch = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_closed is not None:
            self._on_closed(self._error or exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self._backpressure and self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        held, self._held, self._held_frames = self._held, [], 0
        if self.transport is None:
            return
        if held:
            self.transport.write(b"".join(held))  # may fill the kernel's buffer again
        if self._backpressure and not self._paused:
            self.transport.resume_reading()

    # -- writing -------------------------------------------------------------------------------

    @property
    def writes_held(self) -> bool:
        """The kernel's buffer is full: what is put now waits (see `capacity`)."""
        return self._paused

    @property
    def connected(self) -> bool:
        """Up, and secured when it speaks TLS: what is put now is written."""
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and self.secured.done()
            and self.secured.result()
        )

    def put(self, frame: bytes) -> bool:
        """Write `frame` (without its length prefix) soon; False if it was dropped."""
        if not self.connected:
            return False
        batch = self._batch
        waiting = self._held_frames + (0 if batch is None else len(batch))
        if self._capacity is not None and waiting >= self._capacity:
            return False
        if batch is None:
            batch = self._batch = []
            self._pending_writes.add(self)
        data = LENGTH_PREFIX.pack(len(frame)) + frame
        batch.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= BATCH_BYTES:  # let the reader start on what is written so far
            self.flush()
        return True

    def flush(self) -> None:
        """Write the frames put so far now (PendingWrites does it in the loop's next turn)."""
        batch, self._batch, self._batch_bytes = self._batch, None, 0
        if batch:
            self._write(batch[0] if len(batch) == 1 else b"".join(batch), len(batch))

    def _write(self, data: bytes, frames: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._tls_object is not None:
            try:
                self._tls_object.write(data)
            except ssl.SSLError as error:
                self.abort(FrameError("tls", str(error)))
                return
            data = self._tls_out.read()
        if self._paused:
            self._held.append(data)
            self._held_frames += frames
        else:
            transport.write(data)

    # -- TLS -----------------------------------------------------------------------------------

    def _shake(self) -> None:
        """Take the handshake as far as the bytes received allow."""
        assert self._tls_object is not None
        try:
            self._tls_object.do_handshake()
        except ssl.SSLWantReadError:
            self._send_tls_output()
            return
        except (ssl.SSLError, ValueError) as error:
            self._send_tls_output()  # the alert, so the peer knows why
            self._refuse(error)
            return
        self._send_tls_output()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.secured.set_result(True)

    def _decrypt(self, data: bytes) -> bytes:
        """The plaintext `data` carries ('' while the handshake goes on, or when it failed)."""
        assert self._tls_object is not None
        self._tls_in.write(data)
        if not self.secured.done():
            self._shake()
            if not self.secured.done() or not self.secured.result():
                return b""
        chunks = []
        try:
            while chunk := self._tls_object.read(65536):
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # the peer closed the TLS session
            if self.transport is not None:
                self.transport.close()
        except ssl.SSLError as error:
            self.abort(FrameError("tls", str(error)))
            return b""
        self._send_tls_output()
        return b"".join(chunks)

    def _send_tls_output(self) -> None:
        pending = self._tls_out.read()
        if not pending or self.transport is None:
            return
        if self._held:  # behind the records already waiting, in order
            self._held.append(pending)
        else:
            self.transport.write(pending)

    def _refuse(self, error: Exception) -> None:
        if not self.secured.done():
            self.secured.set_result(False)
        self.abort(FrameError("tls-handshake", str(error) or type(error).__name__))

    def abort(self, error: Exception | None = None) -> None:
        """Close at once, dropping what is unwritten; `on_closed` hears `error`."""
        if error is not None and self._error is None:
            self._error = error
        if self.transport is not None:
            self.transport.abort()


async def serve_framed(
    listen: str, accept: Callable[[], FramedConnection], started: Callable[[int], None]
) -> None:
    """Listen on `listen` (host:port), each connection a FramedConnection made by `accept`;
    `started` hears the port bound. Runs until cancelled, then closes the listener and every
    connection it accepted (a stopped node keeps no half-served client or peer). An exception
    from a connection's frame handler is raised here, as one from a task would be: the node
    stops rather than serve on with its state half-changed."""
    host, port = parse_address(listen)
    loop = asyncio.get_running_loop()
    links: set[FramedConnection] = set()
    failed: asyncio.Future[None] = loop.create_future()

    def fail(error: Exception) -> None:
        if not failed.done():
            failed.set_exception(error)

    def connection() -> FramedConnection:
        link = accept()
        links.add(link)
        link.closed.add_done_callback(lambda _: links.discard(link))
        link.on_error = fail
        return link

    server = await loop.create_server(connection, host, port)
    started(server.sockets[0].getsockname()[1])
    try:
        await failed  # serving goes on meanwhile, in the loop's callbacks
    finally:
        server.close()
        for link in list(links):
            link.abort()


Tls = tuple[ssl.SSLContext, bool, str | None]
"""(context, server side?, the server's name to check when dialling)"""
