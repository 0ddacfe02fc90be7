"""Constants and builders shared by the auth tests (fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth.issuer import IssuedCerts
from gatehouse.auth.server import AuthServer
from gatehouse.pki import sshcert, x509
from gatehouse.types.resource import Metadata
from gatehouse.types.role import Role, RoleSpec
from gatehouse.wire.trust import PublicCA

CLUSTER = "sso.example.com"
NODE_ADDR = "10.0.0.7:3022"
# A node on the test's own host: its calls to the auth's HTTPS API come from loopback,
# the address it may advertise (auth.nodeaddr).
LOCAL_NODE_ADDR = "127.0.0.1:3022"


def new_key() -> ed25519.Ed25519PublicKey:
    return ed25519.Ed25519PrivateKey.generate().public_key()


def der(pem: str) -> bytes:
    return x509.load_cert(pem).public_bytes(serialization.Encoding.DER)


async def certify(server: AuthServer, host_id: str = "hid-1", nodename: str = "db1",
                  addrs: Sequence[str] = (NODE_ADDR,), *, role: str = "node",
                  dns_names: Sequence[str] = ()) -> IssuedCerts:
    """Register a host as a join would (the only way a heartbeat is accepted)."""
    return await server.certify_host(role, host_id, nodename, new_key(), list(addrs),
                                     list(dns_names))


async def add_role(server: AuthServer, name: str, **spec: object) -> Role:
    return await server.roles.create(Role(metadata=Metadata(name=name),
                                          spec=RoleSpec.model_validate(spec)))


def leaf_host_ca(cluster: str = "leaf-a") -> PublicCA:
    """The public host CA a leaf named ``cluster`` sends when it joins, as a real one is made."""
    key, cert = x509.new_ca(cluster, "host", dt.datetime.now(dt.UTC))
    return PublicCA(cluster, "host", sshcert.public_key_line(key.public_key()),
                    x509.pem_cert(cert))
