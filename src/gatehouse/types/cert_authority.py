"""Certificate authorities (public parts only; the auth keeps private keys apart).

Only the shape of keys and certificates is checked here; the cryptography lives
in ``sshcert`` and ``x509``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from gatehouse.types.resource import Model, Name, Resource, invalid

__all__ = ["CertAuthority", "CertAuthoritySpec", "CertAuthorityType"]

CertAuthorityType = Literal["user", "host"]
_PEM_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


def _check_ssh_public_key(value: str) -> str:
    """An OpenSSH public key line "TYPE BASE64 [COMMENT]" whose blob names the same TYPE."""
    parts = value.split()
    if len(parts) < 2:
        raise invalid("expected an OpenSSH public key line 'TYPE BASE64 [COMMENT]'")
    key_type, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise invalid(f"{key_type} key: the key data is not valid base64") from None
    # RFC 4253 §6.6: the blob starts with the key type as an SSH string.
    length = int.from_bytes(raw[:4], "big")
    if len(raw) < 4 + length or raw[4 : 4 + length] != key_type.encode():
        raise invalid(f"{key_type} key: the key data does not hold a {key_type} key")
    return value


def _check_pem_certificate(value: str) -> str:
    """One PEM "CERTIFICATE" block with a base64 body."""
    match = _PEM_RE.fullmatch(value.strip())
    if match is None:
        raise invalid("expected one PEM block '-----BEGIN CERTIFICATE----- ...'")
    try:
        base64.b64decode("".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise invalid("the PEM certificate body is not valid base64") from None
    return value


class CertAuthoritySpec(Model):
    cluster_name: Name
    type: CertAuthorityType
    ssh_public_keys: list[Annotated[str, AfterValidator(_check_ssh_public_key)]] = Field(
        min_length=1
    )
    tls_certs: list[Annotated[str, AfterValidator(_check_pem_certificate)]] = Field(
        default_factory=list
    )


class CertAuthority(Resource):
    kind: Literal["cert_authority"] = "cert_authority"
    spec: CertAuthoritySpec
    status: None = None
