"""The node's SSH front door against a real asyncssh client: hostile certificates are
refused as any bad certificate is (permission denied, audited), not by an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import FakeClock
from gatehouse.node import sshserver
from gatehouse.pki import sshcert
from gatehouse.wire.trust import PublicCA, TrustSnapshot

WAIT = 10.0  # seconds any single wait may take
NOW = int(FakeClock().now().timestamp())
CLUSTER = "sso.example.com"
USER_CA = ed25519.Ed25519PrivateKey.generate()
ATTACKER_CA = ed25519.Ed25519PrivateKey.generate()
HOST_KEY = ed25519.Ed25519PrivateKey.generate()
CLIENT_KEY = ed25519.Ed25519PrivateKey.generate()


def _asyncssh_key(key: ed25519.Ed25519PrivateKey) -> asyncssh.SSHKey:
    return asyncssh.import_private_key(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))


def _cert(cert_type: sshcert.CertType, extensions: dict[str, str],
          ca: ed25519.Ed25519PrivateKey, public_key: ed25519.Ed25519PublicKey,
          principals: tuple[str, ...]) -> bytes:
    cert = sshcert.Certificate(
        cert_type=cert_type, key_id="mallory", principals=principals,
        valid_after=NOW - 60, valid_before=NOW + 3600, public_key=public_key)
    # Set after the checks of construction: another encoder does not make them.
    object.__setattr__(cert, "extensions", extensions)
    return sshcert.sign(cert, ca)


class Node:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.port = 0


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    trust = TrustSnapshot(cluster=CLUSTER, user_cas=(PublicCA(
        CLUSTER, "user", sshcert.public_key_line(USER_CA.public_key()), ""),))
    host_blob = _cert(sshcert.CertType.HOST, sshcert.host_extensions(CLUSTER, "node"),
                      USER_CA, HOST_KEY.public_key(), ("node1",))
    n = Node()
    front = sshserver.SSHFront(
        _asyncssh_key(HOST_KEY), asyncssh.import_certificate(sshcert.to_openssh_line(host_blob)),
        lambda peer: sshserver.NodeSSHServer(
            trust=lambda: trust, labels={}, clock=FakeClock(),
            audit=lambda event, fields: n.events.append((event, fields)),
            record=lambda grant, info: pytest.fail("no session may start")))
    server = await front.listen("127.0.0.1", 0)
    n.port = server.sockets[0].getsockname()[1]
    try:
        yield n
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


async def test_a_certificate_with_deeply_nested_traits_is_refused(node: Node) -> None:
    deep = '{"logins":' + "[" * 5000 + "]" * 5000 + "}"
    blob = _cert(sshcert.CertType.USER, {"permit-pty": "", sshcert.EXT_TRAITS: deep},
                 ATTACKER_CA, CLIENT_KEY.public_key(), ("root",))
    cert = asyncssh.import_certificate(sshcert.to_openssh_line(blob))
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncio.wait_for(asyncssh.connect(
            "127.0.0.1", node.port, username="root",
            client_keys=[(_asyncssh_key(CLIENT_KEY), cert)], known_hosts=None,
            agent_path=None, preferred_auth="publickey"), WAIT)
    assert [event for event, _ in node.events] == ["auth"]
    assert "nested deeper than 2" in node.events[0][1]["message"]
