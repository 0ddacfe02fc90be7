"""Open a stream to a node through the proxy: TLS with the user's certificate,
ALPN ``gatehouse-ssh/1``, one dial line; then the SSH session runs inside.

With a ``Fallback`` (a leaf's own proxy, client/fallback.py), a proxy that does not
answer within FALLBACK_AFTER seconds (connection refused, unreachable, timed out) is
replaced by the fallback's, saying so in one line; a TLS failure or a refusal is not
(they are answers).

Kept free of aiohttp so that `gsh ssh` starts quickly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from gatehouse._sys.hostport import split_host_port
from gatehouse._sys.tlsfailure import verify_failure
from gatehouse.errors import AccessDenied, ConnectionProblem, GatehouseError
from gatehouse.wire.dial import MAX_LINE, DialReply, DialRequest

__all__ = ["FALLBACK_AFTER", "Fallback", "ProxyTunnel", "dial", "open_stream"]

P = TypeVar("P", bound=asyncio.BaseProtocol)

CONNECT_TIMEOUT = 15.0  # seconds for TCP and TLS to a proxy
FALLBACK_AFTER = 3.0  # ... when another proxy could serve the request instead


@dataclass(frozen=True)
class Fallback:
    """Where to dial when the proxy does not answer: ``proxy`` (TLS name
    ``server_name``, context built only then), saying ``notice`` through ``announce``;
    or, with no ``proxy``, nowhere, and ``notice`` (why) ends the error."""

    proxy: str
    server_name: str
    notice: str
    ssl_context: Callable[[], ssl.SSLContext]
    announce: Callable[[str], None]


class _Unanswered(ConnectionProblem):
    """The proxy did not answer at all: nothing was refused, nothing was said."""


class _Handshake(asyncio.Protocol):
    """Sends the dial line, reads the reply line, then holds any session bytes that
    came with it (reading paused) until the session's protocol takes over."""

    def __init__(self, request: DialRequest, sent: asyncio.Event) -> None:
        self._request = request
        self._sent = sent
        self._buf = b""
        self.leftover = b""
        self.done: asyncio.Future[DialReply] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's TLS transport is not a subclass
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request.encode())
        self._sent.set()

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self.leftover += data
            return
        self._buf += data
        line, sep, rest = self._buf.partition(b"\n")
        if not sep:
            if len(self._buf) > MAX_LINE:
                self.done.set_exception(ConnectionProblem("proxy sent a malformed reply"))
            return
        self._transport.pause_reading()
        try:
            reply = DialReply.decode(line + sep)
        except GatehouseError as exc:
            self.done.set_exception(exc)
            return
        if reply.ok:
            self.leftover = rest
            self.done.set_result(reply)
        else:
            self.done.set_exception(AccessDenied(reply.error))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionProblem("the proxy closed the connection"))


async def _open(proxy: str, ssl_context: ssl.SSLContext, server_hostname: str,
                request: DialRequest, sent: asyncio.Event | None = None, *,
                connect_timeout: float = CONNECT_TIMEOUT,
                ) -> tuple[asyncio.Transport, _Handshake]:
    """Connect, send the dial line (then set ``sent``), wait for the proxy's yes;
    reading stays paused."""
    sent = sent or asyncio.Event()
    host, port = split_host_port(proxy)
    loop = asyncio.get_running_loop()
    try:
        transport, hs = await asyncio.wait_for(
            loop.create_connection(lambda: _Handshake(request, sent), host, port, ssl=ssl_context,
                                   server_hostname=server_hostname),
            connect_timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        why = verify_failure(exc, dt.datetime.now(dt.UTC))
        raise ConnectionProblem(f"TLS with proxy {proxy} failed: {why}") from exc
    except ssl.SSLError as exc:
        raise ConnectionProblem(f"TLS with proxy {proxy} failed: {exc.reason or exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise _Unanswered(f"cannot reach proxy {proxy}: {exc or 'timed out'}") from exc
    try:
        await asyncio.wait_for(hs.done, 30)
    except (OSError, TimeoutError) as exc:
        transport.abort()
        raise ConnectionProblem(f"proxy {proxy} did not reply: {exc or 'timed out'}") from exc
    return transport, hs


async def _open_or_fall_back(proxy: str, ssl_context: ssl.SSLContext, server_hostname: str,
                             request: DialRequest, fallback: Fallback | None,
                             sent: asyncio.Event | None = None,
                             ) -> tuple[asyncio.Transport, _Handshake]:
    """``_open``, or, when ``proxy`` does not answer in FALLBACK_AFTER s, the fallback's."""
    if fallback is None:
        return await _open(proxy, ssl_context, server_hostname, request, sent)
    try:
        return await _open(proxy, ssl_context, server_hostname, request, sent,
                           connect_timeout=FALLBACK_AFTER)
    except _Unanswered as exc:
        if not fallback.proxy:
            raise ConnectionProblem(f"{exc}; {fallback.notice}") from exc
        fallback.announce(f"{exc}; {fallback.notice}")
        return await _open(fallback.proxy, fallback.ssl_context(), fallback.server_name,
                           request, sent, connect_timeout=FALLBACK_AFTER)


def _hand_over(transport: asyncio.Transport, hs: _Handshake,
               protocol_factory: Callable[[], P]) -> tuple[asyncio.Transport, P]:
    """Give a dialed stream, and what arrived on it since the reply, to a new protocol."""
    protocol = protocol_factory()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if hs.leftover:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(hs.leftover)
    transport.resume_reading()
    return transport, protocol


async def dial(
    proxy: str, ssl_context: ssl.SSLContext, server_hostname: str, request: DialRequest,
    protocol_factory: Callable[[], P], fallback: Fallback | None = None,
) -> tuple[asyncio.Transport, P]:
    """Connect through the proxy (or the fallback's) and hand the stream to a new
    protocol."""
    transport, hs = await _open_or_fall_back(proxy, ssl_context, server_hostname, request,
                                             fallback)
    return _hand_over(transport, hs, protocol_factory)


async def open_stream(
    proxy: str, ssl_context: ssl.SSLContext, server_hostname: str, request: DialRequest,
    fallback: Fallback | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    transport, protocol = await dial(proxy, ssl_context, server_hostname, request,
                                     lambda: asyncio.StreamReaderProtocol(reader), fallback)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


class ProxyTunnel:
    """asyncssh's ``tunnel=`` hook: its SSH connection runs over a proxied stream.

    ``start()`` dials at once, before asyncssh asks: `gsh ssh` waits until its
    dial line is out (``sent()``), then loads asyncssh while the proxy looks the
    node up and connects, so that those overlap with the client's own start-up.
    """

    def __init__(self, proxy: str, ssl_context: ssl.SSLContext, server_hostname: str,
                 request: DialRequest, fallback: Fallback | None = None) -> None:
        self._args = (proxy, ssl_context, server_hostname, request, fallback)
        self.cluster = request.cluster  # "" for the proxy's own
        self._sent = asyncio.Event()
        self._opening: asyncio.Task[tuple[asyncio.Transport, _Handshake]] | None = None
        self._handed = False

    def start(self) -> None:
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(
                _open_or_fall_back(*self._args, self._sent))

    async def sent(self) -> None:
        """Until the dial line is on its way, or the dial failed (then
        ``create_connection`` raises why)."""
        self.start()
        assert self._opening is not None
        waiting = asyncio.ensure_future(self._sent.wait())
        try:
            await asyncio.wait([waiting, self._opening], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    def close(self) -> None:
        """Drop a dial that was started but never handed to a session."""
        if self._opening is None or self._handed:
            return
        if not self._opening.done():
            self._opening.cancel()
        elif not self._opening.cancelled() and self._opening.exception() is None:
            self._opening.result()[0].abort()

    async def reply(self) -> DialReply:
        """The proxy's yes, naming the node it dialed; raises why if it said no."""
        self.start()
        assert self._opening is not None
        _, hs = await self._opening
        return hs.done.result()

    async def create_connection(
        self, session_factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        self.start()
        assert self._opening is not None
        transport, hs = await self._opening
        self._handed = True
        return _hand_over(transport, hs, session_factory)
