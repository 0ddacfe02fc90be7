"""Signing: user and host certificates, SSH and X.509 twins of one identity (pure)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.pki import sshcert, x509
from gatehouse.pki.sshcert import parse_public_key  # re-exported: the callers' one parser
from gatehouse.services.authorities import SigningAuthority

__all__ = ["NO_LOGIN_PRINCIPAL", "IssuedCerts", "issue_host", "issue_user", "parse_public_key"]

# OpenSSH treats an empty principal list as "any principal" (PROTOCOL.certkeys);
# a user with no logins gets this impossible one instead.
NO_LOGIN_PRINCIPAL = "-gatehouse-no-login-"


@dataclass(frozen=True)
class IssuedCerts:
    ssh_cert: str  # one OpenSSH line
    tls_cert: str  # PEM
    expires: dt.datetime
    serial: int = 0  # of the SSH certificate: with the user, the audit correlation id


def issue_user(
    ca: SigningAuthority,
    public_key: ed25519.Ed25519PublicKey,
    ident: x509.Identity,
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
    port_forwarding: bool,
) -> IssuedCerts:
    expires = now + ttl
    serial = secrets.randbits(63)
    cert = sshcert.Certificate(
        cert_type=sshcert.CertType.USER,
        key_id=ident.name,
        principals=tuple(ident.logins) or (NO_LOGIN_PRINCIPAL,),
        valid_after=int((now - x509.BACKDATE).timestamp()),
        valid_before=int(expires.timestamp()),
        public_key=public_key,
        serial=serial,
        extensions=sshcert.user_extensions(
            roles=ident.roles,
            traits=ident.traits,
            route_to_cluster=ident.route_to_cluster,
            cluster=ident.cluster,
            permit_pty=True,
            permit_port_forwarding=port_forwarding,
            connector=ident.connector,
            origin=ident.origin,
        ),
    )
    blob = sshcert.sign(cert, ca.ssh_key)
    tls = x509.issue(ca.tls_key, ca.tls_cert, public_key, ident, now=now, ttl=ttl)
    return IssuedCerts(
        ssh_cert=sshcert.to_openssh_line(blob, ident.name),
        tls_cert=x509.pem_cert(tls),
        expires=expires,
        serial=serial,
    )


def issue_host(
    ca: SigningAuthority,
    public_key: ed25519.Ed25519PublicKey,
    ident: x509.Identity,
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
    principals: list[str],
    dns_names: list[str],
) -> IssuedCerts:
    """Host certificates: ``ident.name`` is the host id, ``ident.roles`` its one system role."""
    cert = sshcert.Certificate(
        cert_type=sshcert.CertType.HOST,
        key_id=ident.name,
        principals=tuple(dict.fromkeys(principals)),
        valid_after=int((now - x509.BACKDATE).timestamp()),
        valid_before=int((now + ttl).timestamp()),
        public_key=public_key,
        serial=secrets.randbits(63),
        extensions=sshcert.host_extensions(ident.cluster, ident.system_role),
    )
    blob = sshcert.sign(cert, ca.ssh_key)
    tls = x509.issue(ca.tls_key, ca.tls_cert, public_key, ident, now=now, ttl=ttl,
                     dns_names=dns_names)
    return IssuedCerts(
        ssh_cert=sshcert.to_openssh_line(blob, ident.name),
        tls_cert=x509.pem_cert(tls),
        expires=now + ttl,
    )
