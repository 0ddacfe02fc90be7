"""Whom a client of this proxy speaks for: the user certificate it presented in its TLS
handshake, verified against this cluster's user CAs (pure)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509 as cx509

from gatehouse.errors import AccessDenied
from gatehouse.pki import x509

__all__ = ["authenticate_user"]


def authenticate_user(der: bytes, cas: list[cx509.Certificate], now: dt.datetime
                      ) -> x509.Identity:
    """The user ``der`` certifies, if one of ``cas`` issued it and it is valid at ``now``;
    else AccessDenied saying why."""
    if not der:
        raise AccessDenied("a user certificate is required: run `gsh login` first")
    try:
        cert = cx509.load_der_x509_certificate(der)
    except ValueError:
        raise AccessDenied("the client certificate is malformed") from None
    x509.verify_issued_by(cert, cas, now)
    ident = x509.identity_of(cert)
    if ident.kind != "user":
        raise AccessDenied("only user certificates are accepted here")
    return ident
