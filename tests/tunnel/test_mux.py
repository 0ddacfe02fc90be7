"""The multiplexer over a real loopback TCP connection: streams, flow control, failures.
Time is a fake monotonic clock: the timeouts fire when the test moves it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.frames import HEADER, INITIAL_WINDOW, MAX_PAYLOAD, FrameType, encode
from gatehouse.tunnel.limits import MAX_PAUSED_CONTROL, MAX_PEER_STREAMS
from gatehouse.tunnel.mux import (
    SPLICE_LINGER,
    MuxSession,
    MuxStream,
    read_all,
    splice_stream,
)
from tests.tunnel.loopback import pair, sessions

TIMEOUT = 5.0  # real seconds, for real I/O only


class Mute(asyncio.Protocol):
    """A peer that reads frames and never answers one."""


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def echo(clock: FakeMonotonic) -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    async def handle(stream: MuxStream) -> None:
        if stream.meta.get("refuse"):
            stream.refuse("not today")
            return
        stream.accept()
        while data := await stream.read():
            await stream.write(data)
        stream.write_eof()

    dialer, acceptor, server = await sessions(handle, clock)
    yield dialer, acceptor
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


async def _accept_and_hold(stream: MuxStream) -> None:
    """A handler that takes the stream and then does nothing with it."""
    stream.accept()
    await asyncio.Event().wait()


async def _roundtrip(stream: MuxStream, payload: bytes) -> bytes:
    async def send() -> None:
        for i in range(0, len(payload), 100_000):
            await stream.write(payload[i:i + 100_000])
        stream.write_eof()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(send())
        got = bytearray()
        while data := await stream.read():
            got += data
    return bytes(got)


async def _eventually(check: Callable[[], bool]) -> None:
    """Wait (real time, bounded) for the far side's I/O to show."""
    async with asyncio.timeout(TIMEOUT):
        while not check():
            await asyncio.sleep(0.005)


async def test_streams_carry_bytes_both_ways(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    streams = [await dialer.open({"n": i}) for i in range(5)]
    assert [s.id for s in streams] == [1, 3, 5, 7, 9]
    results = await asyncio.wait_for(
        asyncio.gather(*(_roundtrip(s, f"stream {s.id}".encode() * 1000) for s in streams)),
        TIMEOUT)
    assert results == [f"stream {s.id}".encode() * 1000 for s in streams]


async def test_large_transfer_respects_flow_control(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    payload = os.urandom(3 * INITIAL_WINDOW + 12345)  # several windows' worth
    stream = await dialer.open({})
    got = await asyncio.wait_for(_roundtrip(stream, payload), 20)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


async def test_sender_stops_at_the_window_until_the_reader_reads(clock: FakeMonotonic) -> None:
    far: asyncio.Future[MuxStream] = asyncio.get_running_loop().create_future()
    reading = asyncio.Event()

    async def accept_and_read_when_told(stream: MuxStream) -> None:
        stream.accept()
        far.set_result(stream)
        await reading.wait()
        while await stream.read():
            pass

    dialer, acceptor, server = await sessions(accept_and_read_when_told, clock)
    stream = await dialer.open({})
    write = asyncio.create_task(stream.write(bytes(INITIAL_WINDOW + 1)))
    other = await far
    await _eventually(lambda: other._unacked == INITIAL_WINDOW)  # the whole window arrived
    assert stream._send_window == 0
    assert not write.done()  # blocked on credit, not buffered without bound
    reading.set()
    await asyncio.wait_for(write, TIMEOUT)  # credit came back as the far side read
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


async def test_refused_stream_raises_with_reason(echo: tuple[MuxSession, MuxSession]) -> None:
    dialer, _ = echo
    with pytest.raises(ConnectionProblem, match="not today"):
        await dialer.open({"refuse": True})
    assert dialer.stream_count == 0


async def test_an_accept_may_tell_the_opener_about_the_stream(clock: FakeMonotonic) -> None:
    async def accept(stream: MuxStream) -> None:
        stream.accept({"host_id": f"hid-{stream.meta['n']}"} if stream.meta["n"] else None)

    dialer, acceptor, server = await sessions(accept, clock)
    assert (await dialer.open({"n": 1})).accepted == {"host_id": "hid-1"}
    assert (await dialer.open({"n": 0})).accepted == {}  # as from a peer older than it
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


@pytest.mark.parametrize("payload", [b"not json", b"[1]", b"\xff"])
async def test_an_accept_with_other_than_a_json_object_is_a_protocol_error(
        clock: FakeMonotonic, payload: bytes) -> None:
    acceptor_side: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

    class Garbled(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            acceptor_side.set_result(transport)  # type: ignore[arg-type]

    dialer, _, server = await pair(None, clock, acceptor=Garbled)
    opening = asyncio.create_task(dialer.open({}))
    (await acceptor_side).write(encode(FrameType.ACCEPT, 1, payload))
    with pytest.raises(ConnectionProblem):
        await asyncio.wait_for(opening, TIMEOUT)
    await asyncio.wait_for(dialer.wait_closed(), TIMEOUT)
    server.close()


async def test_ping_measures_round_trip(echo: tuple[MuxSession, MuxSession],
                                        clock: FakeMonotonic) -> None:
    dialer, acceptor = echo
    assert await dialer.ping() == 0  # the fake clock did not move meanwhile
    assert await acceptor.ping() == 0


async def test_an_unanswered_ping_times_out_on_the_clock(clock: FakeMonotonic) -> None:
    dialer, _, server = await pair(None, clock, acceptor=Mute)
    ping = asyncio.create_task(dialer.ping(timeout=10))
    await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
    clock.advance(9.9)
    await asyncio.sleep(0)
    assert not ping.done()
    clock.advance(0.1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ping, TIMEOUT)
    assert dialer._pings == {}
    await dialer.aclose()
    server.close()


async def test_an_unanswered_open_times_out_and_resets_the_stream(clock: FakeMonotonic) -> None:
    dialer, _, server = await pair(None, clock, acceptor=Mute)
    opening = asyncio.create_task(dialer.open({}, timeout=15))
    await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
    clock.advance(15)
    with pytest.raises(ConnectionProblem, match="did not answer"):
        await asyncio.wait_for(opening, TIMEOUT)
    assert dialer.stream_count == 0
    await dialer.aclose()
    server.close()


async def test_an_open_or_read_its_caller_gives_up_on_leaves_no_stream_behind(
        clock: FakeMonotonic) -> None:
    """A caller's own deadline (a cancellation, not the call's timeout) ends the stream
    too: else a peer that answers late could fill it with a window nobody reads."""
    late = asyncio.Event()

    async def slow(stream: MuxStream) -> None:
        await late.wait()
        stream.accept()
        await stream.write(b"x" * MAX_PAYLOAD)  # unasked for, into what was given up
        await asyncio.Event().wait()

    dialer, acceptor, server = await sessions(slow, clock)
    opening = asyncio.create_task(dialer.open({}, timeout=15))
    await asyncio.wait_for(_eventually(lambda: acceptor.stream_count == 1), TIMEOUT)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert dialer.stream_count == 0
    late.set()
    await asyncio.wait_for(_eventually(lambda: acceptor.stream_count == 0), TIMEOUT)

    late.clear()
    replied = asyncio.Event()

    async def answer_late(stream: MuxStream) -> None:
        stream.accept()
        await late.wait()
        with contextlib.suppress(ConnectionProblem):  # the reset came here first
            await stream.write(b"y" * MAX_PAYLOAD)
        replied.set()
        await asyncio.Event().wait()

    acceptor._on_open = answer_late
    stream = await dialer.open({})
    reading = asyncio.create_task(read_all(stream, limit=1 << 20, timeout=30))
    await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert dialer.stream_count == 0
    late.set()
    await asyncio.wait_for(replied.wait(), TIMEOUT)
    await asyncio.sleep(0.05)  # the late data arrives, and is dropped
    assert dialer.stream_count == 0 and not stream._chunks
    await dialer.aclose()
    server.close()


async def test_a_splice_whose_socket_ended_waits_for_the_far_side_a_bounded_time(
        clock: FakeMonotonic) -> None:
    """The user's connection is gone; a far side that never ends its half (a hung leaf or
    node) holds the splice, the stream and the socket only SPLICE_LINGER seconds more."""
    async def never_ends(stream: MuxStream) -> None:
        stream.accept()
        while await stream.read():
            pass
        await asyncio.Event().wait()  # never EOF, never reset

    dialer, _, server = await sessions(never_ends, clock)
    stream = await dialer.open({})
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    splicing = asyncio.create_task(splice_stream(stream, reader, writer))
    theirs.sendall(b"hello")
    theirs.shutdown(socket.SHUT_WR)  # the user's side ends
    await asyncio.wait_for(clock.until_sleeping(), TIMEOUT)
    assert not splicing.done()
    clock.advance(SPLICE_LINGER)
    await asyncio.wait_for(splicing, TIMEOUT)
    assert stream.done and dialer.stream_count == 0
    theirs.close()
    await dialer.aclose()
    server.close()


async def test_an_empty_data_frame_is_a_protocol_error(clock: FakeMonotonic) -> None:
    """Writers never send one (an empty chunk is what a read returns at EOF), and a
    peer that did could queue them without limit: none is taken."""
    dialer, acceptor, server = await sessions(_accept_and_hold, clock)
    stream = await dialer.open({})
    assert dialer._transport is not None
    dialer._transport.write(encode(FrameType.DATA, stream.id, b""))
    reason = await asyncio.wait_for(asyncio.shield(dialer.closed), TIMEOUT)
    assert reason == f"closed by the peer: protocol error: empty DATA frame on stream " \
                     f"{stream.id}", reason
    await acceptor.wait_closed()
    server.close()


async def test_last_seen_is_when_a_frame_last_came_in(echo: tuple[MuxSession, MuxSession],
                                                      clock: FakeMonotonic) -> None:
    dialer, acceptor = echo
    assert acceptor.last_seen == clock.monotonic()
    clock.advance(30)
    await dialer.ping()  # the acceptor hears the PING
    assert acceptor.last_seen == clock.monotonic()


async def test_closing_cancels_and_awaits_the_stream_handlers(clock: FakeMonotonic) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def hold(stream: MuxStream) -> None:
        stream.accept()
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            for _ in range(20):  # a handler that still has work to do when cancelled
                await asyncio.sleep(0)
            finished.append("handler")

    dialer, acceptor, server = await sessions(hold, clock)
    await dialer.open({})
    await asyncio.wait_for(started.wait(), TIMEOUT)
    await dialer.aclose("done")
    await asyncio.wait_for(asyncio.shield(acceptor.closed), TIMEOUT)
    assert finished == []  # cancelled as the connection was lost, still finishing
    await acceptor.wait_closed()
    assert finished == ["handler"]
    server.close()


async def test_losing_the_connection_resets_open_streams(
    echo: tuple[MuxSession, MuxSession],
) -> None:
    dialer, acceptor = echo
    stream = await dialer.open({})
    acceptor.close("going away")
    with pytest.raises(ConnectionProblem):
        await asyncio.wait_for(stream.read(), TIMEOUT)
    await asyncio.wait_for(dialer.wait_closed(), TIMEOUT)
    with pytest.raises(ConnectionProblem):
        await dialer.open({})


async def test_protocol_error_closes_the_connection(clock: FakeMonotonic) -> None:
    dialer, acceptor, server = await sessions(None, clock)
    assert dialer._transport is not None
    dialer._transport.write(HEADER.pack(42, 1, 0))  # unknown frame type
    reason = await asyncio.wait_for(acceptor.closed, TIMEOUT)
    assert "closed" in reason or "lost" in reason
    server.close()


async def test_data_beyond_the_window_is_a_protocol_error(clock: FakeMonotonic) -> None:
    dialer, acceptor, server = await sessions(_accept_and_hold, clock)
    stream = await dialer.open({})
    assert dialer._transport is not None
    chunk = bytes(256 * 1024)
    for _ in range(INITIAL_WINDOW // len(chunk) + 1):  # ignore credit on purpose
        dialer._transport.write(encode(FrameType.DATA, stream.id, chunk))
    await asyncio.wait_for(acceptor.wait_closed(), TIMEOUT)
    server.close()


async def test_acceptor_without_handler_refuses(clock: FakeMonotonic) -> None:
    dialer, _, server = await sessions(None, clock)
    with pytest.raises(ConnectionProblem, match="does not accept"):
        await dialer.open({})
    await dialer.aclose()
    server.close()


# --- what a peer may make this side hold (review finding 3 of the hardening issue) ---------


def _send_buffer(session: MuxSession, size: int) -> None:
    """Set the kernel's send buffer: a small one makes ``session``'s transport pause soon
    after its peer stops reading (the peer's receive buffer, which does not grow while it
    does not read, takes ~128 KiB first)."""
    assert session._transport is not None
    session._transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def test_a_peer_may_not_open_more_streams_than_the_cap(
    clock: FakeMonotonic, caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def hold(stream: MuxStream) -> None:
        stream.accept()
        with contextlib.suppress(ConnectionProblem):  # a reset ends the handler
            await stream.read()
        await release.wait()

    async def until_reset(stream: MuxStream) -> None:
        stream.accept()
        with contextlib.suppress(ConnectionProblem):
            await stream.read()

    dialer, acceptor, server = await sessions(until_reset, clock)
    held = await asyncio.wait_for(
        asyncio.gather(*(dialer.open({}) for _ in range(MAX_PEER_STREAMS))), 20)
    caplog.set_level(logging.WARNING, "gatehouse.tunnel.mux")
    for _ in range(2):
        with pytest.raises(ConnectionProblem, match=f"too many streams .*{MAX_PEER_STREAMS}"):
            await dialer.open({})
    assert acceptor.stream_count == MAX_PEER_STREAMS  # nothing kept for the refused ones
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals  # logged once while the peer stays at the cap
    assert f"open={MAX_PEER_STREAMS} limit={MAX_PEER_STREAMS}" in refusals[0].getMessage()
    held[0].reset("done with it")
    await _eventually(lambda: acceptor.stream_count < MAX_PEER_STREAMS)
    await dialer.open({})  # room again: its handler ended with the reset

    # A handler that goes on after its stream's reset (a slow store of what the peer
    # sent) keeps its slot: a peer cannot reset its way past the cap.
    acceptor._on_open = hold
    for stream in held[1:3]:
        stream.reset("")
    await _eventually(lambda: acceptor.stream_count == MAX_PEER_STREAMS - 2)
    taken = await asyncio.wait_for(asyncio.gather(dialer.open({}), dialer.open({})), 20)
    for stream in taken:
        stream.reset("")  # their handlers (hold) go on: the slots stay taken
    await _eventually(lambda: acceptor.stream_count == MAX_PEER_STREAMS - 2)
    with pytest.raises(ConnectionProblem, match="too many streams"):
        await dialer.open({})
    release.set()  # the handlers end: room again
    await _eventually(lambda: acceptor._peer_streams < MAX_PEER_STREAMS)
    await dialer.open({})
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


async def test_a_stream_is_reset_when_its_handler_returns_without_finishing_it(
    clock: FakeMonotonic,
) -> None:
    async def accept_and_leave(stream: MuxStream) -> None:
        stream.accept()

    dialer, acceptor, server = await sessions(accept_and_leave, clock)
    stream = await dialer.open({})
    with pytest.raises(ConnectionProblem, match="handler finished"):
        await asyncio.wait_for(stream.read(), TIMEOUT)
    assert acceptor.stream_count == 0  # it counts no more against the peer's streams
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


async def test_a_peer_that_pings_and_does_not_read_is_cut_off(
    clock: FakeMonotonic, caplog: pytest.LogCaptureFixture,
) -> None:
    dialer, acceptor, server = await sessions(None, clock)
    assert dialer._transport is not None and acceptor._transport is not None
    _send_buffer(acceptor, 4096)
    dialer._transport.pause_reading()  # it reads none of the PONGs
    pings = encode(FrameType.PING, 0, b"12345678") * 4096  # 68 KiB
    most = 0
    for _ in range(100):  # at most 6.8 MB of PINGs
        if acceptor.closed.done() or most > 3 * MAX_PAUSED_CONTROL:
            break
        dialer._transport.write(pings)
        async with asyncio.timeout(TIMEOUT):  # until the acceptor has read them
            while dialer._transport.get_write_buffer_size() and not acceptor.closed.done():
                await asyncio.sleep(0.001)
        most = max(most, acceptor._transport.get_write_buffer_size())
    assert acceptor.closed.done(), f"the acceptor buffered {most} bytes of PONGs"
    assert most <= MAX_PAUSED_CONTROL + 2 * len(pings)
    assert "does not read" in acceptor.closed.result()
    assert "cut off" in caplog.text
    dialer.abort()
    server.close()


async def test_writers_wait_while_the_transport_is_paused(clock: FakeMonotonic) -> None:
    go, writing = asyncio.Event(), []

    async def send(stream: MuxStream) -> None:
        stream.accept()
        await go.wait()
        writing.append(stream.id)
        await stream.write(bytes(INITIAL_WINDOW // 2))

    dialer, acceptor, server = await sessions(send, clock)
    streams = [await dialer.open({}) for _ in range(16)]
    assert dialer._transport is not None and acceptor._transport is not None
    _send_buffer(acceptor, 4096)
    dialer._transport.pause_reading()  # it reads none of the DATA
    go.set()
    await _eventually(lambda: len(writing) == len(streams))
    for _ in range(20):  # every writer had its turn
        await asyncio.sleep(0)
    # one frame past the high-water mark, not one per writer
    assert acceptor._transport.get_write_buffer_size() <= 2 * MAX_PAYLOAD
    _send_buffer(acceptor, 4 << 20)
    dialer._transport.resume_reading()
    for stream in streams:
        got = 0
        async with asyncio.timeout(TIMEOUT):
            while data := await stream.read():
                got += len(data)
                if got == INITIAL_WINDOW // 2:
                    break
        assert got == INITIAL_WINDOW // 2
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()


async def test_a_write_without_waiting_stops_at_the_paused_transport_and_the_credit(
        clock: FakeMonotonic) -> None:
    """write_nowait sends whole frames while the transport takes more (asks before each
    frame, as write does) and the peer's credit lasts, and says how much went: the rest
    is the caller's to await."""
    sent: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

    async def send(stream: MuxStream) -> None:
        stream.accept()
        acceptor.pause_writing()  # as its transport does past its high-water mark
        paused = stream.write_nowait(bytes(MAX_PAYLOAD))
        acceptor.resume_writing()
        within = stream.write_nowait(bytes(3 * MAX_PAYLOAD))
        beyond = stream.write_nowait(bytes(INITIAL_WINDOW))  # more than the credit left
        sent.set_result([paused, within, beyond])

    dialer, acceptor, server = await sessions(send, clock)
    stream = await dialer.open({})
    assert await asyncio.wait_for(sent, TIMEOUT) == [
        0, 3 * MAX_PAYLOAD, INITIAL_WINDOW - 3 * MAX_PAYLOAD]
    got = 0
    async with asyncio.timeout(TIMEOUT):
        while got < INITIAL_WINDOW:
            got += len(await stream.read())
    assert got == INITIAL_WINDOW
    await dialer.aclose()
    await acceptor.wait_closed()
    server.close()
