"""Length-prefixed frames on a byte stream (u32 big-endian length, then the frame).

Theory of operation: `FrameReader` buffers what the stream yields and hands out whole frames; a
length above the cap, or a stream that ends inside a frame, raises FrameError (the connection
cannot be resynchronized and should be closed); a clean end of stream between frames is None.
"""

from __future__ import annotations

import anyio
from anyio.abc import ByteStream

from .codec import LENGTH_PREFIX, FrameError


def with_length(frame: bytes) -> bytes:
    return LENGTH_PREFIX.pack(len(frame)) + frame


class FrameReader:
    """Splits a byte stream into length-prefixed frames."""

    def __init__(self, stream: ByteStream, max_frame_bytes: int) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max = max_frame_bytes

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            try:
                chunk = await self._stream.receive(max(65536, size - len(self._buffer)))
            except anyio.EndOfStream:
                if self._buffer:
                    raise FrameError("truncated", f"{len(self._buffer)} bytes left") from None
                return False
            self._buffer.extend(chunk)
        return True

    async def next_frame(self) -> bytes | None:
        """The next frame, or None at a clean end of stream."""
        if not await self._fill(LENGTH_PREFIX.size):
            return None
        (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
        if length > self._max:
            raise FrameError("oversized", f"{length} bytes announced, cap {self._max}")
        if not await self._fill(LENGTH_PREFIX.size + length):
            raise FrameError("truncated")
        frame = bytes(self._buffer[LENGTH_PREFIX.size : LENGTH_PREFIX.size + length])
        del self._buffer[: LENGTH_PREFIX.size + length]
        return frame
