"""The multiplexer's async layer: streams with flow control over one connection.

A MuxSession is an asyncio Protocol on the tunnel's TLS transport. Either side
opens streams (``open``); the other side's ``on_open`` callback receives each
new stream and must ``accept()`` or ``refuse()`` it, in a task the session owns:
losing the connection cancels the handlers, and ``wait_closed`` awaits them. Streams
read and write like asyncio streams, within the peer's credit (see frames.py). Time
(``last_seen``, the open and ping timeouts, message deadlines) is read from an injected
clock. What the peer can make this side hold is bounded (see limits.py): the streams it
opens at once, the control frames this side writes while the peer does not read, and
each message read whole; DATA writers wait while the transport is paused.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from typing import Any, cast

from gatehouse._sys.tasks import TaskOwner
from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import BadParameter, ConnectionProblem
from gatehouse.tunnel.frames import (
    HEADER,
    INITIAL_WINDOW,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    encode,
    window_payload,
)
from gatehouse.tunnel.limits import MAX_PAUSED_CONTROL, MAX_PEER_STREAMS, MESSAGE_DEADLINE

__all__ = ["CLOSE_GRACE", "SPLICE_LINGER", "MuxSession", "MuxStream", "OnOpen", "read_all",
           "splice_stream", "splice_streams"]

log = logging.getLogger(__name__)

OnOpen = Callable[["MuxStream"], Awaitable[None]]

CLOSE_GRACE = 2.0  # seconds ``aclose`` waits for the TLS goodbye before it aborts
# Seconds a splice whose socket side ended waits for the stream's side to end too (the
# rest of what the far side sends) before it resets the stream.
SPLICE_LINGER = 30.0


class MuxStream:
    def __init__(self, session: MuxSession, stream_id: int, meta: dict[str, Any]) -> None:
        self.id = stream_id
        self.meta = meta
        self._session = session
        self._chunks: collections.deque[bytes] = collections.deque()
        self._readable = asyncio.Event()
        self._eof_received = False
        self._eof_sent = False
        self._error: str | None = None
        self._consumed = 0  # bytes read since the last WINDOW frame we sent
        self._unacked = 0  # bytes received that we have not yet given credit back for
        self._send_window = INITIAL_WINDOW
        self._window_open = asyncio.Event()
        self._window_open.set()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.accepted: dict[str, Any] = {}  # what the far side said when it accepted

    # --- called by the session ------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._unacked += len(data)
        if self._unacked > INITIAL_WINDOW:
            raise ProtocolError(f"stream {self.id}: peer sent beyond its window")
        self._chunks.append(data)
        self._readable.set()

    def _on_eof(self) -> None:
        self._eof_received = True
        self._readable.set()

    def _on_window(self, increment: int) -> None:
        self._send_window += increment
        self._window_open.set()

    def _on_reset(self, reason: str) -> None:
        self._error = reason or "stream reset by peer"
        self._readable.set()
        self._window_open.set()
        if not self.opened.done():
            self.opened.set_exception(ConnectionProblem(self._error))

    @property
    def done(self) -> bool:
        return self._error is not None or (self._eof_received and self._eof_sent)

    # --- the stream API -------------------------------------------------------------------

    def accept(self, meta: dict[str, Any] | None = None) -> None:
        """Take the stream; ``meta`` (JSON) tells the opener about it."""
        self._session._send(FrameType.ACCEPT, self.id,
                            json.dumps(meta).encode() if meta else b"")

    def refuse(self, reason: str) -> None:
        self._session._send(FrameType.REFUSE, self.id, reason.encode()[:4096])
        self._session._forget(self)

    async def read(self) -> bytes:
        """The next chunk; b"" at EOF. Raises ConnectionProblem if the stream was reset."""
        while not self._chunks:
            if self._error is not None:
                raise ConnectionProblem(self._error)
            if self._eof_received:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._chunks.popleft()
        self._consumed += len(data)
        if self._consumed >= INITIAL_WINDOW // 2 and self._error is None:
            self._session._send(FrameType.WINDOW, self.id, window_payload(self._consumed))
            self._unacked -= self._consumed
            self._consumed = 0
        return data

    async def write(self, data: bytes) -> None:
        if self._eof_sent and self._error is None:
            raise ConnectionProblem(f"stream {self.id}: write after this side's EOF")
        view = memoryview(data)
        while view:
            await self._session._drain()  # before each frame, not after: see _drain
            if self._error is not None:
                raise ConnectionProblem(self._error)
            if self._eof_sent:  # ended (write_eof) while this write waited for credit
                raise ConnectionProblem(f"stream {self.id}: ended while a write waited")
            if self._send_window <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            n = min(len(view), self._send_window, MAX_PAYLOAD)
            self._send_window -= n
            self._session._send_data(self.id, bytes(view[:n]))
            view = view[n:]

    def write_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send what of ``data`` can go now, in frames, each within the peer's credit
        and while the connection takes more (as :meth:`write` does, without waiting);
        how many bytes went. The caller awaits :meth:`write` for the rest."""
        view = memoryview(data)
        sent = 0
        while (sent < len(view) and self._error is None and not self._eof_sent
               and self._send_window > 0 and self._session._can_write.is_set()):
            n = min(len(view) - sent, self._send_window, MAX_PAYLOAD)
            self._send_window -= n
            self._session._send_data(self.id, view[sent:sent + n])
            sent += n
        return sent

    def write_eof(self) -> None:
        if not self._eof_sent and self._error is None:
            self._eof_sent = True
            self._window_open.set()  # a write waiting for credit ends (see write)
            self._session._send(FrameType.EOF, self.id)
            if self.done:
                self._session._forget(self)

    def reset(self, reason: str = "") -> None:
        if self._error is None:
            self._session._send(FrameType.RESET, self.id, reason.encode()[:4096])
            self._on_reset(reason or "stream reset")
            self._session._forget(self)


class MuxSession(asyncio.Protocol):
    def __init__(self, *, dialer: bool, clock: Monotonic, on_open: OnOpen | None = None,
                 max_peer_streams: int = MAX_PEER_STREAMS) -> None:
        self._clock = clock
        self._next_id = 1 if dialer else 2
        self._on_open = on_open
        self._decoder = FrameDecoder()
        self._streams: dict[int, MuxStream] = {}
        self._max_peer_streams = max_peer_streams
        self._peer_streams = 0  # streams the peer opened whose handler has not returned
        self._refusing = False  # at the cap, and said so in the log
        self._paused_control = 0  # bytes of control frames written since pause_writing
        self._transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._pings: dict[bytes, asyncio.Future[float]] = {}
        self._handlers = TaskOwner("a tunnel's stream handlers")
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_seen = clock.monotonic()
        self._goodbye = ""  # the reason the peer gave when it closed (GOAWAY)

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's TLS transport is not a subclass
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_seen = self._clock.monotonic()
        try:
            for frame in self._decoder.feed(data):
                self._dispatch(frame)
        except ProtocolError as exc:
            log.warning("tunnel protocol error: %s", exc)
            self.close(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._goodbye:
            reason = f"closed by the peer: {self._goodbye}"
        else:
            reason = f"tunnel connection lost: {exc}" if exc else "tunnel connection closed"
        for stream in list(self._streams.values()):
            stream._on_reset(reason)
        self._streams.clear()  # (their handlers, cancelled below, give back their slots)
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionProblem(reason))
        self._handlers.cancel()  # awaited by wait_closed
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(reason)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._paused_control = 0
        self._can_write.set()

    # --- internals ------------------------------------------------------------------------

    def _who(self) -> str:
        """The peer, for logs: its address here, its name where a subclass knows it."""
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def _send(self, ftype: FrameType, stream: int, payload: bytes = b"") -> None:
        """A control frame: all but DATA. Those written while the peer does not read
        are counted, and a peer that provokes more than MAX_PAUSED_CONTROL bytes of them
        (answers to its PINGs, OPENs, RESETs) is cut off, before our buffer grows."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._can_write.is_set():
            self._paused_control += HEADER.size + len(payload)
            if self._paused_control > MAX_PAUSED_CONTROL:
                reason = (f"the peer does not read: over {MAX_PAUSED_CONTROL} bytes of "
                          "control frames wait for it")
                log.warning("tunnel cut off peer=%s reason=%r", self._who(), reason)
                self.abort(reason)
                return
        transport.write(encode(ftype, stream, payload))

    def _send_data(self, stream: int, data: bytes | memoryview) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode(FrameType.DATA, stream, data))

    async def _drain(self) -> None:
        """Wait while the transport is paused. Writers call this before each frame and
        check again when woken, so that however many streams write at once, at most
        one frame goes out past the transport's high-water mark."""
        while not self._can_write.is_set():
            await self._can_write.wait()
        if self.closed.done():
            raise ConnectionProblem(self.closed.result())

    def _forget(self, stream: MuxStream) -> None:
        self._streams.pop(stream.id, None)

    def _peer_stream_done(self) -> None:
        """A stream the peer opened no longer holds a slot: its handler has returned
        (not merely its stream ended: a peer that resets a stream whose handler still
        works on what it sent must not get a new slot for it)."""
        self._peer_streams -= 1
        self._refusing = False

    def _dispatch(self, frame: Frame) -> None:
        t = frame.type
        if t == FrameType.PING:
            self._send(FrameType.PONG, 0, frame.payload)
            return
        if t == FrameType.PONG:
            fut = self._pings.pop(frame.payload, None)
            if fut is not None and not fut.done():
                fut.set_result(self._clock.monotonic())
            return
        if t == FrameType.GOAWAY:
            said = frame.payload.decode(errors="replace")[:300]
            # Shown in logs and status: the peer's words, not its control characters.
            self._goodbye = "".join(c if c.isprintable() else "?" for c in said) or "no reason"
            self.close(said or "peer said goodbye")
            return
        if t == FrameType.OPEN:
            self._incoming(frame)
            return
        stream = self._streams.get(frame.stream)
        if stream is None:
            return  # a late frame for a stream we already finished with
        if t == FrameType.DATA:
            stream._on_data(frame.payload)
        elif t == FrameType.WINDOW:
            stream._on_window(struct.unpack(">I", frame.payload)[0])
        elif t == FrameType.EOF:
            stream._on_eof()
            if stream.done:
                self._forget(stream)
        elif t == FrameType.ACCEPT:
            if not stream.opened.done():
                stream.accepted = _accept_meta(frame)
                stream.opened.set_result(None)
        elif t in (FrameType.REFUSE, FrameType.RESET):
            stream._on_reset(frame.payload.decode(errors="replace"))
            self._forget(stream)

    def _incoming(self, frame: Frame) -> None:
        if frame.stream % 2 == self._next_id % 2 or frame.stream in self._streams:
            raise ProtocolError(f"peer opened stream {frame.stream} with a bad id")
        try:
            meta = json.loads(frame.payload)
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError):  # deep nesting: RecursionError, not ValueError
            self._send(FrameType.REFUSE, frame.stream, b"malformed OPEN")
            return
        if self._peer_streams >= self._max_peer_streams:
            reason = f"too many streams open at once (the limit is {self._max_peer_streams})"
            if not self._refusing:  # once until one closes: a flood of OPENs is one line
                self._refusing = True
                log.warning("tunnel stream refused peer=%s open=%d limit=%d reason=%r",
                            self._who(), self._peer_streams, self._max_peer_streams, reason)
            self._send(FrameType.REFUSE, frame.stream, reason.encode())
            return
        stream = MuxStream(self, frame.stream, meta)
        stream.opened.set_result(None)
        self._streams[frame.stream] = stream
        if self._on_open is None:
            stream.refuse("this side does not accept streams")
            return
        self._peer_streams += 1
        self._handlers.spawn(self._run_handler(stream))

    async def _run_handler(self, stream: MuxStream) -> None:
        assert self._on_open is not None
        try:
            await self._on_open(stream)
        except Exception as exc:
            log.exception("tunnel stream handler failed")
            stream.reset(f"handler failed: {exc}")
        else:
            if self._streams.get(stream.id) is stream:  # nothing reads or writes it now
                stream.reset("the stream's handler finished")
        finally:
            self._peer_stream_done()

    # --- the session API ------------------------------------------------------------------

    async def open(self, meta: dict[str, Any], timeout: float = 15.0) -> MuxStream:
        """Open a stream; raises ConnectionProblem if refused or the tunnel is gone."""
        if self.closed.done():
            raise ConnectionProblem(self.closed.result())
        stream = MuxStream(self, self._next_id, meta)
        self._next_id += 2
        self._streams[stream.id] = stream
        self._send(FrameType.OPEN, stream.id, json.dumps(meta).encode())
        try:
            await wait_for(self._clock, asyncio.shield(stream.opened), timeout)
        except BaseException as exc:
            # Timed out, or the caller gave up (cancelled): either way the stream goes,
            # so that a late ACCEPT finds nothing to fill.
            stream.reset("open timed out" if isinstance(exc, TimeoutError) else
                         "the opener gave up")
            if stream.opened.done() and not stream.opened.cancelled():
                stream.opened.exception()  # retrieved: the caller gets the error below
            if isinstance(exc, TimeoutError):
                raise ConnectionProblem("the far side of the tunnel did not answer") from None
            raise
        return stream

    async def ping(self, timeout: float = 10.0) -> float:
        """Round-trip time in seconds; ConnectionProblem at once if the tunnel is gone."""
        if self.closed.done():
            raise ConnectionProblem(self.closed.result())
        token = os.urandom(8)
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[token] = fut
        start = self._clock.monotonic()
        self._send(FrameType.PING, 0, token)
        try:
            return await wait_for(self._clock, fut, timeout) - start
        finally:
            self._pings.pop(token, None)

    def close(self, reason: str = "closing") -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._send(FrameType.GOAWAY, 0, reason.encode()[:4096])
            self._transport.close()

    def abort(self, reason: str = "") -> None:
        """Close at once, without the TLS goodbye a peer that stopped answering (or
        reading) won't send; ``reason`` becomes the session's ``closed`` result."""
        if reason and not self.closed.done():
            self.closed.set_result(reason)
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is gone and every stream handler has finished."""
        await asyncio.shield(self.closed)
        await self._handlers.close()

    async def aclose(self, reason: str = "closing", grace: float = CLOSE_GRACE) -> None:
        """Close, wait up to ``grace`` for the TLS goodbye (then abort), and await the
        stream handlers: nothing of this session runs after this returns."""
        self.close(reason)
        try:
            await wait_for(self._clock, asyncio.shield(self.closed), grace)
        except TimeoutError:
            self.abort()
        await self.wait_closed()

    @property
    def goodbye(self) -> str:
        """The reason the peer gave when it closed the tunnel ("" if it gave none)."""
        return self._goodbye

    @property
    def stream_count(self) -> int:
        return len(self._streams)


def _accept_meta(frame: Frame) -> dict[str, Any]:
    """An ACCEPT's payload: empty (a peer older than it), or a JSON object."""
    if not frame.payload:
        return {}
    try:
        meta = json.loads(frame.payload)
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise ProtocolError(f"stream {frame.stream}: ACCEPT carries no JSON object")
    return meta


async def read_all(stream: MuxStream, limit: int, timeout: float = MESSAGE_DEADLINE) -> bytes:
    """Everything until the stream's EOF, within ``timeout`` seconds of the session's
    clock: BadParameter past ``limit`` bytes, ConnectionProblem if the stream was reset
    or did not finish in time. A stream this gives up on is reset: the peer can make
    this side hold neither the stream nor what it sends next."""
    try:
        return await wait_for(stream._session._clock, _read_to_eof(stream, limit), timeout)
    except TimeoutError:
        reason = f"the message did not arrive in full within {timeout:g} s"
        stream.reset(reason)
        raise ConnectionProblem(reason) from None
    except BadParameter as exc:
        stream.reset(str(exc))
        raise
    except BaseException:  # the caller gave up (cancelled): the stream goes with it
        stream.reset("the reader gave up")
        raise


async def _read_to_eof(stream: MuxStream, limit: int) -> bytes:
    out = bytearray()
    while data := await stream.read():
        out += data
        if len(out) > limit:
            raise BadParameter(f"tunnel message over {limit} bytes")
    return bytes(out)


async def splice_stream(stream: MuxStream, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    """Copy between a tunnel stream and a socket both ways, then close both."""

    async def to_socket() -> None:
        try:
            while data := await stream.read():
                writer.write(data)
                await writer.drain()
        except (ConnectionProblem, ConnectionError, OSError):
            pass
        finally:
            if writer.can_write_eof() and not writer.is_closing():
                try:
                    writer.write_eof()
                except OSError:
                    writer.close()
            else:
                writer.close()

    async def to_stream() -> None:
        try:
            while data := await reader.read(MAX_PAYLOAD):
                await stream.write(data)
            stream.write_eof()
        except (ConnectionProblem, ConnectionError, OSError) as exc:
            stream.reset(str(exc))

    try:
        async with asyncio.TaskGroup() as tg:
            down = tg.create_task(to_socket())
            await to_stream()
            try:  # the socket's side ended: the far side's gets SPLICE_LINGER to end too
                await wait_for(stream._session._clock, asyncio.shield(down), SPLICE_LINGER)
            except TimeoutError:
                down.cancel()
    finally:
        writer.close()
        if not stream.done:
            stream.reset("spliced connection closed")


async def splice_streams(a: MuxStream, b: MuxStream) -> None:
    """Copy between two tunnel streams both ways (a leaf proxy joining its root's stream
    to a tunnel node's), then end both."""

    async def pump(src: MuxStream, dst: MuxStream) -> None:
        try:
            while data := await src.read():
                await dst.write(data)
            dst.write_eof()
        except ConnectionProblem as exc:
            dst.reset(str(exc))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pump(a, b))
            tg.create_task(pump(b, a))
    finally:
        for stream in (a, b):
            if not stream.done:
                stream.reset("spliced stream closed")
