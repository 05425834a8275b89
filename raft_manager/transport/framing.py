"""Length-prefixed frames on a byte stream (u32 big-endian length, then the frame).

Theory of operation: `FrameReader` buffers what the stream yields and hands out every whole frame
the buffer holds at once (a busy peer's pipelined frames cost one await, not one each); a length
above the cap, or a stream that ends inside a frame, raises FrameError (the connection cannot be
resynchronized and should be closed); a clean end of stream between frames is None.
`FrameWriter` is the other direction: `put` never blocks, and one task writes everything put
since its last write as one buffer (one system call for a burst of responses or requests).
"""

from __future__ import annotations

import anyio
from anyio.abc import ByteStream

from .base import Outbox
from .codec import LENGTH_PREFIX, FrameError


class FrameReader:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self, stream: ByteStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max = max_frame_bytes

    async def next_frames(self) -> list[bytes] | None:
        """Every whole frame buffered (at least one), or None at a clean end of stream."""
        frames: list[bytes] = []
        while not frames:
            frames = self._split()
            if frames:
                break
            try:
                chunk = await self._stream.receive(65536)
            except anyio.EndOfStream:
                if self._buffer:
                    raise FrameError("truncated", f"{len(self._buffer)} bytes left") from None
                return None
            self._buffer.extend(chunk)
        return frames

    def _split(self) -> list[bytes]:
        buffer, prefix, frames, at = self._buffer, LENGTH_PREFIX.size, [], 0
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


class FrameWriter:
    """Queues frames for a stream; `run` (one task) writes each burst with one send."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._outbox = Outbox[bytes]()

    def put(self, frame: bytes) -> None:
        self._outbox.put(LENGTH_PREFIX.pack(len(frame)) + frame)

    async def run(self) -> None:
        """Write until the stream fails (the error propagates) or the task is cancelled."""
        while True:
            await self._stream.send(b"".join(await self._outbox.take_all()))
