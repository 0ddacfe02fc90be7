"""The auth's SSO logic (auth.sso) end to end in one process: begin, the IdP's callback,
the client's one fetch. The IdP here is a stand-in at the network edge (auth.idp) that
signs real tokens with keys the test makes, so that key rotation, a replayed state, a
wrong secret and unmapped claims can each be driven exactly; tests/integration/test_sso.py
runs the same flow against a real OpenID provider."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gatehouse.auth import catalog, sso, ssodevice
from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import Caller, caller_roles
from gatehouse.auth.server import AuthServer
from gatehouse.backend import Backend
from gatehouse.clock import FakeClock
from gatehouse.config import AuthLimits
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, NotFound
from gatehouse.pki import sshcert, x509
from gatehouse.types.oidc import OIDCConnector
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec
from gatehouse.types.yaml_io import parse_resources
from gatehouse.wire.authapi import (
    DeviceBegin,
    DevicePoll,
    SSOBegin,
    SSOCallback,
    SSOComplete,
    SSORedirect,
)
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER

ISSUER = "https://idp.test"
LOOPBACK = "http://127.0.0.1:40000/callback"
CONNECTOR = f"""kind: oidc
version: v1
metadata: {{name: corp}}
spec:
  issuer_url: {ISSUER}
  client_id: gatehouse
  client_secret: client-secret
  claims_to_roles:
    - {{claim: groups, value: admins, roles: [access]}}
"""


class StandInIdP:
    """Discovery, JWKS and a token endpoint; ``authorize`` is the person's login."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.key = self._new_key()
        self.jwks_fetches = 0
        self.codes: dict[str, tuple[dict[str, Any], str]] = {}

    @staticmethod
    def _new_key() -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4), "use": "sig"})

    def rotate(self) -> None:
        self.key = self._new_key()

    async def get_json(self, url: str, ca_file: str) -> dict[str, Any]:
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                    "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"]}
        assert url == f"{ISSUER}/jwks"
        self.jwks_fetches += 1
        return KeySet([self.key]).as_dict(private=False)

    def authorize(self, auth_url: str, claims: dict[str, Any]) -> SSOCallback:
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))
        assert params["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        now = int(self.clock.now().timestamp())
        self.codes[code] = ({"iss": ISSUER, "aud": "gatehouse", "sub": "u1", "iat": now,
                             "exp": now + 300, "nonce": params["nonce"], **claims},
                            params["code_challenge"])
        return SSOCallback(state=params["state"], code=code, iss=ISSUER)

    async def post_form(self, url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        assert basic_auth == ("gatehouse", "client-secret")
        claims, challenge = self.codes.pop(form["code"])
        digest = hashlib.sha256(form["code_verifier"].encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
            return {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        header = {"alg": "RS256", "kid": self.key.kid}
        return {"id_token": jwt.encode(header, claims, self.key)}


@pytest.fixture
def clock() -> FakeClock:
    # The API tests' TLS handshakes check certificates against the real time.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def idp(clock: FakeClock) -> StandInIdP:
    return StandInIdP(clock)


@pytest.fixture
async def server(backend: Backend, clock: FakeClock, tmp_path: Path,
                 idp: StandInIdP) -> AuthServer:
    auth = await AuthServer.open(backend, clock, CLUSTER, tmp_path / "recordings", idp=idp,
                                 connector_files=tmp_path / "connector-files")
    (connector,) = parse_resources(CONNECTOR)
    assert isinstance(connector, OIDCConnector)
    await auth.oidc.create(connector)
    return auth


ALICE = {"email": "alice@example.com", "groups": ["admins"], "unix_user": "alice"}


async def _begin(server: AuthServer, secret: str = "s" * 40,
                 redirect: str = LOOPBACK, connector: str = "corp") -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    started = await sso.begin(server, SSOBegin(
        connector=connector, public_key=sshcert.public_key_line(key.public_key()),
        client_redirect=redirect, proxy_addr="proxy.test:3080",
        secret_hash=hashlib.sha256(secret.encode()).hexdigest()), "10.0.0.9:5000")
    return started.auth_url, started.request_id


async def _login(server: AuthServer, idp: StandInIdP, claims: dict[str, Any],
                 secret: str = "s" * 40, connector: str = "corp") -> dict[str, Any]:
    auth_url, request_id = await _begin(server, secret, connector=connector)
    redirect = await sso.finish(server, idp.authorize(auth_url, claims), "proxy")
    assert redirect.url.startswith(f"{LOOPBACK}?id={request_id}&code=")
    return await _collect(server, redirect, secret)


async def _collect(server: AuthServer, redirect: SSORedirect, secret: str = "s" * 40
                   ) -> dict[str, Any]:
    """What gsh does when the browser comes back: complete with its secret and the code."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect.url).query))
    return await sso.complete(server, SSOComplete(request_id=query["id"], secret=secret,
                                                  code=query["code"]), "")


async def _events(server: AuthServer, kind: str) -> list[Any]:
    return list((await server.audit.search(types=[kind])).events)


async def test_login_gives_certificates_for_the_key_and_claims(server: AuthServer,
                                                                idp: StandInIdP) -> None:
    done = await _login(server, idp, ALICE)
    assert done["user"] == "alice@example.com" and done["roles"] == ["access"]
    ident = x509.identity_of(x509.load_cert(done["tls_cert"]))
    assert ident.connector == "corp" and ident.roles == ("access",)
    assert ident.traits["unix_user"] == ["alice"] and "nonce" not in ident.traits
    cert = sshcert.decode(sshcert.from_openssh_line(done["ssh_cert"]))
    assert cert.connector == "corp"
    # No user record, yet the user stands while the connector does.
    assert [r.metadata.name for r in await caller_roles(server, ident)] == ["access"]
    (login,) = await _events(server, "user.login")
    assert login.fields == {"method": "oidc", "connector": "corp", "roles": ["access"]}
    await server.oidc.delete("corp")
    with pytest.raises(AccessDenied, match="no longer exists"):
        await caller_roles(server, ident)


async def test_replayed_state_is_refused_and_audited(server: AuthServer,
                                                     idp: StandInIdP) -> None:
    auth_url, _ = await _begin(server)
    callback = idp.authorize(auth_url, ALICE)
    await sso.finish(server, callback, "proxy")
    with pytest.raises(AccessDenied, match="already used login state"):
        await sso.finish(server, callback, "proxy")
    with pytest.raises(AccessDenied, match="already used login state"):
        await sso.finish(server, SSOCallback(state="forged", code="x"), "proxy")


async def test_result_goes_once_and_only_with_the_secret(server: AuthServer,
                                                         idp: StandInIdP) -> None:
    auth_url, _ = await _begin(server, secret="right" * 8)
    redirect = await sso.finish(server, idp.authorize(auth_url, ALICE), "proxy")
    with pytest.raises(AccessDenied, match="secret does not match"):
        await _collect(server, redirect, secret="wrong")
    # The wrong secret used it up: whoever saw the id cannot wait for the right one.
    with pytest.raises(AccessDenied, match="already fetched"):
        await _collect(server, redirect, secret="right" * 8)


async def test_a_login_begun_by_another_is_not_theirs_to_collect(server: AuthServer,
                                                                 idp: StandInIdP) -> None:
    """Phishing with a real IdP link: an attacker begins a login with its own key and
    secret and sends the IdP's URL to a victim, who logs in. The victim's browser goes
    to the loopback port the attacker named, on the victim's machine; the attacker, who
    holds the id and the secret, must not get the victim's certificates for its key."""
    attacker_secret = "a" * 40
    auth_url, request_id = await _begin(server, attacker_secret, "http://127.0.0.1:1/callback")
    await sso.finish(server, idp.authorize(auth_url, ALICE), "proxy")
    with pytest.raises(AccessDenied, match="browser"):
        await sso.complete(server, SSOComplete(request_id=request_id, secret=attacker_secret,
                                               code="guessed"), "203.0.113.66:4000")
    (refusal,) = [e for e in await _events(server, "user.login.failure")
                  if "browser" in e.message]
    assert refusal.remote_addr == "203.0.113.66:4000"


async def test_a_claim_does_not_fill_an_internal_trait(server: AuthServer,
                                                      idp: StandInIdP) -> None:
    """The preset access role allows ``{{internal.logins}}``: a user record's logins. An
    ID token's claim named ``logins`` is the IdP's word, which only ``{{external.*}}``
    reads: it must not make its holder root."""
    done = await _login(server, idp, {**ALICE, "logins": ["root", "postgres"]})
    cert = sshcert.decode(sshcert.from_openssh_line(done["ssh_cert"]))
    assert not {"root", "postgres"} & set(cert.principals), cert.principals


async def test_a_connector_s_files_are_read_only_in_the_auth_s_directory(
        server: AuthServer, idp: StandInIdP, tmp_path: Path) -> None:
    """Whoever may create a connector chooses the paths of its files, and the auth sends
    the secret file's text to the connector's IdP: a path outside the directory the
    auth's own config names would hand any file of the auth's host (its keys) to an IdP
    of the author's choosing."""
    key = tmp_path / "auth-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nstolen\n-----END PRIVATE KEY-----\n")
    for field in ("client_secret_file", "ca_file"):
        text = CONNECTOR.replace("name: corp", "name: other")
        if field == "client_secret_file":
            text = text.replace("client_secret: client-secret", f"{field}: {key}")
        else:
            text = text.replace("  claims_to_roles:", f"  {field}: {key}\n  claims_to_roles:")
        (connector,) = parse_resources(text)
        assert isinstance(connector, OIDCConnector)
        with pytest.raises(BadParameter, match=rf"^{field} .*connector_files_dir"):
            await catalog.put_resource(server, connector, upsert=False, by="admin",
                                       remote_addr="")
        # One stored before the auth checked (or by another way in) is refused at use:
        # the stand-in IdP fails the test if another secret reaches its token endpoint.
        await server.oidc.upsert(connector)
        with pytest.raises((BadParameter, AccessDenied), match=rf"^{field} .*connector_files"):
            started = await sso.begin(server, SSOBegin(
                connector="other", public_key=sshcert.public_key_line(
                    ed25519.Ed25519PrivateKey.generate().public_key()),
                client_redirect=LOOPBACK, proxy_addr="proxy.test:3080",
                secret_hash=hashlib.sha256(b"s" * 40).hexdigest()), "10.0.0.9:5000")
            await _collect(server, await sso.finish(
                server, idp.authorize(started.auth_url, ALICE), "proxy"))
    # A file in the directory is read.
    inside = server.connector_files / "idp-secret"
    server.connector_files.mkdir(parents=True, exist_ok=True)
    inside.write_text("client-secret\n")
    (connector,) = parse_resources(CONNECTOR.replace(
        "client_secret: client-secret", f"client_secret_file: {inside}"))
    assert isinstance(connector, OIDCConnector)
    await catalog.put_resource(server, connector, upsert=True, by="admin", remote_addr="")
    assert (await server.oidc.get("corp")).spec.client_secret_file == str(inside)
    assert (await _login(server, idp, ALICE))["user"] == "alice@example.com"


async def test_unmapped_user_is_refused_with_the_reason(server: AuthServer,
                                                        idp: StandInIdP) -> None:
    with pytest.raises(AccessDenied,
                       match=r"^no roles mapped for bob@example\.com from connector corp$"):
        await _login(server, idp, {"email": "bob@example.com", "groups": ["staff"]})
    (failure,) = await _events(server, "user.login.failure")
    assert failure.user == "bob@example.com" and "no roles mapped" in failure.message
    assert failure.fields["method"] == "oidc"


async def test_an_sso_login_may_not_take_a_local_user_s_name(server: AuthServer,
                                                            idp: StandInIdP) -> None:
    """The IdP's name for a person must not be a local user's: the two would be one
    name in the audit trail and on every node's sessions (Teleport refuses it too)."""
    await server.users.create(User(metadata=Metadata(name="alice@example.com"),
                                   spec=UserSpec(roles=["access"])))
    with pytest.raises(AccessDenied, match=r"^a local user is named alice@example\.com: "
                                           r"connector corp may not log in under that name"):
        await _login(server, idp, ALICE)
    (failure,) = await _events(server, "user.login.failure")
    assert failure.user == "alice@example.com" and "a local user" in failure.message
    assert await _events(server, "user.login") == []
    await server.users.delete("alice@example.com")
    assert (await _login(server, idp, ALICE))["user"] == "alice@example.com"


async def test_two_connectors_naming_one_person_alike_are_told_apart_by_connector(
        server: AuthServer, idp: StandInIdP) -> None:
    """Two connectors whose IdPs give a person the same name log in as one user name (a
    move from one connector to another must not wait for the old certificates to end);
    each certificate, and each login's audit, carries its own connector."""
    (partner,) = parse_resources(CONNECTOR.replace("name: corp", "name: partner"))
    assert isinstance(partner, OIDCConnector)
    await server.oidc.create(partner)
    first = await _login(server, idp, ALICE)
    second = await _login(server, idp, ALICE, connector="partner")
    assert (first["user"], second["user"]) == ("alice@example.com", "alice@example.com")
    for done, name in ((first, "corp"), (second, "partner")):
        assert sshcert.decode(sshcert.from_openssh_line(done["ssh_cert"])).connector == name
    assert [e.fields["connector"] for e in await _events(server, "user.login")] == \
        ["partner", "corp"]


async def test_a_local_user_may_not_take_the_name_of_an_sso_user_holding_a_certificate(
        server: AuthServer, idp: StandInIdP, clock: FakeClock) -> None:
    """The other way round: an SSO user has no record, so the name was free to take
    while their certificate still spoke for them on every node (two people, one name)."""
    done = await _login(server, idp, ALICE)
    local = User(metadata=Metadata(name="alice@example.com"), spec=UserSpec(roles=["access"]))
    with pytest.raises(AlreadyExists, match=r"^alice@example\.com is the name of an SSO user "
                                            r"of connector corp, whose certificate is valid "
                                            r"until "):
        await catalog.put_resource(server, local, upsert=False, by="admin", remote_addr="")
    with pytest.raises(AlreadyExists, match="SSO user of connector corp"):
        await catalog.put_resource(server, local, upsert=True, by="admin", remote_addr="")
    assert await _events(server, "user.create") == []
    with pytest.raises(NotFound):
        await server.users.get("alice@example.com")
    # Once the certificate has expired the name is free again (and the SSO login is then
    # refused, as above).
    clock.advance(dt.datetime.fromisoformat(done["expires"]) - clock.now()
                  + dt.timedelta(seconds=1))
    assert await catalog.put_resource(server, local, upsert=False, by="admin", remote_addr="")


async def test_a_local_user_written_while_an_sso_login_holds_the_name_is_undone(
        server: AuthServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side writes, then looks (the SSO login holds the name before it signs, then
    looks for a local user): an SSO login that holds the name between the local side's
    first look and its write is seen after the write, and the local user is undone."""
    real_create = server.users.create

    async def create_while_a_login_holds(user: User) -> None:
        await server.sso.hold_name(user.metadata.name, "corp",
                                   clock.now() + dt.timedelta(hours=1))
        await real_create(user)

    monkeypatch.setattr(server.users, "create", create_while_a_login_holds)
    local = User(metadata=Metadata(name="alice@example.com"), spec=UserSpec(roles=["access"]))
    with pytest.raises(AlreadyExists, match="SSO user of connector corp"):
        await catalog.put_resource(server, local, upsert=False, by="admin", remote_addr="")
    with pytest.raises(NotFound):
        await server.users.get("alice@example.com")
    assert await _events(server, "user.create") == []


async def test_rotated_key_refreshes_the_jwks_once(server: AuthServer,
                                                   idp: StandInIdP) -> None:
    await _login(server, idp, ALICE)
    await _login(server, idp, ALICE)
    assert idp.jwks_fetches == 1  # kept between logins
    idp.rotate()
    await _login(server, idp, ALICE)
    assert idp.jwks_fetches == 2


async def test_token_of_an_unknown_key_is_refused_after_one_refresh(
        server: AuthServer, idp: StandInIdP) -> None:
    await _login(server, idp, ALICE)
    auth_url, _ = await _begin(server)
    callback = idp.authorize(auth_url, ALICE)
    published = idp.key
    idp.key = idp._new_key()  # signs with a key it never publishes
    real_get = idp.get_json

    async def stale_jwks(url: str, ca_file: str) -> dict[str, Any]:
        doc = await real_get(url, ca_file)
        return KeySet([published]).as_dict(private=False) if url.endswith("/jwks") else doc

    idp.get_json = stale_jwks  # type: ignore[method-assign]
    redirect = await sso.finish(server, callback, "proxy")
    assert idp.jwks_fetches == 2
    with pytest.raises(AccessDenied, match="key the IdP's JWKS does not hold"):
        await _collect(server, redirect)


async def test_expired_token_is_refused(server: AuthServer, idp: StandInIdP,
                                        clock: FakeClock) -> None:
    auth_url, _ = await _begin(server)
    callback = idp.authorize(auth_url, ALICE)
    clock.advance(dt.timedelta(minutes=9))  # the login is still pending; its token is not
    redirect = await sso.finish(server, callback, "proxy")
    with pytest.raises(AccessDenied, match="expired"):
        await _collect(server, redirect)


async def test_idp_error_is_the_reason(server: AuthServer) -> None:
    auth_url, _ = await _begin(server)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth_url).query))["state"]
    redirect = await sso.finish(server, SSOCallback(state=state, error="access_denied",
                                                    error_description="user cancelled"), "proxy")
    with pytest.raises(AccessDenied, match="the IdP refused the login: access_denied: user"):
        await _collect(server, redirect)


@pytest.mark.parametrize("redirect", ["http://evil.example.com:80/callback",
                                      "https://127.0.0.1:40000/callback",
                                      "http://127.0.0.1/callback", "http://10.0.0.1:1/cb"])
async def test_client_redirect_must_be_loopback(server: AuthServer, redirect: str) -> None:
    with pytest.raises(BadParameter, match="client_redirect"):
        await _begin(server, redirect=redirect)


async def test_a_public_key_line_with_a_second_line_is_not_kept(server: AuthServer) -> None:
    """begin keeps the key's line until the login completes: only the canonical line
    (review-sso finding 1)."""
    line = sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BadParameter, match=r"public key .*not one canonical"):
        await sso.begin(server, SSOBegin(
            connector="corp", public_key=f"{line} x\n@cert-authority * {line}",
            client_redirect=LOOPBACK, proxy_addr="proxy.test:3080",
            secret_hash=hashlib.sha256(b"s" * 40).hexdigest()), "10.0.0.9:5000")


async def test_callback_from_another_issuer_is_refused(server: AuthServer,
                                                       idp: StandInIdP) -> None:
    """RFC 9207: a code the browser brings back from another IdP is not redeemed there."""
    auth_url, _ = await _begin(server)
    callback = idp.authorize(auth_url, ALICE).model_copy(update={"iss": "https://other.test"})
    redirect = await sso.finish(server, callback, "proxy")
    assert callback.code in idp.codes  # never sent to the token endpoint
    with pytest.raises(AccessDenied, match=r"names issuer 'https://other\.test'"):
        await _collect(server, redirect)


async def test_a_stranger_s_logins_begun_spend_the_attempts_budget(api: API) -> None:
    """Each begin stores a pending login and asks the IdP: past the burst, 429."""
    burst = AuthLimits().attempts_burst
    key = sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    body = {"connector": "corp", "public_key": key, "client_redirect": LOOPBACK,
            "proxy_addr": "proxy.test:3080", "secret_hash": "0" * 64}
    statuses = [(await api.stranger("POST", "/v1/sso/oidc/begin", body))[0]
                for _ in range(burst + 5)]
    assert statuses == [200] * burst + [429] * 5


@pytest.mark.parametrize(("caller", "audited"), [
    (Caller(x509.Identity(kind="host", name="p1", cluster=CLUSTER, roles=("proxy",)),
            "in-process", in_process=True), "203.0.113.7:4000"),
    (None, "198.51.100.1:1"),  # a stranger's claim of an address is not believed
])
async def test_callback_failure_is_audited_with_the_browser_address_a_proxy_saw(
        server: AuthServer, caller: Caller | None, audited: str) -> None:
    api = AuthWithRoles(server, caller, remote_addr="198.51.100.1:1")
    with pytest.raises(AccessDenied):
        await api.sso_finish(SSOCallback(state="gone", code="x",
                                         remote_addr="203.0.113.7:4000"))
    (failure,) = await _events(server, "user.login.failure")
    assert failure.remote_addr == audited


async def test_device_polls_reach_the_idp_at_most_once_an_interval(
        server: AuthServer, idp: StandInIdP, clock: FakeClock) -> None:
    """RFC 8628 §3.5: a client polls the token endpoint no faster than the interval, and
    adds 5 s for each slow_down. A stranger polling the auth as fast as it likes must not
    make the auth hammer the IdP with the shared client's credentials."""
    token_calls = 0
    real_get = idp.get_json

    async def get_json(url: str, ca_file: str) -> dict[str, Any]:
        doc = await real_get(url, ca_file)
        if url.endswith("openid-configuration"):
            doc = {**doc, "device_authorization_endpoint": f"{ISSUER}/device"}
        return doc

    async def post_form(url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        nonlocal token_calls
        if url.endswith("/device"):
            return {"device_code": "dc", "user_code": "UC", "verification_uri": f"{ISSUER}/d",
                    "interval": 5, "expires_in": 600}
        token_calls += 1
        return {"error": "slow_down" if token_calls == 2 else "authorization_pending"}

    idp.get_json = get_json  # type: ignore[method-assign]
    idp.post_form = post_form  # type: ignore[method-assign]
    secret = "s" * 40
    begun = await ssodevice.begin(server, DeviceBegin(
        connector="corp", public_key=sshcert.public_key_line(
            ed25519.Ed25519PrivateKey.generate().public_key()),
        secret_hash=hashlib.sha256(secret.encode()).hexdigest()), "203.0.113.66:4000")
    poll = DevicePoll(request_id=begun.request_id, secret=secret)

    async def burst() -> list[int]:
        return [(await ssodevice.poll(server, poll, "203.0.113.66:4000"))[1]
                for _ in range(50)]

    assert set(await burst()) <= {1, 2, 3, 4, 5} and token_calls == 0  # before the interval
    clock.advance(dt.timedelta(seconds=5))
    waits = await burst()
    assert token_calls == 1 and waits[0] == 5 and max(waits[1:]) <= 5
    clock.advance(dt.timedelta(seconds=5))
    assert (await burst())[0] == 10 and token_calls == 2  # slow_down: 5 s more, kept
    clock.advance(dt.timedelta(seconds=5))
    await burst()
    assert token_calls == 2  # 5 s is no longer enough
    clock.advance(dt.timedelta(seconds=5))
    await burst()
    assert token_calls == 3
