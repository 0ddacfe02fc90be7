"""The cluster's certificate authorities: created on first start, kept in the backend.

Each CA ("user", "host") has two Ed25519 keys: one signs SSH certificates, one
signs X.509 certificates. Private keys never leave the auth service; the
public parts are what every other party pins. Every CA a cluster holds is kept
under PREFIX: its own (``local/``, here) and other clusters' public parts
(services.trust).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.backend import Backend, Item
from gatehouse.clock import Clock
from gatehouse.errors import AlreadyExists, NotFound
from gatehouse.pki import sshcert, x509
from gatehouse.wire.trust import PublicCA

__all__ = ["CA_TYPES", "PREFIX", "SigningAuthority", "load_or_create"]

CA_TYPES = ("user", "host")
PREFIX = "/authorities/"


def _key_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return x509.pem_key(key)


@dataclass(frozen=True)
class SigningAuthority:
    """A cluster's CA with its private keys (never leaves the auth)."""

    cluster: str
    type: str
    ssh_key: ed25519.Ed25519PrivateKey
    tls_key: ed25519.Ed25519PrivateKey
    tls_cert: cx509.Certificate

    @property
    def ssh_public_line(self) -> str:
        return sshcert.public_key_line(self.ssh_key.public_key())

    @property
    def tls_cert_pem(self) -> str:
        return x509.pem_cert(self.tls_cert)

    def public(self) -> PublicCA:
        """What others may know of it: the public key and certificate."""
        return PublicCA(self.cluster, self.type, self.ssh_public_line, self.tls_cert_pem)

    @property
    def ssh_fingerprint(self) -> str:
        return sshcert.fingerprint(self.ssh_key.public_key())

    @property
    def tls_fingerprint(self) -> str:
        return x509.ca_fingerprint(self.tls_cert)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "cluster": self.cluster,
                "type": self.type,
                "ssh_key": _key_pem(self.ssh_key),
                "tls_key": _key_pem(self.tls_key),
                "tls_cert": self.tls_cert_pem,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SigningAuthority:
        data = json.loads(raw)
        return cls(
            cluster=data["cluster"],
            type=data["type"],
            ssh_key=x509.load_key(data["ssh_key"]),
            tls_key=x509.load_key(data["tls_key"]),
            tls_cert=x509.load_cert(data["tls_cert"]),
        )


def _key(ca_type: str) -> bytes:
    return f"{PREFIX}local/{ca_type}".encode()


async def load_or_create(backend: Backend, cluster: str,
                         clock: Clock) -> dict[str, SigningAuthority]:
    """The local CAs by type, generated atomically on first start."""
    cas: dict[str, SigningAuthority] = {}
    for ca_type in CA_TYPES:
        key = _key(ca_type)
        try:
            item = await backend.get(key)
        except NotFound:
            tls_key, tls_cert = x509.new_ca(cluster, ca_type, clock.now())
            ca = SigningAuthority(cluster, ca_type, ed25519.Ed25519PrivateKey.generate(),
                               tls_key, tls_cert)
            try:
                await backend.create(Item(key=key, value=ca.to_json()))
            except AlreadyExists:
                item = await backend.get(key)
            else:
                cas[ca_type] = ca
                continue
        ca = SigningAuthority.from_json(item.value)
        cas[ca_type] = ca
    return cas
