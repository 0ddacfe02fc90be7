"""TLS contexts for the API, the proxy's single port and the clients.

TLS 1.3 only; Ed25519 keys throughout. Servers ask for a client certificate
but do not require one (login and join come without); handlers decide.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "peer_der", "server_context"]


def server_context(
    cert_file: Path, key_file: Path, trusted_ca_pem: str, alpn: list[str]
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=trusted_ca_pem)
    ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(
    trusted_ca_pem: str | None,
    *,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    alpn: list[str] | None = None,
) -> ssl.SSLContext:
    """trusted_ca_pem=None means --insecure: no server verification at all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if trusted_ca_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=trusted_ca_pem)
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def peer_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The peer's certificate (DER) if it sent one."""
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)
