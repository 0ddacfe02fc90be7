"""The leaf's half of a trusted-cluster join: verify the root by the token's pin, check
that ``proxy_addr`` is the root's proxy (the tunnel's only way in), then send the
token and the leaf's public host CA; receive the root's public CAs.

The leaf's auth is handed this function (its logic makes no network calls itself)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from cryptography import x509 as cx509

from gatehouse._sys.hostport import split_host_port
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.join import pinned_ping
from gatehouse.errors import AccessDenied, BadParameter, ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.pki.jointoken import JoinToken
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.wire.authapi import LeafJoinRequest
from gatehouse.wire.trust import PublicCA

__all__ = ["check_root_proxy", "join_root"]

DIAL_TIMEOUT = 15.0  # seconds for TCP and TLS
_WHERE = ("set proxy_addr to the root's proxy address (its proxy_service.public_addr, else "
          "its listen_addr)")


async def join_root(tc: TrustedCluster, leaf_host_ca: PublicCA) -> list[PublicCA]:
    token = JoinToken.parse(tc.spec.token)
    addr = tc.spec.proxy_addr
    try:
        ping = await pinned_ping(addr, token)
    except ConnectionProblem as exc:
        raise ConnectionProblem(f"{exc}; is proxy_addr {addr} the root's proxy? {_WHERE}"
                                ) from exc
    if ping.cluster != tc.metadata.name:
        raise BadParameter(
            f"the root at {addr} is cluster {ping.cluster!r}, not {tc.metadata.name!r}: "
            "name the trusted_cluster resource after the root cluster"
        )
    ctx = tls.client_context(ping.host_ca_tls)
    ctx.check_hostname = False  # the chain to the pinned CA is what is verified
    check_root_proxy(await _server_certificate(addr, ctx), addr, ping.cluster)
    async with AuthClient(APIClient(addr, ctx)) as api:
        reply = await api.join_leaf(LeafJoinRequest(token=token.secret, ca=leaf_host_ca))
    cas = reply.cas
    if {ca.type for ca in cas} != {"user", "host"}:
        raise BadParameter(f"the root at {addr} did not send its user and host CAs")
    return cas


def check_root_proxy(der: bytes, addr: str, root: str) -> None:
    """BadParameter unless ``der`` (the certificate the server at ``addr`` showed, chained
    to ``root``'s pinned host CA) is a proxy's of ``root``: the root's auth answers a
    join too, but takes no tunnel, so a trust joined there would never connect."""
    try:
        ident = x509.identity_of(cx509.load_der_x509_certificate(der))
    except (ValueError, AccessDenied, BadParameter):
        ident = None
    if ident is not None and (ident.kind, ident.system_role, ident.cluster) == (
            "host", "proxy", root):
        return
    if ident is None:
        what = "a server without a Gatehouse identity"
    elif ident.kind == "host":
        what = f"the {ident.system_role} service of {ident.cluster[:80]}"
    else:
        what = f"a server with a {ident.kind} certificate of {ident.cluster[:80]}"
    raise BadParameter(f"proxy_addr {addr} is {what}, not the proxy of {root}: {_WHERE}; "
                       "the token was not sent")


async def _server_certificate(addr: str, ctx: ssl.SSLContext) -> bytes:
    """The certificate (DER) of the TLS server at ``addr``, verified by ``ctx``."""
    host, port = split_host_port(addr)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), DIAL_TIMEOUT)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise ConnectionProblem(f"cannot reach {addr}: {exc or type(exc).__name__}") from exc
    try:
        return tls.peer_der(writer.get_extra_info("ssl_object")) or b""
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
