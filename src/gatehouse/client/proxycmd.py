"""`gsh proxy ssh`: OpenSSH's ProxyCommand; stdin/stdout become the stream to the node."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os

from gatehouse._sys.streams import pump
from gatehouse.client.dialer import Fallback, open_stream
from gatehouse.client.profile import Profile
from gatehouse.wire.dial import DialRequest
from gatehouse.wire.names import ALPN_SSH

__all__ = ["proxy_stdio"]

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported before Python 3.13
PIPE_SIZE = 1 << 20  # ssh's pipes to us: 64 KiB by default, a wake-up per 64 KiB


async def proxy_stdio(profile: Profile, node: str, cluster: str, port: int,
                      fallback: Fallback | None = None) -> None:
    """``fallback``: where to go when the profile's proxy does not answer (a leaf's own)."""
    loop = asyncio.get_running_loop()
    reader, writer = await open_stream(
        profile.proxy, profile.ssl_context([ALPN_SSH]), profile.server_name,
        DialRequest(target=node, cluster=cluster, port=port), fallback,
    )
    for fd in (0, 1):
        with contextlib.suppress(OSError):  # not a pipe (a socket): nothing to widen
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    stdin = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin),
                                 os.fdopen(os.dup(0), "rb", 0))
    out_transport, out_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(os.dup(1), "wb", 0))
    stdout = asyncio.StreamWriter(out_transport, out_protocol, None, loop)
    async with asyncio.TaskGroup() as tg:
        to_node = tg.create_task(pump(stdin, writer))
        await pump(reader, stdout)
        to_node.cancel()
