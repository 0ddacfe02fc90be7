"""The leaf's half of a trusted-cluster join: verify the root by the token's pin, then
send the token and the leaf's public host CA; receive the root's public CAs.

The leaf's auth is handed this function (its logic makes no network calls itself)."""

from __future__ import annotations

from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.join import pinned_ping
from gatehouse.errors import BadParameter
from gatehouse.pki import tls
from gatehouse.pki.jointoken import JoinToken
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.wire.authapi import LeafJoinRequest
from gatehouse.wire.trust import PublicCA

__all__ = ["join_root"]


async def join_root(tc: TrustedCluster, leaf_host_ca: PublicCA) -> list[PublicCA]:
    token = JoinToken.parse(tc.spec.token)
    addr = tc.spec.proxy_addr
    ping = await pinned_ping(addr, token)
    if ping.cluster != tc.metadata.name:
        raise BadParameter(
            f"the root at {addr} is cluster {ping.cluster!r}, not {tc.metadata.name!r}: "
            "name the trusted_cluster resource after the root cluster"
        )
    ctx = tls.client_context(ping.host_ca_tls)
    ctx.check_hostname = False  # the chain to the pinned CA is what is verified
    async with AuthClient(APIClient(addr, ctx)) as api:
        reply = await api.join_leaf(LeafJoinRequest(token=token.secret, ca=leaf_host_ca))
    cas = reply.cas
    if {ca.type for ca in cas} != {"user", "host"}:
        raise BadParameter(f"the root at {addr} did not send its user and host CAs")
    return cas
