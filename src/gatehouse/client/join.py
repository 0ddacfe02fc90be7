"""Joining a cluster with a token: verify the cluster by the token's CA pin, then join.

The first connection is unverified and carries nothing secret: it fetches the
cluster's host CA, which must match the pin inside the token. Only then is the
token sent, over a connection verified against that CA.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.api import APIClient
from gatehouse.config import GatehouseSection
from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import sshcert, tls, x509
from gatehouse.pki.jointoken import JoinToken
from gatehouse.pki.keystore import StoredIdentity

__all__ = ["join_cluster", "pinned_ping"]


async def pinned_ping(addr: str, token: JoinToken) -> dict[str, str]:
    """The server's ping, if its host CA matches the token's pin."""
    async with APIClient(addr, tls.client_context(None)) as api:
        ping = await api.get("/v1/ping")
    ca = x509.load_cert(ping["host_ca_tls"])
    if not token.matches(x509.ca_fingerprint(ca)):
        raise AccessDenied(
            f"the server at {addr} is not the cluster that issued this token "
            "(its host CA does not match the pin in the token); the token was not sent"
        )
    return dict(ping)


async def join_cluster(
    section: GatehouseSection,
    addr: str,
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
    ctx = tls.client_context(ping["host_ca_tls"])
    ctx.check_hostname = False  # the chain to the pinned CA is what is verified
    key = ed25519.Ed25519PrivateKey.generate()
    async with APIClient(addr, ctx) as api:
        resp = await api.post(
            "/v1/join",
            {
                "token": token.secret,
                "role": role,
                "nodename": nodename,
                "public_key": sshcert.public_key_line(key.public_key()),
                "addrs": addrs,
                "dns_names": dns_names,
            },
        )
    store.save(key, resp["tls_cert"], resp["host_ca_tls"] + resp["user_ca_tls"], resp["ssh_cert"])
