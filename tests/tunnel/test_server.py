"""The root's tunnel server with real TLS peers on loopback: who may hold a tunnel, the
heartbeats it sends only to quiet tunnels, and its reports of the tunnels it holds. Time is
a fake monotonic clock that the tests move: no test waits for a timer on the wall clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.forward import ForwardedCall
from gatehouse.clock import FakeMonotonic, SystemClock
from gatehouse.errors import ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.tunnel.frames import INITIAL_WINDOW
from gatehouse.tunnel.limits import (
    MAX_STREAMS_FROM_LEAF,
    MAX_TUNNELS_PER_PEER,
    MESSAGE_DEADLINE,
)
from gatehouse.tunnel.liveness import (
    COALESCE,
    HEARTBEAT_INTERVAL,
    PING_TIMEOUT,
    REPORT_INTERVAL,
    RETRY,
)
from gatehouse.tunnel.mux import MuxSession, MuxStream
from gatehouse.tunnel.server import TunnelServer
from gatehouse.wire.names import ALPN_TUNNEL

TIMEOUT = 5.0  # real seconds, for real I/O only


class Silent(asyncio.Protocol):
    """A peer that completed TLS and then stopped reading: it never answers a ping."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


class Unplugged(Silent):
    """A peer that never answers, whose connection the test cuts once it heard a frame."""

    def __init__(self) -> None:
        super().__init__()
        self.heard = asyncio.Event()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard.set()


class Root:
    """A root proxy's tunnel server on loopback, trusting the host CAs of ``leaves``."""

    def __init__(self, directory: Path, leaves: list[str]) -> None:
        self.dir = directory
        self.now = dt.datetime.now(dt.UTC)
        self.cas = {leaf: x509.new_ca(leaf, "host", self.now) for leaf in leaves}
        self.known = set(leaves)  # the leaves the root's auth still lists
        self.reports: asyncio.Queue[list[str]] = asyncio.Queue()
        self.failures = 0  # reports to fail before the auth answers again
        self.clock = FakeMonotonic()  # the root's and its leaves' monotonic time
        self.tunnels = TunnelServer(
            lambda: {leaf: x509.pem_cert(self.cas[leaf][1]) for leaf in self.known},
            self._report, self._store_events, SystemClock(), self.clock)
        self.port = 0

    async def _report(self, leaves: list[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionProblem("the auth is away")
        await self.reports.put(sorted(leaves))

    async def _store_events(self, leaf: str, batch: object) -> dict[str, object]:
        return {"stored": 0, "rejected": 0}

    def _files(self, name: str, key: ed25519.Ed25519PrivateKey, cert: str) -> tuple[Path, Path]:
        cert_file, key_file = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_file.write_text(cert)
        key_file.write_text(x509.pem_key(key))
        return cert_file, key_file

    async def start(self) -> None:
        ca_key, ca = x509.new_ca("sso.example.com", "host", self.now)
        key = ed25519.Ed25519PrivateKey.generate()
        cert = x509.issue(ca_key, ca, key.public_key(),
                          x509.Identity(kind="host", name="proxy", cluster="sso.example.com",
                                        roles=("proxy",)),
                          now=self.now, ttl=dt.timedelta(hours=1), dns_names=["localhost"])
        ctx = tls.server_context(*self._files("root", key, x509.pem_cert(cert)),
                                 "".join(x509.pem_cert(c) for _, c in self.cas.values()),
                                 alpn=[ALPN_TUNNEL])
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.tunnels.protocol, "127.0.0.1", 0, ssl=ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        self.task = asyncio.create_task(self.tunnels.run())

    async def close(self) -> None:
        self.task.cancel()  # run closes every tunnel and awaits what ran on them
        await asyncio.gather(self.task, return_exceptions=True)
        self.server.close()

    async def dial(self, leaf: str, role: str = "proxy",
                   protocol: Callable[[], asyncio.Protocol] | None = None) -> asyncio.Protocol:
        """A leaf's proxy (or another of its hosts) connecting with its host certificate."""
        ca_key, ca = self.cas[leaf]
        key = ed25519.Ed25519PrivateKey.generate()
        cert = x509.issue(ca_key, ca, key.public_key(),
                          x509.Identity(kind="host", name=f"{role}-1", cluster=leaf,
                                        roles=(role,)),
                          now=self.now, ttl=dt.timedelta(hours=1))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(*self._files(f"{leaf}-{role}", key, x509.pem_cert(cert)))
        ctx.set_alpn_protocols([ALPN_TUNNEL])
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            protocol or (lambda: MuxSession(dialer=True, clock=self.clock)),
            "127.0.0.1", self.port, ssl=ctx)
        return proto

    async def report(self) -> list[str]:
        return await asyncio.wait_for(self.reports.get(), TIMEOUT)

    async def holds(self, leaves: list[str]) -> None:
        """Wait (real time, bounded) until the server holds the tunnels of ``leaves``."""
        async with asyncio.timeout(TIMEOUT):
            while self.tunnels.connected() != leaves:
                await asyncio.sleep(0.005)

    async def quiet(self) -> None:
        """Wait until the server's heartbeat and report loops both sleep on the clock: it
        did all that was due by now."""
        await asyncio.wait_for(self.clock.until_sleeping(2), TIMEOUT)

    async def advance(self, seconds: float) -> None:
        """Move time once the server waits for it (a loop that read the time before the
        move, and went to sleep after it, would sleep too long)."""
        await self.quiet()
        self.clock.advance(seconds)


@pytest.fixture
async def root(tmp_path: Path) -> AsyncIterator[Root]:
    root = Root(tmp_path, ["us-east-1a", "us-east-1b"])
    await root.start()
    assert await root.report() == []  # a proxy starts by saying it holds nothing
    yield root
    await root.close()


async def closed(session: MuxSession) -> None:
    await asyncio.wait_for(session.closed, TIMEOUT)


# --- reports to the auth -----------------------------------------------------------------


async def test_a_tunnel_is_reported_when_it_comes_up_and_when_it_drops(root: Root) -> None:
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE * 0.9)
    await root.quiet()
    assert root.reports.empty()  # changes coalesce...
    await root.advance(COALESCE * 0.1)
    assert await root.report() == ["us-east-1a"]  # ...but not until the periodic report
    leaf.close("leaf stopping")
    await root.holds([])
    await root.advance(COALESCE)
    assert await root.report() == []


async def test_tunnels_coming_up_together_make_one_report(root: Root) -> None:
    await asyncio.gather(root.dial("us-east-1a"), root.dial("us-east-1b"))
    await root.holds(["us-east-1a", "us-east-1b"])
    await root.advance(COALESCE)
    assert await root.report() == ["us-east-1a", "us-east-1b"]
    await root.quiet()
    assert root.reports.empty()


async def test_reports_repeat_while_tunnels_are_held_and_stop_when_none_are(root: Root) -> None:
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE)
    assert await root.report() == ["us-east-1a"]
    for _ in range(2):
        await root.advance(REPORT_INTERVAL)
        assert await root.report() == ["us-east-1a"]
    leaf.close("leaf stopping")
    await root.holds([])
    await root.advance(COALESCE)
    assert await root.report() == []
    for _ in range(3):
        await root.advance(REPORT_INTERVAL)
    await root.quiet()
    assert root.reports.empty()  # the auth knows it holds nothing: no more calls


async def test_a_failed_report_is_sent_again(root: Root) -> None:
    root.failures = 1
    await root.dial("us-east-1a")
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE)
    async with asyncio.timeout(TIMEOUT):
        while root.failures:  # the first try failed
            await asyncio.sleep(0.005)
    await root.advance(RETRY * 0.9)
    await root.quiet()
    assert root.reports.empty()
    await root.advance(RETRY * 0.1)
    assert await root.report() == ["us-east-1a"]


async def test_a_second_tunnel_of_a_leaf_leaves_the_first_open(root: Root) -> None:
    # A leaf's agent that reached this proxy twice (through a load balancer) closes the
    # extra tunnel itself; closing the older one here would cut the sessions on it.
    first = await root.dial("us-east-1a")
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE)
    assert await root.report() == ["us-east-1a"]
    second = await root.dial("us-east-1a")
    assert isinstance(first, MuxSession) and isinstance(second, MuxSession)
    await second.ping()
    assert not first.closed.done()
    await second.aclose("redundant")
    await first.ping()  # still served
    assert root.tunnels.connected() == ["us-east-1a"]
    await root.advance(COALESCE)
    await root.quiet()
    assert root.reports.empty()  # never reported gone meanwhile
    await first.aclose("done")
    await root.holds([])
    await root.advance(COALESCE)
    assert await root.report() == []


async def test_a_leaf_holds_at_most_a_few_tunnels_on_one_proxy(root: Root) -> None:
    """Each tunnel brings its own stream cap and windows: a leaf that dialed without end
    would multiply what it may make the root hold. Past MAX_TUNNELS_PER_PEER its oldest
    tunnel is closed (an honest agent holds one, two while it reconnects)."""
    tunnels = []
    for _ in range(MAX_TUNNELS_PER_PEER + 2):
        tunnel = await root.dial("us-east-1a")
        assert isinstance(tunnel, MuxSession)
        await tunnel.ping()  # registered
        tunnels.append(tunnel)
    for old in tunnels[:2]:
        await closed(old)
        assert "at most" in old.closed.result(), old.closed.result()
    for kept in tunnels[2:]:
        await kept.ping()
    assert root.tunnels.connected() == ["us-east-1a"]
    for kept in tunnels[2:]:
        await kept.aclose("done")


async def test_every_leaf_is_told_the_proxies_and_each_change(root: Root) -> None:
    told: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def hear(stream: MuxStream) -> None:
        await told.put(stream.meta)
        stream.accept()

    leaf = await root.dial("us-east-1a", protocol=lambda: MuxSession(
        dialer=True, clock=root.clock, on_open=hear))
    await root.holds(["us-east-1a"])
    root.tunnels.announce({"p1": "10.0.0.1:3080", "p2": "10.0.0.2:3080"})
    assert await asyncio.wait_for(told.get(), TIMEOUT) == {
        "kind": "proxies", "proxies": {"p1": "10.0.0.1:3080", "p2": "10.0.0.2:3080"}}
    root.tunnels.announce({"p1": "10.0.0.1:3080", "p2": "10.0.0.2:3080"})  # no change
    root.tunnels.announce({"p1": "10.0.0.1:3080"})
    assert (await asyncio.wait_for(told.get(), TIMEOUT))["proxies"] == {"p1": "10.0.0.1:3080"}
    other = await root.dial("us-east-1b", protocol=lambda: MuxSession(
        dialer=True, clock=root.clock, on_open=hear))
    assert (await asyncio.wait_for(told.get(), TIMEOUT))["proxies"] == {"p1": "10.0.0.1:3080"}
    assert told.empty()
    assert isinstance(leaf, MuxSession) and isinstance(other, MuxSession)


# --- who may hold a tunnel ---------------------------------------------------------------


async def test_only_a_proxy_of_the_leaf_may_open_its_tunnel(
    root: Root, caplog: pytest.LogCaptureFixture,
) -> None:
    node = await root.dial("us-east-1a", role="node")
    assert isinstance(node, MuxSession)
    await closed(node)
    assert "only a proxy of us-east-1a may open its tunnel" in caplog.text
    assert root.tunnels.connected() == []


async def test_a_removed_leaf_loses_its_tunnel_and_may_not_open_another(
    root: Root, caplog: pytest.LogCaptureFixture,
) -> None:
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE)
    assert await root.report() == ["us-east-1a"]
    root.known.discard("us-east-1a")
    root.tunnels.drop_unknown()
    await closed(leaf)
    # The leaf is told why, and what to do (its status shows it).
    assert leaf.closed.result().startswith("closed by the peer: this leaf was removed from "
                                           "the root: to join again, run `gatectl create -f`")
    await root.holds([])
    await root.advance(COALESCE)
    assert await root.report() == []
    again = await root.dial("us-east-1a")
    assert isinstance(again, MuxSession)
    await closed(again)
    assert "cluster us-east-1a is not a leaf of this cluster" in caplog.text
    assert again.closed.result().startswith(
        "closed by the peer: tunnel refused: cluster us-east-1a is not a leaf of this cluster")
    assert root.tunnels.connected() == []


# --- heartbeats ----------------------------------------------------------------------------


async def test_a_quiet_leaf_that_answers_heartbeats_keeps_its_tunnel(root: Root) -> None:
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    held = root.tunnels._sessions.get("us-east-1a")
    assert held is not None
    heard_before = leaf.last_seen
    await root.advance(HEARTBEAT_INTERVAL)
    await root.tunnels.sweep(root.clock.monotonic(), spread=0)
    assert held.pinged == root.clock.monotonic()
    async with asyncio.timeout(TIMEOUT):  # the leaf hears the ping, and its answer comes back
        while held.last_seen < held.pinged:
            await asyncio.sleep(0.005)
    assert leaf.last_seen > heard_before
    await root.advance(PING_TIMEOUT)
    await root.tunnels.sweep(root.clock.monotonic(), spread=0)
    assert root.tunnels.connected() == ["us-east-1a"]
    assert not leaf.closed.done()


async def test_a_leaf_that_does_not_answer_is_dropped_and_reported(root: Root) -> None:
    silent = await root.dial("us-east-1a", protocol=Silent)
    assert isinstance(silent, Silent)
    await root.holds(["us-east-1a"])
    await root.advance(COALESCE)
    assert await root.report() == ["us-east-1a"]
    await root.tunnels.sweep(root.clock.monotonic(), spread=0)
    assert root.tunnels._sessions.get("us-east-1a").pinged is None  # heard from at connect
    await root.advance(HEARTBEAT_INTERVAL)
    await root.tunnels.sweep(root.clock.monotonic(), spread=0)  # pinged
    assert root.tunnels.connected() == ["us-east-1a"]
    await root.advance(PING_TIMEOUT)
    await root.tunnels.sweep(root.clock.monotonic(), spread=0)  # no answer
    await root.holds([])
    await root.advance(COALESCE)
    while await root.report():  # after the periodic reports of the 135 s that passed
        pass
    await asyncio.wait_for(silent.lost, TIMEOUT)


# --- what a leaf may make the root hold (review finding 3 of the hardening issue) ----------


async def test_a_leaf_may_hold_only_a_few_event_streams_open(
    root: Root, caplog: pytest.LogCaptureFixture,
) -> None:
    """The review's attack: forty event streams, each sent most of a batch, never finished."""
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    accepted, refused = [], []
    for _ in range(40):
        try:
            stream = await leaf.open({"kind": "events"})
        except ConnectionProblem as exc:
            refused.append(str(exc))
            continue
        await stream.write(b'{"events": [' + b" " * (256 << 10))
        accepted.append(stream)
    assert len(accepted) == MAX_STREAMS_FROM_LEAF, f"the root took {len(accepted)} streams"
    assert all("too many streams" in reason for reason in refused)
    assert f"peer=us-east-1a open={MAX_STREAMS_FROM_LEAF} limit={MAX_STREAMS_FROM_LEAF}" \
        in caplog.text


async def test_an_event_stream_that_never_finishes_is_reset_at_the_deadline(
    root: Root, caplog: pytest.LogCaptureFixture,
) -> None:
    leaf = await root.dial("us-east-1a")
    assert isinstance(leaf, MuxSession)
    await root.holds(["us-east-1a"])
    stream = await leaf.open({"kind": "events"})
    await stream.write(b'{"events": [')  # and nothing more, ever
    await asyncio.wait_for(root.clock.until_sleeping(3), TIMEOUT)  # + the heartbeats, reports
    root.clock.advance(MESSAGE_DEADLINE)
    with pytest.raises(ConnectionProblem, match=f"within {MESSAGE_DEADLINE:g} s"):
        await asyncio.wait_for(stream.read(), TIMEOUT)
    assert root.tunnels._sessions.get("us-east-1a").stream_count == 0
    assert "event stream dropped leaf=us-east-1a" in caplog.text


async def test_a_relayed_call_the_leaf_never_answers_fails_at_the_deadline(root: Root) -> None:
    asked = asyncio.Event()

    async def take_and_sit(stream: MuxStream) -> None:
        stream.accept()
        while await stream.read():
            pass
        asked.set()
        await asyncio.Event().wait()

    await root.dial("us-east-1a", protocol=lambda: MuxSession(
        dialer=True, clock=root.clock, on_open=take_and_sit))
    await root.holds(["us-east-1a"])
    call = asyncio.create_task(root.tunnels.relay_api(
        "us-east-1a", ForwardedCall("GET", "/v1/nodes", b"", b"der", "198.51.100.7:1")))
    await asyncio.wait_for(asked.wait(), TIMEOUT)
    await asyncio.wait_for(root.clock.until_sleeping(3), TIMEOUT)
    root.clock.advance(MESSAGE_DEADLINE)
    with pytest.raises(ConnectionProblem, match=f"within {MESSAGE_DEADLINE:g} s"):
        await asyncio.wait_for(call, TIMEOUT)


async def test_a_relayed_call_the_leaf_does_not_read_fails_at_the_deadline(
        root: Root) -> None:
    """A call larger than a stream's window, to a leaf that takes the stream and never
    reads: the write waits for credit that never comes, bounded by the deadline."""
    taken: list[MuxStream] = []

    async def take_and_ignore(stream: MuxStream) -> None:
        stream.accept()
        taken.append(stream)
        await asyncio.Event().wait()

    await root.dial("us-east-1a", protocol=lambda: MuxSession(
        dialer=True, clock=root.clock, on_open=take_and_ignore))
    await root.holds(["us-east-1a"])
    body = b"x" * (INITIAL_WINDOW + 1)
    call = asyncio.create_task(root.tunnels.relay_api(
        "us-east-1a", ForwardedCall("POST", "/v1/events", body, b"der", "198.51.100.7:1")))
    async with asyncio.timeout(TIMEOUT):  # the window is full: the root's write waits
        while not taken or taken[0]._unacked < INITIAL_WINDOW:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(root.clock.until_sleeping(3), TIMEOUT)
    root.clock.advance(MESSAGE_DEADLINE)
    with pytest.raises(ConnectionProblem, match=f"within {MESSAGE_DEADLINE:g} s"):
        await asyncio.wait_for(call, TIMEOUT)


async def test_a_stream_asked_for_as_the_tunnel_is_lost_names_the_offline_leaf(
        root: Root) -> None:
    leaf = await root.dial("us-east-1a", protocol=Unplugged)
    assert isinstance(leaf, Unplugged) and leaf.transport is not None
    await root.holds(["us-east-1a"])
    opening = asyncio.create_task(root.tunnels.open("us-east-1a", {"kind": "ssh"}))
    await asyncio.wait_for(leaf.heard.wait(), TIMEOUT)  # the OPEN is on its way
    leaf.transport.abort()  # as the kernel gives up on a link that went dark
    with pytest.raises(ConnectionProblem, match=r"^cluster us-east-1a is offline \(tunnel "):
        await asyncio.wait_for(opening, TIMEOUT)
