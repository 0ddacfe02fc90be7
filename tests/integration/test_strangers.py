"""What a stranger may cost the proxy's single TLS port (finding 6 and 7 of the security
review) and the auth's: idle connections are closed, those without a certificate are
capped per source address, failed logins spend a budget, their audit is counted, and
real users work on.

Everything here comes from 127.0.0.1, the real user too: what tells them apart is the
user's certificate. The cluster runs with short limits (see ``_Limited``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from gatehouse.pki import sshcert
from gatehouse.process.harness import Client, Cluster, wait_for

ALPN_HTTP = "http/1.1"
ALPN_SSH = "gatehouse-ssh/1"
IDLE_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 2.0
PER_SOURCE = 50
IDLE_CONNECTIONS = 1000
HANDSHAKES_AT_ONCE = 50
GARBAGE_PER_SECOND = 100
GARBAGE_SECONDS = 3
BURST = 10


@dataclass
class _Limited(Cluster):
    def settings(self) -> dict[str, Any]:
        data = super().settings()
        data["proxy_service"]["limits"] = {
            "idle_timeout": f"{IDLE_TIMEOUT:g}s", "handshake_timeout": f"{HANDSHAKE_TIMEOUT:g}s",
            "anonymous_per_source": PER_SOURCE}
        # A budget that stays spent for the whole test, and windows it can wait for.
        data["auth_service"]["limits"] = {"attempts_burst": BURST, "attempts_per_minute": 1,
                                          "failure_window": "5s",
                                          "handshake_timeout": f"{HANDSHAKE_TIMEOUT:g}s",
                                          "anonymous_per_source": PER_SOURCE}
        return data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with _Limited(tmp_path_factory.mktemp("strangers")).running(wait=False) as c:
        yield c


def _context(alpn: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(cluster: Cluster, alpn: str) -> Conn:
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", cluster.proxy_port, ssl=_context(alpn), server_hostname="localhost"), 30)


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the proxy closes this connection (EOF or reset) within ``within`` s."""
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True


async def _idle_closed_within(cluster: Cluster, seconds: float) -> bool:
    reader, writer = await _connect(cluster, ALPN_HTTP)
    try:
        return await _closed(reader, seconds)
    finally:
        writer.close()


def test_an_idle_tls_connection_is_closed(cluster: Cluster) -> None:
    started = time.monotonic()
    assert asyncio.run(_idle_closed_within(cluster, IDLE_TIMEOUT + 5)), \
        f"the proxy kept an idle TLS connection open for {time.monotonic() - started:.0f} s"


def test_a_connection_that_never_starts_tls_is_closed(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.proxy_port), timeout=10) as raw:
        raw.settimeout(HANDSHAKE_TIMEOUT + 5)
        started = time.monotonic()
        try:
            assert raw.recv(1) == b""
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the proxy kept a connection without a TLS handshake open for "
                        f"{time.monotonic() - started:.0f} s")


async def _held_at_the_auth(cluster: Cluster, count: int) -> tuple[int, int]:
    """Open ``count`` TLS connections without a certificate to the auth's port, one after
    another: (how many it closed at once, how many it held)."""
    held: list[Conn] = []
    try:
        for _ in range(count):
            held.append(await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", cluster.auth_port, ssl=_context(ALPN_HTTP),
                server_hostname="localhost"), 30))
        closed = await asyncio.gather(*(_closed(reader, 3) for reader, _ in held))
        return sum(closed), len(closed) - sum(closed)
    finally:
        for _, writer in held:
            writer.close()


def test_the_auth_caps_connections_without_a_certificate(cluster: Cluster) -> None:
    """As the proxy's port does; before, only the file descriptors bounded them."""
    closed, open_ = asyncio.run(_held_at_the_auth(cluster, PER_SOURCE + 10))
    assert open_ <= PER_SOURCE and closed >= 10, (closed, open_)
    assert cluster.gatectl("status").rc == 0  # the admin's certificate is not counted


def test_a_connection_that_never_starts_tls_is_closed_by_the_auth(cluster: Cluster) -> None:
    """The auth's own port too (it kept one open for aiohttp's 60 s)."""
    with socket.create_connection(("127.0.0.1", cluster.auth_port), timeout=10) as raw:
        raw.settimeout(HANDSHAKE_TIMEOUT + 5)
        started = time.monotonic()
        try:
            assert raw.recv(1) == b""
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the auth kept a connection without a TLS handshake open for "
                        f"{time.monotonic() - started:.0f} s")


def _self_signed(directory: Path) -> ssl.SSLContext:
    """A client context presenting a certificate that no CA of the cluster signed."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, None))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = _context(ALPN_SSH)
    ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return ctx


async def _refused(port: int, ctx: ssl.SSLContext) -> str:
    """Our end of a connection presenting ``ctx``'s certificate, once the server closed it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    host, local_port = raw.getsockname()[:2]
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            sock=raw, ssl=ctx, server_hostname="localhost"), 30)
    except (ConnectionError, ssl.SSLError):
        raw.close()  # refused within the handshake (as TLS 1.2 would)
    else:
        try:
            assert await _closed(reader, 10)
        finally:
            writer.close()
    return f"{host}:{local_port}"


def test_a_certificate_of_no_trusted_ca_is_refused_and_audited(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    """By the TLS handshake of the proxy and of the auth, each saying why."""
    ctx = _self_signed(tmp_path)
    for port, server in ((cluster.proxy_port, "proxy"), (cluster.auth_port, "auth")):
        local = asyncio.run(_refused(port, ctx))
        event = cluster.wait_event(f"the {server}'s audit of the refusal",
                                   lambda e, local=local: e["remote_addr"] == local)
        assert (event["event"], event["code"], event["user"]) == (
            "client_cert.denied", "TA002W", ""), event
        assert event["message"] == (f"the {server} refused the client certificate in the TLS "
                                    "handshake: self-signed certificate"), event


# --- a stranger's whole cost ----------------------------------------------------------------


@dataclass
class Attack:
    held: list[Conn] = field(default_factory=list)  # idle connections set up
    open_after_setup: int = 0  # of those, still open once all were set up
    replies: Counter[str] = field(default_factory=Counter)  # what each garbage request got
    retry_after: int = 0  # 429 replies with a Retry-After header


async def _idle(cluster: Cluster, attack: Attack, slots: asyncio.Semaphore) -> None:
    try:
        async with slots:
            attack.held.append(await _connect(cluster, ALPN_HTTP))
    except (OSError, ssl.SSLError, TimeoutError):
        pass  # closed during the handshake: as refused as can be


def _login_request(i: int, key: str) -> bytes:
    body = json.dumps({"user": f"stranger{i}", "password": "not a password at all",
                       "public_key": key}).encode()
    return (b"POST /v1/login HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


async def _garbage(cluster: Cluster, i: int, attack: Attack, key: str) -> None:
    """One of: a failed login, bytes that are not HTTP, an SSH dial without a certificate."""
    kind = ("login", "junk", "ssh")[i % 3]
    payload = {"login": _login_request(i, key), "junk": b"\x16\x03\x01garbage\r\n\r\n" * 4,
               "ssh": b'{"target": "node1"}\n'}[kind]
    try:
        reader, writer = await _connect(cluster, ALPN_SSH if kind == "ssh" else ALPN_HTTP)
        writer.write(payload)
        # Logins wait their turn for argon2 (~0.2 s of CPU each): the budget bounds them.
        reply = await asyncio.wait_for(reader.read(4096), 60)
        writer.close()
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        attack.replies[f"{kind} {type(exc).__name__}"] += 1
        return
    # "closed": at once, as one too many connections without a certificate.
    status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else \
        "replied" if reply else "closed"
    attack.replies[f"{kind} {status}"] += 1
    attack.retry_after += status == "429" and b"\r\nRetry-After: " in reply


async def _send_garbage(cluster: Cluster, attack: Attack) -> None:
    key = sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    tasks = []
    for i in range(GARBAGE_PER_SECOND * GARBAGE_SECONDS):
        tasks.append(asyncio.create_task(_garbage(cluster, i, attack, key)))
        await asyncio.sleep(1 / GARBAGE_PER_SECOND)
    await asyncio.gather(*tasks)


def _enough_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _attack_while(cluster: Cluster, user: Client) -> tuple[Attack, int, str]:
    """Hold IDLE_CONNECTIONS, then send garbage while ``user`` runs a command; returns
    what the attack got, how many idle connections outlived it, and the command's
    exit status and output."""
    attack = Attack()
    slots = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    await asyncio.gather(*(_idle(cluster, attack, slots) for _ in range(IDLE_CONNECTIONS)))
    attack.open_after_setup = sum([not await _closed(r, 0.01) for r, _ in attack.held])
    garbage = asyncio.create_task(_send_garbage(cluster, attack))
    ssh = await asyncio.to_thread(user.ssh, "root@node1", "echo", "still here")
    await garbage
    outlived = sum([not await _closed(r, 0.01) for r, _ in attack.held])
    for _, writer in attack.held:
        writer.close()
    return attack, outlived, f"{ssh.rc} {ssh.out.strip()} {ssh.err.strip()}"


def _failures(cluster: Cluster, event: str) -> list[dict[str, Any]]:
    return cluster.events(f"--type={event}")


def test_a_stranger_s_cost_is_bounded(cluster: Cluster, tmp_path: Path) -> None:
    cluster.add_user("real", roles="access", logins="root")
    user = Client(tmp_path / "real", cluster.proxy)
    user.home.mkdir()
    user.login("real").ok()  # one of the address's attempts
    _enough_files(IDLE_CONNECTIONS)
    attack, outlived, ssh = asyncio.run(_attack_while(cluster, user))
    context = f"{len(attack.held)} set up, {attack.open_after_setup} open then, {outlived} " \
              f"after the attack; garbage got {dict(attack.replies)}"
    assert ssh == "0 still here ", f"{ssh!r}; {context}"
    assert attack.open_after_setup <= PER_SOURCE, context
    assert outlived == 0, context
    assert cluster.daemon is not None
    assert "(the most for one source)" in cluster.daemon.log_text()
    # The budget: the burst's logins were tried (less the real user's), the rest waited.
    tried = attack.replies["login 403"]
    assert tried == BURST - 1, context
    assert attack.replies["login 429"] == attack.retry_after > 0, context
    # Each refused dial or login is audited, its repeats counted in one event per window.
    dials = attack.replies["ssh replied"]  # refused by the SSH proxy (not closed at once)
    assert dials > 0, context
    for event, expected in (("user.login.failure", tried), ("proxy.dial.denied", dials)):
        wait_for(f"{expected} {event} counted", lambda event=event, expected=expected: sum(
            e["fields"].get("count", 1) for e in _failures(cluster, event)) == expected,
            timeout=20)
        assert len(_failures(cluster, event)) <= 4, _failures(cluster, event)
    # A stranger's address is the real user's here: a login waits, and says so in a line.
    late = Client(tmp_path / "late", cluster.proxy)
    late.home.mkdir()
    res = late.login("real")
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert "too many attempts from 127.0.0.1: try again in" in res.err, res
