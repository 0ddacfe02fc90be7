"""What a leaf believes of the certificates a root relays over its tunnel (issue 15,
finding 7; docs/security.md, "Relayed certificates").

A relayed certificate is a bearer token: the leaf never sees its holder prove the key.
So a leaf trusting two roots, A and B, takes a certificate relayed over A's tunnel only
as A's word for one of A's users, and holds a tunnel only with A's proxy. Root A is
played here by whoever holds one of A's host certificates: A stops, and a stand-in
serves A's proxy port with that certificate, accepts the leaf's tunnel and opens the
streams it likes, as a compromised or impersonated root could.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gatehouse.clock import SystemMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process.harness import Client, Cluster, in_parallel, join, wait_for
from gatehouse.tunnel.mux import MuxSession, read_all
from gatehouse.wire.names import ALPN_TUNNEL

ROOT_A, ROOT_B, LEAF = "root-a.example", "root-b.example", "leaf.example"
MAP = "{remote: access, local: [access]}"
TIMEOUT = 30.0  # the leaf redials a lost root with a backoff of at most 15 s


@dataclass
class Seed:
    a: Cluster
    b: Cluster
    leaf: Cluster
    alice_of_a: bytes  # X.509 user certificates (DER), as their holders' gsh got them
    bob_of_b: bytes


def _user_der(cluster: Cluster, home: Path, user: str) -> bytes:
    cluster.add_user(user, roles="access", logins="root")
    home.mkdir()
    Client(home, cluster.proxy).login(user).ok()
    cert = StoredIdentity(home / "keys").tls_cert()
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    base = tmp_path_factory.mktemp("relayed")
    a, b = Cluster(base / "a", name=ROOT_A), Cluster(base / "b", name=ROOT_B)
    leaf = Cluster(base / "leaf", name=LEAF)
    try:
        in_parallel(a.start, b.start, leaf.start)
        join(leaf, a, MAP)
        join(leaf, b, MAP)
        s = Seed(a, b, leaf, _user_der(a, base / "alice", "alice"),
                 _user_der(b, base / "bob", "bob"))
        a.stop()  # its port is the stand-in's from now on
        yield s
    finally:
        for c in (a, b, leaf):
            c.stop(wait=False)


class StandIn:
    """Serves root A's proxy port with ``store``'s certificate: takes the leaf's tunnels."""

    def __init__(self, store: StoredIdentity) -> None:
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(store.tls_cert_file, store.key_pem_file)
        self._ctx.set_alpn_protocols([ALPN_TUNNEL])
        self.tunnels: asyncio.Queue[MuxSession] = asyncio.Queue()
        self._all: list[MuxSession] = []

    def _session(self) -> MuxSession:
        tunnels = self.tunnels

        class Tunnel(MuxSession):  # refuses the leaf's streams (its audit events)
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                tunnels.put_nowait(self)

        session = Tunnel(dialer=False, clock=SystemMonotonic())
        self._all.append(session)
        return session

    @contextlib.asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[StandIn]:
        server = await asyncio.get_running_loop().create_server(
            self._session, "127.0.0.1", port, ssl=self._ctx, reuse_address=True)
        try:
            yield self
        finally:
            server.close()
            for session in self._all:  # the leaf redials the next stand-in at once
                session.abort()

    async def tunnel(self) -> MuxSession:
        async with asyncio.timeout(TIMEOUT):
            return await self.tunnels.get()


async def _list_nodes(tunnel: MuxSession, der: bytes) -> int:
    """A relayed `GET /v1/nodes` in the name of ``der``'s user: the leaf's HTTP status."""
    stream = await tunnel.open({"kind": "api", "method": "GET", "path": "/v1/nodes",
                                "remote": "203.0.113.9:1",
                                "client_cert": base64.b64encode(der).decode()})
    stream.write_eof()
    return int(json.loads(await read_all(stream, 1 << 20))["status"])


async def test_a_certificate_of_another_root_is_refused_over_this_roots_tunnel(
        seed: Seed) -> None:
    async with StandIn(StoredIdentity(seed.a.data_dir / "proxy")).serving(
            seed.a.proxy_port) as root_a:
        tunnel = await root_a.tunnel()
        assert await _list_nodes(tunnel, seed.alice_of_a) == 200  # A's own user
        with pytest.raises(ConnectionProblem, match="the relayed certificate is not signed by "
                           f"the user CA of {ROOT_A}, whose tunnel carried it"):
            await _list_nodes(tunnel, seed.bob_of_b)
    events = await asyncio.to_thread(seed.leaf.wait_event, "the leaf's audit of the refusal",
                                     lambda e: e["event"] == "proxy.dial.denied"
                                     and e["user"] == "bob")
    assert events["fields"]["root"] == ROOT_A, events


async def test_the_leaf_keeps_a_tunnel_only_with_the_roots_proxy(seed: Seed) -> None:
    # A's auth holds a TLS server certificate of A's host CA too (naming 127.0.0.1, as
    # the proxy's does), but it is no proxy: it never relays anyone.
    async with StandIn(StoredIdentity(seed.a.data_dir / "auth")).serving(
            seed.a.proxy_port) as auth_of_a:
        tunnel = await auth_of_a.tunnel()
        with pytest.raises(ConnectionProblem):
            await _list_nodes(tunnel, seed.alice_of_a)
        async with asyncio.timeout(TIMEOUT):
            assert "closed" in await tunnel.closed
    daemon = seed.leaf.daemon
    assert daemon is not None
    # The leaf may log its refusal just after the tunnel closes: wait for the line.
    wait_for("the leaf's refusal in its log", lambda: f"is not a proxy of {ROOT_A} (its "
             "certificate says auth of" in daemon.output(), timeout=TIMEOUT)
