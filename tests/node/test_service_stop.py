"""A node whose service is stopping starts no session: a connection still open while
``NodeService.run()`` ends is refused a new session with a line saying why, and nothing
of it is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import uuid
from pathlib import Path

import asyncssh
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.auth.local import LocalAuth
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock, SystemMonotonic
from gatehouse.config import SSHSection
from gatehouse.node.service import NodeService
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process.ports import free_ports
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec

WAIT = 10.0  # seconds any single wait may take
CLUSTER = "sso.example.com"
LOGIN = getpass.getuser()  # a login of this machine: the node runs the session as it


def _key(key: ed25519.Ed25519PrivateKey) -> asyncssh.SSHKey:
    return asyncssh.import_private_key(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))


async def test_a_stopping_node_refuses_new_sessions_on_open_connections(
        backend: Backend, clock: FakeClock, tmp_path: Path) -> None:
    auth = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "stored")
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    store = StoredIdentity(tmp_path / "node")
    host_key = ed25519.Ed25519PrivateKey.generate()
    certs = await auth.certify_host("node", str(uuid.uuid4()), "node1", host_key.public_key(),
                                    [addr], [])
    store.save(host_key, certs.tls_cert,
               auth.cas["host"].tls_cert_pem + auth.cas["user"].tls_cert_pem, certs.ssh_cert)
    state = tmp_path / "state"
    node = NodeService(SSHSection(enabled=True, listen_addr=addr), "node1", store,
                       LocalAuth(auth).as_host(store.identity()), clock, state,
                       timer=SystemMonotonic())
    serving = asyncio.Event()
    running = asyncio.create_task(node.run(lambda _where: serving.set()))

    alice = User(metadata=Metadata(name="alice"),
                 spec=UserSpec(roles=["access"], traits={"logins": [LOGIN]}))
    await auth.users.upsert(alice)
    user_key = ed25519.Ed25519PrivateKey.generate()
    user_cert = (await auth.issue_user_certs(alice, user_key.public_key(), ttl=None)).ssh_cert
    try:
        await asyncio.wait_for(serving.wait(), WAIT)
        conn = await asyncio.wait_for(asyncssh.connect(
            "127.0.0.1", port, username=LOGIN, known_hosts=None, agent_path=None,
            client_keys=[(_key(user_key), asyncssh.import_certificate(user_cert))],
            preferred_auth="publickey"), WAIT)
        async with conn:
            before = await asyncio.wait_for(conn.run("echo served"), WAIT)
            assert (before.exit_status, before.stdout) == (0, "served\n")

            running.cancel()  # what a stop does to the service
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(running, WAIT)

            after = await asyncio.wait_for(conn.run("echo served"), WAIT)
        assert after.exit_status == 1
        assert after.stdout == ""
        assert "this node is stopping: no new session starts" in str(after.stderr)
        # At most the first session's recording (being finished, held, or uploaded and
        # gone), none of the second's.
        recorded = {path.name.split(".")[0] for path in (state / "recordings").iterdir()}
        assert len(recorded) <= 1, recorded
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
