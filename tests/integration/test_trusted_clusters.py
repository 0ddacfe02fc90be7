"""The seed's topology for real: a root and two leaves joined over reverse tunnels.

Root users reach leaf nodes through the root proxy and the leaf's tunnel; each
leaf maps their roles with its own role map and applies its own roles.

A refusal is shown where it is made: a certificate goes straight to the root's
proxy or node (tests/integration/direct.py), past gsh's own checks; a join that
the root must refuse gets to the root (the leaf's own checks pass or are
skipped), and one the leaf must stop is shown to send nothing.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.client.rootjoin import join_root
from gatehouse.errors import AccessDenied
from gatehouse.pki import sshcert
from gatehouse.process.harness import (
    PASSWORD,
    Client,
    Cluster,
    connection,
    in_parallel,
    join,
    stop_all,
    trusted_cluster_yaml,
    wait_for,
    wait_offline,
    wait_online,
)
from gatehouse.types.trusted_cluster import TrustedCluster
from gatehouse.types.yaml_io import parse_resources
from gatehouse.wire.names import CLUSTER_HEADER
from tests.auth.samples import leaf_host_ca
from tests.integration import direct

ROOT, LEAF_A, LEAF_B = "sso.example.com", "us-east-1a", "us-east-1b"
SPARE = "us-east-1c"  # a cluster that tries to join and is refused
MAP_A = """{remote: access, local: [access]}
{remote: "^dev-(.*)$", local: ["team-$1"]}"""
MAP_B = "{remote: admin, local: [access]}"
TEAM_ROLE = """kind: role
version: v1
metadata: {name: team-payments}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
    rules: [{resources: [node], verbs: [list, read]}]
"""
DEV_ROLE = TEAM_ROLE.replace("team-payments", "dev-payments")


class Seed:
    def __init__(self, base: Path) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.a = Cluster(base / "a", name=LEAF_A, labels={"zone": "a"})
        self.b = Cluster(base / "b", name=LEAF_B, labels={"zone": "b"})
        self.tokens: dict[str, str] = {}  # leaf -> the token it joined with (now used)

    def clusters(self) -> list[Cluster]:
        return [self.root, self.a, self.b]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    s = Seed(tmp_path_factory.mktemp("seed"))
    try:
        in_parallel(*(c.start for c in s.clusters()))
        s.root.create(DEV_ROLE).ok()
        s.a.create(TEAM_ROLE).ok()
        for leaf, role_map in ((s.a, MAP_A), (s.b, MAP_B)):
            s.tokens[leaf.name] = _token_in(join(leaf, s.root, role_map))
        s.root.add_user("alice", roles="access", logins="root")
        s.root.add_user("bob", roles="dev-payments", logins="root")
        yield s
    finally:
        for c in s.clusters():
            c.stop(wait=False)


def _token_in(resource: str) -> str:
    found = re.search(r"^  token: (\S+)$", resource, re.MULTILINE)
    assert found, resource
    return found.group(1)


@pytest.fixture(scope="module")
def spare(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster (us-east-1c) whose every try to join the root is refused."""
    with Cluster(tmp_path_factory.mktemp("spare"), name=SPARE).running(wait=False) as c:
        yield c


def _unused_tokens(cluster: Cluster) -> set[str]:
    return {t["metadata"]["name"]
            for t in cluster.gatectl("tokens", "ls", "--format=json").ok().json()}


def _join_failure(root: Cluster, leaf: str, message: str) -> dict[str, object]:
    """The root's audit of a refused join by ``leaf``, saying ``message``."""
    return root.wait_event(
        f"the root's audit of the refused join of {leaf}",
        lambda e: e["event"] == "trusted_cluster.join.failure" and e["cluster"] == root.name
        and leaf in (e["fields"].get("leaf"), *e["fields"].get("names", []))
        and e["message"] == message)


def _dial_error(seed: Seed, me: Client, cluster: str) -> str:
    """What the root proxy answers ``me`` when asked for node1 of ``cluster`` ("" = yes)."""
    reply = direct.dial(seed.root.proxy, me.home, "node1", cluster).reply
    assert reply is not None, "the root proxy closed the connection without a reply"
    return reply.error


def _ssh_refused(port: int, me: Client) -> bool:
    """Whether the node on ``port`` refuses ``me``'s certificate (straight to its listener)."""
    try:
        direct.ssh(port, me.home, "root", "true")
    except asyncssh.PermissionDenied:
        return True
    return False


def _time(event: dict[str, Any], field: str = "time") -> dt.datetime:
    return dt.datetime.fromisoformat(event[field])


def _login(seed: Seed, home: Path, user: str) -> Client:
    home.mkdir(parents=True, exist_ok=True)
    me = Client(home, seed.root.proxy)
    me.login(user).ok()
    return me


@pytest.fixture(scope="module")
def alice(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _login(seed, tmp_path_factory.mktemp("alice"), "alice")


def test_root_user_reaches_a_leaf_node_through_the_tunnel(alice: Client) -> None:
    res = alice.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "echo leaf-ok; exit 3")
    assert (res.rc, res.out) == (3, "leaf-ok\n"), res


def test_clusters_and_listing_across_leaves(alice: Client) -> None:
    clusters = alice.gsh("clusters", "--format=json").ok().json()
    assert {(c["name"], c["type"], c["status"]) for c in clusters} == {
        (ROOT, "root", "online"), (LEAF_A, "leaf", "online"), (LEAF_B, "leaf", "online")}
    nodes = alice.gsh("ls", f"--cluster={LEAF_A}", "--format=json").ok().json()
    assert [(n["spec"]["hostname"], n["spec"]["cluster"]) for n in nodes] == [("node1", LEAF_A)]
    # One view across clusters, from the root's inventory: leaf B maps none of alice's
    # roles, so none of its nodes is hers (`gsh ls --cluster` of it says why).
    wait_for("leaf A's inventory at the root", lambda: [n["spec"]["cluster"] for n in alice.gsh(
        "ls", "--all", "--format=json").ok().json()] == [ROOT, LEAF_A])
    listed = alice.gsh("ls", "--all", "--format=json").ok()
    assert sorted(n["spec"]["cluster"] for n in listed.json()) == [ROOT, LEAF_A], listed
    assert listed.err_lines == [], listed
    refused = alice.gsh("ls", f"--cluster={LEAF_B}")
    assert refused.rc != 0 and "no roles mapped for remote user alice" in refused.err, refused


def test_unmapped_user_is_denied_on_the_other_leaf_with_a_reason(seed: Seed,
                                                                  alice: Client) -> None:
    res = alice.gsh("ssh", f"--cluster={LEAF_B}", "root@node1", "true")
    reason = "no roles mapped for remote user alice from cluster sso.example.com"
    assert res.rc == 255 and res.err_lines == [f"error: {reason}"], res
    seed.b.wait_event("the leaf's audit of the refusal",
                      lambda e: e["event"] == "access.denied" and reason in e["message"]
                      and e["user"] == "alice")


def test_regex_role_map_expands_the_group(seed: Seed, tmp_path: Path) -> None:
    bob = _login(seed, tmp_path / "bob", "bob")
    res = bob.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "echo mapped")
    assert res.out == "mapped\n", res  # dev-payments -> team-payments on the leaf


def test_select_a_leaf_and_use_plain_openssh(seed: Seed, tmp_path: Path) -> None:
    me = _login(seed, tmp_path / "me", "alice")
    me.gsh("login", LEAF_A).ok()
    assert me.gsh("ssh", "root@node1", "echo selected").out == "selected\n"
    config = me.openssh_config()
    known = (me.home / "known_hosts").read_text()
    assert f"@cert-authority *.{LEAF_A} ssh-ed25519" in known
    res = me.openssh(config, f"root@node1.{LEAF_A}", "echo via-openssh",
                     options=("StrictHostKeyChecking=yes",))
    assert res.out == "via-openssh\n", res


def test_dial_of_an_unregistered_address_is_refused_and_audited(seed: Seed,
                                                                  alice: Client) -> None:
    target = f"127.0.0.1:{seed.a.auth_port}"  # a real service of the leaf, but not a node
    res = alice.gsh("ssh", f"--cluster={LEAF_A}", f"root@{target}", "true")
    assert res.rc == 255 and "not registered" in res.err, res
    seed.a.wait_event("the leaf proxy's refusal",
                      lambda e: e["event"] == "proxy.dial.denied" and target in e["message"])


@pytest.fixture(scope="module")
def carol(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """A local user of leaf A, logged in there: her certificates are signed by the leaf."""
    seed.a.add_user("carol", roles="access", logins="root")
    me = Client(tmp_path_factory.mktemp("carol"), seed.a.proxy)
    me.login("carol").ok()
    assert me.gsh("ssh", "root@node1", "echo local").out == "local\n"  # valid at her leaf
    return me


def test_root_never_accepts_a_leaf_signed_user_certificate(seed: Seed, alice: Client,
                                                           carol: Client) -> None:
    """Presented straight to the root's proxy and to a root node (gsh would stop at its
    own pins first): each refuses it, while it serves a root user on the same path."""
    served = direct.dial(seed.root.proxy, alice.home, "node1").reply
    assert served.ok and served.host_id, served
    for cluster in ("", LEAF_A):  # a root node, and a leaf node through the root
        dialed = direct.dial(seed.root.proxy, carol.home, "node1", cluster)
        assert dialed.refused, (cluster, dialed)
    assert direct.ssh(seed.root.ssh_port, alice.home, "root", "echo in") == "in\n"
    with pytest.raises(asyncssh.PermissionDenied):
        direct.ssh(seed.root.ssh_port, carol.home, "root", "echo in")
    event = seed.root.wait_event(
        "the root node's audit of the leaf-signed certificate",
        lambda e: e["event"] == "auth" and e["cluster"] == ROOT and e["user"] == "carol")
    assert (event["message"], event["login"]) == (
        "certificate is not signed by a trusted user CA", "root"), event


def test_the_root_proxy_audits_its_refusal_of_a_leaf_signed_certificate(
    seed: Seed, carol: Client,
) -> None:
    dialed = direct.dial(seed.root.proxy, carol.home, "node1", LEAF_A)
    assert dialed.refused, dialed
    event = seed.root.wait_event("the root proxy's audit of the refusal",
                                 lambda e: e["remote_addr"] == dialed.local, timeout=5)
    assert (event["event"], event["cluster"], event["message"]) == (
        "client_cert.denied", ROOT,
        "the proxy refused the client certificate in the TLS handshake: "
        "unable to get local issuer certificate"), event


def _anonymous_post(proxy: str, path: str, body: dict[str, str], headers: dict[str, str]
                    ) -> tuple[int, str]:
    """A stranger's HTTPS request: no client certificate, no check of the server's."""
    host, port = proxy.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=15,
                                       context=ssl._create_unverified_context())
    try:
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json", **headers})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def test_a_stranger_at_the_root_reaches_no_leaf_endpoint(seed: Seed) -> None:
    """Review finding: an anonymous request to the root proxy naming a leaf was relayed
    to the leaf's /v1/login (password guessing and lockout of leaf-local users)."""
    seed.a.add_user("erin", roles="access", logins="root")
    key = sshcert.public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    for password in ("not-the-password-1", PASSWORD):
        status, reply = _anonymous_post(
            seed.root.proxy, "/v1/login", {"user": "erin", "password": password,
                                           "public_key": key}, {CLUSTER_HEADER: LEAF_A})
        assert status == 403 and "need a user certificate of sso.example.com" in reply, reply
    assert not [e for e in seed.a.events("--type=user.login.failure") if e["user"] == "erin"]
    assert not [e for e in seed.a.events("--type=user.login") if e["user"] == "erin"]
    # The root's own endpoints are unchanged for strangers: a login there is its own.
    status, _ = _anonymous_post(seed.root.proxy, "/v1/login",
                                {"user": "nobody", "password": "x" * 12, "public_key": key}, {})
    assert status == 403


def test_role_map_edit_disable_enable_remove_and_rejoin(seed: Seed, tmp_path: Path) -> None:
    me = _login(seed, tmp_path / "me", "alice")
    ssh_b = ("ssh", f"--cluster={LEAF_B}", "root@node1", "echo b")
    assert me.gsh(*ssh_b).rc == 255
    # Edit the role map in place (the file it joined with): no re-join, effective for new
    # connections.
    edited = trusted_cluster_yaml(seed.root, seed.tokens[LEAF_B], MAP_B + "\n"
                                  "{remote: access, local: [access]}")
    seed.b.create(edited, force=True).ok()
    wait_for("the edited role map", lambda: me.gsh(*ssh_b).out == "b\n")

    # Disable: the leaf proxy drops its tunnel at once (documented: well under 2 s) and
    # the leaf's node stops trusting the root's user CA; enabling brings both back.
    offline = f"cluster {LEAF_B} is offline (its tunnel is not connected)"
    assert _dial_error(seed, me, LEAF_B) == ""
    disabled = edited.replace("enabled: true", "enabled: false")
    seed.b.create(disabled, force=True).ok()
    started = time.monotonic()
    wait_for("the root proxy to lose the tunnel",
             lambda: _dial_error(seed, me, LEAF_B) == offline, timeout=10, interval=0.05)
    assert time.monotonic() - started < 2.0
    res = me.gsh(*ssh_b)
    assert res.rc == 255 and res.err_lines == [f"error: {offline}"], res
    wait_offline(seed.root, LEAF_B, timeout=10)
    wait_for("leaf B's node to refuse root users", lambda: _ssh_refused(seed.b.ssh_port, me))
    seed.b.create(edited, force=True).ok()
    wait_online(seed.root, LEAF_B)
    wait_for("access restored", lambda: me.gsh(*ssh_b).out == "b\n")
    assert not _ssh_refused(seed.b.ssh_port, me)

    # Remove, on the leaf: it forgets the root's CAs (its node refuses root users) and
    # closes the tunnel.
    seed.b.gatectl("rm", f"trusted_cluster/{ROOT}").ok()
    wait_for("the tunnel dropped", lambda: _dial_error(seed, me, LEAF_B) == offline)
    wait_for("leaf B's node to forget the root", lambda: _ssh_refused(seed.b.ssh_port, me))
    assert seed.b.gatectl("get", "trusted_cluster", "--format=json").ok().json() == []
    # Remove, on the root: it forgets the leaf and its host CA.
    seed.root.gatectl("rm", f"rc/{LEAF_B}").ok()
    assert connection(seed.root, LEAF_B) == "absent"
    wait_for("the root proxy to forget the leaf",
             lambda: _dial_error(seed, me, LEAF_B) == f"unknown cluster {LEAF_B}")
    assert LEAF_B not in {c["name"] for c in me.gsh("clusters", "--format=json").ok().json()}

    # Join again under the same name with a fresh token.
    join(seed.b, seed.root, MAP_B + "\n{remote: access, local: [access]}")
    # The profile learned above that B was gone; a --cluster it does not know makes gsh
    # ask the root again.
    wait_for("access after re-join", lambda: me.gsh(*ssh_b).out == "b\n")
    assert LEAF_B in json.loads((me.home / "profile.json").read_text())["leaves"]


def test_rejoin_with_a_used_token_or_a_taken_name_is_refused(seed: Seed, spare: Cluster,
                                                             alice: Client,
                                                             tmp_path: Path) -> None:
    # The token leaf A joined with, once more, by another cluster: spent, so refused.
    used = seed.tokens[LEAF_A]
    res = spare.create(trusted_cluster_yaml(seed.root, used, MAP_A))
    message = "join token is invalid, expired or already used"
    assert res.rc != 0 and res.err_lines == [f"error: {message}"], res
    _join_failure(seed.root, SPARE, message)
    assert connection(seed.root, SPARE) == "absent"

    # A fresh token, but the name of leaf A from a cluster with another host CA.
    with Cluster(tmp_path / "impostor", name=LEAF_A).running() as impostor:
        token = seed.root.token("trusted_cluster")
        res = impostor.create(trusted_cluster_yaml(seed.root, token, MAP_A))
        message = (f"cluster {LEAF_A} is already joined with a different host CA; remove it "
                   f"first with `gatectl rm rc/{LEAF_A}`")
        assert res.rc != 0 and res.err_lines == [f"error: {message}"], res
        _join_failure(seed.root, LEAF_A, message)
        assert token[:22] in _unused_tokens(seed.root)  # refused before it was spent
    # The real leaf A is untouched: still online, its tunnel still serves root users.
    assert connection(seed.root, LEAF_A) == "online"
    assert alice.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "echo a").out == "a\n"


def test_a_joined_leaf_creating_its_trusted_cluster_again_needs_f(seed: Seed) -> None:
    token = seed.root.token("trusted_cluster")
    res = seed.b.create(trusted_cluster_yaml(seed.root, token, MAP_B))
    assert res.rc != 0 and "already exists; use `gatectl create -f`" in res.err, res


def test_a_node_token_cannot_join_a_trusted_cluster(seed: Seed, spare: Cluster) -> None:
    token = seed.root.token("node")
    res = spare.create(trusted_cluster_yaml(seed.root, token, MAP_A))
    message = "a node token cannot join a trusted cluster"
    assert res.rc != 0 and res.err_lines == [f"error: {message}"], res
    _join_failure(seed.root, SPARE, message)
    assert token[:22] in _unused_tokens(seed.root)  # refused before it was spent
    assert connection(seed.root, SPARE) == "absent"


async def test_the_root_refuses_a_leaf_that_uses_its_name(seed: Seed) -> None:
    """A leaf's own auth will not trust a cluster of its own name, so this is the leaf's
    half of the join (client.rootjoin) as a hostile leaf would run it: the pinned root,
    a valid token, and a real host CA that calls itself sso.example.com."""
    token = seed.root.token("trusted_cluster")
    [tc] = parse_resources(trusted_cluster_yaml(seed.root, token, MAP_A))
    assert isinstance(tc, TrustedCluster)
    message = f"a leaf cannot share the root's name {ROOT!r}"
    with pytest.raises(AccessDenied) as refused:
        await join_root(tc, leaf_host_ca(ROOT))
    assert str(refused.value) == message
    _join_failure(seed.root, ROOT, message)
    assert token[:22] in _unused_tokens(seed.root)
    assert connection(seed.root, ROOT) == "absent"


def test_a_trusted_cluster_not_named_after_its_root_sends_no_token(seed: Seed,
                                                                   spare: Cluster) -> None:
    token = seed.root.token("trusted_cluster")
    res = spare.create(trusted_cluster_yaml(seed.root, token, MAP_A).replace(
        f"name: {ROOT}", "name: other-root"))
    assert res.rc != 0 and res.err_lines == [
        f"error: the root at {seed.root.proxy} is cluster {ROOT!r}, not 'other-root': "
        "name the trusted_cluster resource after the root cluster"], res
    assert token[:22] in _unused_tokens(seed.root)  # never sent: the root would take it
    assert connection(seed.root, SPARE) == "absent"


def test_root_restart_brings_the_tunnel_back(seed: Seed, alice: Client) -> None:
    daemon = seed.root.daemon
    assert daemon is not None
    stop_all([daemon])
    leaf_log = seed.a.daemon.log_text if seed.a.daemon else (lambda: "")
    wait_for("the leaf noticed", lambda: f"tunnel to root {ROOT} closed" in leaf_log())
    seed.root.restart()
    wait_online(seed.root, LEAF_A, timeout=20)
    wait_for("access restored after the root restart",
             lambda: alice.gsh("ssh", f"--cluster={LEAF_A}", "root@node1",
                               "echo back").out == "back\n", timeout=20)


def test_join_with_a_wrong_pin_sends_nothing(seed: Seed, spare: Cluster, tmp_path: Path
                                             ) -> None:
    """proxy_addr leads to an impostor that even bears the root's name: the root's token
    pins the root's CA, so the leaf stops before it sends the token (or anything else)."""
    with Cluster(tmp_path / "impostor", name=ROOT).running() as impostor:
        token = seed.root.token("trusted_cluster")
        res = spare.create(trusted_cluster_yaml(seed.root, token, MAP_A,
                                                proxy_addr=impostor.proxy))
        assert res.rc != 0 and res.err_lines == [
            f"error: the server at {impostor.proxy} is not the cluster that issued this "
            "token (its host CA does not match the pin in the token); the token was not "
            "sent"], res
        # A join request would have reached the impostor's auth, which audits a join
        # (refused: it does not know the token) before it answers: it saw none.
        assert not impostor.events("--type=trusted_cluster.join.failure,"
                                   "trusted_cluster.join")
    assert connection(seed.root, SPARE) == "absent"


def test_leaf_audit_reaches_the_root_with_the_login_correlation(seed: Seed,
                                                                 tmp_path: Path) -> None:
    me = _login(seed, tmp_path / "me", "alice")
    me.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "true").ok()
    logins = seed.root.events("--type=user.login", "--user=alice")
    correlation = max(logins, key=_time)["correlation_id"]  # this login, the newest
    assert correlation.startswith("alice:")
    at_leaf = seed.a.wait_event("the session on the leaf", lambda e: e["event"] ==
                                "session.start" and e["correlation_id"] == correlation)
    at_root = seed.root.wait_event("the leaf's session at the root", lambda e: e["event"] ==
                                   "session.start" and e["correlation_id"] == correlation)
    assert at_root["cluster"] == LEAF_A and at_root["id"] == at_leaf["id"]
    assert at_root["session_id"] == at_leaf["session_id"] and at_root["node"] == "node1"
    # `time` is when the root received it, the leaf's own stays beside it
    assert at_root["leaf_time"] == at_leaf["time"] and at_leaf["leaf_time"] is None
    assert _time(at_root) >= _time(at_leaf)


def test_events_made_while_the_root_is_away_arrive_once_and_in_order(
    seed: Seed, tmp_path: Path,
) -> None:
    """In order: ordered by the times the leaf stamped (whichever way the root lists
    them), the root's copies replay dave's sessions in the order the test ran them, and
    each copy keeps the leaf's time."""
    seed.a.add_user("dave", roles="access", logins="root")
    dave = Client(tmp_path / "dave", seed.a.proxy)  # a local user of the leaf
    dave.home.mkdir()
    dave.login("dave").ok()
    assert seed.root.daemon is not None
    stop_all([seed.root.daemon])
    ran = [f"away-{i}-{uuid.uuid4().hex[:8]}" for i in range(5)]  # in this order
    for marker in ran:
        assert dave.gsh("ssh", "root@node1", f"echo {marker}").out == f"{marker}\n"
    seed.root.restart()
    wait_online(seed.root, LEAF_A, timeout=20)

    at_leaf = {e["id"]: e for e in seed.a.events("--user=dave")}

    def at_root() -> list[dict[str, Any]]:
        return seed.root.events(f"--cluster={LEAF_A}", "--user=dave")

    wait_for("every event of dave's at the root",
             lambda: set(at_leaf) <= {e["id"] for e in at_root()}, timeout=20)
    events = at_root()
    assert len(events) == len({e["id"] for e in events}), "an event arrived twice"
    # The root keeps the leaf's own time as leaf_time (its own receive time is "time").
    assert {e["id"]: e["leaf_time"] for e in events} == \
        {i: e["time"] for i, e in at_leaf.items()}
    session_of = {marker: e["session_id"] for e in events for marker in ran
                  if e["event"] == "exec" and marker in str(e["fields"].get("command"))}
    starts = sorted((e for e in events if e["event"] == "session.start"),
                    key=lambda e: _time(e, "leaf_time"))
    assert [e["session_id"] for e in starts] == [session_of[m] for m in ran], starts


def _recording_of(client: Client, cluster: str, marker: str) -> str:
    """The id of the newest recording listed for ``cluster`` whose output has ``marker``."""
    def find() -> str | None:
        res = client.gsh("recordings", "ls", f"--cluster={cluster}", "--format=json")
        for rec in reversed(res.ok().json()):
            if marker.encode() in client.gsh("play", rec["session_id"]).out.encode():
                return str(rec["session_id"])
        return None
    return wait_for(f"the recording in {cluster}", find, timeout=20, interval=0.5)


def _auditor(seed: Seed, tmp_path: Path, name: str) -> Client:
    """A root user with the auditor role, mapped to the leaf's auditor too, logged in."""
    seed.root.add_user(name, roles="access,auditor", logins="root")
    seed.a.create(trusted_cluster_yaml(seed.root, seed.tokens[LEAF_A],
                                       MAP_A + "\n{remote: auditor, local: [auditor]}"),
                  force=True).ok()
    return _login(seed, tmp_path / name, name)


def test_recordings_replay_what_the_user_saw_on_root_and_leaf(seed: Seed,
                                                                tmp_path: Path) -> None:
    audrey = _auditor(seed, tmp_path, "audrey")
    command = "printf 'root-session \\342\\202\\254 %s\\n' $((6*7))"
    seen = audrey.gsh("ssh", "root@node1", command).ok().out
    assert seen == "root-session \u20ac 42\n"
    rid = _recording_of(audrey, ROOT, "root-session")
    assert audrey.gsh("play", rid).out == seen  # without a terminal: the bytes, at once

    leaf_seen = audrey.gsh("ssh", f"--cluster={LEAF_A}", "root@node1",
                           "echo leaf-session; echo to-stderr >&2").ok().out
    lid = _recording_of(audrey, LEAF_A, "leaf-session")
    assert "leaf-session\n" in audrey.gsh("play", lid).out  # by id alone, from the root
    assert leaf_seen == "leaf-session\n"
    cast = audrey.gsh("play", lid, "--format=asciicast").ok().out.splitlines()
    assert json.loads(cast[0])["version"] == 2
    assert any("leaf-session" in json.loads(line)[2] for line in cast[1:])


def test_recordings_are_denied_without_audit_rights(seed: Seed, alice: Client,
                                                    tmp_path: Path) -> None:
    # Two recordings of alice's own sessions, one per cluster, that an auditor can play.
    ursula = _auditor(seed, tmp_path, "ursula")
    marker = uuid.uuid4().hex[:8]
    alice.gsh("ssh", "root@node1", f"echo root-{marker}").ok()
    alice.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", f"echo leaf-{marker}").ok()
    recordings = [_recording_of(ursula, ROOT, f"root-{marker}"),
                  _recording_of(ursula, LEAF_A, f"leaf-{marker}")]

    res = alice.gsh("recordings", "ls")
    assert res.rc != 0 and '"list" on "session" is not allowed' in res.err, res
    res = alice.gsh("recordings", "ls", f"--cluster={LEAF_A}")
    assert res.rc != 0 and "not allowed" in res.err, res
    denied = 'error: "read" on "session" is not allowed by roles access'
    for sid in recordings:
        res = alice.gsh("play", sid)
        assert (res.rc, res.out, res.err_lines) == (1, "", [denied]), res
    seed.root.wait_event("the root's audit of a denied playback", lambda e: e["event"]
                         == "access.denied" and e["user"] == "alice" and e["cluster"] == ROOT
                         and '"read" on "session"' in e["message"])
    # An id that exists nowhere gets the same answer: a denial tells nothing about ids.
    res = alice.gsh("play", "00000000-0000-4000-8000-000000000000")
    assert (res.rc, res.err_lines) == (1, [denied]), res
    bad = alice.gsh("play", "../../etc/passwd")
    assert bad.rc != 0 and bad.err_lines == [
        "error: '../../etc/passwd' is not a session id (expected a UUID)"], bad
