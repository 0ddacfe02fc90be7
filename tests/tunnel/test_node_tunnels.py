"""A proxy's tunnel server taking its own cluster's tunnel-mode nodes, with real TLS peers
on loopback: a node's tunnel is routed to only once the auth admitted it, and closed when
the auth refuses it (a removed node). Time is a fake monotonic clock the tests move."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import FakeMonotonic, SystemClock
from gatehouse.errors import ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.tunnel.liveness import COALESCE
from gatehouse.tunnel.mux import MuxSession, MuxStream, read_all
from gatehouse.tunnel.needs import OwnNodes
from gatehouse.tunnel.server import VERIFY_ALL_INTERVAL, TunnelServer
from gatehouse.wire.names import ALPN_TUNNEL

TIMEOUT = 5.0  # real seconds, for real I/O only
CLUSTER = "gatehouse.local"


async def echo(stream: MuxStream) -> None:
    """What the node serves in these tests: the bytes it is sent, back."""
    stream.accept({"host_id": "served"})
    await stream.write(await read_all(stream, 1024))
    stream.write_eof()


class Proxy:
    """A proxy's tunnel server on loopback whose auth admits the nodes not in ``refuse``."""

    def __init__(self, directory: Path, *, take_nodes: bool = True) -> None:
        self.dir = directory
        self.now = dt.datetime.now(dt.UTC)
        self.ca_key, self.ca = x509.new_ca(CLUSTER, "host", self.now)
        # A leaf's host CA, which the proxy's TLS trusts for that leaf's tunnel.
        self.leaf_key, self.leaf_ca = x509.new_ca("us-east-1a", "host", self.now)
        self.refuse: dict[str, str] = {}
        self.asked: asyncio.Queue[list[str]] = asyncio.Queue()
        self.verified: list[list[str] | None] = []  # what each report had the auth check
        self.clock = FakeMonotonic()
        own = OwnNodes(CLUSTER, lambda: [self.ca], self._report_nodes) if take_nodes else None
        self.tunnels = TunnelServer(lambda: {"us-east-1a": x509.pem_cert(self.leaf_ca)},
                                    self._report_leaves, self._store_events,
                                    SystemClock(), self.clock, own_nodes=own)
        self.port = 0

    async def _report_leaves(self, leaves: list[str]) -> None:
        pass

    async def _store_events(self, leaf: str, batch: object) -> dict[str, object]:
        return {}

    async def _report_nodes(self, host_ids: list[str],
                            verify: list[str] | None) -> dict[str, str]:
        """As the auth answers: it checks the registration of ``verify`` (None: all)."""
        self.verified.append(None if verify is None else sorted(verify))
        await self.asked.put(sorted(host_ids))
        return {h: self.refuse[h] for h in (host_ids if verify is None else verify)
                if h in self.refuse}

    def _files(self, name: str, role: str, *, by_leaf: bool = False) -> tuple[Path, Path]:
        key = ed25519.Ed25519PrivateKey.generate()
        ca_key, ca = (self.leaf_key, self.leaf_ca) if by_leaf else (self.ca_key, self.ca)
        cert = x509.issue(ca_key, ca, key.public_key(),
                          x509.Identity(kind="host", name=name, cluster=CLUSTER, roles=(role,)),
                          now=self.now, ttl=dt.timedelta(hours=1), dns_names=["localhost"])
        cert_file, key_file = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_file.write_text(x509.pem_cert(cert))
        key_file.write_text(x509.pem_key(key))
        return cert_file, key_file

    async def start(self) -> None:
        ctx = tls.server_context(*self._files("proxy", "proxy"),
                                 x509.pem_cert(self.ca) + x509.pem_cert(self.leaf_ca),
                                 alpn=[ALPN_TUNNEL])
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.tunnels.protocol, "127.0.0.1", 0, ssl=ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        self.task = asyncio.create_task(self.tunnels.run())

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.server.close()

    async def dial(self, host_id: str, role: str = "node", *,
                   by_leaf: bool = False) -> MuxSession:
        """A host of this cluster dialing with its host certificate (``by_leaf``: one a
        leaf's CA made up), serving ``echo``."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(*self._files(host_id, role, by_leaf=by_leaf))
        ctx.set_alpn_protocols([ALPN_TUNNEL])
        _, session = await asyncio.get_running_loop().create_connection(
            lambda: MuxSession(dialer=True, clock=self.clock, on_open=echo),
            "127.0.0.1", self.port, ssl=ctx)
        return session

    async def next_report(self) -> list[str]:
        """The next report of node tunnels, once the coalescing delay has passed."""
        await asyncio.wait_for(self.clock.until_sleeping(2), TIMEOUT)
        self.clock.advance(COALESCE)
        return await asyncio.wait_for(self.asked.get(), TIMEOUT)

    async def admitted(self, host_ids: list[str]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while self.tunnels.connected_nodes() != host_ids:
                await asyncio.sleep(0.005)


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    proxy = Proxy(tmp_path)
    await proxy.start()
    assert await proxy.asked.get() == []  # it starts by saying it holds none
    yield proxy
    await proxy.close()


async def roundtrip(proxy: Proxy, host_id: str) -> bytes:
    stream = await proxy.tunnels.open_node(host_id, {"kind": "ssh", "target": "edge"})
    await stream.write(b"hello")
    stream.write_eof()
    return await read_all(stream, 1024)


async def test_a_node_tunnel_is_routed_to_only_once_the_auth_admits_it(proxy: Proxy) -> None:
    await proxy.dial("hid-1")
    with pytest.raises(ConnectionProblem, match="node edge is offline"):
        await roundtrip(proxy, "hid-1")  # offered, not yet admitted
    assert await proxy.next_report() == ["hid-1"]
    await proxy.admitted(["hid-1"])
    assert await roundtrip(proxy, "hid-1") == b"hello"
    assert proxy.tunnels.connected() == []  # it is no leaf


async def test_a_tunnel_the_auth_refuses_is_closed_with_the_reason(proxy: Proxy) -> None:
    proxy.refuse["hid-1"] = "host hid-1 is not a registered node of this cluster (removed?)"
    node = await proxy.dial("hid-1")
    assert await proxy.next_report() == ["hid-1"]
    reason = await asyncio.wait_for(node.closed, TIMEOUT)
    assert "not a registered node" in reason
    assert proxy.tunnels.connected_nodes() == []


async def test_a_node_removed_while_its_tunnel_is_up_loses_it_on_the_recheck(
        proxy: Proxy) -> None:
    node = await proxy.dial("hid-1")
    assert await proxy.next_report() == ["hid-1"]
    await proxy.admitted(["hid-1"])
    proxy.refuse["hid-1"] = "removed"
    proxy.tunnels.recheck_nodes()  # the auth said something changed
    assert await proxy.next_report() == ["hid-1"]
    assert "removed" in await asyncio.wait_for(node.closed, TIMEOUT)
    await proxy.admitted([])
    with pytest.raises(ConnectionProblem, match="offline"):
        await roundtrip(proxy, "hid-1")


async def test_reports_have_the_auth_check_new_tunnels_and_all_of_them_now_and_then(
        proxy: Proxy) -> None:
    """10,000 node tunnels each checked every few seconds cost an idle auth 10,000
    reads each time: a report checks those offered; all of them after a change of
    trust (recheck_nodes), and every VERIFY_ALL_INTERVAL in any case."""
    assert proxy.verified == [None]  # the first report checks every one (none yet)
    await proxy.dial("hid-1")
    assert await proxy.next_report() == ["hid-1"]
    await proxy.admitted(["hid-1"])
    node2 = await proxy.dial("hid-2")
    assert await proxy.next_report() == ["hid-1", "hid-2"]
    await proxy.admitted(["hid-1", "hid-2"])
    assert proxy.verified[1:] == [["hid-1"], ["hid-2"]]
    proxy.refuse["hid-2"] = "removed"
    proxy.clock.advance(VERIFY_ALL_INTERVAL)  # the next report, in time, checks them all
    assert await proxy.next_report() == ["hid-1", "hid-2"]
    assert proxy.verified[-1] is None
    assert "removed" in await asyncio.wait_for(node2.closed, TIMEOUT)
    await proxy.admitted(["hid-1"])


async def test_only_a_node_certificate_opens_a_node_tunnel(proxy: Proxy) -> None:
    other = await proxy.dial("proxy-2", role="proxy")
    reason = await asyncio.wait_for(other.closed, TIMEOUT)
    assert "only a node of gatehouse.local may open a node tunnel" in reason
    assert proxy.tunnels.connected_nodes() == []


async def test_a_leaf_cannot_mint_a_node_of_this_cluster(proxy: Proxy) -> None:
    """The proxy's TLS trusts a leaf's host CA (for the leaf's tunnel), so a certificate
    that CA signed, claiming to be a node of this cluster, passes the handshake: the
    tunnel server must still refuse it, before the auth is even asked."""
    forged = await proxy.dial("hid-1", by_leaf=True)
    reason = await asyncio.wait_for(forged.closed, TIMEOUT)
    assert "tunnel refused" in reason
    assert proxy.tunnels.connected_nodes() == [] and proxy.asked.empty()


async def test_a_proxy_that_takes_no_node_tunnels_refuses_them(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path, take_nodes=False)
    await proxy.start()
    try:
        node = await proxy.dial("hid-1")
        reason = await asyncio.wait_for(node.closed, TIMEOUT)
        assert "is not a leaf of this cluster" in reason
    finally:
        await proxy.close()
