"""The node's SSH front door against a real asyncssh client: hostile certificates are
refused as any bad certificate is (permission denied, audited), not by an error; a
stranger's refusals and a user's sessions per connection are bounded; a connection whose
user loses access is refused new channels and closed at the next trust change, and a
connection is closed when its certificate expires."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.clock import Clock, FakeClock, SystemClock
from gatehouse.node import sshserver
from gatehouse.node.strangers import StrangerRefusals
from gatehouse.pki import sshcert
from gatehouse.types.role import Role
from gatehouse.types.yaml_io import parse_resources
from gatehouse.wire.trust import PublicCA, TrustSnapshot

WAIT = 10.0  # seconds any single wait may take
# Real time: asyncssh checks a certificate's validity against the system clock too.
START = dt.datetime.now(dt.UTC).replace(microsecond=0)
NOW = int(START.timestamp())
CLUSTER = "sso.example.com"
USER_CA = ed25519.Ed25519PrivateKey.generate()
ATTACKER_CA = ed25519.Ed25519PrivateKey.generate()
HOST_KEY = ed25519.Ed25519PrivateKey.generate()
CLIENT_KEY = ed25519.Ed25519PrivateKey.generate()


def _asyncssh_key(key: ed25519.Ed25519PrivateKey) -> asyncssh.SSHKey:
    return asyncssh.import_private_key(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))


def _cert(cert_type: sshcert.CertType, extensions: dict[str, str],
          ca: ed25519.Ed25519PrivateKey, public_key: ed25519.Ed25519PublicKey,
          principals: tuple[str, ...], key_id: str = "mallory",
          valid_before: int = NOW + 3600) -> bytes:
    cert = sshcert.Certificate(
        cert_type=cert_type, key_id=key_id, principals=principals,
        valid_after=NOW - 60, valid_before=valid_before, public_key=public_key)
    # Set after the checks of construction: another encoder does not make them.
    object.__setattr__(cert, "extensions", extensions)
    return sshcert.sign(cert, ca)


(ACCESS,) = parse_resources("""kind: role
version: v1
metadata: {name: access}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
""")
assert isinstance(ACCESS, Role)


class Node:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self.trust = TrustSnapshot(
            cluster=CLUSTER, roles={"access": ACCESS}, users=frozenset({"alice"}),
            user_cas=(PublicCA(CLUSTER, "user",
                               sshcert.public_key_line(USER_CA.public_key()), ""),))
        self.servers: list[sshserver.NodeSSHServer] = []
        self.clock: Clock = FakeClock(START)
        self.strangers = StrangerRefusals(self.audit, FakeClock(START))

    def audit(self, event: str, fields: dict[str, Any]) -> None:
        self.events.append((event, fields))

    def server(self, peer: str) -> sshserver.NodeSSHServer:
        server = sshserver.NodeSSHServer(
            trust=lambda: self.trust, labels={}, clock=self.clock, audit=self.audit,
            record=lambda grant, info: None, strangers=self.strangers.refused)
        self.servers.append(server)
        return server

    def event_names(self) -> list[str]:
        return [event for event, _ in self.events]


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    host_blob = _cert(sshcert.CertType.HOST, sshcert.host_extensions(CLUSTER, "node"),
                      USER_CA, HOST_KEY.public_key(), ("node1",))
    n = Node()
    front = sshserver.SSHFront(
        _asyncssh_key(HOST_KEY), asyncssh.import_certificate(sshcert.to_openssh_line(host_blob)),
        n.server)
    server = await front.listen("127.0.0.1", 0)
    n.port = server.sockets[0].getsockname()[1]
    try:
        yield n
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


async def _alice(node: Node, valid_before: int = NOW + 3600) -> asyncssh.SSHClientConnection:
    """alice, holding role access, logged in as root."""
    blob = _cert(sshcert.CertType.USER, sshcert.user_extensions(["access"], {}, "", CLUSTER),
                 USER_CA, CLIENT_KEY.public_key(), ("root",), key_id="alice",
                 valid_before=valid_before)
    cert = asyncssh.import_certificate(sshcert.to_openssh_line(blob))
    return await asyncio.wait_for(asyncssh.connect(
        "127.0.0.1", node.port, username="root",
        client_keys=[(_asyncssh_key(CLIENT_KEY), cert)], known_hosts=None,
        agent_path=None, preferred_auth="publickey"), WAIT)


async def test_a_certificate_with_deeply_nested_traits_is_refused(node: Node) -> None:
    deep = '{"logins":' + "[" * 5000 + "]" * 5000 + "}"
    blob = _cert(sshcert.CertType.USER, {"permit-pty": "", sshcert.EXT_TRAITS: deep},
                 ATTACKER_CA, CLIENT_KEY.public_key(), ("root",))
    cert = asyncssh.import_certificate(sshcert.to_openssh_line(blob))
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncio.wait_for(asyncssh.connect(
            "127.0.0.1", node.port, username="root",
            client_keys=[(_asyncssh_key(CLIENT_KEY), cert)], known_hosts=None,
            agent_path=None, preferred_auth="publickey"), WAIT)
    assert [event for event, _ in node.events] == ["auth"]
    assert "nested deeper than 2" in node.events[0][1]["message"]


async def test_a_stranger_is_cut_off_after_max_auth_tries_certificates(node: Node) -> None:
    keys = []
    for _ in range(sshserver.MAX_AUTH_TRIES + 4):
        key = ed25519.Ed25519PrivateKey.generate()
        blob = _cert(sshcert.CertType.USER, {"permit-pty": ""}, ATTACKER_CA,
                     key.public_key(), ("root",))
        keys.append((_asyncssh_key(key), asyncssh.import_certificate(
            sshcert.to_openssh_line(blob))))
    with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
        await asyncio.wait_for(asyncssh.connect(
            "127.0.0.1", node.port, username="root", client_keys=keys, known_hosts=None,
            agent_path=None, preferred_auth="publickey"), WAIT)
    assert node.event_names() == ["auth"]  # the rest fold (the test below)
    node.strangers.flush(everything=True)
    assert node.events[-1][1]["fields"]["count"] == sshserver.MAX_AUTH_TRIES - 1


async def test_a_stranger_s_refusals_fold_across_connections(node: Node) -> None:
    """Each connection is cut off after MAX_AUTH_TRIES, but a stranger may open many:
    their refusals are audited once at first, then as one count per window. Before,
    every refusal of every connection was an audit event."""
    async def stranger() -> None:
        keys = []
        for _ in range(sshserver.MAX_AUTH_TRIES):
            key = ed25519.Ed25519PrivateKey.generate()
            blob = _cert(sshcert.CertType.USER, {"permit-pty": ""}, ATTACKER_CA,
                         key.public_key(), ("root",), valid_before=NOW - 1)  # expired too
            keys.append((_asyncssh_key(key), asyncssh.import_certificate(
                sshcert.to_openssh_line(blob))))
        with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
            await asyncio.wait_for(asyncssh.connect(
                "127.0.0.1", node.port, username="root", client_keys=keys,
                known_hosts=None, agent_path=None, preferred_auth="publickey"), WAIT)

    for _ in range(3):
        await stranger()
    (first,) = [f for e, f in node.events if e == "auth"]
    assert first["message"] == "certificate is not signed by a trusted user CA"
    assert "count" not in first.get("fields", {})
    node.strangers.flush(everything=True)
    (_, summary) = node.events[-1]
    assert summary["fields"]["count"] == 3 * sshserver.MAX_AUTH_TRIES - 1
    assert summary["remote_addr"].startswith("127.0.0.1:")
    assert node.event_names() == ["auth", "auth"]


async def test_a_connection_holds_at_most_max_sessions_at_once(node: Node) -> None:
    async with await _alice(node) as conn:
        held = [await conn.create_process("sleep 30") for _ in range(sshserver.MAX_SESSIONS)]
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process("true")
        rejected = [f for e, f in node.events if e == "session.rejected"]
        assert [f["message"] for f in rejected] == [
            f"at most {sshserver.MAX_SESSIONS} sessions at once on one connection"]
        held[0].terminate()
        await asyncio.wait_for(held[0].wait_closed(), WAIT)
        result = await asyncio.wait_for(conn.run("echo again"), WAIT)  # a slot is free
        assert result.stdout == "again\n"
        for proc in held[1:]:
            proc.terminate()


async def test_a_user_removed_loses_an_open_connection(node: Node) -> None:
    async with await _alice(node) as conn:
        assert (await asyncio.wait_for(conn.run("echo hi"), WAIT)).stdout == "hi\n"
        node.trust = dataclasses.replace(node.trust, users=frozenset())
        # A new channel decides again, before any trust change is announced...
        with pytest.raises(asyncssh.ChannelOpenError):
            await asyncio.wait_for(conn.run("true"), WAIT)
        (rejected,) = [f for e, f in node.events if e == "session.rejected"]
        assert rejected["user"] == "alice" and "no longer allowed" in rejected["message"]
        await asyncio.wait_for(conn.wait_closed(), WAIT)  # ...and closes the connection


async def test_a_trust_change_closes_the_connections_it_no_longer_allows(node: Node) -> None:
    async with await _alice(node) as conn:
        sleeper = await conn.create_process("sleep 30")
        (server,) = [s for s in node.servers if s.grant is not None]
        assert server.recheck()  # nothing changed: it stays
        node.trust = dataclasses.replace(node.trust, roles={})  # the role removed
        assert not server.recheck()
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        await asyncio.wait_for(sleeper.wait_closed(), WAIT)
        assert node.event_names().count("session.rejected") == 1


async def test_a_connection_is_closed_when_its_certificate_expires(node: Node) -> None:
    # Before, an open connection outlived its certificate until a new channel or a
    # trust change happened to decide again.
    node.clock = SystemClock()
    ends = int(time.time()) + 5  # time enough to log in on a loaded machine
    async with await _alice(node, valid_before=ends) as conn:
        sleeper = await conn.create_process("sleep 30")
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        await asyncio.wait_for(sleeper.wait_closed(), WAIT)
    assert time.time() >= ends
    (rejected,) = [f for e, f in node.events if e == "session.rejected"]
    assert rejected["user"] == "alice"
    assert rejected["message"].startswith("certificate expired at "), rejected


async def test_a_wall_clock_jumping_past_the_expiry_closes_the_connection_within_a_check(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # The expiry timer runs on the loop's monotonic clock; a wall clock stepped forward
    # (NTP, a resumed VM) reaches the certificate's end sooner. The connection looks again
    # every EXPIRY_CHECK_MAX seconds at most (a day before: the session outlived its
    # certificate by up to that).
    assert sshserver.EXPIRY_CHECK_MAX <= 60
    monkeypatch.setattr(sshserver, "EXPIRY_CHECK_MAX", 0.5)  # the test's minute
    clock = FakeClock(START)
    node.clock = clock
    async with await _alice(node, valid_before=NOW + 3600) as conn:
        sleeper = await conn.create_process("sleep 30")
        clock.advance(dt.timedelta(hours=2))
        await asyncio.wait_for(conn.wait_closed(), WAIT)
        await asyncio.wait_for(sleeper.wait_closed(), WAIT)
    (rejected,) = [f for e, f in node.events if e == "session.rejected"]
    assert rejected["message"].startswith("certificate expired at "), rejected
