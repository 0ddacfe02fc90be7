"""SSO at the root against a real OpenID provider (oidc-provider on Node): log in through
the IdP's pages, then reach a node; refusals (an unmapped user, a replayed callback,
connectors that cannot work) are one clear line and audited."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from gatehouse.process.harness import Client, Cluster, wait_for
from tests.integration import direct
from tests.integration.idp import (
    CLIENT_SECRET,
    Account,
    Browser,
    IdP,
    connector_yaml,
    make_tls,
    proxy_ca_file,
    sso_login,
)

ROLE = """kind: role
version: v1
metadata: {name: sso-dev}
spec:
  allow:
    logins: ["{{external.unix_user}}"]
    node_labels: {"*": "*"}
    rules: [{resources: [node], verbs: [list, read]}]
"""
ACCOUNTS = {
    "alice": Account("alice-password", {"email": "alice@example.com", "email_verified": True,
                                        "groups": ["admins", "staff"], "unix_user": "root"}),
    "bob": Account("bob-password", {"email": "bob@example.com", "email_verified": True,
                                    "groups": ["staff"], "unix_user": "root"}),
}


@pytest.fixture(scope="module")
def idp(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    """The IdP, its client registered with the cluster's proxy callback, and connector corp."""
    provider = IdP(tmp_path_factory.mktemp("idp"),
                   [f"https://{cluster.proxy}/v1/sso/oidc/callback"], ACCOUNTS).start()
    cluster.create(ROLE).ok()
    cluster.create(connector_yaml(provider)).ok()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def proxy_ca(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return proxy_ca_file(cluster, tmp_path_factory.mktemp("ca") / "proxy-ca.pem")


def test_sso_login_then_ssh_to_a_root_node(cluster: Cluster, idp: IdP, client: Client,
                                          proxy_ca: Path) -> None:
    login = sso_login(client, "corp", "alice", "alice-password", proxy_ca)
    assert login.rc == 0, login
    assert "logged in as alice@example.com" in login.out, login
    print(f"SSO login took {login.seconds:.2f} s (gsh start to exit, test browser driving)")
    status = client.gsh("status", "--format=json").ok().json()
    assert status["user"] == "alice@example.com"
    assert status["roles"] == ["sso-dev"] and status["connector"] == "corp"
    assert status["logins"] == ["root"]  # {{external.unix_user}} from the ID token
    assert client.ssh("root@node1", "echo", "hello").ok().out == "hello\n"
    # OpenSSH with `gsh config`, as after a password login.
    assert client.openssh(client.openssh_config(), f"root@node1.{cluster.name}",
                          "echo", "ok").ok().out == "ok\n"
    # Logging in again with no flag repeats the SSO login (no password prompt).
    again = sso_login(client, "corp", "alice", "alice-password", proxy_ca, bare=True)
    assert again.rc == 0 and "logged in as alice@example.com" in again.out, again
    event = cluster.wait_event("alice's SSO login", lambda e: e["event"] == "user.login"
                               and e["user"] == "alice@example.com")
    fields = event["fields"]
    assert fields["method"] == "oidc" and fields["connector"] == "corp", event
    assert fields["roles"] == ["sso-dev"], event


def test_user_whose_claims_map_no_role_is_refused(cluster: Cluster, idp: IdP, client: Client,
                                                  proxy_ca: Path) -> None:
    login = sso_login(client, "corp", "bob", "bob-password", proxy_ca)
    assert login.rc != 0, login
    last = login.err.strip().splitlines()[-1]
    assert "no roles mapped for bob@example.com from connector corp" in last, login
    assert "Traceback" not in login.err
    event = cluster.wait_event("bob's refusal", lambda e: e["event"] == "user.login.failure"
                               and e["user"] == "bob@example.com")
    assert "no roles mapped" in event["message"], event
    assert event["fields"]["method"] == "oidc" and event["fields"]["connector"] == "corp"


def test_replayed_callback_is_refused(cluster: Cluster, idp: IdP, client: Client,
                                      proxy_ca: Path) -> None:
    login = sso_login(client, "corp", "alice", "alice-password", proxy_ca)
    assert login.rc == 0, login
    callbacks = [u for u in login.browser.visited if "/v1/sso/oidc/callback?" in u]
    assert len(callbacks) == 1, login.browser.visited
    # The same code and state again, as someone who saw the URL would send them.
    replay = Browser(proxy_ca).open(callbacks[0])
    assert replay.status == 403, replay
    assert "already used login state" in replay.body, replay
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(callbacks[0]).query)
    state = sent["state"][0]
    assert state not in replay.body
    cluster.wait_event("the replay's refusal", lambda e: e["event"] == "user.login.failure"
                       and "already used login state" in e["message"])
    # And the loopback URL the browser reached: its id and code (the auth's own, not the
    # IdP's, which stays with the proxy) are useless a second time.
    back = [u for u in login.browser.visited if "/callback?id=" in u]
    assert len(back) == 1 and "&code=" in back[0] and "state=" not in back[0], back
    assert sent["code"][0] not in back[0], back


def test_connector_secret_is_never_shown(cluster: Cluster, idp: IdP) -> None:
    for args in (("get", "oidc"), ("get", "oidc/corp", "--format=yaml"),
                 ("get", "oidc", "--format=json")):
        res = cluster.gatectl(*args).ok()
        assert CLIENT_SECRET not in res.out and "client_secret" not in res.out, res
    shown = cluster.gatectl("get", "oidc/corp", "--format=json").ok().json()
    assert shown[0]["spec"]["issuer_url"] == idp.issuer


@pytest.mark.parametrize(("change", "reason"), [
    (lambda y, i: y.replace(i.issuer, "http://idp.example.com"),
     "http:// is allowed only for a loopback host"),
    (lambda y, i: y.replace("roles: [sso-dev]", "roles: [no-such-role]"),
     "no-such-role"),
    (lambda y, i: y.replace(i.issuer, "http://127.0.0.1:9"),
     "is not discoverable"),
])
def test_connector_that_cannot_work_is_refused_at_create(cluster: Cluster, idp: IdP, change,
                                                         reason: str) -> None:  # type: ignore[no-untyped-def]
    text = change(connector_yaml(idp, name="broken"), idp)
    res = cluster.create(text)
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert reason in res.err, res
    assert cluster.gatectl("get", "oidc/broken").rc != 0


def test_connector_is_replaced_and_removed(cluster: Cluster, idp: IdP) -> None:
    cluster.create(connector_yaml(idp, name="temp")).ok()
    assert cluster.create(connector_yaml(idp, name="temp")).rc != 0  # exists: needs -f
    cluster.create(connector_yaml(idp, name="temp").replace("email, profile, groups",
                                                            "email, groups"), force=True).ok()
    shown = json.loads(cluster.gatectl("get", "oidc/temp", "--format=json").ok().out)
    assert shown[0]["spec"]["scope"] == ["openid", "email", "groups"]
    cluster.gatectl("rm", "oidc/temp").ok()
    assert cluster.gatectl("get", "oidc/temp").rc != 0


def test_idp_over_tls_with_its_own_ca(cluster: Cluster, idp: IdP, client: Client,
                                      proxy_ca: Path, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    ca = tls[0]
    private = IdP(tmp_path / "idp", [f"https://{cluster.proxy}/v1/sso/oidc/callback"],
                  ACCOUNTS, tls=tls).start()
    try:
        text = connector_yaml(private, name="private")
        refused = cluster.create(text)  # the auth does not trust the IdP's CA
        assert refused.rc != 0 and "is not discoverable" in refused.err, refused
        assert "certificate" in refused.err.lower(), refused
        # The auth reads a connector's files only in its connector_files_dir.
        outside = cluster.create(text.replace("  scope:", f"  ca_file: {ca}\n  scope:"))
        assert outside.rc != 0 and "connector_files_dir" in outside.err, outside
        assert len(outside.err.strip().splitlines()) == 1, outside
        cluster.connector_files.mkdir(exist_ok=True)
        allowed = shutil.copy(ca, cluster.connector_files / "idp-ca.pem")
        cluster.create(text.replace("  scope:", f"  ca_file: {allowed}\n  scope:")).ok()
        login = sso_login(client, "private", "alice", "alice-password", proxy_ca, idp_ca=ca)
        assert login.rc == 0, login
        assert private.issuer.startswith("https://") and login.url.startswith(private.issuer)
        assert client.ssh("root@node1", "echo", "tls").ok().out == "tls\n"
    finally:
        private.stop()
        cluster.gatectl("rm", "oidc/private")


def test_headless_login_with_the_device_grant(cluster: Cluster, idp: IdP, client: Client,
                                              proxy_ca: Path) -> None:
    """gsh --headless prints a URL and a code; the person logs in on another device (the
    test's browser); gsh polls and gets the same certificates as a browser login."""
    login = sso_login(client, "corp", "alice", "alice-password", proxy_ca, headless=True)
    assert login.rc == 0, login
    assert "enter the code" in login.err and login.url.startswith(idp.issuer), login
    assert not any("/v1/sso/oidc/callback" in u for u in login.browser.visited)
    status = client.gsh("status", "--format=json").ok().json()
    assert status["user"] == "alice@example.com" and status["connector"] == "corp"
    assert client.ssh("root@node1", "echo", "device").ok().out == "device\n"


def test_expired_code_is_refused(cluster: Cluster, idp: IdP, client: Client,
                                 proxy_ca: Path, tmp_path: Path) -> None:
    """A code that expired at the IdP before the proxy redeemed it: the IdP's refusal is
    gsh's one line, and audited."""
    short = IdP(tmp_path / "idp", [f"https://{cluster.proxy}/v1/sso/oidc/callback"],
                ACCOUNTS, code_ttl=1).start()
    try:
        cluster.create(connector_yaml(short, name="shortcode")).ok()
        login = sso_login(client, "shortcode", "alice", "alice-password", proxy_ca,
                          hold_callback=2.5)
        assert login.rc != 0, login
        last = login.err.strip().splitlines()[-1]
        assert "the IdP refused the code: invalid_grant" in last, login
        cluster.wait_event("the expired code's refusal",
                           lambda e: e["event"] == "user.login.failure"
                           and "invalid_grant" in e["message"])
    finally:
        short.stop()
        cluster.gatectl("rm", "oidc/shortcode")


def test_sso_through_a_proxy_in_its_own_process(tmp_path: Path,
                                                make_client: Callable[[Cluster], Client]
                                                ) -> None:
    """The proxy apart from the auth: it relays begin and complete, and hands the IdP's
    redirect to the auth through its typed client."""
    with Cluster(tmp_path / "apart", proxy_apart=True).running() as apart:
        provider = IdP(tmp_path / "idp", [f"https://{apart.proxy}/v1/sso/oidc/callback"],
                       ACCOUNTS).start()
        try:
            apart.create(ROLE).ok()
            apart.create(connector_yaml(provider)).ok()
            ca = proxy_ca_file(apart, tmp_path / "ca.pem")
            me = make_client(apart)
            login = sso_login(me, "corp", "alice", "alice-password", ca)
            assert login.rc == 0, login
            assert me.gsh("status", "--format=json").ok().json()["connector"] == "corp"
            assert me.ssh("root@node1", "echo", "apart").ok().out == "apart\n"
        finally:
            provider.stop()


def test_removing_the_connector_ends_its_users_access(cluster: Cluster, idp: IdP,
                                                      client: Client, proxy_ca: Path) -> None:
    """SSO users have no record: their standing is the connector's, at the auth and at
    the nodes (the trust snapshot lists connectors)."""
    cluster.create(connector_yaml(idp, name="leaving")).ok()
    assert sso_login(client, "leaving", "alice", "alice-password", proxy_ca).rc == 0
    # Straight to the node (tests/integration/direct.py), past the proxy's own check.
    assert direct.ssh(cluster.ssh_port, client.home, "root", "echo in") == "in\n"
    cluster.gatectl("rm", "oidc/leaving").ok()

    def node_refuses() -> bool:
        try:
            direct.ssh(cluster.ssh_port, client.home, "root", "true")
        except asyncssh.PermissionDenied:
            return True
        return False

    wait_for("the node to refuse the connector's user", node_refuses)
    cluster.wait_event("the node's refusal", lambda e: e["event"] == "auth"
                       and e["user"] == "alice@example.com"
                       and "no longer exists" in e["message"])
    refused = client.ssh("root@node1", "true")  # and the auth, for the proxy
    assert refused.rc == 255 and len(refused.err_lines) == 1, refused
