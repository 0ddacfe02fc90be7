"""A TLS listener whose failed handshakes are seen: a client certificate that OpenSSL
refuses is reported, and a handshake that takes too long is cut off.

The loop's own TLS servers (asyncio's and uvloop's ``create_server(ssl=...)``) close a
failed handshake without a word to the application. And Python's ssl cannot accept a
client certificate it fails to verify, to let a handler refuse it: ``CERT_OPTIONAL``
still aborts the handshake on any verification error (there is no verify callback).
So each accepted socket is handed to the loop's TLS transport with
``connect_accepted_socket``, whose failure comes back here: an
``ssl.SSLCertVerificationError`` is the client's certificate refused (expired, not
signed by a CA the context trusts), reported with OpenSSL's reason; any other failure
(a timeout, a reset, not TLS at all) is closed quietly. Nothing reads a socket before
its handshake, so the client's first bytes reach the protocol.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from gatehouse._sys.tasks import TaskOwner
from gatehouse._sys.tlsfailure import verify_failure

__all__ = ["ACCEPT_RETRY", "Refused", "TLSServer"]

log = logging.getLogger(__name__)

ACCEPT_RETRY = 1.0  # seconds to wait after accept() failed (out of file descriptors), as asyncio

# Told of a client certificate refused in a handshake: the client's "host:port", and why.
Refused = Callable[[str, str], Awaitable[None]]


class TLSServer:
    """Serves ``factory()`` protocols on the connections whose TLS handshake (within
    ``handshake_timeout`` seconds) succeeded; ``on_refused`` hears of a refused client
    certificate. ``what`` names the server in logs."""

    def __init__(self, ctx: ssl.SSLContext, factory: Callable[[], asyncio.BaseProtocol], *,
                 handshake_timeout: float, on_refused: Refused, what: str) -> None:
        self._ctx = ctx
        self._factory = factory
        self._timeout = handshake_timeout
        self._on_refused = on_refused
        self._what = what
        self._tasks = TaskOwner(what)  # the accept loops and the handshakes under way
        self.sockets: list[socket.socket] = []

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        """Listen on every address ``host`` names (as ``loop.create_server`` does) and serve;
        OSError if one cannot be bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, addr in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # one socket per family, as asyncio binds
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind(addr)
                except OSError as exc:
                    raise OSError(exc.errno, f"error while attempting to bind on address "
                                             f"{addr!r}: {exc.strerror}") from None
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise
        for sock in self.sockets:
            self._tasks.spawn(self._accept(sock))

    async def close(self) -> None:
        """Stop accepting; handshakes under way are cut off (served connections stay)."""
        await self._tasks.close()
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: the connection waits
                log.error("%s cannot accept a connection now: %s", self._what, exc)
                await asyncio.sleep(ACCEPT_RETRY)
                continue
            self._tasks.spawn(self._handshake(conn))

    async def _handshake(self, conn: socket.socket) -> None:
        try:
            peer = conn.getpeername()
            await asyncio.get_running_loop().connect_accepted_socket(
                self._factory, conn, ssl=self._ctx, ssl_handshake_timeout=self._timeout)
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            remote = f"{peer[0]}:{peer[1]}"
            reason = verify_failure(exc, dt.datetime.now(dt.UTC), client=True)
            log.warning("%s refused a client certificate remote=%s reason=%r", self._what,
                        remote, reason)
            await self._on_refused(remote, reason)
        except OSError:  # a timeout, a reset, not TLS: closed, as the loop's server does
            conn.close()
