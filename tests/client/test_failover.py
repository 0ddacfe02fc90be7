"""client.failover against real loopback sockets: a refused address is skipped, the
one that answered is kept for the next calls, and a call whose connection was made
and then lost is not sent again elsewhere (it may have been applied)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gatehouse.client.failover import Failover
from gatehouse.process.harness import free_ports


@contextlib.asynccontextmanager
async def answering(text: str) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server on loopback answering ``text``; yields its address and the paths
    it was asked for."""
    asked: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}", asked
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def hanging_up() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that reads the request and closes without answering (an auth killed
    while it answers)."""
    seen: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        seen.append(1)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}", seen


async def test_a_refused_address_is_skipped_and_the_one_that_answered_kept() -> None:
    (dead,) = free_ports(1)
    async with answering("b") as (live, asked), aiohttp.ClientSession() as http:

        async def get(addr: str) -> str:
            async with http.get(f"http://{addr}/call") as resp:
                return await resp.text()

        failover = Failover([f"127.0.0.1:{dead}", live], pause=lambda: 0.01)
        assert failover.current == f"127.0.0.1:{dead}"
        assert await failover.call(get) == "b"
        assert failover.current == live  # sticky: the next call goes there first
        assert await failover.call(get) == "b"
        assert asked == ["/call", "/call"]


async def test_every_address_refused_raises_the_connection_error() -> None:
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]
    async with aiohttp.ClientSession() as http:

        async def get(addr: str) -> str:
            async with http.get(f"http://{addr}/") as resp:
                return await resp.text()

        with pytest.raises(aiohttp.ClientConnectorError):
            await Failover(dead, pause=lambda: 0.01).call(get)


async def test_a_call_lost_after_it_was_sent_is_not_sent_to_the_next() -> None:
    async with hanging_up() as (dropping, seen), answering("b") as (live, asked), \
            aiohttp.ClientSession() as http:

        async def post(addr: str) -> str:  # (aiohttp itself sends a GET again once)
            async with http.post(f"http://{addr}/once", data=b"x") as resp:
                return await resp.text()

        failover = Failover([dropping, live], pause=lambda: 0.01)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await failover.call(post)
        assert seen == [1] and asked == []
