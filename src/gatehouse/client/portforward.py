"""`gsh ssh -L` and `-R`: port forwarding over the session's SSH connection.

-L: each local connection gets a direct-tcpip channel (RFC 4254 §7.2); the node opens
it only if the user's roles allow port forwarding. A refusal is one line on
stderr, as ssh(1) prints "open failed", and the local connection is closed.
-R: the node listens (RFC 4254 §7.1) and sends each connection back as a
forwarded-tcpip channel, which asyncssh connects to the destination from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from gatehouse.client._asyncssh import asyncssh
from gatehouse.client.forwardspec import PortForward
from gatehouse.errors import ConnectionProblem

__all__ = ["LocalForwarder", "RemoteForwarder", "forwarder"]

_CHUNK = 64 * 1024


class LocalForwarder:
    """Listens for one -L spec while open; each connection gets a channel of its own.

    Every connection's task belongs to this forwarder, and ``aclose`` ends them.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, forward: PortForward) -> None:
        self._conn = conn
        self._forward = forward
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        fwd = self._forward
        try:
            self._server = await asyncio.start_server(
                self._accepted, fwd.listen_host or None, fwd.listen_port)
        except OSError as exc:
            raise ConnectionProblem(f"-L {fwd.spec}: cannot listen on port {fwd.listen_port}: "
                                    f"{exc.strerror or exc}") from exc

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fwd = self._forward
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            chan_reader, chan_writer = await self._conn.open_connection(
                fwd.dest_host, fwd.dest_port, orig_host=peer[0], orig_port=peer[1])
        except asyncssh.ChannelOpenError as exc:
            print(f"warning: -L {fwd.spec}: the node refused to open {fwd.dest_host}:"
                  f"{fwd.dest_port}: {exc.reason}", file=sys.stderr)
            writer.close()
            return
        except (asyncssh.Error, OSError):
            writer.close()  # the session is ending, and says why
            return
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_copy_out(chan_reader, writer))
                await _copy_in(reader, chan_writer)
        finally:
            chan_writer.close()
            writer.close()


class RemoteForwarder:
    """Has the node listen for one -R spec while open."""

    def __init__(self, conn: asyncssh.SSHClientConnection, forward: PortForward) -> None:
        self._conn = conn
        self._forward = forward
        self._listener: asyncssh.SSHListener | None = None

    async def open(self) -> None:
        fwd = self._forward
        try:
            self._listener = await self._conn.forward_remote_port(
                fwd.listen_host, fwd.listen_port, fwd.dest_host, fwd.dest_port)
        except asyncssh.ChannelListenError as exc:
            raise ConnectionProblem(
                f"-R {fwd.spec}: the node refused to listen on port {fwd.listen_port} (a role "
                "must allow port_forwarding, ports below 1024 need a uid-0 login, and the "
                "port must be free; the node's audit log says which)") from exc
        if fwd.listen_port == 0:  # as ssh(1) says it, so that scripts can read the port
            print(f"Allocated port {self._listener.get_port()} for remote forward to "
                  f"{fwd.dest_host}:{fwd.dest_port}", file=sys.stderr)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()


def forwarder(conn: asyncssh.SSHClientConnection,
              forward: PortForward) -> LocalForwarder | RemoteForwarder:
    """The forwarder for one -L or -R spec."""
    if forward.remote:
        return RemoteForwarder(conn, forward)
    return LocalForwarder(conn, forward)


async def _copy_in(reader: asyncio.StreamReader, chan: asyncssh.SSHWriter[bytes]) -> None:
    """Local connection -> channel, then EOF on the channel."""
    with contextlib.suppress(asyncssh.Error, ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            chan.write(data)
            await chan.drain()
        chan.write_eof()


async def _copy_out(chan: asyncssh.SSHReader[bytes], writer: asyncio.StreamWriter) -> None:
    """Channel -> local connection, then EOF on it."""
    with contextlib.suppress(asyncssh.Error, ConnectionError, OSError):
        while data := await chan.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
