"""A protocol served over a tunnel stream as its transport: bytes both ways in order,
the peer's credit and a slow reader pausing the protocol, and the ways a connection
ends (EOF from either side, close, abort, a reset). Real multiplexer sessions on
loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.frames import INITIAL_WINDOW
from gatehouse.tunnel.mux import MuxStream
from gatehouse.tunnel.streamtransport import HIGH_WATER, StreamTransport
from tests.tunnel.loopback import sessions

WAIT = 10.0


class Echo(asyncio.Protocol):
    """Writes back what it receives; stops reading while its writes are paused (as a
    careful protocol does; asyncssh does not); at EOF closes (or keeps the connection
    open)."""

    def __init__(self, keep_open_at_eof: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.pauses = 0
        self.eof = False
        self.lost: list[Exception | None] = []
        self._keep_open = keep_open_at_eof

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_writing(self) -> None:
        assert self.transport is not None
        self.pauses += 1
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return self._keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@contextlib.asynccontextmanager
async def _served(protocol: asyncio.Protocol
                  ) -> AsyncIterator[tuple[MuxStream, asyncio.Task[None]]]:
    """A stream opened from the proxy's side, served at the node's by ``protocol``
    (the task that serves it)."""
    served: asyncio.Future[asyncio.Task[None]] = asyncio.get_running_loop().create_future()

    async def handler(stream: MuxStream) -> None:
        stream.accept()
        task = asyncio.current_task()
        assert task is not None
        served.set_result(task)
        await StreamTransport(stream, protocol).run()

    proxy, _node, server = await sessions(handler, FakeMonotonic())
    try:
        stream = await asyncio.wait_for(proxy.open({"kind": "ssh"}), WAIT)
        yield stream, await asyncio.wait_for(served, WAIT)
    finally:
        server.close()


async def _read(stream: MuxStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = await asyncio.wait_for(stream.read(), WAIT)
        assert chunk, f"EOF after {len(got)} of {size} bytes"
        got += chunk
    return bytes(got)


async def test_bytes_go_both_ways_in_order_and_a_slow_reader_pauses_the_protocol() -> None:
    echo = Echo()
    async with _served(echo) as (stream, task):
        data = os.urandom(3 * INITIAL_WINDOW)
        sending = asyncio.create_task(stream.write(data))
        async with asyncio.timeout(WAIT):  # not read yet: the echo's writes wait
            while not echo.pauses:
                await asyncio.sleep(0.01)
        assert echo.transport is not None
        assert echo.transport.get_write_buffer_size() > HIGH_WATER
        assert await _read(stream, len(data)) == data
        await asyncio.wait_for(sending, WAIT)
        stream.write_eof()
        assert await asyncio.wait_for(stream.read(), WAIT) == b""  # the echo closed
        await asyncio.wait_for(task, WAIT)
        assert echo.eof and echo.lost == [None]


async def test_a_protocol_that_keeps_open_at_eof_still_writes_then_closes() -> None:
    echo = Echo(keep_open_at_eof=True)
    async with _served(echo) as (stream, task):
        await stream.write(b"before eof")
        stream.write_eof()
        assert await _read(stream, 10) == b"before eof"
        await asyncio.sleep(0.1)
        assert echo.eof and not task.done()
        assert echo.transport is not None
        echo.transport.write(b"after")
        echo.transport.close()
        assert await _read(stream, 5) == b"after"
        assert await asyncio.wait_for(stream.read(), WAIT) == b""
        await asyncio.wait_for(task, WAIT)
        assert echo.lost == [None]


async def test_a_protocol_that_closes_sends_what_it_wrote_and_eof_then_drops_the_rest(
        ) -> None:
    echo = Echo()
    async with _served(echo) as (stream, task):
        assert echo.transport is not None
        echo.transport.write(b"last words")
        echo.transport.close()
        echo.transport.write(b"ignored after close")
        assert await _read(stream, 10) == b"last words"
        assert await asyncio.wait_for(stream.read(), WAIT) == b""
        await stream.write(b"nobody reads this")  # dropped, not echoed
        assert not task.done()
        stream.write_eof()
        await asyncio.wait_for(task, WAIT)
        assert echo.lost == [None]


async def test_an_abort_still_sends_what_was_written_beyond_the_credit_then_eof() -> None:
    """asyncssh aborts right after its last messages; they must arrive, even those
    that wait for the peer's credit (a write larger than the whole window)."""
    echo = Echo()
    async with _served(echo) as (stream, task):
        assert echo.transport is not None
        data = os.urandom(INITIAL_WINDOW + INITIAL_WINDOW // 2)
        echo.transport.write(data)
        assert 0 < echo.transport.get_write_buffer_size() < len(data)  # part went now
        echo.transport.abort()
        assert await _read(stream, len(data)) == data
        assert await asyncio.wait_for(stream.read(), WAIT) == b""
        stream.write_eof()
        await asyncio.wait_for(task, WAIT)
        assert echo.lost == [None]


async def test_a_reset_from_the_peer_is_a_lost_connection() -> None:
    echo = Echo()
    async with _served(echo) as (stream, task):
        stream.reset("the user went away")
        await asyncio.wait_for(task, WAIT)
        assert len(echo.lost) == 1 and isinstance(echo.lost[0], ConnectionProblem)
        assert "the user went away" in str(echo.lost[0])
