"""What a leaf believes of the user certificates a root relays over its tunnel (pure).

The root proxy saw the holder of a certificate prove its key in a TLS handshake; the
leaf sees the certificate only, a bearer token. So the leaf takes it as the word of
the root whose tunnel carried it, and of nobody else (docs/security.md, "Relayed
certificates"): signed by that root's user CA, for one of that root's users, valid
on the leaf's clock, routed to that root or to this leaf, while the trust in that
root is enabled; and a tunnel counts as the root's only when its far end showed a
proxy certificate of that root. Everything else is refused, saying why.
"""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509 as cx509

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import x509
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["check_relayed", "check_root_proxy", "claimed_user"]

# Certificates parsed, and signatures checked, are remembered (a user's certificate
# comes with each of their streams): ~0.4 ms a stream saved, as the auth does
# (auth/identify.py). Validity is checked on every use, on the caller's clock.
REMEMBERED = 4096


@functools.lru_cache(maxsize=REMEMBERED)
def _identity(der: bytes) -> tuple[cx509.Certificate, x509.Identity]:
    try:
        cert = cx509.load_der_x509_certificate(der)
        return cert, x509.identity_of(cert)
    except (ValueError, BadParameter):
        raise AccessDenied("the relayed certificate is malformed") from None


@functools.lru_cache(maxsize=REMEMBERED)
def _signed_by(der: bytes, ca_pem: str) -> bool:
    """Whether the CA ``ca_pem`` signed ``der``."""
    try:
        x509.signer_among(_identity(der)[0], [x509.load_cert(ca_pem)])
    except (AccessDenied, BadParameter):
        return False
    return True


def check_relayed(der: bytes, root: str, trust: TrustSnapshot,
                  now: dt.datetime) -> x509.Identity:
    """The user of ``der``, relayed over ``root``'s tunnel, if this leaf (``trust``) takes
    the certificate from that root at ``now``; else AccessDenied saying why."""
    if not der:
        raise AccessDenied("a relayed stream needs the certificate of a root cluster user")
    tc = trust.roots.get(root)
    if tc is None or not tc.enabled:
        raise AccessDenied(f"the trust in root {root} is not enabled")
    cert, ident = _identity(der)
    if not any(_signed_by(der, ca.tls) for ca in trust.user_cas
               if ca.cluster == root and ca.type == "user"):
        raise AccessDenied(f"the relayed certificate is not signed by the user CA of {root}, "
                           "whose tunnel carried it")
    try:
        x509.check_validity(cert, now)
    except AccessDenied as exc:
        raise AccessDenied(f"the relayed {exc}") from None
    if ident.kind != "user" or ident.cluster != root:
        raise AccessDenied(f"the relayed certificate is not one of {root}'s users'")
    if ident.route_to_cluster not in (root, trust.cluster):
        raise AccessDenied(f"the relayed certificate is for cluster "
                           f"{ident.route_to_cluster[:80]!r}, not {trust.cluster}")
    return ident


def check_root_proxy(der: bytes | None, root: str) -> str:
    """The host id of the proxy at the far end of a tunnel to ``root``; AccessDenied
    unless it showed a proxy certificate of ``root`` (TLS has checked that it chains to
    ``root``'s host CA and names the address dialed)."""
    if not der:
        raise AccessDenied(f"the far end of the tunnel to {root} showed no certificate")
    _, ident = _identity(der)
    if ident.kind != "host" or ident.system_role != "proxy" or ident.cluster != root:
        raise AccessDenied(f"the far end of the tunnel to {root} is not a proxy of {root} "
                           f"(its certificate says {ident.system_role or ident.kind} of "
                           f"{ident.cluster[:80]!r})")
    return ident.name


def claimed_user(der: bytes) -> str:
    """The user name a certificate claims, unchecked: for the record of a refusal only."""
    try:
        return _identity(der)[1].name[:80]
    except AccessDenied:
        return ""
