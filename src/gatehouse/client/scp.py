"""`gsh scp`: files to or from a node over SFTP, end to end with the node.

The connection is `gsh ssh`'s (the proxy's tunnel, the node verified by its host CA,
the user's certificate); the node serves the sftp subsystem as the login, so the
login's permissions decide what may be read or written, and the node audits each
file. When the node refuses the transfer, the reason it writes on stderr is the line
shown.
"""

from __future__ import annotations

import asyncio
import contextlib

from gatehouse.client._asyncssh import asyncssh
from gatehouse.client.copyspec import CopySpec
from gatehouse.client.dialer import ProxyTunnel
from gatehouse.client.profile import Profile
from gatehouse.client.ssh import SESSION_MAX_PACKET, SESSION_WINDOW, connect_node
from gatehouse.errors import AccessDenied, ConnectionProblem, GatehouseError, NotFound

__all__ = ["copy_files"]

_REFUSAL_WAIT = 5.0  # seconds to wait for the node's reason once the subsystem ended
_MAX_REASON = 4096


async def copy_files(profile: Profile, spec: CopySpec, *, recursive: bool, host_ca: str,
                     tunnel: ProxyTunnel) -> None:
    """Copy as ``spec`` says over ``tunnel``; a GatehouseError, one line, if it fails."""
    conn = await connect_node(profile, spec.login, spec.node, host_ca, tunnel)
    where = f"{spec.login}@{spec.node}"
    try:
        async with conn:
            sftp = await _start_sftp(conn, where)
            async with sftp:
                if spec.upload:
                    await sftp.put(list(spec.sources), spec.target, recurse=recursive)
                else:
                    await sftp.get(list(spec.sources), spec.target, recurse=recursive)
    except asyncssh.SFTPNoSuchFile as exc:
        raise NotFound(f"cannot copy: {_reason(exc)}") from exc
    except asyncssh.SFTPPermissionDenied as exc:
        raise AccessDenied(f"cannot copy: {_reason(exc)}") from exc
    except asyncssh.SFTPError as exc:
        raise GatehouseError(f"cannot copy: {_reason(exc)}") from exc
    except OSError as exc:
        raise GatehouseError(f"cannot copy: {exc.filename or ''}: {exc.strerror}") from exc
    except asyncssh.Error as exc:
        raise ConnectionProblem(f"the connection to {where} was lost: {exc.reason}") from exc


def _reason(exc: asyncssh.SFTPError) -> str:
    return str(exc.reason) or type(exc).__name__


async def _start_sftp(conn: asyncssh.SSHClientConnection, where: str) -> asyncssh.SFTPClient:
    """asyncssh's SSHClientConnection.start_sftp_client, keeping the channel's stderr:
    a node that refuses the transfer says why there, then ends the session."""
    from asyncssh import sftp

    writer, reader, stderr = await conn.open_session(
        subsystem="sftp", encoding=None, window=SESSION_WINDOW, max_pktsize=SESSION_MAX_PACKET)
    try:
        return await sftp.start_sftp_client(conn, asyncio.get_running_loop(), "strict",
                                            reader, writer, "utf-8", "strict",
                                            sftp.MIN_SFTP_VERSION)
    except asyncssh.Error as exc:
        reason = b""
        with contextlib.suppress(asyncssh.Error, TimeoutError):
            reason = await asyncio.wait_for(stderr.read(_MAX_REASON), _REFUSAL_WAIT)
        line = reason.decode(errors="replace").strip()
        if line:
            raise AccessDenied(f"{where}: {line}") from exc
        raise ConnectionProblem(f"{where} did not start file transfer: {exc.reason}") from exc
