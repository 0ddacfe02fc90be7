"""Who may log in as whom: refusals exit 255 with one line and are audited with a reason."""

from __future__ import annotations

import datetime as dt
import shutil
import time

import asyncssh
import pytest

from gatehouse.process.harness import Client, Cluster, wait_for
from tests.integration import direct


def _auth_event(cluster: Cluster, user: str, login: str) -> dict[str, object]:
    return cluster.wait_event(
        f"an auth event for {user} as {login}",
        lambda e: e["event"] == "auth" and e["user"] == user and e["login"] == login,
    )


# Refusals happen at the proxy (which node may this user reach?) or at the node (as
# which login?); either way they are audited with the user and a reason.
REFUSALS = ("auth", "proxy.dial.denied", "access.denied")


def _refusal_event(cluster: Cluster, user: str) -> dict[str, object]:
    return cluster.wait_event(
        f"an audited refusal for {user}",
        lambda e: e["event"] in REFUSALS and e["user"] == user and bool(e["message"]),
    )


def _role(name: str, allow: str, deny: str = "[]", labels: str = '{"*": "*"}',
          rules: bool = True) -> str:
    """A role; with ``rules``, it may also list and read nodes through the API (gsh ls)."""
    text = f"""kind: role
version: v1
metadata: {{name: {name}}}
spec:
  allow:
    logins: {allow}
    node_labels: {labels}
  deny:
    logins: {deny}
"""
    rule = "    rules: [{resources: [node], verbs: [list, read]}]\n"
    return text.replace("  deny:\n", rule + "  deny:\n") if rules else text


def test_login_not_in_roles_is_denied_and_audited(cluster: Cluster, alice: Client) -> None:
    res = alice.ssh("nobody@node1", "true")
    assert res.rc == 255 and res.out == "", res
    assert len(res.err_lines) == 1 and "nobody@node1" in res.err, res
    event = _auth_event(cluster, "alice", "nobody")
    assert event["code"] == "T3007W"
    assert event["node"] == "node1" and event["cluster"] == cluster.name
    assert "nobody" in str(event["message"]), event  # the reason


def test_one_refusal_is_one_audit_event(cluster: Cluster, alice: Client, username: str) -> None:
    login = f"nologin{username.split('-')[0]}"
    res = alice.ssh(f"{login}@node1", "true")
    assert res.rc == 255
    _auth_event(cluster, "alice", login)
    time.sleep(0.5)  # let any further event of this attempt arrive
    events = [e for e in cluster.events("--type=auth") if e["login"] == login]
    assert len(events) == 1, events


def test_deny_beats_allow_in_the_certificate(cluster: Cluster, client: Client,
                                             username: str) -> None:
    cluster.create(_role("no-root", allow="[]", deny="[root]")).ok()
    cluster.add_user(username, roles="access,no-root", logins="root,nobody")
    client.login(username).ok()
    assert client.gsh("status", "--format=json").ok().json()["logins"] == ["nobody"]
    res = client.ssh("root@node1", "true")
    assert res.rc == 255 and res.out == "", res
    assert len(res.err_lines) == 1, res
    event = _auth_event(cluster, username, "root")
    assert event["message"], event


def test_deny_added_after_login_is_enforced_by_the_node(cluster: Cluster, client: Client,
                                                        username: str) -> None:
    """The certificate still names root; the node decides with the roles as they are now."""
    role = f"ops-{username}"
    cluster.create(_role(role, allow="[root]")).ok()
    cluster.add_user(username, roles=role, logins="")
    client.login(username).ok()
    assert client.ssh("root@node1", "true").rc == 0
    cluster.create(_role(role, allow="[root]", deny="[root]"), force=True).ok()
    res = wait_for("the node to apply the new deny rule",
                   lambda: (r := client.ssh("root@node1", "true")).rc == 255 and r, timeout=10)
    assert res.out == "" and len(res.err_lines) == 1, res
    assert f"denied by role {role}" in res.err_lines[0], res  # the node's reason, told
    event = _auth_event(cluster, username, "root")
    assert f"denied by role {role}" in str(event["message"]), event


def test_node_labels_limit_access(cluster: Cluster, client: Client, username: str) -> None:
    role = f"prod-only-{username}"
    cluster.create(_role(role, allow="[root]", labels="{env: prod}")).ok()
    cluster.add_user(username, roles=role, logins="")
    client.login(username).ok()
    assert client.gsh("ls", "--format=json").ok().json() == []  # node1 is env=dev
    res = client.ssh("root@node1", "true")
    assert res.rc == 255 and res.out == "" and len(res.err_lines) == 1, res
    assert _refusal_event(cluster, username)


def test_role_without_api_rules_grants_ssh(cluster: Cluster, client: Client,
                                           username: str) -> None:
    role = f"ssh-only-{username}"
    cluster.create(_role(role, allow="[root]", rules=False)).ok()
    cluster.add_user(username, roles=role, logins="")
    client.login(username).ok()
    res = client.ssh("root@node1", "echo in")
    assert (res.rc, res.out) == (0, "in\n"), res


def test_deleted_user_certificate_stops_working(cluster: Cluster, client: Client,
                                                username: str) -> None:
    cluster.add_user(username)
    client.login(username).ok()
    assert client.ssh("root@node1", "true").rc == 0
    cluster.gatectl("rm", f"user/{username}").ok()
    res = wait_for("the user's certificate to be refused",
                   lambda: (r := client.ssh("root@node1", "true")).rc == 255 and r, timeout=10)
    assert res.out == "" and len(res.err_lines) == 1, res
    assert "no longer exists" in res.err_lines[0], res
    assert "no longer exists" in str(_refusal_event(cluster, username)["message"])
    again = client.login(username)
    assert again.rc != 0 and len(again.err_lines) == 1, again


# --- expired certificates ---------------------------------------------------------------------

TTL = 20  # seconds (gsh login --ttl accepts seconds): time for the checks that it works
# first, which take more than 5 s (login, status, ssh) on a loaded machine


@pytest.fixture(scope="module")
def expired(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """A profile whose certificates were valid for TTL seconds and have expired."""
    cluster.add_user("shortlived")
    me = Client(tmp_path_factory.mktemp("expired-home"), cluster.proxy)
    me.login("shortlived", "correct-horse-battery", f"--ttl={TTL}s").ok()
    expires = dt.datetime.fromisoformat(me.gsh("status", "--format=json").ok().json()["expires"])
    left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
    assert 0 < left <= TTL + 1, f"asked for a {TTL}s certificate, got {left:.0f}s"
    assert me.ssh("root@node1", "true").rc == 0  # valid until it expires
    time.sleep(left + 1.0)
    return me


def test_expired_certificate_is_refused(expired: Client) -> None:
    res = expired.ssh("root@node1", "echo hi")
    assert res.rc == 255 and res.out == "", res
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith("error: "), res


def test_expired_certificate_message_says_so(expired: Client) -> None:
    res = expired.ssh("root@node1", "echo hi")
    assert res.rc == 255
    assert "expired" in res.err and "gsh login" in res.err, res


def test_expired_certificate_ls_message_says_so(expired: Client) -> None:
    res = expired.gsh("ls")
    assert res.rc != 0
    assert len(res.err_lines) == 1 and "expired" in res.err, res


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client `ssh` is not installed")
def test_expired_certificate_refused_to_openssh(cluster: Cluster, expired: Client) -> None:
    config = expired.openssh_config()
    res = expired.openssh(config, f"root@node1.{cluster.name}", "echo hi")
    assert res.rc == 255 and res.out == "", res


def test_expired_certificate_is_refused_by_the_proxy_itself(cluster: Cluster, alice: Client,
                                                           expired: Client) -> None:
    """Past gsh's own expiry check: the expired certificate, presented to the proxy, gets
    no node, while a valid one on the same path does."""
    served = direct.dial(cluster.proxy, alice.home, "node1").reply
    assert served.ok and served.host_id, served
    dialed = direct.dial(cluster.proxy, expired.home, "node1")
    assert dialed.refused, dialed


def test_expired_certificate_refused_by_the_proxy_is_audited(cluster: Cluster,
                                                             expired: Client) -> None:
    dialed = direct.dial(cluster.proxy, expired.home, "node1")
    assert dialed.refused, dialed
    event = cluster.wait_event("the proxy's audit of the refusal",
                               lambda e: e["remote_addr"] == dialed.local, timeout=5)
    assert (event["event"], event["code"]) == ("client_cert.denied", "TA002W"), event
    assert event["message"].startswith(
        "the proxy refused the client certificate in the TLS handshake: its certificate "
        "has expired by this machine's clock ("), event


def test_expired_certificate_is_refused_and_audited_by_the_node_itself(
    cluster: Cluster, alice: Client, expired: Client,
) -> None:
    """Past gsh and the proxy: the node's own listener refuses the expired certificate and
    audits why, while it accepts a valid one."""
    assert direct.ssh(cluster.ssh_port, alice.home, "root", "echo in") == "in\n"
    with pytest.raises(asyncssh.PermissionDenied):
        direct.ssh(cluster.ssh_port, expired.home, "root", "echo in")
    event = cluster.wait_event(
        "the node's audit of the expired certificate",
        lambda e: e["event"] == "auth" and e["user"] == "shortlived"
        and str(e["message"]).startswith("certificate expired at"))
    assert (event["code"], event["login"]) == ("T3007W", "root"), event


def test_login_ttl_is_capped_by_role(cluster: Cluster, client: Client,
                                     username: str) -> None:
    role = f"short-{username}"
    cluster.create(f"""kind: role
version: v1
metadata: {{name: {role}}}
spec:
  options: {{max_session_ttl: 1m}}
  allow: {{logins: [root], node_labels: {{"*": "*"}}}}
""").ok()
    cluster.add_user(username, roles=role, logins="")
    client.login(username, "correct-horse-battery", "--ttl=8h").ok()
    info = client.gsh("status", "--format=json").ok().json()
    expires = dt.datetime.fromisoformat(info["expires"])
    assert (expires - dt.datetime.now(dt.UTC)).total_seconds() <= 61

