"""The SSH-proxy path: authenticate the user's certificate, find the node, forward bytes.

The user's SSH session runs end to end between gsh/ssh and the node; the proxy
sees only ciphertext. It refuses (and audits) anything it cannot vouch for: no
client certificate, a certificate that is not a user certificate of a trusted
user CA, an expired one, a target that is not a registered node.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509 as cx509

from gatehouse._sys.hostport import split_host_port
from gatehouse._sys.streams import splice
from gatehouse.clock import Clock
from gatehouse.errors import GatehouseError
from gatehouse.pki import x509
from gatehouse.pki.tls import peer_der
from gatehouse.proxy.usercert import authenticate_user
from gatehouse.tunnel import mux
from gatehouse.wire.dial import MAX_LINE, DialReply, DialRequest, NodeRoute

__all__ = ["SSHProxy"]

log = logging.getLogger(__name__)

# (user, leaf cluster) -> None, or AccessDenied: the root's cluster labels say no
CheckReach = Callable[[x509.Identity, str], None]
# (target, user's certificate, remote address) -> a node the user may reach
Resolve = Callable[[str, bytes, str], Awaitable[NodeRoute]]
OpenRemote = Callable[[str, dict[str, Any]], Awaitable[mux.MuxStream]]  # (cluster or node)
Audit = Callable[[str, dict[str, Any]], Awaitable[None]]


class SSHProxy:
    def __init__(
        self,
        *,
        cluster: str,
        user_cas: Callable[[], list[cx509.Certificate]],
        resolve: Resolve,
        check_reach: CheckReach,
        open_remote: OpenRemote,
        open_node: OpenRemote,
        audit: Audit,
        clock: Clock,
        dial_timeout: float,
    ) -> None:
        self._dial_timeout = dial_timeout  # for the dial request, once TLS is up
        self._cluster = cluster
        self._user_cas = user_cas
        self._resolve = resolve
        self._check_reach = check_reach
        self._open_remote = open_remote
        self._open_node = open_node
        self._audit = audit
        self._clock = clock

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = f"{peer[0]}:{peer[1]}" if peer else ""
        user = ""
        der = peer_der(writer.get_extra_info("ssl_object")) or b""
        try:
            ident = authenticate_user(der, self._user_cas(), self._clock.now())
            user = ident.name
            line = await asyncio.wait_for(reader.readuntil(b"\n"), self._dial_timeout)
            request = DialRequest.decode(line)
            if request.cluster and request.cluster != self._cluster:
                # A leaf's node: through that leaf's reverse tunnel, if the roles'
                # cluster labels select the leaf; the leaf proxy dials it only if it
                # is one of its registered nodes, and names it.
                self._check_reach(ident, request.cluster)
                stream = await self._open_remote(request.cluster, {
                    "kind": "ssh", "target": request.target, "port": request.port,
                    "user": user, "remote": remote,
                    "client_cert": base64.b64encode(der).decode()})
                writer.write(DialReply(host_id=str(stream.accepted.get("host_id", "")))
                             .encode())
                await mux.splice_stream(stream, reader, writer)
                return
            route = await self._resolve(request.target, der, remote)
            if route.tunnel:
                # A tunnel node: over the tunnel it holds to this proxy, to its own SSH
                # server (the node serves nothing else on it).
                stream = await self._open_node(route.host_id, {
                    "kind": "ssh", "target": request.target, "user": user, "remote": remote})
                writer.write(DialReply(host_id=route.host_id).encode())
                await mux.splice_stream(stream, reader, writer)
                return
            host, port = split_host_port(route.addr)
            try:
                node = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            except (OSError, TimeoutError) as exc:
                raise GatehouseError(f"node {request.target} at {route.addr} is unreachable"
                                     ) from exc
        except (GatehouseError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError) as exc:
            reason = _reason(exc, self._dial_timeout)
            log.warning("ssh proxy refused user=%s remote=%s reason=%r", user, remote, reason)
            writer.write(DialReply(error=reason).encode())
            await _close(writer)
            await self._audit("proxy.dial.denied",
                              {"user": user, "remote_addr": remote, "message": reason})
            return
        except Exception:
            log.exception("ssh proxy failed user=%s remote=%s", user, remote)
            await _close(writer)
            return
        writer.write(DialReply(host_id=route.host_id).encode())
        await splice((reader, writer), node)



def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, GatehouseError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"no dial request within {timeout:g} s"
    return f"malformed dial request (at most {MAX_LINE} bytes, one line)"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
