"""Who is calling the auth API, and may they do this? (deny by default)

A caller is identified by its TLS client certificate, checked against the
cluster's own CAs (user certificates by the user CA, host certificates by the
host CA). A proxy may relay its client's certificate in a header; that
certificate is verified the same way, so a proxy cannot invent an identity.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from cryptography import x509 as cx509

from gatehouse import rbac, x509
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, NotFound

__all__ = ["HOST_PERMISSIONS", "Caller", "authorize", "identify"]

log = logging.getLogger(__name__)

# What each kind of host may do through the API, beyond which everything is denied.
HOST_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    "node": frozenset({("node", "heartbeat"), ("trust", "read"), ("event", "create")}),
    "proxy": frozenset({("node", "list"), ("node", "resolve"), ("event", "create"),
                        ("trust", "read")}),
}


@dataclass(frozen=True)
class Caller:
    identity: x509.Identity
    remote_addr: str


def _verify(server: AuthServer, der: bytes) -> x509.Identity:
    try:
        cert = cx509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AccessDenied("client certificate is malformed") from exc
    ca = x509.verify_issued_by(
        cert, [server.cas["user"].tls_cert, server.cas["host"].tls_cert], server.clock.now()
    )
    ident = x509.identity_of(cert)
    expected = "user" if ca == server.cas["user"].tls_cert else "host"
    if ident.kind != expected or ident.cluster != server.cluster:
        raise AccessDenied("client certificate does not match its issuing authority")
    return ident


def identify(
    server: AuthServer,
    peer_der: bytes | None,
    forwarded_der: str | None,
    peer_addr: str,
    forwarded_addr: str | None,
) -> Caller | None:
    """The caller, or None for an anonymous one (only ping, login and join allow that)."""
    if not peer_der:
        return None
    ident = _verify(server, peer_der)
    if forwarded_der is None:
        return Caller(ident, peer_addr)
    if ident.system_role != "proxy":
        raise AccessDenied("only a proxy may forward a client's identity")
    remote = forwarded_addr or peer_addr
    if not forwarded_der:
        return Caller(x509.Identity(kind="host", name="", cluster=""), remote)
    try:
        der = base64.b64decode(forwarded_der, validate=True)
    except binascii.Error as exc:
        raise AccessDenied("forwarded client certificate is malformed") from exc
    return Caller(_verify(server, der), remote)


async def authorize(server: AuthServer, caller: Caller | None, resource: str, verb: str) -> Caller:
    """Allow or raise AccessDenied (audited) with the reason."""
    try:
        if caller is None or not caller.identity.name:
            raise AccessDenied("this call needs a certificate: run `gsh login` or use gatectl -c")
        ident = caller.identity
        if ident.kind == "host":
            role = ident.system_role
            if role == "admin" or (resource, verb) in HOST_PERMISSIONS.get(role, frozenset()):
                return caller
            raise AccessDenied(f"a {role} may not {verb} {resource}")
        try:
            await server.users.get(ident.name)
        except NotFound:
            raise AccessDenied(f"user {ident.name} no longer exists") from None
        roles = await server.roles_named(ident.roles)
        decision = rbac.check_rule(roles, resource=resource, verb=verb)
        if not decision.allowed:
            raise AccessDenied(decision.reason)
        return caller
    except AccessDenied as exc:
        who = caller.identity.name if caller else ""
        log.warning("api access denied user=%s resource=%s verb=%s reason=%r",
                    who, resource, verb, str(exc))
        await server.audit.emit(
            "access.denied", user=who, remote_addr=caller.remote_addr if caller else "",
            message=str(exc), fields={"resource": resource, "verb": verb},
        )
        raise
