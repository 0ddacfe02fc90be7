"""asyncssh's TCP forwarders with our fix: a target that speaks and closes first loses
nothing, and a channel closes once both of its directions have ended.

A real asyncssh server and client on loopback; the target is a plain TCP server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncssh
import pytest

from gatehouse._sys import sshforward

ROUNDS = 25  # the lost-banner race depends on callback order: try it often


class _Forwards(asyncssh.SSHServer):
    """No authentication; every direct-tcpip request is forwarded by asyncssh."""

    def begin_auth(self, username: str) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        return True


async def _speak_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"banner\n")
    writer.close()


async def _echo_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"echo: " + await reader.read())
    writer.close()


@pytest.fixture
async def ssh() -> AsyncIterator[asyncssh.SSHClientConnection]:
    sshforward.install()
    server = await asyncssh.create_server(
        _Forwards, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")])
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u") as conn:
            yield conn
    finally:
        server.close()
        await server.wait_closed()


async def _target(handler: object) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    return server, server.sockets[0].getsockname()[1]


async def test_what_a_target_sends_as_it_accepts_reaches_the_client_then_the_channel_closes(
    ssh: asyncssh.SSHClientConnection,
) -> None:
    target, port = await _target(_speak_and_close)
    async with target:
        for _ in range(ROUNDS):
            reader, writer = await ssh.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b"banner\n"
            writer.write_eof()  # the client ends second: the node must close the channel now
            await asyncio.wait_for(writer.channel.wait_closed(), 5)


async def test_a_client_that_ends_first_gets_the_answer_and_the_channel_closes(
    ssh: asyncssh.SSHClientConnection,
) -> None:
    target, port = await _target(_echo_until_eof)
    async with target:
        for _ in range(ROUNDS):
            reader, writer = await ssh.open_connection("127.0.0.1", port)
            writer.write(b"hello\n")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"echo: hello\n"
            await asyncio.wait_for(writer.channel.wait_closed(), 5)
