"""The multiplexer over a real loopback TCP connection: streams, flow control, failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.frames import HEADER, INITIAL_WINDOW, FrameType, encode
from gatehouse.tunnel.mux import MuxSession, MuxStream

Handler = Callable[[MuxStream], Awaitable[None]]


async def _pair(handler: Handler | None) -> tuple[MuxSession, MuxSession, asyncio.Server]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[MuxSession] = loop.create_future()

    def factory() -> MuxSession:
        session = MuxSession(dialer=False, on_open=handler)
        accepted.set_result(session)
        return session

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, dialer = await loop.create_connection(lambda: MuxSession(dialer=True), "127.0.0.1", port)
    return dialer, await accepted, server


@pytest.fixture
async def echo() -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    async def handle(stream: MuxStream) -> None:
        if stream.meta.get("refuse"):
            stream.refuse("not today")
            return
        stream.accept()
        while data := await stream.read():
            await stream.write(data)
        stream.write_eof()

    dialer, acceptor, server = await _pair(handle)
    yield dialer, acceptor
    dialer.close()
    server.close()


async def _roundtrip(stream: MuxStream, payload: bytes) -> bytes:
    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            await stream.write(payload[i:i + 100_000])
        stream.write_eof()

    sender = asyncio.create_task(send())
    got = bytearray()
    while data := await stream.read():
        got += data
    await sender
    return bytes(got)


async def test_streams_carry_bytes_both_ways(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    streams = [await dialer.open({"n": i}) for i in range(5)]
    assert [s.id for s in streams] == [1, 3, 5, 7, 9]
    results = await asyncio.wait_for(
        asyncio.gather(*(_roundtrip(s, f"stream {s.id}".encode() * 1000) for s in streams)), 10)
    assert results == [f"stream {s.id}".encode() * 1000 for s in streams]


async def test_large_transfer_respects_flow_control(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    payload = os.urandom(3 * INITIAL_WINDOW + 12345)  # several windows' worth
    stream = await dialer.open({})
    got = await asyncio.wait_for(_roundtrip(stream, payload), 20)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


async def test_sender_stops_at_the_window_when_nobody_reads() -> None:
    async def accept_and_never_read(stream: MuxStream) -> None:
        stream.accept()
        await asyncio.sleep(30)

    dialer, _, server = await _pair(accept_and_never_read)
    stream = await dialer.open({})
    write = asyncio.create_task(stream.write(bytes(INITIAL_WINDOW + 1)))
    await asyncio.sleep(0.3)
    assert not write.done()  # blocked on credit, not buffered without bound
    assert stream._send_window == 0
    write.cancel()
    dialer.close()
    server.close()


async def test_refused_stream_raises_with_reason(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    with pytest.raises(ConnectionProblem, match="not today"):
        await dialer.open({"refuse": True})
    assert dialer.stream_count == 0


async def test_ping_measures_round_trip(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, acceptor = echo
    assert 0 <= await dialer.ping() < 5
    assert 0 <= await acceptor.ping() < 5


async def test_losing_the_connection_resets_open_streams(
    echo: tuple[MuxSession, MuxSession],
) -> None:
    dialer, acceptor = echo
    stream = await dialer.open({})
    acceptor.close("going away")
    with pytest.raises(ConnectionProblem):
        await asyncio.wait_for(stream.read(), 5)
    assert "going away" in await asyncio.wait_for(dialer.closed, 5) or dialer.closed.done()
    with pytest.raises(ConnectionProblem):
        await dialer.open({})


async def test_protocol_error_closes_the_connection() -> None:
    dialer, acceptor, server = await _pair(None)
    assert dialer._transport is not None
    dialer._transport.write(HEADER.pack(42, 1, 0))  # unknown frame type
    reason = await asyncio.wait_for(acceptor.closed, 5)
    assert "closed" in reason or "lost" in reason
    server.close()


async def test_data_beyond_the_window_is_a_protocol_error() -> None:
    async def accept(stream: MuxStream) -> None:
        stream.accept()
        await asyncio.sleep(30)

    dialer, acceptor, server = await _pair(accept)
    stream = await dialer.open({})
    assert dialer._transport is not None
    chunk = bytes(256 * 1024)
    for _ in range(INITIAL_WINDOW // len(chunk) + 1):  # ignore credit on purpose
        dialer._transport.write(encode(FrameType.DATA, stream.id, chunk))
    await asyncio.wait_for(acceptor.closed, 5)
    server.close()


async def test_acceptor_without_handler_refuses() -> None:
    dialer, _, server = await _pair(None)
    with pytest.raises(ConnectionProblem, match="does not accept"):
        await dialer.open({})
    dialer.close()
    server.close()
