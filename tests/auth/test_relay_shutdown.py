"""A proxy's API front and the node trust watches it relays: it stops at once, even
while it relays one; and a relayed watch ends when the auth's side of it breaks. A caller
that hangs up before its request body has all arrived (a node killed mid-upload) is an
event of the network, not an error of ours: no traceback, at the proxy or at the auth. A
caller that sends its body too slowly (slowloris) is answered 429 and cut off; one that
keeps the minimum rate is served, however long its body takes.

The relayed stream lasts as long as the auth's; without ending it on shutdown,
the proxy's web runner would wait out its whole grace period (here 30 s). When the
auth dies, the node must see its watch end, or it follows a dead one forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse._sys import httpbody
from gatehouse.client.api import APIClient
from gatehouse.client.forward import AuthForwarder, ForwardedCall
from gatehouse.errors import AccessDenied, ConnectionProblem
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.proxy.web import make_web_app
from gatehouse.wire.authapi import SSOCallback, SSORedirect
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER

GRACE = 30.0
FIRST = b'{"a": 1, '  # the first bytes of every body sent here (9)


async def _identity(api: API, directory: Path, role: str, name: str) -> StoredIdentity:
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await api.server.certify_host(role, f"{name}-hid", name, key.public_key(),
                                          ["127.0.0.1:3022"], ["localhost"])
    store = StoredIdentity(directory / name)
    store.save(key, certs.tls_cert, api.server.cas["host"].tls_cert_pem)
    return store


async def _no_leaves(leaf: str, call: ForwardedCall) -> tuple[int, bytes]:
    raise AssertionError("no leaf in this test")


async def _no_sso(callback: SSOCallback) -> SSORedirect:
    raise AccessDenied("no SSO here")


def _no_users(der: bytes) -> x509.Identity:
    raise AssertionError("no request for a leaf in this test")


def _no_reach(user: x509.Identity, leaf: str) -> None:
    raise AssertionError("no request for a leaf in this test")


async def _no_audit(event: str, fields: dict[str, object]) -> None:
    raise AssertionError("nothing to audit in this test")


class Cuttable:
    """A TCP hop to ``target`` whose connections can all be cut at once (the far end
    killed: its kernel closes them)."""

    def __init__(self, target: str) -> None:
        self._target = target.rsplit(":", 1)
        self._writers: list[asyncio.StreamWriter] = []
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.addr = ""

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Cuttable]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            yield self

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    def freeze(self) -> None:
        """Carry nothing more, and close nothing (a partition: no FIN, no RST)."""
        self._flowing.clear()


@contextlib.asynccontextmanager
async def _relaying(api: API, tmp_path: Path, auth_addr: str) -> AsyncIterator[
        tuple[web.AppRunner, APIClient]]:
    """A proxy's API front relaying to the auth at ``auth_addr``; a node's client of it."""
    proxy = await _identity(api, tmp_path, "proxy", "proxy1")
    node = await _identity(api, tmp_path, "node", "node1")
    forwarder = AuthForwarder(auth_addr, tls.client_context(
        proxy.cas_pem(), cert_file=proxy.tls_cert_file, key_file=proxy.key_pem_file),
        f"auth.{CLUSTER}")
    runner = web.AppRunner(make_web_app(forwarder, CLUSTER, _no_leaves, _no_users, _no_reach,
                                        _no_sso, audit=_no_audit),
                           access_log=None, shutdown_timeout=GRACE)
    await runner.setup()
    ca_pems = api.server.cas["host"].tls_cert_pem + api.server.cas["user"].tls_cert_pem
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context(
        proxy.tls_cert_file, proxy.key_pem_file, ca_pems, alpn=["http/1.1"])).start()
    port = runner.addresses[0][1]
    client = APIClient(f"127.0.0.1:{port}", tls.client_context(
        node.cas_pem(), cert_file=node.tls_cert_file, key_file=node.key_pem_file),
        server_hostname="localhost")
    try:
        yield runner, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_relayed_watch_does_not_hold_the_proxys_shutdown(api: API,
                                                                  tmp_path: Path) -> None:
    async with _relaying(api, tmp_path, api.addr) as (runner, client):
        watch = client.lines("/v1/trust", watch="1")
        assert b"user_cas" in await anext(watch)  # the first snapshot, relayed
        # The relayed stream is live; shutting down must end it, not wait for it.
        await asyncio.wait_for(runner.cleanup(), GRACE / 3)
        await watch.aclose()


async def test_a_relayed_watch_ends_when_the_auths_side_breaks(api: API,
                                                                tmp_path: Path) -> None:
    """The auth killed mid-watch: the node's stream through the proxy ends too (with a
    ConnectionProblem, so that it reconnects), instead of staying open with nothing on it."""
    async with Cuttable(api.addr).serving() as hop, \
            _relaying(api, tmp_path, hop.addr) as (_, client):
        watch = client.lines("/v1/trust", watch="1")
        assert b"user_cas" in await anext(watch)
        hop.cut()
        with pytest.raises(ConnectionProblem):
            await asyncio.wait_for(anext(watch), 5)
        await watch.aclose()


async def test_a_silent_watch_is_given_up_to_be_dialed_again(api: API,
                                                              tmp_path: Path) -> None:
    """The path to the auth goes silent without closing (a partition): the watcher stops
    waiting after ``silence`` with nothing heard (the auth writes a keepalive line every
    WATCH_KEEPALIVE), instead of deciding with its last snapshot forever."""
    async with Cuttable(api.addr).serving() as hop, \
            _relaying(api, tmp_path, hop.addr) as (_, client):
        watch = client.lines("/v1/trust", silence=1.0, watch="1")
        assert b"user_cas" in await anext(watch)
        hop.freeze()
        with pytest.raises(ConnectionProblem, match="nothing heard on /v1/trust for 1 s"):
            await asyncio.wait_for(anext(watch), 10)
        await watch.aclose()


async def _post_head(addr: str, ctx: ssl.SSLContext, server_hostname: str, length: int
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent the head of a POST of a ``length``-byte body and its
    first bytes (FIRST)."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        host, int(port), ssl=ctx, server_hostname=server_hostname), 10)
    writer.write(b"POST /v1/nodes/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (length, FIRST))
    await writer.drain()
    return reader, writer


async def _hang_up_mid_body(addr: str, ctx: ssl.SSLContext, server_hostname: str) -> None:
    """POST a body of 1000 bytes, send 9 of them, and close the connection."""
    _, writer = await _post_head(addr, ctx, server_hostname, 1000)
    writer.transport.abort()
    await asyncio.sleep(0.5)  # the server's read of the rest fails now


def _node_context(node: StoredIdentity) -> ssl.SSLContext:
    return tls.client_context(node.cas_pem(), cert_file=node.tls_cert_file,
                              key_file=node.key_pem_file, alpn=["http/1.1"])


async def test_a_caller_hanging_up_mid_body_is_no_error_at_the_proxy(
        api: API, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with _relaying(api, tmp_path, api.addr) as (runner, _):
        node = await _identity(api, tmp_path, "node", "node2")
        await _hang_up_mid_body(f"127.0.0.1:{runner.addresses[0][1]}", _node_context(node),
                                "localhost")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "hung up before its request body arrived" in caplog.text


async def test_a_caller_hanging_up_mid_body_is_no_error_at_the_auth(
        api: API, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    node = await _identity(api, tmp_path, "node", "node2")
    await _hang_up_mid_body(api.addr, _node_context(node), f"auth.{CLUSTER}")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "hung up before its request body arrived" in caplog.text


@pytest.fixture
def slow_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body's first bytes have half a second, and each 1,000 bytes another second."""
    monkeypatch.setattr(httpbody, "BODY_GRACE", 0.5)
    monkeypatch.setattr(httpbody, "BODY_MIN_RATE", 1000)


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The response's status line and body (chunked: all until the connection closes)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, _, fields = head.partition(b"\r\n")
    lengths = [int(line.split(b":")[1]) for line in fields.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    body = reader.readexactly(lengths[0]) if lengths else reader.read()
    return status, await asyncio.wait_for(body, 10)


async def _too_slow(addr: str, ctx: ssl.SSLContext, server_hostname: str) -> tuple[bytes, bytes]:
    """9 bytes of a 100,000-byte body, then nothing: the server's answer, and then the
    connection closed (after aiohttp's lingering time, 10 s, and some)."""
    reader, writer = await _post_head(addr, ctx, server_hostname, 100_000)
    try:
        answer = await _answer(reader)
        assert await asyncio.wait_for(reader.read(), 15) == b""
        return answer
    finally:
        writer.close()


async def _slow_but_steady(addr: str, ctx: ssl.SSLContext, server_hostname: str
                           ) -> tuple[bytes, bytes]:
    """A body of 2,009 bytes over a second and a half (above the minimum rate, past the
    grace)."""
    reader, writer = await _post_head(addr, ctx, server_hostname, len(FIRST) + 2000)
    try:
        for _ in range(10):
            await asyncio.sleep(0.15)
            writer.write(b" " * 200)
        return await _answer(reader)
    finally:
        writer.close()


@pytest.mark.usefixtures("slow_limits")
async def test_a_body_sent_too_slowly_is_refused_at_the_auth(
        api: API, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = await _identity(api, tmp_path, "node", "node2")
    status, rest = await _too_slow(api.addr, _node_context(node), f"auth.{CLUSTER}")
    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert b"request body came too slowly: 9 of 100000 bytes" in rest
    assert "request body came too slowly" in caplog.text


@pytest.mark.usefixtures("slow_limits")
async def test_a_body_sent_too_slowly_is_refused_at_the_proxy(
        api: API, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with _relaying(api, tmp_path, api.addr) as (runner, _):
        node = await _identity(api, tmp_path, "node", "node2")
        status, rest = await _too_slow(f"127.0.0.1:{runner.addresses[0][1]}",
                                       _node_context(node), "localhost")
    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert b"request body came too slowly: 9 of 100000 bytes" in rest


@pytest.mark.usefixtures("slow_limits")
async def test_a_slow_body_at_the_minimum_rate_is_read_whole(api: API, tmp_path: Path) -> None:
    """Through the proxy to the auth: both read it, and the auth answers what it says
    (not JSON), not how long it took."""
    async with _relaying(api, tmp_path, api.addr) as (runner, _):
        node = await _identity(api, tmp_path, "node", "node2")
        status, rest = await _slow_but_steady(f"127.0.0.1:{runner.addresses[0][1]}",
                                              _node_context(node), "localhost")
    assert status == b"HTTP/1.1 400 Bad Request", rest
    assert b"request body is not JSON" in rest
