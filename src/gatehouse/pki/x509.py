"""X.509 identities and certificate authorities (pure: no sockets, no files).

A Gatehouse X.509 certificate carries the same identity as its SSH twin: who
(user name or host id), which cluster issued it, roles, logins, traits and the
cluster the user is heading to. The identity travels in one private extension
(JSON) so that the HTTPS API and the proxy read it without a lookup. Its JSON is
read within MAX_IDENTITY characters and three levels of nesting (see _boundedjson):
the tunnel server reads it before it knows which CA to check the certificate with.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import _boundedjson

__all__ = [
    "BACKDATE",
    "IDENTITY_OID",
    "MAX_IDENTITY",
    "Identity",
    "ca_fingerprint",
    "ca_type",
    "check_validity",
    "identity_of",
    "issue",
    "load_cert",
    "load_key",
    "new_ca",
    "pem_blocks",
    "pem_cert",
    "pem_key",
    "signer_among",
    "verify_issued_by",
]

# Private arc, as Teleport does with 1.3.9999; ours is 1.3.9999.7.
IDENTITY_OID = ObjectIdentifier("1.3.9999.7.1")
# Room for the SSH certificate's traits (sshcert.MAX_TRAITS) and as much again for
# the roles, logins and names.
MAX_IDENTITY = 128 * 1024

# Every certificate (SSH or X.509, CAs included) starts this long before it is issued,
# so that a verifier whose clock lags the issuer's accepts it at once: a leaf and its
# root, a node and its auth run on machines of their own, and clocks without NTP drift
# minutes apart (tests/integration/test_faults_skew.py: 10 minutes either way).
# The expiry does not move: a certificate is usable no later than before, only from
# before it was issued (when nobody held it yet).
BACKDATE = dt.timedelta(minutes=15)

IdentityKind = Literal["user", "host"]


@dataclass(frozen=True)
class Identity:
    """Who a certificate speaks for.

    For hosts, ``roles`` holds the system role: ``node``, ``proxy``, ``auth`` or
    ``admin`` (the local administrator credentials gatectl uses).
    """

    kind: IdentityKind
    name: str
    cluster: str
    roles: tuple[str, ...] = ()
    logins: tuple[str, ...] = ()
    traits: dict[str, list[str]] = field(default_factory=dict)
    route_to_cluster: str = ""
    expires: dt.datetime | None = None
    connector: str = ""  # a user who logged in through this SSO connector (no user record)
    # A root cluster's user certified by this (leaf) cluster's own user CA: that root's
    # name (``roles`` and ``traits`` are then the root's; auth/leaflogin.py).
    origin: str = ""

    def to_json(self) -> str:
        """Compact JSON; BadParameter past MAX_IDENTITY characters."""
        text = json.dumps(
            {
                "kind": self.kind,
                "name": self.name,
                "cluster": self.cluster,
                "roles": list(self.roles),
                "logins": list(self.logins),
                "traits": self.traits,
                "route_to_cluster": self.route_to_cluster,
                **({"connector": self.connector} if self.connector else {}),
                **({"origin": self.origin} if self.origin else {}),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return _boundedjson.check_size(text, "Gatehouse identity", MAX_IDENTITY)

    @classmethod
    def from_json(cls, text: str, expires: dt.datetime | None) -> Identity:
        raw: Any = _boundedjson.loads(text, "malformed Gatehouse identity in certificate",
                                      max_chars=MAX_IDENTITY, max_depth=3)
        try:
            kind = raw["kind"]
            if kind not in ("user", "host"):
                raise ValueError(kind)
            return cls(
                kind=kind,
                name=str(raw["name"]),
                cluster=str(raw["cluster"]),
                roles=tuple(str(r) for r in raw["roles"]),
                logins=tuple(str(x) for x in raw["logins"]),
                traits={str(k): [str(v) for v in vs] for k, vs in raw["traits"].items()},
                route_to_cluster=str(raw.get("route_to_cluster", "")),
                expires=expires,
                connector=str(raw.get("connector", "")),
                origin=str(raw.get("origin", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadParameter(f"malformed Gatehouse identity in certificate: {exc}") from exc

    @property
    def system_role(self) -> str:
        """The host's role ('' for users)."""
        return self.roles[0] if self.kind == "host" and self.roles else ""


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def new_ca(
    cluster: str, ca_type: str, now: dt.datetime, key: ed25519.Ed25519PrivateKey | None = None
) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    """A self-signed CA for ``cluster`` ('user' or 'host'), valid ten years."""
    key = key or ed25519.Ed25519PrivateKey.generate()
    name = _name(f"{cluster} {ca_type} CA", cluster)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )
    return key, cert


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def issue(
    ca_key: ed25519.Ed25519PrivateKey,
    ca_cert: x509.Certificate,
    public_key: ed25519.Ed25519PublicKey,
    identity: Identity,
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
    dns_names: list[str] | None = None,
) -> x509.Certificate:
    """Sign an identity certificate usable as a TLS client (and, with names, server)."""
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(identity.name, identity.cluster))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(IDENTITY_OID, identity.to_json().encode()), critical=False
        )
    )
    if dns_names:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(_san(dns_names), critical=False)
    builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(ca_key, None)


def identity_of(cert: x509.Certificate) -> Identity:
    """The Gatehouse identity a certificate carries (no chain check: see verify_issued_by)."""
    try:
        ext = cert.extensions.get_extension_for_oid(IDENTITY_OID)
    except x509.ExtensionNotFound as exc:
        raise AccessDenied("certificate carries no Gatehouse identity") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise AccessDenied("certificate carries a malformed Gatehouse identity")
    try:
        text = value.value.decode()
    except UnicodeDecodeError:
        raise BadParameter("malformed Gatehouse identity in certificate: not UTF-8") from None
    return Identity.from_json(text, cert.not_valid_after_utc)


def verify_issued_by(
    cert: x509.Certificate, cas: list[x509.Certificate], now: dt.datetime
) -> x509.Certificate:
    """Check ``cert`` is signed by one of ``cas`` and valid at ``now``; return that CA."""
    check_validity(cert, now)
    return signer_among(cert, cas)


def check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    """AccessDenied unless ``cert`` is valid at ``now``."""
    if now > cert.not_valid_after_utc:
        raise AccessDenied(f"certificate expired at {cert.not_valid_after_utc.isoformat()}")
    if now < cert.not_valid_before_utc:
        raise AccessDenied("certificate is not valid yet")


def signer_among(cert: x509.Certificate, cas: list[x509.Certificate]) -> x509.Certificate:
    """The CA among ``cas`` that signed ``cert`` (AccessDenied if none did)."""
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    raise AccessDenied("certificate is not signed by a trusted certificate authority")


def ca_type(cert: x509.Certificate) -> str:
    """'user' or 'host' for a Gatehouse CA certificate (from its subject), else ''."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common = str(names[0].value) if names else ""
    for kind in ("user", "host"):
        if common.endswith(f" {kind} CA"):
            return kind
    return ""


def ca_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the CA's SubjectPublicKeyInfo, as kubeadm pins discovery CAs."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return "sha256:" + digest.finalize().hex()


def pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def pem_key(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def pem_blocks(text: str, label: str = "CERTIFICATE") -> list[str]:
    """The PEM blocks of ``label`` in ``text``, in order, each ending in a newline
    (RFC 7468 textual encoding: a bundle of a key, a certificate and its CAs)."""
    pattern = rf"-----BEGIN {re.escape(label)}-----.*?-----END {re.escape(label)}-----"
    return [m.group(0) + "\n" for m in re.finditer(pattern, text, re.DOTALL)]


def load_cert(pem: str | bytes) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise BadParameter(f"malformed X.509 certificate: {exc}") from exc


def load_key(pem: str | bytes) -> ed25519.Ed25519PrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadParameter(f"malformed private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BadParameter("private key is not Ed25519")
    return key

