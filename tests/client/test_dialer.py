"""gsh's dial through the proxy over real TLS on loopback: dialing early (before
asyncssh is loaded), handing the stream over with what arrived meanwhile, and giving
up on a dial nobody used; falling back to another proxy only when the first does not
answer."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.dialer import Fallback, ProxyTunnel
from gatehouse.errors import AccessDenied, ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.wire.dial import DialReply, DialRequest
from gatehouse.wire.names import ALPN_SSH

TIMEOUT = 5.0
BANNER = b"SSH-2.0-node\r\n"


class Proxy:
    """Answers each dial line at once, with the node's banner right behind the reply."""

    def __init__(self, directory: Path, refuse: str = "") -> None:
        now = dt.datetime.now(dt.UTC)
        ca_key, ca_cert = x509.new_ca("c", "host", now)
        key = ed25519.Ed25519PrivateKey.generate()
        cert = x509.issue(ca_key, ca_cert, key.public_key(),
                          x509.Identity(kind="host", name="proxy", cluster="c",
                                        roles=("proxy",)),
                          now=now, ttl=dt.timedelta(hours=1), dns_names=["proxy.test"])
        (directory / "cert.pem").write_text(x509.pem_cert(cert))
        (directory / "key.pem").write_text(x509.pem_key(key))
        self.server_ctx = tls.server_context(directory / "cert.pem", directory / "key.pem",
                                             x509.pem_cert(ca_cert), [ALPN_SSH])
        self.client_ctx = tls.client_context(x509.pem_cert(ca_cert), alpn=[ALPN_SSH])
        self.refuse = refuse
        self.requests: asyncio.Queue[DialRequest] = asyncio.Queue()
        self.closed: asyncio.Queue[None] = asyncio.Queue()
        self.addr = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.requests.put(DialRequest.decode(await reader.readline()))
        writer.write(DialReply(error=self.refuse, host_id="hid-1").encode()
                     + (b"" if self.refuse else BANNER))
        await reader.read()  # until the client closes
        await self.closed.put(None)
        writer.close()

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.server_ctx)
        self.addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return server

    def tunnel(self, addr: str = "") -> ProxyTunnel:
        return ProxyTunnel(addr or self.addr, self.client_ctx, "proxy.test",
                           DialRequest(target="node1", cluster="c"))


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[Proxy]:
    p = Proxy(tmp_path)
    async with await p.start():
        yield p


class Session(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.got = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.received += data
        self.got.set()


async def test_an_early_dial_reaches_the_proxy_before_the_session_asks(proxy: Proxy) -> None:
    tunnel = proxy.tunnel()
    await asyncio.wait_for(tunnel.sent(), TIMEOUT)
    request = await asyncio.wait_for(proxy.requests.get(), TIMEOUT)
    assert request == DialRequest(target="node1", cluster="c")
    await asyncio.sleep(0.1)  # the reply and the banner arrive while nobody listens
    transport, session = await tunnel.create_connection(Session, "node1", 22)
    await asyncio.wait_for(session.got.wait(), TIMEOUT)
    assert session.received == BANNER  # held for the session, not lost
    assert proxy.requests.empty()  # one dial, not a second one
    tunnel.close()  # handed over: the session's to close, not the tunnel's
    transport.close()
    await asyncio.wait_for(proxy.closed.get(), TIMEOUT)


async def test_the_reply_names_the_host_and_the_session_still_gets_its_bytes(proxy: Proxy
                                                                             ) -> None:
    """gsh asks which host the proxy dialed before its SSH session starts (to pin it)."""
    tunnel = proxy.tunnel()
    assert await asyncio.wait_for(tunnel.reply(), TIMEOUT) == DialReply(host_id="hid-1")
    transport, session = await tunnel.create_connection(Session, "node1", 22)
    await asyncio.wait_for(session.got.wait(), TIMEOUT)
    assert session.received == BANNER
    transport.close()
    await asyncio.wait_for(proxy.closed.get(), TIMEOUT)


async def test_a_dial_nobody_used_is_closed(proxy: Proxy) -> None:
    tunnel = proxy.tunnel()
    tunnel.start()
    await asyncio.wait_for(proxy.requests.get(), TIMEOUT)
    await asyncio.sleep(0.1)
    tunnel.close()
    await asyncio.wait_for(proxy.closed.get(), TIMEOUT)


async def test_a_refused_dial_fails_when_the_session_asks(tmp_path: Path) -> None:
    proxy = Proxy(tmp_path, refuse="node node1 is not registered in cluster c")
    async with await proxy.start():
        tunnel = proxy.tunnel()
        await asyncio.wait_for(tunnel.sent(), TIMEOUT)
        with pytest.raises(AccessDenied, match="node node1 is not registered"):
            await tunnel.reply()
        with pytest.raises(AccessDenied, match="node node1 is not registered"):
            await tunnel.create_connection(Session, "node1", 22)
        tunnel.close()


async def test_an_unreachable_proxy_fails_when_the_session_asks(proxy: Proxy) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there any more
    tunnel = proxy.tunnel(f"127.0.0.1:{port}")
    await asyncio.wait_for(tunnel.sent(), TIMEOUT)  # returns: the dial is over, failed
    with pytest.raises(ConnectionProblem, match="cannot reach proxy"):
        await tunnel.create_connection(Session, "node1", 22)
    tunnel.close()


# --- falling back to another proxy (a leaf's own, while the root does not answer) --------

async def _closed_port() -> str:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there any more
    return f"127.0.0.1:{port}"


def _fallback(to: Proxy | None, said: list[str]) -> Fallback:
    return Fallback(proxy=to.addr if to else "", server_name="proxy.test",
                    notice="falling back to the leaf's proxy" if to else "no leaf proxy",
                    ssl_context=lambda: to.client_ctx if to else ssl_unused(),
                    announce=said.append)


def ssl_unused() -> ssl.SSLContext:
    raise AssertionError("no fallback proxy: no context is built")


async def test_a_proxy_that_does_not_answer_is_replaced_by_the_fallback_saying_so(
        proxy: Proxy) -> None:
    said: list[str] = []
    unanswered = await _closed_port()
    tunnel = ProxyTunnel(unanswered, proxy.client_ctx, "proxy.test",
                         DialRequest(target="node1", cluster="c"), _fallback(proxy, said))
    assert await asyncio.wait_for(tunnel.reply(), TIMEOUT) == DialReply(host_id="hid-1")
    assert await asyncio.wait_for(proxy.requests.get(), TIMEOUT) == DialRequest(
        target="node1", cluster="c")
    assert len(said) == 1  # one line
    assert said[0].startswith(f"cannot reach proxy {unanswered}: ")
    assert said[0].endswith("; falling back to the leaf's proxy")
    tunnel.close()


async def test_with_no_fallback_proxy_the_error_says_why(proxy: Proxy) -> None:
    said: list[str] = []
    tunnel = ProxyTunnel(await _closed_port(), proxy.client_ctx, "proxy.test",
                         DialRequest(target="node1", cluster="c"), _fallback(None, said))
    with pytest.raises(ConnectionProblem, match=r"cannot reach proxy .*; no leaf proxy$"):
        await asyncio.wait_for(tunnel.reply(), TIMEOUT)
    assert said == []
    tunnel.close()


async def test_a_proxy_that_refuses_is_an_answer_not_a_reason_to_fall_back(
        tmp_path: Path) -> None:
    refusing = Proxy(tmp_path, refuse="node node1 is not registered in cluster c")
    (tmp_path / "other").mkdir()
    other = Proxy(tmp_path / "other")
    said: list[str] = []
    async with await refusing.start(), await other.start():
        tunnel = ProxyTunnel(refusing.addr, refusing.client_ctx, "proxy.test",
                             DialRequest(target="node1", cluster="c"), _fallback(other, said))
        with pytest.raises(AccessDenied, match="node node1 is not registered"):
            await asyncio.wait_for(tunnel.reply(), TIMEOUT)
        tunnel.close()
    assert said == [] and other.requests.empty()


async def test_a_proxy_whose_tls_fails_is_not_replaced(tmp_path: Path) -> None:
    """A certificate that does not verify is an answer too (and a warning): no fallback."""
    first = Proxy(tmp_path)
    (tmp_path / "other").mkdir()
    other = Proxy(tmp_path / "other")
    said: list[str] = []
    async with await first.start(), await other.start():
        tunnel = ProxyTunnel(first.addr, other.client_ctx, "proxy.test",  # the wrong CA
                             DialRequest(target="node1", cluster="c"), _fallback(other, said))
        with pytest.raises(ConnectionProblem, match="TLS with proxy"):
            await asyncio.wait_for(tunnel.reply(), TIMEOUT)
        tunnel.close()
    assert said == [] and other.requests.empty()
