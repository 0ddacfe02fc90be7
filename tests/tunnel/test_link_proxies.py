"""A tunnel-mode node's link to a cluster of two proxies, with real TLS on loopback: told
the proxies by the one it dials, it keeps one tunnel to each, closing the extra tunnels
that land on a proxy it holds, and keeps serving through one proxy when the other goes."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import SystemClock, SystemMonotonic
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.tunnel.link import TunnelLink
from gatehouse.tunnel.mux import MuxStream, read_all
from gatehouse.tunnel.needs import OwnNodes, Root
from gatehouse.tunnel.server import TunnelServer
from gatehouse.wire.authapi import RootTunnel
from gatehouse.wire.names import ALPN_TUNNEL

# Real seconds: the link's back-off runs on the real clock here, up to MAX_BACKOFF (x1.5)
# between dials, and a returned proxy is found within a few of them.
TIMEOUT = 30.0
CLUSTER = "gatehouse.local"
NODE = "node-1"


async def echo(stream: MuxStream) -> None:
    stream.accept()
    await stream.write(await read_all(stream, 1024))
    stream.write_eof()


class Cluster:
    """A host CA, and proxies of it on loopback that admit every node tunnel."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.now = dt.datetime.now(dt.UTC)
        self.ca_key, self.ca = x509.new_ca(CLUSTER, "host", self.now)
        self.proxies: dict[str, tuple[TunnelServer, asyncio.Server, asyncio.Task[None]]] = {}
        self.addrs: dict[str, str] = {}

    def identity(self, name: str, role: str) -> StoredIdentity:
        key = ed25519.Ed25519PrivateKey.generate()
        cert = x509.issue(self.ca_key, self.ca, key.public_key(),
                          x509.Identity(kind="host", name=name, cluster=CLUSTER, roles=(role,)),
                          now=self.now, ttl=dt.timedelta(hours=1), dns_names=["127.0.0.1"])
        store = StoredIdentity(self.dir / name)
        store.save(key, x509.pem_cert(cert), x509.pem_cert(self.ca))
        return store

    async def start_proxy(self, name: str) -> TunnelServer:
        async def no_leaves(leaves: list[str]) -> None:
            pass

        async def admit(host_ids: list[str], verify: list[str] | None) -> dict[str, str]:
            return {}

        async def no_events(leaf: str, batch: object) -> dict[str, object]:
            return {}

        server = TunnelServer(dict, no_leaves, no_events, SystemClock(), SystemMonotonic(),
                              own_nodes=OwnNodes(CLUSTER, lambda: [self.ca], admit))
        ident = self.identity(name, "proxy")
        ctx = tls.server_context(ident.tls_cert_file, ident.key_pem_file,
                                 x509.pem_cert(self.ca), alpn=[ALPN_TUNNEL])
        listener = await asyncio.get_running_loop().create_server(
            server.protocol, "127.0.0.1", 0, ssl=ctx)
        self.addrs[name] = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        self.proxies[name] = (server, listener, asyncio.create_task(server.run()))
        return server

    async def stop_proxy(self, name: str) -> None:
        _, listener, task = self.proxies.pop(name)
        listener.close()
        task.cancel()  # closes every tunnel it holds
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for name in list(self.proxies):
            await self.stop_proxy(name)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    await c.close()


async def until(what: str, check: Callable[[], bool]) -> None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"no {what} within {TIMEOUT:g} s") from None


async def roundtrip(server: TunnelServer) -> bytes:
    stream = await server.open_node(NODE, {"kind": "ssh", "target": "edge"})
    await stream.write(b"hello")
    stream.write_eof()
    return await read_all(stream, 1024)


async def test_the_link_holds_one_tunnel_to_each_proxy_it_is_told_of(cluster: Cluster) -> None:
    p1 = await cluster.start_proxy("p1")
    p2 = await cluster.start_proxy("p2")
    for server in (p1, p2):
        server.announce(dict(cluster.addrs))
    # The node is configured with p1's address only: every dial there lands on p1.
    link = TunnelLink(Root(CLUSTER, cluster.addrs["p1"], x509.pem_cert(cluster.ca)),
                      cluster.identity(NODE, "node"), serve=echo, while_up=None,
                      clock=SystemMonotonic(), rng=random.Random(1), what="the proxies",
                      on_state=None)
    task = asyncio.create_task(link.run())
    try:
        await until("a tunnel on each proxy", lambda: p1.connected_nodes() == [NODE] and
                    p2.connected_nodes() == [NODE])
        assert await roundtrip(p1) == b"hello" and await roundtrip(p2) == b"hello"
        # The second loop's dials to p1 were redundant, and closed by the node itself.
        await until("one tunnel left on p1", lambda: len(p1._nodes.of(NODE)) == 1)

        await cluster.stop_proxy("p2")  # gone: p1 serves on, and the link looks for p2
        assert await roundtrip(p1) == b"hello"
        again = await cluster.start_proxy("p2")  # back, at another port: told by p1
        p1.announce(dict(cluster.addrs))
        await until("a tunnel on the returned proxy", lambda: again.connected_nodes() == [NODE])
        assert await roundtrip(again) == b"hello"
        assert len(p1._nodes.of(NODE)) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_proxy_certificate_not_valid_yet_names_this_machine_s_clock(
        cluster: Cluster) -> None:
    """A tunnel agent whose check of the proxy's certificate fails on its dates says so
    by its own clock, as gsh does (the daemons said only "certificate verify failed")."""
    cluster.now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # its auth runs ahead
    await cluster.start_proxy("p1")
    states: list[RootTunnel] = []
    link = TunnelLink(Root(CLUSTER, cluster.addrs["p1"], x509.pem_cert(cluster.ca)),
                      cluster.identity(NODE, "node"), serve=echo, while_up=None,
                      clock=SystemMonotonic(), rng=random.Random(1), what="the proxies",
                      on_state=states.append)
    task = asyncio.create_task(link.run())
    try:
        await until("a failed dial", lambda: any("cannot reach" in s.detail for s in states))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    (failed, *_) = [s for s in states if "cannot reach" in s.detail]
    assert not failed.up
    assert "its certificate is not valid yet by this machine's clock (" in failed.detail, failed
    assert "the clock is likely behind" in failed.detail
