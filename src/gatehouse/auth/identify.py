"""Who is calling the auth API, and which roles they hold here (deny by default).

A caller is identified by its TLS client certificate, checked against the
cluster's own CAs (user certificates by the user CA, host certificates by the
host CA). A proxy may relay its client's certificate in a header; that
certificate is verified the same way, so a proxy cannot invent an identity.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509 as cx509

from gatehouse import rolemap
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.pki import x509
from gatehouse.types.role import Role
from gatehouse.wire.trust import RootCluster

__all__ = ["Caller", "caller_roles", "identify", "is_proxy", "relayed", "root_trust"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Caller:
    identity: x509.Identity
    remote_addr: str
    in_process: bool = False  # a service of the auth's own process (auth.local)


def _load(der: bytes) -> cx509.Certificate:
    try:
        return cx509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AccessDenied("client certificate is malformed") from exc


# Certificates already verified, per auth, by the CA that signed them ("" for this
# cluster's own user and host CAs, else a trusted root's user CA in PEM), keyed by the
# certificate's SHA-256: a signature checked once stays checked (~0.3 ms of an auth's
# CPU saved on each call). Validity is checked on every use; which roots are trusted is
# read afresh on every use (so a disabled trust counts at once); removal of a host or
# user is the authorization's to check, never this. MAX_VERIFIED holds the nodes of a
# large cluster (each heartbeats with a certificate of its own, and a cache smaller
# than the callers, used in turn, misses on every call) at ~0.9 KB each, 60 MB at most.
_Verified = tuple[x509.Identity, dt.datetime, dt.datetime]
_VERIFIED: weakref.WeakKeyDictionary[AuthServer, OrderedDict[tuple[bytes, str], _Verified]] = \
    weakref.WeakKeyDictionary()
MAX_VERIFIED = 65_536


def _remembered(server: AuthServer, der: bytes, issuer: str,
                verify: Callable[[cx509.Certificate], x509.Identity]) -> x509.Identity:
    """``verify(certificate)``, or what it said of this certificate before."""
    cache = _VERIFIED.setdefault(server, OrderedDict())
    key = (hashlib.sha256(der).digest(), issuer)
    hit = cache.get(key)
    if hit is None:
        cert = _load(der)
        ident = verify(cert)
        cache[key] = (ident, cert.not_valid_before_utc, cert.not_valid_after_utc)
        if len(cache) > MAX_VERIFIED:
            cache.popitem(last=False)
        return ident
    ident, not_before, not_after = hit
    now = server.clock.now()
    if now > not_after:
        raise AccessDenied(f"certificate expired at {not_after.isoformat()}")
    if now < not_before:
        raise AccessDenied("certificate is not valid yet")
    cache.move_to_end(key)
    return ident


def _local_identity(server: AuthServer, der: bytes) -> x509.Identity:
    """The identity of a certificate signed by this cluster's user or host CA."""
    return _remembered(server, der, "", lambda cert: _verify_local(server, cert))


def _verify_local(server: AuthServer, cert: cx509.Certificate) -> x509.Identity:
    ca = x509.verify_issued_by(
        cert, [server.cas["user"].tls_cert, server.cas["host"].tls_cert], server.clock.now()
    )
    ident = x509.identity_of(cert)
    expected = "user" if ca == server.cas["user"].tls_cert else "host"
    if ident.kind != expected or ident.cluster != server.cluster:
        raise AccessDenied("client certificate does not match its issuing authority")
    return ident


async def _verify_trusted(server: AuthServer, der: bytes) -> x509.Identity:
    """A user certificate signed by the user CA of an enabled trusted (root) cluster."""
    for tc, ca in await server.trust.trusted_user_cas():
        def by_root(cert: cx509.Certificate, pem: str = ca.tls) -> x509.Identity:
            x509.verify_issued_by(cert, [x509.load_cert(pem)], server.clock.now())
            return x509.identity_of(cert)

        try:
            ident = _remembered(server, der, ca.tls, by_root)
        except AccessDenied:
            continue
        if ident.kind != "user" or ident.cluster != tc.metadata.name:
            raise AccessDenied("client certificate does not match its issuing authority")
        return ident
    raise AccessDenied("certificate is not signed by a trusted certificate authority")


async def identify(
    server: AuthServer,
    peer_der: bytes | None,
    forwarded_der: str | None,
    peer_addr: str,
    forwarded_addr: str | None,
) -> Caller | None:
    """The caller, or None for an anonymous one (only ping, login and join allow that).

    Certificates of trusted (root) clusters' users are accepted only when a proxy
    of this cluster relays them: that is how a root user's calls reach a leaf.
    """
    if not peer_der:
        return None
    ident = _local_identity(server, peer_der)
    if forwarded_der is None:
        return Caller(ident, peer_addr)
    if ident.system_role != "proxy":
        raise AccessDenied("only a proxy may forward a client's identity")
    await server.hosts.get(ident.name)  # a removed proxy relays nothing
    if not forwarded_der:
        return await relayed(server, None, forwarded_addr or peer_addr)
    try:
        der = base64.b64decode(forwarded_der, validate=True)
    except binascii.Error as exc:
        raise AccessDenied("forwarded client certificate is malformed") from exc
    return await relayed(server, der, forwarded_addr or peer_addr)


def is_proxy(server: AuthServer, der: bytes) -> bool:
    """Whether ``der`` is the certificate of a proxy of this cluster (signature and time
    only: ``identify`` checks the rest before the proxy speaks for anyone)."""
    try:
        return _local_identity(server, der).system_role == "proxy"
    except AccessDenied:
        return False


async def relayed(server: AuthServer, der: bytes | None, remote: str) -> Caller:
    """The client a proxy of this cluster relays, by the certificate it presented to the
    proxy (None: anonymous, who may only ping, log in and join)."""
    if not der:
        return Caller(x509.Identity(kind="host", name="", cluster=""), remote)
    try:
        forwarded = _local_identity(server, der)
    except AccessDenied as local_reason:
        try:
            forwarded = await _verify_trusted(server, der)
        except AccessDenied:
            raise local_reason from None
    if forwarded.kind != "user" and forwarded.system_role != "node":
        # A proxy relays users, and nodes that joined through it; never a proxy, the
        # auth or the admin credentials.
        raise AccessDenied("a proxy may relay only user and node certificates")
    return Caller(forwarded, remote)


async def root_trust(server: AuthServer, cluster: str) -> RootCluster | None:
    """What this cluster knows of its trust in root ``cluster`` (None: not trusted)."""
    with contextlib.suppress(NotFound, BadParameter):  # BadParameter: not a name
        spec = (await server.trust.trusted.get(cluster)).spec
        return RootCluster(name=cluster, enabled=spec.enabled, proxy_addr=spec.proxy_addr,
                           role_map=tuple(spec.role_map), host_ca_tls="",
                           access=await server.trust.root_access(cluster))
    return None


async def caller_roles(server: AuthServer, ident: x509.Identity) -> list[Role]:
    """A user's roles on this cluster: their own, or a root user's mapped by the role map."""
    user_exists = False
    root: RootCluster | None = None
    # A leaf-local login's certificate (signed here) speaks for a root's user.
    cluster = rolemap.holder_cluster(ident.cluster, ident.origin, server.cluster)
    if cluster == server.cluster:
        # An SSO user has no record: they stand while their connector does.
        with contextlib.suppress(NotFound):
            if ident.connector:
                await server.oidc.get(ident.connector)
            else:
                await server.users.get(ident.name)
            user_exists = True
    else:
        root = await root_trust(server, cluster)
    names = rolemap.resolve_roles(
        user=ident.name, user_cluster=cluster, cert_roles=ident.roles,
        local_cluster=server.cluster, user_exists=user_exists, root=root,
        existing={r.metadata.name for r in await server.roles.list()} if root else (),
    )
    return await server.roles_named(names)
