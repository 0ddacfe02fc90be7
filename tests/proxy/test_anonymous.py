"""The proxy's port counts connections without a client certificate (proxy.anonymous):
per source and in all, one more is closed at once, a closed one is uncounted, and a
certificate's holder is not counted. Real TLS on loopback, through the ALPN router."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import FakeMonotonic
from gatehouse.pki import tls, x509
from gatehouse.proxy.anonymous import AnonymousConnections
from gatehouse.proxy.router import ALPNRouter

ALPN = "http/1.1"
PER_SOURCE = 2


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._transport.write(data)  # type: ignore[attr-defined]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def issue(tmp_path: Path) -> Callable[[str, list[str] | None], tuple[Path, Path]]:
    """Certificate and key files signed by one CA (in tmp_path/ca.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = x509.new_ca("c.example", "host", now)
    _write(tmp_path / "ca.pem", x509.pem_cert(ca))

    def make(name: str, dns_names: list[str] | None = None) -> tuple[Path, Path]:
        key = ed25519.Ed25519PrivateKey.generate()
        cert = x509.issue(ca_key, ca, key.public_key(),
                          x509.Identity(kind="user", name=name, cluster="c.example"),
                          now=now, ttl=dt.timedelta(hours=1), dns_names=dns_names)
        return (_write(tmp_path / f"{name}.pem", x509.pem_cert(cert)),
                _write(tmp_path / f"{name}-key.pem", x509.pem_key(key)))

    return make


@pytest.fixture
async def port(issue: Callable[[str, list[str] | None], tuple[Path, Path]], tmp_path: Path,
               anonymous: AnonymousConnections) -> AsyncIterator[int]:
    cert, key = issue("proxy", ["localhost"])
    ctx = tls.server_context(cert, key, (tmp_path / "ca.pem").read_text(), alpn=[ALPN])
    server = await asyncio.get_running_loop().create_server(
        lambda: ALPNRouter({ALPN: _Echo}, ALPN, anonymous), "127.0.0.1", 0, ssl=ctx)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def anonymous() -> AnonymousConnections:
    return AnonymousConnections(PER_SOURCE, total=100, timer=FakeMonotonic())


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(port: int, cert: tuple[Path, Path] | None = None) -> Conn:
    ctx = tls.client_context(None, cert_file=cert[0] if cert else None,
                             key_file=cert[1] if cert else None, alpn=[ALPN])
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 10)


async def _echoes(conn: Conn) -> bool:
    """True if the server echoes; False if it closed the connection."""
    reader, writer = conn
    try:
        writer.write(b"ping")
        return await asyncio.wait_for(reader.read(4), 5) == b"ping"
    except (ConnectionError, ssl.SSLError):
        return False


async def _uncounted(anonymous: AnonymousConnections, count: int) -> None:
    while len(anonymous) != count:
        await asyncio.sleep(0.01)


async def test_one_connection_too_many_is_closed_at_once(
        port: int, anonymous: AnonymousConnections,
        issue: Callable[[str, list[str] | None], tuple[Path, Path]]) -> None:
    first, second = await _connect(port), await _connect(port)
    assert await _echoes(first) and await _echoes(second)
    assert not await _echoes(await _connect(port))  # the third of one source
    # A certificate's holder is not counted, however many anonymous ones are open.
    alice = issue("alice", None)
    held = [await _connect(port, alice) for _ in range(3)]
    assert all([await _echoes(conn) for conn in held])
    assert len(anonymous) == PER_SOURCE
    first[1].close()
    await asyncio.wait_for(_uncounted(anonymous, PER_SOURCE - 1), 5)
    assert await _echoes(await _connect(port))  # a closed one's place is free again
