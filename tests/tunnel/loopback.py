"""Two multiplexer sessions over a real loopback TCP connection, for the tunnel tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from gatehouse.clock import FakeMonotonic
from gatehouse.tunnel.mux import MuxSession, MuxStream

Handler = Callable[[MuxStream], Awaitable[None]]


async def pair(handler: Handler | None, clock: FakeMonotonic,
               acceptor: Callable[[], asyncio.Protocol] | None = None,
               ) -> tuple[MuxSession, asyncio.Protocol, asyncio.Server]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Protocol] = loop.create_future()

    def factory() -> asyncio.Protocol:
        session = acceptor() if acceptor else MuxSession(dialer=False, clock=clock,
                                                         on_open=handler)
        accepted.set_result(session)
        return session

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, dialer = await loop.create_connection(lambda: MuxSession(dialer=True, clock=clock),
                                             "127.0.0.1", port)
    return dialer, await accepted, server


async def sessions(handler: Handler | None,
                   clock: FakeMonotonic) -> tuple[MuxSession, MuxSession, asyncio.Server]:
    dialer, acceptor, server = await pair(handler, clock)
    assert isinstance(acceptor, MuxSession)
    return dialer, acceptor, server
