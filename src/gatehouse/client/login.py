"""Logging in (password -> certificates) and the profile's API calls."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse._sys.hostport import split_host_port
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.profile import Profile
from gatehouse.errors import BadParameter
from gatehouse.pki import sshcert, tls, x509
from gatehouse.wire.authapi import Certs, ClusterInfo, LoginRequest, NodeQuery
from gatehouse.wire.names import CLUSTER_HEADER, INVENTORY_PATH

__all__ = ["ca_fingerprints", "list_nodes", "login_with_password", "read_ca_file",
           "save_login", "select_cluster"]


def read_ca_file(path: Path) -> str:
    """The PEM certificates in ``path`` (the proxy's CA, for --ca-file); BadParameter,
    one line, if it cannot be read or holds none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    blocks = x509.pem_blocks(text)
    if not blocks:
        raise BadParameter(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    pem = "".join(blocks)
    try:
        tls.client_context(pem)
    except ssl.SSLError as exc:
        why = exc.reason.lower().replace("_", " ") if exc.reason else "TLS cannot load it"
        raise BadParameter(f"{path} holds a malformed certificate ({why})") from exc
    return pem


def ca_fingerprints(cas_pem: str) -> list[str]:
    """The SHA-256 fingerprints of the CAs in ``cas_pem``, as `gatectl status` shows them."""
    return [x509.ca_fingerprint(x509.load_cert(block)) for block in x509.pem_blocks(cas_pem)]


async def login_with_password(
    proxy: str, user: str, password: str, otp: str, ca_pem: str | None, ttl: str, cluster: str
) -> Profile:
    """Exchange a password for certificates; pin the cluster's CAs in the profile.

    ``ca_pem`` None means --insecure: the CA the proxy presents is trusted on
    first use and pinned from then on.
    """
    server_name = split_host_port(proxy)[0]
    ctx = tls.client_context(ca_pem)
    key = ed25519.Ed25519PrivateKey.generate()
    async with AuthClient(APIClient(proxy, ctx, server_hostname=server_name)) as api:
        certs = await api.login(LoginRequest(
            user=user, password=password, otp=otp, ttl=ttl or None,
            public_key=sshcert.public_key_line(key.public_key())))
    return await save_login(proxy, server_name, user, key, certs, cluster)


async def save_login(proxy: str, server_name: str, user: str,
                     key: ed25519.Ed25519PrivateKey, certs: Certs, cluster: str) -> Profile:
    """A new profile for certificates just issued (any login method): the key, the
    certificates, the pinned CAs, the leaves' host CAs; ``cluster`` selected if given."""
    profile = Profile(proxy=proxy, user=user, cluster=certs.cluster,
                      selected=certs.cluster, server_name=server_name,
                      host_ca_ssh=certs.host_ca_ssh)
    Profile.remove()
    profile.identity.save(key, certs.tls_cert, certs.host_ca_tls, certs.ssh_cert)
    profile.save()
    await refresh_clusters(profile)
    if cluster:
        await select_cluster(profile, cluster)
    profile.save()
    return profile


async def refresh_clusters(profile: Profile) -> list[ClusterInfo]:
    """Ask the root for its leaves (their host CAs, the proxies they publish); remember
    them in the profile."""
    async with api_for(profile) as api:
        found = await api.clusters()
    profile.leaves = {c.name: c.host_ca_ssh for c in found if c.type == "leaf" and c.host_ca_ssh}
    profile.leaf_proxies = {c.name: [c.proxy_addr, c.host_ca_tls] for c in found
                            if c.type == "leaf" and c.proxy_addr and c.host_ca_tls}
    profile.save()
    return found


async def select_cluster(profile: Profile, cluster: str) -> None:
    if cluster not in profile.clusters():
        await refresh_clusters(profile)
    if cluster not in profile.clusters():
        raise BadParameter(f"unknown cluster {cluster}: known clusters are "
                           f"{', '.join(profile.clusters())}")
    profile.selected = cluster
    profile.save()


async def find_nodes(profile: Profile, search: str, selector: dict[str, str]
                     ) -> list[dict[str, Any]]:
    """The leaves' nodes matching ``search`` and ``selector`` that the user may see, from
    the root proxy's inventory: one request, whatever the number of leaves."""
    async with APIClient(profile.proxy, profile.ssl_context(),
                         server_hostname=profile.server_name) as http:
        return list(await http.get(INVENTORY_PATH, search=search,
                                   labels=json.dumps(selector)))


async def find_node(profile: Profile, name: str) -> list[dict[str, Any]]:
    """The nodes of the root (by hostname) and of the leaves (by search) that may be
    the one called ``name``, among those the user may see."""
    async with api_for(profile) as api:
        found = await api.list_nodes(NodeQuery(hostname=name))
    return found + await find_nodes(profile, name, {})


def api_for(profile: Profile, cluster: str = "") -> AuthClient:
    """The API through the profile's proxy; ``cluster`` routes to a leaf."""
    return AuthClient(APIClient(profile.proxy, profile.ssl_context(),
                                server_hostname=profile.server_name,
                                headers={CLUSTER_HEADER: cluster} if cluster else None))


async def list_nodes(profile: Profile, cluster: str, selector: dict[str, str],
                     limit: int) -> list[dict[str, Any]]:
    async with api_for(profile, cluster) as api:
        return await api.list_nodes(NodeQuery(labels=selector, limit=limit))
