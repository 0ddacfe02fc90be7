"""Fuzzing the tunnel multiplexer's state machine (tunnel/mux.py) with hypothesis' stateful
testing: a peer sends any sequence of frames (well-formed or not, for streams that exist
or not) while this side opens, reads, writes, ends and resets streams.

The session runs on an event loop of its own over an in-memory transport: what the peer
sends is fed to ``data_received`` (the session's receive path) and what the session
writes is decoded and checked. After every step:

- nothing but ProtocolError (caught inside the session) comes out of the receive path;
- the session sends only well-formed frames, and no more DATA than the peer's credit;
- while the connection stands, the peer never has more than a window of DATA unread;

and once the connection is lost, every waiter (open, read, write, ping) wakes with
ConnectionProblem (or TimeoutError, for a ping its clock gave up on) within its timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.frames import (
    HEADER,
    INITIAL_WINDOW,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameType,
    encode,
    window_payload,
)
from gatehouse.tunnel.mux import MuxSession, MuxStream
from tests.fuzz.budget import fuzz

SETTLE = 8  # loop turns after each step: enough for a task to take a frame and answer


class MemoryTransport(asyncio.Transport):
    """What the session writes, kept; closing is recorded for the machine to act on."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "the session wrote after closing its transport"
        self.out += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False


_metas = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3)
_open_payloads = _metas.map(lambda m: json.dumps(m).encode()) | st.sampled_from(
    [b"", b"[]", b"null", b"{", b"\xff", b'{"refuse": true}', b'"x"'])


class MuxMachine(RuleBasedStateMachine):
    """The session under test accepts streams (it is the tunnel's server side); the
    machine plays its dialing peer."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeMonotonic()
        self.wire = MemoryTransport()
        self.accepted: list[MuxStream] = []
        self.release = asyncio.Event()
        self.session = self.loop.run_until_complete(self._start())
        self.lost = False
        self.framed = True  # the peer's bytes so far were whole frames
        self.seen = FrameDecoder()
        self.sent: list[Frame] = []  # what the session sent
        self.peer_next = 1
        self.ids: list[int] = []  # every stream id either side used
        self.local: list[MuxStream] = []
        self.ended: set[int] = set()  # id() of the streams this side ended (no more writes)
        self.tasks: list[asyncio.Task[Any]] = []
        self.credit: dict[int, int] = {}  # DATA the session may still send, per stream
        self.unread: dict[int, int] = {}  # DATA the peer sent less credit given back

    async def _start(self) -> MuxSession:
        async def on_open(stream: MuxStream) -> None:
            if stream.meta.get("refuse"):
                stream.refuse("not this one")
                return
            stream.accept()
            self.accepted.append(stream)
            # A handler that returns ends its stream (mux.py resets it): hold it, as a
            # real one does while it serves, until the machine lets go.
            await self.release.wait()

        session = MuxSession(dialer=False, clock=self.clock, on_open=on_open)
        session.connection_made(self.wire)
        return session

    # --- running the loop, reading what the session sent --------------------------------

    def settle(self) -> None:
        async def turns() -> None:
            for _ in range(SETTLE):
                await asyncio.sleep(0)

        self.loop.run_until_complete(turns())
        for frame in self.seen.feed(bytes(self.wire.out)):
            self.sent.append(frame)
            if frame.type == FrameType.OPEN:
                assert frame.stream % 2 == 0 and frame.stream not in self.ids
                self.ids.append(frame.stream)
            elif frame.type == FrameType.DATA:
                self.credit[frame.stream] = self.credit.get(frame.stream, INITIAL_WINDOW) - len(
                    frame.payload)
                assert self.credit[frame.stream] >= 0, "the session sent beyond its credit"
            elif frame.type == FrameType.WINDOW:
                (increment,) = HEADER.unpack(bytes(5) + frame.payload)[2:]
                self.unread[frame.stream] = self.unread.get(frame.stream, 0) - increment
        self.wire.out.clear()
        if self.wire.closing and not self.lost:
            self.lost = True  # as asyncio calls it once the transport has closed
            self.session.connection_lost(None)
            self.settle()

    def send(self, data: bytes) -> None:
        async def receive() -> None:
            self.session.data_received(data)

        self.loop.run_until_complete(receive())
        self.settle()

    def stream_id(self, pick: int) -> int:
        return self.ids[pick % len(self.ids)] if self.ids and pick >= 0 else abs(pick)

    def spawn(self, coro: Any) -> None:
        self.tasks.append(self.loop.create_task(coro))
        self.settle()

    # --- the peer -------------------------------------------------------------------------

    @precondition(lambda self: not self.lost)
    @rule(payload=_open_payloads, reuse=st.booleans())
    def peer_opens(self, payload: bytes, reuse: bool) -> None:
        stream = self.stream_id(0) if reuse and self.ids else self.peer_next
        if stream == self.peer_next:
            self.peer_next += 2
            self.ids.append(stream)
        if stream not in self.live():  # a fresh stream, though its id may be reused
            self.unread[stream] = 0
            self.credit[stream] = INITIAL_WINDOW
        self.send(encode(FrameType.OPEN, stream, payload))

    @precondition(lambda self: not self.lost)
    @rule(pick=st.integers(-7, 100), size=st.sampled_from([1, 1000, MAX_PAYLOAD]),
          burst=st.integers(1, 20))
    def peer_sends_data(self, pick: int, size: int, burst: int) -> None:
        stream = self.stream_id(pick)
        live = stream in self.live()
        for _ in range(burst):
            if self.lost:
                return
            if live:  # the session ignores DATA for streams it does not hold
                self.unread[stream] = self.unread.get(stream, 0) + size
            self.send(encode(FrameType.DATA, stream, bytes(size)))

    @precondition(lambda self: not self.lost)
    @rule(pick=st.integers(-7, 100),
          ftype=st.sampled_from([FrameType.ACCEPT, FrameType.REFUSE, FrameType.EOF,
                                 FrameType.RESET, FrameType.WINDOW]),
          increment=st.sampled_from([0, 1, INITIAL_WINDOW, 2**32 - 1]))
    def peer_sends_stream_frame(self, pick: int, ftype: FrameType, increment: int) -> None:
        stream = self.stream_id(pick)
        payload = window_payload(increment) if ftype == FrameType.WINDOW else b"why"
        if ftype == FrameType.WINDOW:
            self.credit[stream] = self.credit.get(stream, INITIAL_WINDOW) + increment
        self.send(encode(ftype, stream, payload))

    @precondition(lambda self: not self.lost)
    @rule(ftype=st.sampled_from([FrameType.PING, FrameType.PONG, FrameType.GOAWAY]),
          payload=st.binary(max_size=12))
    def peer_sends_connection_frame(self, ftype: FrameType, payload: bytes) -> None:
        self.send(encode(ftype, 0, payload))

    @precondition(lambda self: not self.lost)
    @rule(data=st.binary(max_size=30))
    def peer_sends_garbage(self, data: bytes) -> None:
        self.send(data)
        # Past garbage, what the peer sends next is framed from an unknown offset: the
        # model no longer knows which stream gets which bytes.
        self.framed = self.framed and not data

    # --- this side ------------------------------------------------------------------------

    @rule(meta=_metas)
    def local_opens(self, meta: dict[str, Any]) -> None:
        async def open_() -> None:
            self.local.append(await self.session.open(meta, timeout=5))

        self.spawn(open_())

    def streams(self) -> list[MuxStream]:
        return self.accepted + self.local

    def live(self) -> set[int]:
        return {s.id for s in self.streams() if not s.done}

    def writable(self) -> list[MuxStream]:
        # Writing after write_eof is refused (a test below), not fuzzed.
        return [s for s in self.streams() if id(s) not in self.ended]

    @precondition(lambda self: self.writable())
    @rule(pick=st.integers(0), size=st.sampled_from([1, 1000, MAX_PAYLOAD + 1,
                                                     INITIAL_WINDOW + 1]))
    def local_writes(self, pick: int, size: int) -> None:
        streams = self.writable()
        self.spawn(streams[pick % len(streams)].write(bytes(size)))

    @precondition(lambda self: self.streams())
    @rule(pick=st.integers(0), count=st.integers(1, 40))
    def local_reads(self, pick: int, count: int) -> None:
        streams = self.streams()
        stream = streams[pick % len(streams)]

        async def read() -> None:
            for _ in range(count):
                if not await stream.read():
                    return

        self.spawn(read())

    @precondition(lambda self: self.streams())
    @rule(pick=st.integers(0), reset=st.booleans())
    def local_ends(self, pick: int, reset: bool) -> None:
        streams = self.streams()
        stream = streams[pick % len(streams)]
        self.ended.add(id(stream))
        if reset:
            stream.reset("done")
        else:
            stream.write_eof()
        self.settle()

    @rule()
    def local_pings(self) -> None:
        self.spawn(self.session.ping(timeout=5))

    @rule(seconds=st.sampled_from([1.0, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.settle()

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def flow_control_holds(self) -> None:
        if not self.lost and self.framed:
            assert all(n <= INITIAL_WINDOW for n in self.unread.values())

    @invariant()
    def waiters_fail_only_as_documented(self) -> None:
        # ConnectionProblem: refused, reset or lost; TimeoutError: a ping not answered.
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                assert isinstance(task.exception(), ConnectionProblem | TimeoutError), \
                    task.exception()

    def teardown(self) -> None:
        try:
            if not self.lost:
                self.release.set()
                self.session.abort()
                self.settle()
            assert self.lost
            self.clock.advance(10)  # past every timeout this machine gives
            self.settle()
            pending = [t for t in self.tasks if not t.done()]
            assert not pending, f"still waiting after the connection was lost: {pending}"
            self.waiters_fail_only_as_documented()

            async def closed() -> None:
                await asyncio.wait_for(self.session.wait_closed(), 5)

            self.loop.run_until_complete(closed())
        finally:
            for task in self.tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()


MuxMachine.TestCase.settings = fuzz(100, steps=40)
test_mux_state_machine = MuxMachine.TestCase


def test_an_open_with_deeply_nested_meta_is_refused() -> None:
    machine = MuxMachine()
    try:
        machine.send(encode(FrameType.OPEN, 1, b"[" * 100_000))
        assert machine.sent == [Frame(FrameType.REFUSE, 1, b"malformed OPEN")]
        assert not machine.lost
    finally:
        machine.teardown()


def test_a_ping_after_the_connection_is_lost_fails_at_once() -> None:
    machine = MuxMachine()
    try:
        machine.send(b"\0" * HEADER.size)  # a frame of type 0: protocol error, connection lost
        assert machine.lost
        machine.local_pings()
        (ping,) = machine.tasks
        assert ping.done() and isinstance(ping.exception(), ConnectionProblem)
    finally:
        machine.teardown()


def test_a_write_after_write_eof_is_refused() -> None:
    machine = MuxMachine()
    try:
        machine.peer_opens(b"{}", reuse=False)
        (stream,) = machine.accepted
        stream.write_eof()
        machine.spawn(stream.write(bytes(INITIAL_WINDOW + 1)))
        machine.send(encode(FrameType.EOF, 1))
        assert [f.type for f in machine.sent] == [FrameType.ACCEPT, FrameType.EOF]
    finally:
        machine.teardown()
