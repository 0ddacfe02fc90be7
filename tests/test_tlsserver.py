"""The TLS listener (gatehouse._sys.tlsserver) on asyncio's loop and on uvloop (the
daemon's): a refused client certificate is reported with the client's address and
OpenSSL's reason, a silent connection is cut off at the handshake timeout, and the
bytes a client sends right after its handshake reach the protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from gatehouse._sys.tlsserver import TLSServer

TIMEOUT = 0.5  # the handshake's
WAIT = 10.0
NOW = dt.datetime.now(dt.UTC)
Key = ed25519.Ed25519PrivateKey

RUNNERS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run, "uvloop": uvloop.run}


def _cert(name: str, key: Key, issuer: tuple[str, Key] | None = None, *, ca: bool = False,
          valid: tuple[int, int] = (-1, 1)) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (name, key)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + dt.timedelta(hours=valid[0]))
            .not_valid_after(NOW + dt.timedelta(hours=valid[1]))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, None))


def _save(directory: Path, name: str, key: Key, cert: x509.Certificate) -> tuple[Path, Path]:
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def files(tmp_path: Path) -> dict[str, tuple[Path, Path] | str]:
    """The server's CA and credentials; clients with a good, an expired, a not yet valid
    and a stranger's certificate."""
    ca_key, stranger_key = Key.generate(), Key.generate()
    ca = _cert("ca", ca_key, ca=True, valid=(-10, 10))
    made: dict[str, tuple[Path, Path] | str] = {
        "ca": ca.public_bytes(serialization.Encoding.PEM).decode()}
    for name, issuer, valid in (("server", ("ca", ca_key), (-1, 1)),
                                ("good", ("ca", ca_key), (-1, 1)),
                                ("expired", ("ca", ca_key), (-3, -2)),
                                ("future", ("ca", ca_key), (2, 3)),
                                ("stranger", ("other", stranger_key), (-1, 1))):
        key = Key.generate()
        made[name] = _save(tmp_path, name, key, _cert(name, key, issuer, valid=valid))
    return made


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TLS transport is not a subclass.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo " + data)


async def _client(port: int, cert: tuple[Path, Path] | None) -> tuple[str, bytes]:
    """Our address and what the server answered to b"hi" sent right after the handshake
    (b"" once it closed the connection)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    host, local = raw.getsockname()[:2]
    try:
        reader, writer = await asyncio.open_connection(sock=raw, ssl=ctx,
                                                       server_hostname="localhost")
    except (ConnectionError, ssl.SSLError):
        raw.close()
        return f"{host}:{local}", b""
    writer.write(b"hi")
    try:
        answer = await asyncio.wait_for(reader.read(100), WAIT)
    except (ConnectionError, ssl.SSLError):
        answer = b""
    writer.close()
    return f"{host}:{local}", answer


async def _scenario(files: dict[str, Any]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*files["server"])
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=files["ca"])
    refused: list[tuple[str, str]] = []

    async def on_refused(remote: str, reason: str) -> None:
        refused.append((remote, reason))

    server = TLSServer(ctx, Echo, handshake_timeout=TIMEOUT, on_refused=on_refused,
                       what="the test's port")
    await server.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await _client(port, files["good"]))[1] == b"echo hi"
        assert (await _client(port, None))[1] == b"echo hi"  # no certificate: the handler's
        expired, answer = await _client(port, files["expired"])
        assert answer == b""
        future, answer = await _client(port, files["future"])
        assert answer == b""
        stranger, answer = await _client(port, files["stranger"])
        assert answer == b""
        async with asyncio.timeout(WAIT):
            while len(refused) < 3:
                await asyncio.sleep(0.01)
        assert [remote for remote, _ in refused] == [expired, future, stranger]
        # A validity window missed names this machine's clock, and whose may be off.
        assert re.fullmatch(r"its certificate has expired by this machine's clock \(\d{4}-"
                            r"\d\d-\d\d \d\d:\d\d UTC\): the clock may be ahead .*",
                            refused[0][1]), refused[0]
        assert refused[1][1].startswith("its certificate is not valid yet by this machine's "
                                        "clock ("), refused[1]
        assert "the clock of the auth that issued it is likely ahead" in refused[1][1]
        assert refused[2][1] == "unable to get local issuer certificate"

        # A connection that never starts TLS is closed at the handshake timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(1), WAIT) == b""
        assert asyncio.get_running_loop().time() - started < WAIT / 2
        writer.close()
    finally:
        await server.close()
    with pytest.raises(OSError):  # closed: no one listens
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_refusals_are_reported_and_silence_is_cut_off(files: dict[str, Any], loop: str) -> None:
    RUNNERS[loop](_scenario(files))


def test_an_address_in_use_is_one_clear_error() -> None:
    async def bind_twice() -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

        async def ignore(remote: str, reason: str) -> None:
            return None

        first = TLSServer(ctx, Echo, handshake_timeout=TIMEOUT, on_refused=ignore, what="a")
        await first.start("127.0.0.1", 0)
        port = first.sockets[0].getsockname()[1]
        try:
            second = TLSServer(ctx, Echo, handshake_timeout=TIMEOUT, on_refused=ignore,
                               what="b")
            with pytest.raises(OSError, match="already in use"):
                await second.start("127.0.0.1", port)
            assert all(s.fileno() == -1 for s in second.sockets)  # nothing left open
        finally:
            await first.close()

    asyncio.run(bind_twice())
