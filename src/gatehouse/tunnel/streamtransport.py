"""An asyncio transport over one tunnel stream, for a protocol served at the stream's
end (a tunnel-mode node's SSH server) without a socket pair in between.

Through a socket pair every chunk crossed the kernel twice more, and a task copied it
from the pair's reader into the stream: in a tunnel node streaming a gigabyte, that
relay was about a quarter of the node's event loop. Here the protocol's writes go
into the stream's frames at once while the peer's credit and the tunnel's transport
allow, and wait in order otherwise. The protocol is told pause_writing while more
than HIGH_WATER bytes wait, as a socket transport tells it; asyncssh (2.24) does
nothing on it, and what waits is bounded by its channels' windows, as the socket
pair's buffer was. The stream's chunks go to ``data_received`` while the protocol
reads; a protocol that pauses reading leaves them in the stream, whose unread bytes
keep back the peer's credit.

Ending: ``close`` and ``abort`` alike send what was written, then EOF. asyncssh ends
every connection with ``abort`` right after its last messages (the channel's exit
status and close, the disconnect), and a socket pair delivered those from the
kernel's buffer after the abort too.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.mux import MuxStream

__all__ = ["HIGH_WATER", "StreamTransport"]

HIGH_WATER = 1 << 20  # bytes written and not yet sent before the protocol is paused
LOW_WATER = HIGH_WATER // 4


class StreamTransport(asyncio.Transport):
    """``protocol`` served over ``stream``; :meth:`run` until both directions end."""

    def __init__(self, stream: MuxStream, protocol: asyncio.Protocol,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._stream = stream
        self._protocol = protocol
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()  # the sender: something to send, or to end
        self._reading = asyncio.Event()
        self._reading.set()
        self._paused = False  # the protocol was told pause_writing
        self._eof = False  # write_eof asked for
        self._closing = False

    async def run(self) -> None:
        """Serve the protocol until the stream ends both ways (or breaks), then tell it
        the connection is lost."""
        self._protocol.connection_made(self)
        lost: Exception | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._receive())
                tg.create_task(self._send())
        except* ConnectionProblem as group:
            lost = group.exceptions[0]
            self._stream.reset(str(lost))
        finally:
            self._closing = True
            self._protocol.connection_lost(lost)

    # --- asyncio.Transport --------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._eof or not data:
            return
        if not self._pending:
            sent = self._stream.write_nowait(data)
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        self._wake.set()
        if not self._paused and self._pending_bytes > HIGH_WATER:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        self._eof = True
        self._wake.set()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._reading.set()

    def abort(self) -> None:
        self.close()  # what was written still goes (see the module's docstring)

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return LOW_WATER, HIGH_WATER

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # fixed: HIGH_WATER and LOW_WATER

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    # --- the two directions -------------------------------------------------------------

    async def _receive(self) -> None:
        """Until the peer's EOF. Once closed here, what still comes is dropped: the
        stream ends when both sides have ended it, and a handler that returned first
        would reset it (the peer might then miss what was sent before the EOF)."""
        while True:
            if not self._closing:
                await self._reading.wait()
            data = await self._stream.read()
            if not data:
                if not self._closing and not self._protocol.eof_received():
                    self.close()
                return
            if not self._closing:
                self._protocol.data_received(data)

    async def _send(self) -> None:
        while True:
            while self._pending:
                data = self._pending[0]
                await self._stream.write(data)
                self._pending.popleft()
                self._pending_bytes -= len(data)
                if self._paused and self._pending_bytes <= LOW_WATER:
                    self._paused = False
                    self._protocol.resume_writing()
            if self._eof or self._closing:
                # After EOF this side sends nothing more; unless closed, the other
                # direction goes on.
                if not self._stream.done:
                    self._stream.write_eof()
                return
            self._wake.clear()
            await self._wake.wait()
