"""Roots, their user certificates and a leaf's trust in them, for the tests of what a
leaf takes over a root's tunnel (real certificates and signatures, a chosen clock)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.pki import sshcert, x509
from gatehouse.wire.trust import PublicCA, RootCluster, TrustSnapshot

LEAF = "leaf-1"
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Root:
    """A root cluster's user and host CAs (keys included: the tests sign with them)."""

    name: str
    user_key: ed25519.Ed25519PrivateKey
    user_ca: cx509.Certificate
    host_key: ed25519.Ed25519PrivateKey
    host_ca: cx509.Certificate

    @classmethod
    def new(cls, name: str) -> Root:
        return cls(name, *x509.new_ca(name, "user", NOW), *x509.new_ca(name, "host", NOW))

    def user_der(self, name: str = "alice", *, route: str = "", cluster: str = "",
                 kind: x509.IdentityKind = "user", issued: dt.datetime = NOW) -> bytes:
        """A certificate of this root's user CA (as the root issues it, unless told)."""
        ident = x509.Identity(kind=kind, name=name, cluster=cluster or self.name,
                              roles=("access",) if kind == "user" else ("proxy",),
                              route_to_cluster=route or self.name)
        cert = x509.issue(self.user_key, self.user_ca,
                          ed25519.Ed25519PrivateKey.generate().public_key(), ident,
                          now=issued, ttl=TTL)
        return cert.public_bytes(serialization.Encoding.DER)

    def host_der(self, role: str) -> bytes:
        """A host certificate of this root's host CA, for a ``role`` (proxy, auth...)."""
        ident = x509.Identity(kind="host", name=f"{role}-1", cluster=self.name, roles=(role,))
        cert = x509.issue(self.host_key, self.host_ca,
                          ed25519.Ed25519PrivateKey.generate().public_key(), ident,
                          now=NOW, ttl=TTL, dns_names=["127.0.0.1"])
        return cert.public_bytes(serialization.Encoding.DER)

    def public_user_ca(self) -> PublicCA:
        return PublicCA(self.name, "user", sshcert.public_key_line(self.user_key.public_key()),
                        x509.pem_cert(self.user_ca))


def leaf_trust(*roots: Root, disabled: tuple[Root, ...] = ()) -> TrustSnapshot:
    """The leaf's snapshot: ``roots`` trusted and enabled, ``disabled`` trusted but not
    (a disabled root's user CA is not in the snapshot, as the auth builds it)."""
    own = Root.new(LEAF).public_user_ca()
    return TrustSnapshot(
        cluster=LEAF,
        user_cas=(own, *(r.public_user_ca() for r in roots)),
        roots={r.name: RootCluster(name=r.name, enabled=r not in disabled,
                                   proxy_addr="127.0.0.1:3080", role_map=(),
                                   host_ca_tls=x509.pem_cert(r.host_ca))
               for r in (*roots, *disabled)},
    )
