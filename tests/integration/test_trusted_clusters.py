"""The seed's topology for real: a root and two leaves joined over reverse tunnels.

Root users reach leaf nodes through the root proxy and the leaf's tunnel; each
leaf maps their roles with its own role map and applies its own roles.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

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
from gatehouse.wire.names import CLUSTER_HEADER

ROOT, LEAF_A, LEAF_B = "sso.example.com", "us-east-1a", "us-east-1b"
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

    def clusters(self) -> list[Cluster]:
        return [self.root, self.a, self.b]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    s = Seed(tmp_path_factory.mktemp("seed"))
    try:
        in_parallel(*(c.start for c in s.clusters()))
        s.root.create(DEV_ROLE).ok()
        s.a.create(TEAM_ROLE).ok()
        join(s.a, s.root, MAP_A)
        join(s.b, s.root, MAP_B)
        s.root.add_user("alice", roles="access", logins="root")
        s.root.add_user("bob", roles="dev-payments", logins="root")
        yield s
    finally:
        for c in s.clusters():
            c.stop(wait=False)


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
    listed = alice.gsh("ls", "--all").ok().out
    assert ROOT in listed and LEAF_A in listed


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


def test_root_never_accepts_a_leaf_signed_user_certificate(seed: Seed, tmp_path: Path) -> None:
    seed.a.add_user("carol", roles="access", logins="root")
    carol = Client(tmp_path / "carol", seed.a.proxy)
    carol.home.mkdir()
    carol.login("carol").ok()
    assert carol.gsh("ssh", "root@node1", "echo local").out == "local\n"
    # The same leaf-signed certificate, pointed at the root proxy.
    profile = carol.home / "profile.json"
    data = json.loads(profile.read_text())
    data["proxy"] = seed.root.proxy
    profile.write_text(json.dumps(data))
    res = carol.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "true")
    assert res.rc == 255, res
    assert carol.gsh("ls").rc != 0


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
    # Edit the role map in place: no re-join, effective for new connections.
    edited = trusted_cluster_yaml(seed.root, "unused-once-joined", MAP_B + "\n"
                                  "{remote: access, local: [access]}")
    seed.b.create(edited, force=True).ok()
    wait_for("the edited role map", lambda: me.gsh(*ssh_b).out == "b\n")

    # Disable: cut off within 2 s (pushed to the proxy and the node), then restored.
    disabled = edited.replace("enabled: true", "enabled: false")
    seed.b.create(disabled, force=True).ok()
    started = time.monotonic()
    wait_for("root users cut off", lambda: me.gsh(*ssh_b).rc == 255, timeout=5,
             interval=0.1)
    assert time.monotonic() - started < 2.5
    wait_offline(seed.root, LEAF_B, timeout=10)
    seed.b.create(edited, force=True).ok()
    wait_online(seed.root, LEAF_B)
    wait_for("access restored", lambda: me.gsh(*ssh_b).out == "b\n")

    # Remove on both sides, then join again under the same name with a fresh token.
    seed.b.gatectl("rm", f"trusted_cluster/{ROOT}").ok()
    wait_for("the tunnel dropped", lambda: me.gsh(*ssh_b).rc == 255)
    seed.root.gatectl("rm", f"rc/{LEAF_B}").ok()
    assert connection(seed.root, LEAF_B) == "absent"
    join(seed.b, seed.root, MAP_B + "\n{remote: access, local: [access]}")
    wait_for("access after re-join", lambda: me.gsh(*ssh_b).out == "b\n")


def test_rejoin_with_a_used_token_or_a_taken_name_is_refused(seed: Seed) -> None:
    token = seed.root.token("trusted_cluster")
    text = trusted_cluster_yaml(seed.root, token, MAP_B)
    res = seed.b.create(text)  # already joined: create without -f refuses
    assert res.rc != 0 and "already exists" in res.err, res


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


def test_join_with_a_wrong_pin_sends_nothing(seed: Seed, tmp_path: Path) -> None:
    other = Cluster(tmp_path / "other", name="other.example.com")
    other.start()
    try:
        token = other.token("trusted_cluster")  # pins other's CA, not the root's
        res = seed.a.create(trusted_cluster_yaml(seed.root, token, MAP_A).replace(
            f"name: {ROOT}", "name: other-root"))
        assert res.rc != 0 and "does not match the pin" in res.err, res
        tokens = other.gatectl("get", "token", "--format=json").ok().json()
        assert [t["metadata"]["name"] for t in tokens] == [token[:22]]  # still unused
    finally:
        other.stop()


def _when(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


def test_leaf_audit_reaches_the_root_with_the_login_correlation(seed: Seed,
                                                                 tmp_path: Path) -> None:
    me = _login(seed, tmp_path / "me", "alice")
    me.gsh("ssh", f"--cluster={LEAF_A}", "root@node1", "true").ok()
    logins = [e for e in seed.root.events("--type=user.login") if e["user"] == "alice"]
    correlation = logins[0]["correlation_id"]  # the newest
    assert correlation.startswith("alice:")
    at_leaf = seed.a.wait_event("the session on the leaf", lambda e: e["event"] ==
                                "session.start" and e["correlation_id"] == correlation)
    at_root = seed.root.wait_event("the leaf's session at the root", lambda e: e["event"] ==
                                   "session.start" and e["correlation_id"] == correlation)
    assert at_root["cluster"] == LEAF_A and at_root["id"] == at_leaf["id"]
    assert at_root["session_id"] == at_leaf["session_id"] and at_root["node"] == "node1"
    # `time` is when the root received it, the leaf's own stays beside it
    assert at_root["leaf_time"] == at_leaf["time"] and at_leaf["leaf_time"] is None
    assert _when(at_root["time"]) >= _when(at_leaf["time"])


def test_events_made_while_the_root_is_away_arrive_once_and_in_order(
    seed: Seed, tmp_path: Path,
) -> None:
    seed.a.add_user("dave", roles="access", logins="root")
    dave = Client(tmp_path / "dave", seed.a.proxy)  # a local user of the leaf
    dave.home.mkdir()
    dave.login("dave").ok()
    assert seed.root.daemon is not None
    stop_all([seed.root.daemon])
    for i in range(5):
        assert dave.gsh("ssh", "root@node1", f"echo {i}").out == f"{i}\n"
    seed.root.restart()
    wait_online(seed.root, LEAF_A, timeout=20)

    def leaf_ids() -> list[str]:
        return [e["id"] for e in seed.a.events()]

    def root_ids() -> list[str]:
        return [e["id"] for e in seed.root.events(f"--cluster={LEAF_A}")]

    wait_for("every leaf event at the root", lambda: set(leaf_ids()) <= set(root_ids()),
             timeout=20)
    ids = root_ids()
    assert len(ids) == len(set(ids)), "an event arrived twice"
    daves = [e for e in seed.root.events(f"--cluster={LEAF_A}", "--type=session.start")
             if e["user"] == "dave"]
    assert len(daves) == 5
    for field in ("time", "leaf_time"):  # newest first, by the root's clock and the leaf's
        times = [_when(e[field]) for e in daves]
        assert times == sorted(times, reverse=True), field


def _recording_of(client: Client, cluster: str, marker: str) -> str:
    """The id of the newest recording listed for ``cluster`` whose output has ``marker``."""
    def find() -> str | None:
        res = client.gsh("recordings", "ls", f"--cluster={cluster}", "--format=json")
        for rec in reversed(res.ok().json()):
            if marker.encode() in client.gsh("play", rec["session_id"]).out.encode():
                return str(rec["session_id"])
        return None
    return wait_for(f"the recording in {cluster}", find, timeout=20, interval=0.5)


def test_recordings_replay_what_the_user_saw_on_root_and_leaf(seed: Seed,
                                                                tmp_path: Path) -> None:
    seed.root.add_user("audrey", roles="access,auditor", logins="root")
    seed.a.create(trusted_cluster_yaml(seed.root, "unused-once-joined",
                                       MAP_A + "\n{remote: auditor, local: [auditor]}"),
                  force=True).ok()
    audrey = _login(seed, tmp_path / "audrey", "audrey")
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


def test_recordings_are_denied_without_audit_rights(seed: Seed, alice: Client) -> None:
    res = alice.gsh("recordings", "ls")
    assert res.rc != 0 and '"list" on "session" is not allowed' in res.err, res
    res = alice.gsh("recordings", "ls", f"--cluster={LEAF_A}")
    assert res.rc != 0 and "not allowed" in res.err, res
    any_id = "00000000-0000-4000-8000-000000000000"
    assert alice.gsh("play", any_id).rc != 0
    bad = alice.gsh("play", "../../etc/passwd")
    assert bad.rc != 0 and bad.err_lines == [
        "error: '../../etc/passwd' is not a session id (expected a UUID)"], bad
