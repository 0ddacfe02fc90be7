"""Joining a cluster with a token: verify the cluster by the token's CA pin, then join.

The first connection is unverified and carries nothing secret: it fetches the
cluster's host CA, which must match the pin inside the token. Only then is the
token sent, over a connection verified against that CA.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.config import GatehouseSection
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import sshcert, tls, x509
from gatehouse.pki.jointoken import JoinToken
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.wire.authapi import JoinRequest, Ping

__all__ = ["join_cluster", "pinned_ping"]


async def pinned_ping(addr: str | Sequence[str], token: JoinToken) -> Ping:
    """The server's ping, if its host CA matches the token's pin."""
    async with AuthClient(APIClient(addr, tls.client_context(None))) as api:
        ping = await api.ping()
        addr = api.addr  # the one that answered
    ca = x509.load_cert(ping.host_ca_tls)
    if not token.matches(x509.ca_fingerprint(ca)):
        raise AccessDenied(
            f"the server at {addr} is not the cluster that issued this token "
            "(its host CA does not match the pin in the token); the token was not sent"
        )
    return ping


async def join_cluster(
    section: GatehouseSection,
    addr: str | Sequence[str],
    role: str,
    nodename: str,
    addrs: list[str],
    dns_names: list[str],
    store: StoredIdentity,
) -> None:
    if not section.join_token:
        raise BadParameter(
            f"this {role} has no identity yet: set gatehouse.join_token "
            "(from `gatectl tokens add`) to join"
        )
    token = JoinToken.parse(section.join_token)
    ping = await pinned_ping(addr, token)
    ctx = tls.client_context(ping.host_ca_tls)
    ctx.check_hostname = False  # the chain to the pinned CA is what is verified
    key = ed25519.Ed25519PrivateKey.generate()
    async with AuthClient(APIClient(addr, ctx)) as api:
        reply = await api.join(JoinRequest(
            token=token.secret, role=role, nodename=nodename,
            public_key=sshcert.public_key_line(key.public_key()), addrs=addrs,
            dns_names=dns_names))
    store.save(key, reply.tls_cert, reply.host_ca_tls + reply.user_ca_tls, reply.ssh_cert)
