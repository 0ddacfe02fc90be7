"""What a tunnel-mode node serves on its tunnel: its own SSH server on "ssh" streams, and
nothing else whatever a stream asks for (no open relay). Real sessions on loopback."""

from __future__ import annotations

import asyncio
import socket

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import FakeClock, FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.node import sshserver
from gatehouse.node.tunnelstreams import TunnelStreams
from gatehouse.pki import sshcert
from gatehouse.wire.trust import TrustSnapshot
from tests.tunnel.loopback import sessions

WAIT = 10.0
NOW = int(FakeClock().now().timestamp())
CA = ed25519.Ed25519PrivateKey.generate()
HOST_KEY = ed25519.Ed25519PrivateKey.generate()


def _front() -> sshserver.SSHFront:
    cert = sshcert.sign(sshcert.Certificate(
        cert_type=sshcert.CertType.HOST, key_id="node", principals=("edge",),
        valid_after=NOW - 60, valid_before=NOW + 3600, public_key=HOST_KEY.public_key(),
        extensions=sshcert.host_extensions("sso.example.com", "node")), CA)
    key = asyncssh.import_private_key(HOST_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    return sshserver.SSHFront(
        key, asyncssh.import_certificate(sshcert.to_openssh_line(cert)),
        lambda peer: sshserver.NodeSSHServer(
            trust=TrustSnapshot, labels={}, clock=FakeClock(), audit=lambda e, f: None,
            record=lambda grant, info: pytest.fail("no session may start"),
            strangers=lambda fields: None))


async def test_an_ssh_stream_reaches_the_nodes_own_ssh_server() -> None:
    proxy, _node, server = await sessions(TunnelStreams(_front(), "hid-1"), FakeMonotonic())
    try:
        stream = await asyncio.wait_for(proxy.open({"kind": "ssh"}), WAIT)
        assert stream.accepted == {"host_id": "hid-1"}
        await stream.write(b"SSH-2.0-test\r\n")
        banner = await asyncio.wait_for(stream.read(), WAIT)
        assert banner.startswith(b"SSH-2.0-")
    finally:
        proxy.close()
        server.close()


@pytest.mark.parametrize("meta", [
    {"kind": "tcpip", "target": "127.0.0.1:22"},
    {"kind": "api", "path": "/v1/nodes"},
    {"target": "10.0.0.1:22"},
])
async def test_any_other_stream_is_refused_and_nothing_is_dialed(
        meta: dict[str, str]) -> None:
    # A listener the node would reach if it relayed: it must never see a connection.
    bait = socket.create_server(("127.0.0.1", 0))
    bait.setblocking(False)
    meta = {**meta, "target": f"127.0.0.1:{bait.getsockname()[1]}"}
    proxy, _node, server = await sessions(TunnelStreams(_front(), "hid-1"), FakeMonotonic())
    try:
        with pytest.raises(ConnectionProblem, match="serves only its SSH server"):
            await asyncio.wait_for(proxy.open(meta), WAIT)
        with pytest.raises(BlockingIOError):
            bait.accept()
    finally:
        bait.close()
        proxy.close()
        server.close()
