"""Tests for gatehouse.auth.server and issuer: CAs, logins, certificates, joins, presence."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from gatehouse.auth import issuer, trustjoin
from gatehouse.auth.issuer import NO_LOGIN_PRINCIPAL
from gatehouse.auth.passwords import LOCK_AFTER
from gatehouse.auth.server import DEFAULT_USER_TTL, NODE_TTL, AuthServer, JoinRequest
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, LimitExceeded, NotFound
from gatehouse.pki import sshcert, x509
from gatehouse.services.events import AuditEvent
from gatehouse.services.hosts import HostRecord
from gatehouse.services.resources import ResourceStore
from gatehouse.types.node import Node, NodeSpec
from gatehouse.types.resource import Metadata
from gatehouse.types.role import Role, RoleConditions, RoleOptions, RoleSpec
from gatehouse.types.user import User, UserSpec
from tests.auth.samples import CLUSTER, NODE_ADDR, add_role, certify, leaf_host_ca

PASSWORD = "correct horse battery"
MINUTE = dt.timedelta(minutes=1)
SECOND = dt.timedelta(seconds=1)
BACKDATE_S = int(x509.BACKDATE.total_seconds())  # certificates start this far in the past

pytestmark = pytest.mark.usefixtures("fast_hashing")


def public_line() -> str:
    return sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())


async def add_user(server: AuthServer, name: str = "alice", roles: list[str] | None = None,
                   logins: list[str] | None = None, password: str = PASSWORD) -> User:
    traits = {"logins": logins} if logins is not None else {}
    user = User(metadata=Metadata(name=name),
                spec=UserSpec(roles=roles or ["access"], traits=traits))
    await server.users.create(user)
    await server.passwords.set(name, password)
    return user


def ssh_cert(line: str) -> sshcert.Certificate:
    return sshcert.decode(sshcert.from_openssh_line(line))


async def events(server: AuthServer, event: str) -> list[AuditEvent]:
    return (await server.audit.search(types=[event])).events


def join_request(secret: str, role: str = "node", nodename: str = "node1",
                 addrs: list[str] | None = None, dns_names: list[str] | None = None
                 ) -> JoinRequest:
    return JoinRequest(token=secret, role=role, nodename=nodename, public_key=public_line(),
                       addrs=[NODE_ADDR] if addrs is None else addrs,
                       dns_names=dns_names or [], remote_addr="10.0.0.7:40000")


# --- open ---------------------------------------------------------------------------------


async def test_open_creates_the_cas_and_preset_roles(server: AuthServer) -> None:
    assert server.cluster == CLUSTER
    assert sorted(server.cas) == ["host", "user"]
    for ca_type, ca in server.cas.items():
        assert ca.cluster == CLUSTER
        assert ca.type == ca_type
        assert x509.ca_type(ca.tls_cert) == ca_type
        assert ca.tls_cert.subject.rfc4514_string() == f"CN={CLUSTER} {ca_type} CA,O={CLUSTER}"
    assert server.cas["user"].tls_fingerprint != server.cas["host"].tls_fingerprint
    assert server.cas["user"].ssh_fingerprint != server.cas["host"].ssh_fingerprint
    assert sorted(r.name for r in await server.roles.list()) == ["access", "auditor", "editor"]


async def test_reopening_keeps_the_cas(server: AuthServer, backend: Backend, clock: FakeClock,
                                       tmp_path: Path) -> None:
    again = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    for ca_type in ("user", "host"):
        assert again.cas[ca_type].tls_fingerprint == server.cas[ca_type].tls_fingerprint
        assert again.cas[ca_type].ssh_fingerprint == server.cas[ca_type].ssh_fingerprint
        assert again.cas[ca_type].tls_cert == server.cas[ca_type].tls_cert


async def test_reopening_keeps_an_edited_preset_role(server: AuthServer, backend: Backend,
                                                     clock: FakeClock, tmp_path: Path) -> None:
    access = await server.roles.get("access")
    edited = access.model_copy(update={"spec": RoleSpec(allow=RoleConditions(logins=["ops"]))})
    await server.roles.upsert(edited)
    again = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    assert (await again.roles.get("access")).spec.allow.logins == ["ops"]


async def test_reopening_with_another_cluster_name_is_refused(server: AuthServer,
                                                              backend: Backend,
                                                              clock: FakeClock,
                                                              tmp_path: Path) -> None:
    with pytest.raises(BadParameter, match=f"belongs to cluster '{CLUSTER}'.*'other.example'"):
        await AuthServer.open(backend, clock, "other.example", tmp_path / "recordings")


# --- login --------------------------------------------------------------------------------


async def test_login_issues_an_ssh_certificate(server: AuthServer, clock: FakeClock) -> None:
    await add_user(server, logins=["alice", "root"])
    key = public_line()
    certs = await server.login("alice", PASSWORD, key, remote_addr="192.0.2.1:5000")
    cert = ssh_cert(certs.ssh_cert)
    assert cert.cert_type == sshcert.CertType.USER
    assert cert.key_id == "alice"
    assert cert.principals == ("alice", "root")
    assert cert.roles == ("access",)
    assert cert.cluster == CLUSTER
    assert cert.route_to_cluster == CLUSTER
    assert cert.traits == {"logins": ["alice", "root"]}
    assert "permit-pty" in cert.extensions
    assert "permit-port-forwarding" not in cert.extensions  # access does not allow it
    assert sshcert.public_key_line(cert.public_key) == key
    assert cert.signature_key == server.cas["user"].ssh_key.public_key()
    now = int(clock.now().timestamp())
    assert cert.valid_after == now - BACKDATE_S
    assert cert.valid_before == now + int(DEFAULT_USER_TTL.total_seconds())
    assert certs.expires == clock.now() + DEFAULT_USER_TTL
    assert certs.ssh_cert.endswith(" alice")


async def test_login_issues_the_x509_twin(server: AuthServer, clock: FakeClock) -> None:
    await add_user(server, logins=["alice", "root"])
    certs = await server.login("alice", PASSWORD, public_line())
    cert = x509.load_cert(certs.tls_cert)
    assert x509.verify_issued_by(cert, [server.cas["user"].tls_cert], clock.now())
    assert x509.identity_of(cert) == x509.Identity(
        kind="user", name="alice", cluster=CLUSTER, roles=("access",),
        logins=("alice", "root"), traits={"logins": ["alice", "root"]},
        route_to_cluster=CLUSTER, expires=clock.now() + DEFAULT_USER_TTL,
    )


async def test_a_verifier_whose_clock_is_ten_minutes_behind_accepts_new_certificates(
        server: AuthServer, clock: FakeClock) -> None:
    """A leaf, or a node, whose clock lags the issuer's accepts what it just issued: its
    users' and hosts' certificates, SSH and X.509, and the CAs themselves."""
    await add_user(server, logins=["root"])
    user = await server.login("alice", PASSWORD, public_line())
    token = await server.create_token("node", dt.timedelta(minutes=15))
    _, host = await server.join(join_request(token.secret))
    behind = clock.now() - 10 * MINUTE
    for certs, ca, kind in ((user, "user", sshcert.CertType.USER),
                            (host, "host", sshcert.CertType.HOST)):
        sshcert.check_validity(ssh_cert(certs.ssh_cert), now=int(behind.timestamp()),
                               cert_type=kind, principal=None)
        x509.verify_issued_by(x509.load_cert(certs.tls_cert), [server.cas[ca].tls_cert], behind)
        x509.check_validity(server.cas[ca].tls_cert, behind)


async def test_login_is_audited(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    await server.login("alice", PASSWORD, public_line(), remote_addr="192.0.2.1:5000")
    [login] = await events(server, "user.login")
    assert (login.user, login.remote_addr, login.code) == ("alice", "192.0.2.1:5000", "T1000I")
    [cert] = await events(server, "cert.create")
    assert cert.user == "alice"
    assert cert.fields["logins"] == ["alice"]
    assert cert.fields["roles"] == ["access"]


@pytest.mark.parametrize(
    ("asked", "granted"),
    [(None, DEFAULT_USER_TTL), (dt.timedelta(hours=1), dt.timedelta(hours=1)),
     (dt.timedelta(hours=30), DEFAULT_USER_TTL)],
)
async def test_requested_ttl_is_capped_by_the_roles(server: AuthServer, clock: FakeClock,
                                                    asked: dt.timedelta | None,
                                                    granted: dt.timedelta) -> None:
    await add_user(server, logins=["alice"])
    certs = await server.login("alice", PASSWORD, public_line(), ttl=asked)
    assert certs.expires == clock.now() + granted
    assert ssh_cert(certs.ssh_cert).valid_before == int((clock.now() + granted).timestamp())
    assert x509.load_cert(certs.tls_cert).not_valid_after_utc == clock.now() + granted


async def test_the_shortest_max_session_ttl_of_the_roles_wins(server: AuthServer,
                                                              clock: FakeClock) -> None:
    await add_role(server, "short", options={"max_session_ttl": "1h30m"})
    await add_user(server, roles=["access", "short"], logins=["alice"])
    certs = await server.login("alice", PASSWORD, public_line())
    assert certs.expires == clock.now() + dt.timedelta(hours=1, minutes=30)
    cert = ssh_cert(certs.ssh_cert)
    assert cert.valid_before - cert.valid_after == 90 * 60 + BACKDATE_S
    assert cert.roles == ("access", "short")


async def test_logins_come_from_traits_through_roles_minus_denials(server: AuthServer) -> None:
    await add_role(server, "ops", allow={"logins": ["deploy", "{{internal.logins}}"]},
                   deny={"logins": ["root"]}, options={"port_forwarding": True})
    await add_user(server, roles=["access", "ops"], logins=["root", "alice"])
    cert = ssh_cert((await server.login("alice", PASSWORD, public_line())).ssh_cert)
    assert cert.principals == ("alice", "deploy")
    assert "permit-port-forwarding" in cert.extensions


@pytest.mark.parametrize(("roles", "logins"), [(["auditor"], ["alice"]), (["access"], None),
                                               (["access"], []), (["editor"], None)])
async def test_no_allowed_login_gets_the_impossible_principal(
    server: AuthServer, roles: list[str], logins: list[str] | None
) -> None:
    await add_user(server, roles=roles, logins=logins)
    certs = await server.login("alice", PASSWORD, public_line())
    assert ssh_cert(certs.ssh_cert).principals == (NO_LOGIN_PRINCIPAL,)
    assert x509.identity_of(x509.load_cert(certs.tls_cert)).logins == ()


async def test_a_missing_role_grants_nothing(server: AuthServer, clock: FakeClock) -> None:
    await add_user(server, roles=["ghost"], logins=["alice"])
    certs = await server.login("alice", PASSWORD, public_line())
    cert = ssh_cert(certs.ssh_cert)
    assert cert.principals == (NO_LOGIN_PRINCIPAL,)
    assert cert.roles == ("ghost",)
    assert certs.expires <= clock.now() + DEFAULT_USER_TTL


async def test_wrong_password_is_denied_and_audited(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        await server.login("alice", "wrong horse battery", public_line(),
                           remote_addr="192.0.2.1:5000")
    [failure] = await events(server, "user.login.failure")
    assert failure.user == "alice"
    assert failure.remote_addr == "192.0.2.1:5000"
    assert failure.code == "T1000W"
    assert failure.cluster == CLUSTER
    assert failure.message == "invalid user name or password"
    assert await events(server, "user.login") == []
    assert await events(server, "cert.create") == []


async def test_unknown_user_is_denied_and_audited(server: AuthServer) -> None:
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        await server.login("mallory", PASSWORD, public_line())
    [failure] = await events(server, "user.login.failure")
    assert failure.user == "mallory"


async def test_a_login_as_no_name_is_an_unknown_user_and_counts_toward_no_one(
        server: AuthServer, backend: Backend) -> None:
    """bob/0 was a key under bob's: six failures as bob/0..bob/5 locked bob out."""
    await add_user(server, "bob")
    for i in range(LOCK_AFTER + 1):
        with pytest.raises(AccessDenied, match=r"^invalid user name or password$"):
            await server.login(f"bob/{i}", "wrong horse battery", public_line(),
                               remote_addr="192.0.2.1:5000")
    with pytest.raises(AccessDenied, match=r"^invalid user name or password$"):
        await server.login("x" * 5000 + "\n", PASSWORD, public_line())
    await server.login("bob", PASSWORD, public_line())
    assert not await backend.get_range(b"/login_failures/", b"/login_failures0")
    await server.failures.flush(everything=True)
    failures = await events(server, "user.login.failure")
    assert sum(f.fields.get("count", 1) for f in failures) == LOCK_AFTER + 2
    first = failures[-1]  # stored at once; the repeats folded into one with their names
    assert (first.user, first.message) == ("'bob/0'", "invalid user name or password")
    shown = {n for f in failures for n in [f.user, *f.fields.get("names", [])]}
    assert shown == {f"'bob/{i}'" for i in range(LOCK_AFTER + 1)} | {f"'{'x' * 64}'"}


async def test_a_password_without_a_user_is_denied(server: AuthServer) -> None:
    await server.passwords.set("orphan", PASSWORD)
    with pytest.raises(AccessDenied, match="invalid user name or password"):
        await server.login("orphan", PASSWORD, public_line())
    [failure] = await events(server, "user.login.failure")
    assert failure.message == "invalid user name or password"


async def test_a_deleted_user_cannot_log_in(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    await server.delete_user("alice")
    with pytest.raises(AccessDenied):
        await server.login("alice", PASSWORD, public_line())


async def test_lock_after_failures_is_audited(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    for _ in range(LOCK_AFTER):
        with pytest.raises(AccessDenied):
            await server.login("alice", "wrong horse battery", public_line())
    with pytest.raises(LimitExceeded, match="locked"):
        await server.login("alice", PASSWORD, public_line())
    # The first failure, and the lock's refusal (another reason), are stored at once;
    # the repeats of the first become one event with a count when their window ends.
    locked, first = await events(server, "user.login.failure")  # newest first
    assert first.message == "invalid user name or password" and "locked" in locked.message
    await server.failures.flush(everything=True)
    failures = await events(server, "user.login.failure")
    assert sum(f.fields.get("count", 1) for f in failures) == LOCK_AFTER + 1
    assert sum("locked" in f.message for f in failures) == 1


async def test_successful_login_clears_failures(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    for _ in range(2):
        for _ in range(LOCK_AFTER - 1):
            with pytest.raises(AccessDenied):
                await server.login("alice", "wrong horse battery", public_line())
        await server.login("alice", PASSWORD, public_line())


async def test_malformed_public_key_is_bad_parameter(server: AuthServer) -> None:
    await add_user(server, logins=["alice"])
    with pytest.raises(BadParameter, match="malformed public key"):
        await server.login("alice", PASSWORD, "ssh-ed25519 not-base64!")


def test_only_ed25519_keys_are_certified() -> None:
    line = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmK"
            "Sjn3I0sZcBWpV6zmbgvkKEhqvzvE5CDI0s6w/iMvGazK/8ar/6gSPODuSL85ptRJwk2vv09k2yY1"
            "1iwWUqM=")
    with pytest.raises(BadParameter):
        issuer.parse_public_key(line)


async def test_a_role_edit_applies_at_the_next_login(server: AuthServer) -> None:
    await add_role(server, "ops", allow={"logins": ["deploy"]})
    await add_user(server, roles=["ops"])
    first = ssh_cert((await server.login("alice", PASSWORD, public_line())).ssh_cert)
    await server.roles.upsert(Role(metadata=Metadata(name="ops"), spec=RoleSpec(
        allow=RoleConditions(logins=["deploy", "backup"]),
        options=RoleOptions(max_session_ttl=dt.timedelta(hours=1)))))
    second = ssh_cert((await server.login("alice", PASSWORD, public_line())).ssh_cert)
    assert first.principals == ("deploy",)
    assert second.principals == ("backup", "deploy")
    assert second.valid_before - second.valid_after == 3600 + BACKDATE_S


# --- admin credentials --------------------------------------------------------------------


async def test_admin_certs_are_a_host_identity_without_ssh(server: AuthServer,
                                                           clock: FakeClock) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    certs = await server.issue_admin_certs(key.public_key())
    assert certs.ssh_cert == ""
    cert = x509.load_cert(certs.tls_cert)
    assert x509.verify_issued_by(cert, [server.cas["host"].tls_cert], clock.now())
    ident = x509.identity_of(cert)
    assert (ident.kind, ident.cluster, ident.system_role) == ("host", CLUSTER, "admin")
    assert ident.name.startswith("admin-")


# --- tokens and joins ---------------------------------------------------------------------


async def test_create_token_pins_the_host_ca(server: AuthServer, clock: FakeClock) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    assert token.matches(server.cas["host"].tls_fingerprint)
    assert not token.matches(server.cas["user"].tls_fingerprint)
    stored = await server.tokens.get(token.secret)
    assert stored.spec.type == "node"
    assert stored.metadata.expires == clock.now() + dt.timedelta(minutes=15)
    [created] = await events(server, "token.create")
    assert created.fields["type"] == "node"


async def test_node_join_certifies_the_host(server: AuthServer, clock: FakeClock) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    req = join_request(token.secret)
    host_id, certs = await server.join(req)
    assert uuid.UUID(host_id)

    cert = ssh_cert(certs.ssh_cert)
    assert cert.cert_type == sshcert.CertType.HOST
    assert cert.key_id == host_id
    assert cert.principals == ("node1", f"node1.{CLUSTER}", host_id, "10.0.0.7")
    assert cert.cluster == CLUSTER
    assert cert.host_role == "node"
    assert cert.signature_key == server.cas["host"].ssh_key.public_key()
    assert sshcert.public_key_line(cert.public_key) == req.public_key

    tls = x509.load_cert(certs.tls_cert)
    assert x509.verify_issued_by(tls, [server.cas["host"].tls_cert], clock.now())
    ident = x509.identity_of(tls)
    assert (ident.kind, ident.name, ident.cluster, ident.roles) == (
        "host", host_id, CLUSTER, ("node",))
    assert await server.hosts.get(host_id) == HostRecord("node", "node1", [NODE_ADDR])

    [joined] = await events(server, "join")
    assert joined.node == "node1"
    assert joined.remote_addr == "10.0.0.7:40000"
    assert joined.fields == {"role": "node", "host_id": host_id}


async def test_proxy_join_carries_its_names(server: AuthServer) -> None:
    token = await server.create_token("proxy", dt.timedelta(minutes=15))
    host_id, certs = await server.join(
        join_request(token.secret, role="proxy", nodename="proxy1", addrs=[],
                     dns_names=["sso.example.com", "192.0.2.10"]))
    cert = ssh_cert(certs.ssh_cert)
    assert cert.host_role == "proxy"
    assert cert.principals == ("proxy1", f"proxy1.{CLUSTER}", host_id)
    san = x509.load_cert(certs.tls_cert).extensions.get_extension_for_class(
        cx509.SubjectAlternativeName).value
    assert san.get_values_for_type(cx509.DNSName) == [f"proxy.{CLUSTER}", "sso.example.com"]
    assert san.get_values_for_type(cx509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    assert await server.hosts.get(host_id) == HostRecord(
        "proxy", "proxy1", [], ["sso.example.com", "192.0.2.10"])


async def test_a_node_gets_no_tls_names(server: AuthServer) -> None:
    """A node never serves TLS: names it asks for are ignored, and it gets no serverAuth."""
    token = await server.create_token("node", dt.timedelta(minutes=15))
    _, certs = await server.join(join_request(token.secret, dns_names=["evil.example"]))
    tls = x509.load_cert(certs.tls_cert)
    with pytest.raises(cx509.ExtensionNotFound):
        tls.extensions.get_extension_for_class(cx509.SubjectAlternativeName)
    usages = tls.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


async def test_host_principals_strip_ports_and_brackets(server: AuthServer) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    certs = await server.certify_host("node", "hid-1", "db1", key,
                                      ["10.0.0.7:3022", "[::1]:3022", "db1.internal:22",
                                       "10.0.0.7:4022"], [])
    assert ssh_cert(certs.ssh_cert).principals == (
        "db1", f"db1.{CLUSTER}", "hid-1", "10.0.0.7", "::1", "db1.internal")


async def test_a_token_is_single_use(server: AuthServer) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    await server.join(join_request(token.secret))
    with pytest.raises(AccessDenied, match="invalid, expired or already used"):
        await server.join(join_request(token.secret, nodename="node2"))
    [failure] = await events(server, "join.failure")
    assert failure.node == "node2"
    assert failure.code == "TJ001W"
    assert failure.remote_addr == "10.0.0.7:40000"
    assert failure.fields == {"role": "node"}
    assert "already used" in failure.message


@pytest.mark.parametrize(("token_type", "role"), [("node", "proxy"), ("proxy", "node"),
                                                  ("trusted_cluster", "node")])
async def test_a_token_of_another_type_is_refused(server: AuthServer, token_type: str,
                                                  role: str) -> None:
    token = await server.create_token(token_type, dt.timedelta(minutes=15))  # type: ignore[arg-type]
    with pytest.raises(AccessDenied, match=f"a {token_type} token cannot join a {role}"):
        await server.join(join_request(token.secret, role=role))
    [failure] = await events(server, "join.failure")
    assert failure.fields == {"role": role}
    # Refusing the wrong role does not burn the token for the right one.
    if token_type != "trusted_cluster":
        await server.join(join_request(token.secret, role=token_type))


async def test_an_expired_token_is_refused(server: AuthServer, clock: FakeClock) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    clock.advance(dt.timedelta(minutes=15))
    with pytest.raises(AccessDenied, match="invalid, expired or already used"):
        await server.join(join_request(token.secret))
    assert len(await events(server, "join.failure")) == 1


async def test_a_token_works_until_it_expires(server: AuthServer, clock: FakeClock) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    clock.advance(dt.timedelta(minutes=15) - SECOND)
    await server.join(join_request(token.secret))


async def test_an_unknown_token_is_refused(server: AuthServer) -> None:
    with pytest.raises(AccessDenied):
        await server.join(join_request("A" * 22))
    assert len(await events(server, "join.failure")) == 1


@pytest.mark.parametrize("role", ["auth", "admin", "trusted_cluster", ""])
async def test_only_nodes_and_proxies_join(server: AuthServer, role: str) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    with pytest.raises(BadParameter, match="expected node or proxy"):
        await server.join(join_request(token.secret, role=role))
    assert len(await events(server, "join.failure")) == 1
    await server.join(join_request(token.secret))  # not consumed


async def test_a_bad_public_key_does_not_consume_the_token(server: AuthServer) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    req = join_request(token.secret)
    with pytest.raises(BadParameter):
        await server.join(JoinRequest(**{**req.__dict__, "public_key": "ssh-rsa AAAA"}))
    assert len(await events(server, "join.failure")) == 1
    await server.join(req)


@pytest.mark.parametrize(("nodename", "addrs"), [("", ["10.0.0.7:3022"]), ("node1", [""])])
async def test_a_bad_host_name_does_not_consume_the_token(server: AuthServer, nodename: str,
                                                          addrs: list[str]) -> None:
    token = await server.create_token("node", dt.timedelta(minutes=15))
    with pytest.raises(BadParameter):
        await server.join(join_request(token.secret, nodename=nodename, addrs=addrs))
    assert len(await events(server, "join.failure")) == 1
    await server.join(join_request(token.secret))


# --- a leaf joining this cluster (root side) ----------------------------------------------


async def test_a_leaf_joins_with_a_trusted_cluster_token(server: AuthServer) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    leaf = leaf_host_ca()
    cas = await trustjoin.accept_leaf(server, token.secret, leaf, "10.0.0.9")
    assert cas == [server.cas["user"].public(), server.cas["host"].public()]
    assert await server.trust.leaf_cas() == [leaf]
    assert [rc.metadata.name for rc in await server.trust.remotes.list()] == ["leaf-a"]
    assert await server.tokens.list() == []  # single use
    [ev] = await events(server, "trusted_cluster.join")
    assert ev.fields == {"leaf": "leaf-a"}


async def test_a_leaf_join_is_refused_before_its_token_is_spent(server: AuthServer) -> None:
    node_token = await server.create_token("node", dt.timedelta(minutes=15))
    with pytest.raises(AccessDenied, match="a node token cannot join a trusted cluster"):
        await trustjoin.accept_leaf(server, node_token.secret, leaf_host_ca(), "10.0.0.9")
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    with pytest.raises(AccessDenied, match="cannot share the root's name"):
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(CLUSTER), "10.0.0.9")
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(), "10.0.0.9")
    assert [t.metadata.name for t in await server.tokens.list()] == [node_token.secret]
    await server.failures.flush(everything=True)  # the second is a repeat from that source
    assert [e.fields.get("count", 1) for e in
            await events(server, "trusted_cluster.join.failure")] == [1, 1]


async def test_a_second_leaf_of_one_name_is_refused_to_token_holders_only(server: AuthServer
                                                                         ) -> None:
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(), "10.0.0.9")
    # Without a valid token, nothing is said of which names have joined.
    with pytest.raises(AccessDenied, match="join token is invalid"):
        await trustjoin.accept_leaf(server, "not-a-token", leaf_host_ca(), "10.0.0.66")
    token = await server.create_token("trusted_cluster", dt.timedelta(minutes=15))
    with pytest.raises(AlreadyExists, match="already joined with a different host CA"):
        await trustjoin.accept_leaf(server, token.secret, leaf_host_ca(), "10.0.0.66")
    assert len(await server.tokens.list()) == 1  # not spent on a refusal


# --- presence -----------------------------------------------------------------------------
# Heartbeats are accepted only under the name and addresses a host was certified with;
# tests/auth/test_hosts.py covers the refusals.


async def test_heartbeat_registers_a_node(server: AuthServer, clock: FakeClock) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    node = await server.heartbeat("hid-1", "db1", NODE_ADDR, {"env": "prod"}, source=None)
    [listed] = await server.nodes.list()
    assert listed == node
    assert listed.metadata.name == "hid-1"
    assert listed.metadata.labels == {"env": "prod"}
    assert (listed.spec.hostname, listed.spec.addr, listed.spec.cluster, listed.spec.host_id) \
        == ("db1", NODE_ADDR, CLUSTER, "hid-1")
    assert listed.status is not None
    assert listed.status.last_heartbeat == clock.now()


async def test_a_node_vanishes_node_ttl_after_its_last_heartbeat(server: AuthServer,
                                                                 clock: FakeClock) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)
    clock.advance(NODE_TTL - SECOND)
    assert len(await server.nodes.list()) == 1
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)  # refreshed
    clock.advance(NODE_TTL - SECOND)
    assert len(await server.nodes.list()) == 1
    clock.advance(SECOND)
    assert await server.nodes.list() == []
    with pytest.raises(NotFound):
        await server.resolve_node("db1")


@pytest.mark.parametrize("labels", [{"bad key": "x"}, {"": "x"}, {"*": "x"}])
async def test_bad_heartbeat_labels_are_bad_parameter(server: AuthServer,
                                                      labels: dict[str, str]) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(BadParameter, match=r"bad heartbeat: labels.*not a valid label key"):
        await server.heartbeat("hid-1", "db1", NODE_ADDR, labels, source=None)


async def two_nodes(server: AuthServer, second_name: str = "web1") -> None:
    """db1 (hid-1) at 10.0.0.7:3022, and a second node (hid-2) at 10.0.0.8:3022."""
    for host_id, name, addr in [("hid-1", "db1", NODE_ADDR), ("hid-2", second_name,
                                                              "10.0.0.8:3022")]:
        await certify(server, host_id, name, [addr])
        await server.heartbeat(host_id, name, addr, {}, source=None)


async def test_resolve_node_by_host_id_hostname_or_addr(server: AuthServer) -> None:
    await two_nodes(server)
    db1, web1 = await server.nodes.get("hid-1"), await server.nodes.get("hid-2")
    assert await server.resolve_node("hid-1") == db1
    assert await server.resolve_node("db1") == db1
    assert await server.resolve_node(NODE_ADDR) == db1
    assert await server.resolve_node("web1") == web1


@pytest.mark.parametrize("target", ["db2", "10.0.0.7", "10.0.0.9:3022", "", "hid"])
async def test_resolve_unknown_node_is_not_found(server: AuthServer, target: str) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)
    with pytest.raises(NotFound, match=f"not registered in cluster {CLUSTER}"):
        await server.resolve_node(target)


async def test_resolve_ambiguous_hostname_is_bad_parameter(server: AuthServer) -> None:
    """Two nodes listed under one name: an earlier version let a second node take a name
    (tests/auth/test_node_claims.py), and its listing lasts until it expires."""
    await two_nodes(server)
    await server.nodes.upsert(Node(metadata=Metadata(name="hid-2"), spec=NodeSpec(
        hostname="db1", addr="10.0.0.8:3022", cluster=CLUSTER, host_id="hid-2")))
    with pytest.raises(BadParameter, match=r"ambiguous.*use its host id"):
        await server.resolve_node("db1")
    assert (await server.resolve_node("hid-2")).spec.addr == "10.0.0.8:3022"


async def test_resolve_follows_a_nodes_current_address(server: AuthServer) -> None:
    await certify(server, "hid-1", "db1", [NODE_ADDR, "10.0.0.9:3022"])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {}, source=None)
    await server.heartbeat("hid-1", "db1", "10.0.0.9:3022", {}, source=None)
    with pytest.raises(NotFound):
        await server.resolve_node(NODE_ADDR)
    assert (await server.resolve_node("10.0.0.9:3022")).metadata.name == "hid-1"
    assert (await server.resolve_node("db1")).spec.addr == "10.0.0.9:3022"


async def test_resolve_matches_whole_names_only(server: AuthServer) -> None:
    await two_nodes(server, second_name="db10")
    assert (await server.resolve_node("db1")).metadata.name == "hid-1"
    await server.delete_node("hid-1")
    with pytest.raises(NotFound):
        await server.resolve_node("db1")
    assert (await server.resolve_node("db10")).metadata.name == "hid-2"


async def test_nodes_stored_by_an_earlier_version_resolve_after_a_restart(
        backend: Backend, clock: FakeClock, tmp_path: Path) -> None:
    # An earlier version stored nodes without the indexes (a plain resource store).
    unindexed = ResourceStore(backend, "node", Node)
    await unindexed.upsert(Node(metadata=Metadata(name="hid-1"),
                                spec=NodeSpec(hostname="db1", addr=NODE_ADDR, cluster=CLUSTER,
                                              host_id="hid-1")))
    server = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings")
    assert (await server.resolve_node("db1")).metadata.name == "hid-1"
    assert (await server.resolve_node(NODE_ADDR)).metadata.name == "hid-1"


async def test_a_host_id_beats_another_nodes_hostname(server: AuthServer) -> None:
    await certify(server, "db1", "alpha", [NODE_ADDR])
    await server.heartbeat("db1", "alpha", NODE_ADDR, {}, source=None)
    await certify(server, "hid-2", "db1", ["10.0.0.8:3022"])
    await server.heartbeat("hid-2", "db1", "10.0.0.8:3022", {}, source=None)
    assert (await server.resolve_node("db1")).metadata.name == "db1"


@pytest.mark.parametrize("tail", [" alice@laptop", "\n", " x\n@cert-authority * KEY"])
async def test_a_public_key_line_with_anything_after_the_key_is_refused(
        server: AuthServer, tail: str) -> None:
    """Only the line gsh sends, ``ssh-ed25519 BASE64``: the key's line is what the auth
    keeps (an SSO login's pending state) and echoes, so no comment or second line rides
    along (review-sso finding 1)."""
    await add_user(server, logins=["alice"])
    line = public_line()
    with pytest.raises(BadParameter, match="not one canonical"):
        await server.login("alice", PASSWORD, line + tail.replace("KEY", line))
    await server.login("alice", PASSWORD, line)
