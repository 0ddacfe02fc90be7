"""Cluster labels in the seed's three-cluster topology, for real: a root role with
`cluster_labels: {env: prod}` sees and reaches only the prod leaf, through the root; the
other leaf refuses the same root certificate presented to its own node and proxy; a
label removed takes effect within 2 s at the root and at the leaf (pushed over the
leaf's tunnel). Leaf B joins with a Teleport `version: v2` trusted_cluster file.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from gatehouse import __version__
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process.harness import Client, Cluster, in_parallel, join, wait_for, wait_online
from gatehouse.wire.names import CLUSTER_HEADER
from tests.integration import direct

ROOT, PROD, STAGING = "sso.example.com", "us-east-1a", "us-east-1b"
ROLE_MAP = "{remote: prod-access, local: [access]}\n{remote: access, local: [access]}"
PROD_ROLE = """kind: role
version: v1
metadata: {name: prod-access}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
    cluster_labels: {env: prod}
    rules: [{resources: [node], verbs: [list, read]}]
"""
# What a Teleport user has: version v2, web_proxy_addr and tunnel_addr, role_map.
TELEPORT_TRUST = """kind: trusted_cluster
version: v2
metadata:
  name: {root}
spec:
  enabled: true
  token: {token}
  tunnel_addr: {proxy}
  web_proxy_addr: {proxy}
  role_map:
    - remote: prod-access
      local: [access]
    - remote: access
      local: [access]
"""


class Seed:
    def __init__(self, base: Path) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.prod = Cluster(base / "prod", name=PROD)
        self.staging = Cluster(base / "staging", name=STAGING, session_recording="off")

    def clusters(self) -> list[Cluster]:
        return [self.root, self.prod, self.staging]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    s = Seed(tmp_path_factory.mktemp("labels"))
    try:
        in_parallel(*(c.start for c in s.clusters()))
        s.root.create(PROD_ROLE).ok()
        join(s.prod, s.root, ROLE_MAP)
        s.staging.create(TELEPORT_TRUST.format(root=ROOT, proxy=s.root.proxy,
                                               token=s.root.token("trusted_cluster"))).ok()
        wait_online(s.root, STAGING)
        s.root.gatectl("update", f"rc/{PROD}", "--set-labels=env=prod,customer=acme").ok()
        s.root.gatectl("update", f"rc/{STAGING}", "--set-labels=env=staging").ok()
        s.root.add_user("pat", roles="prod-access", logins="root")
        s.root.add_user("alice", roles="access", logins="root")
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
def pat(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _login(seed, tmp_path_factory.mktemp("pat"), "pat")


def _dial_error(seed: Seed, me: Client, cluster: str) -> str:
    """What the root proxy answers ``me`` when asked for node1 of ``cluster`` ("" = yes)."""
    reply = direct.dial(seed.root.proxy, me.home, "node1", cluster).reply
    assert reply is not None, "the root proxy closed the connection without a reply"
    return reply.error


def _leaf_call(proxy: str, me: Client, cluster: str) -> tuple[int, str]:
    """(status, error) of ``me``'s listing of ``cluster``'s nodes through the root proxy."""
    keys = StoredIdentity(me.home / "keys")
    ctx = ssl._create_unverified_context()
    ctx.load_cert_chain(keys.tls_cert_file, keys.key_pem_file)
    host, port = proxy.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=15, context=ctx)
    try:
        conn.request("GET", "/v1/nodes", headers={CLUSTER_HEADER: cluster})
        reply = conn.getresponse()
        body = json.loads(reply.read())
        return reply.status, body.get("error", "") if isinstance(body, dict) else ""
    finally:
        conn.close()


def _node_refuses(cluster: Cluster, me: Client) -> bool:
    """Whether ``cluster``'s node refuses ``me``'s root certificate, presented straight
    to its listener (past the root proxy)."""
    try:
        direct.ssh(cluster.ssh_port, me.home, "root", "true")
    except asyncssh.PermissionDenied:
        return True
    return False


def test_a_teleport_v2_trusted_cluster_file_joins(seed: Seed) -> None:
    [trust] = seed.staging.gatectl("get", "trusted_cluster", "--format=json").ok().json()
    assert (trust["version"], trust["spec"]["proxy_addr"]) == ("v1", seed.root.proxy)
    assert trust["status"]["connection"] == "online"
    refused = seed.staging.create(TELEPORT_TRUST.format(
        root=ROOT, proxy=seed.root.proxy, token="x").replace(
        "  enabled: true\n", "  enabled: true\n  roles: [admin]\n"), force=True)
    assert refused.rc != 0 and refused.err_lines == [
        "error: -: resource 1 (trusted_cluster): spec.roles: Teleport's older way to map "
        "roles is not implemented: write the mapping as spec.role_map (remote -> local "
        "roles)"], refused


def test_the_root_shows_each_leafs_recording_mode_and_version(seed: Seed) -> None:
    """Teleport #7735: each leaf says over its tunnel how it records sessions."""
    def shown() -> dict[str, tuple[str, str]]:
        return {rc["metadata"]["name"]: (rc["status"].get("session_recording"),
                                         rc["status"].get("version"))
                for rc in seed.root.gatectl("get", "rc", "--format=json").ok().json()}

    wait_for("both leaves to say what they are",
             lambda: shown() == {PROD: ("node", __version__), STAGING: ("off", __version__)})
    text = seed.root.gatectl("get", "rc").ok().out
    assert "session_recording: off" in text and f"version: {__version__}" in text, text


def test_a_role_with_cluster_labels_sees_and_reaches_only_the_prod_leaf(
        seed: Seed, pat: Client) -> None:
    clusters = pat.gsh("clusters", "--format=json").ok().json()
    assert sorted(c["name"] for c in clusters) == [ROOT, PROD]
    listed = pat.gsh("ls", "--all", "--format=json").ok()
    assert sorted(n["spec"]["cluster"] for n in listed.json()) == [ROOT, PROD], listed
    assert pat.gsh("ssh", f"--cluster={PROD}", "root@node1", "echo prod").out == "prod\n"
    # To pat the staging leaf does not exist: gsh finds it nowhere...
    unknown = (f"error: unknown cluster {STAGING}: `gsh clusters` lists the clusters you "
               "can reach")
    res = pat.gsh("ssh", f"--cluster={STAGING}", "root@node1", "echo staging")
    assert res.rc == 255 and res.err_lines == [unknown], res
    # ...and the root proxy, asked past gsh, refuses to route there.
    reason = (f"user pat may not reach cluster {STAGING}: roles prod-access do not select "
              f"cluster {STAGING} (labels env=staging)")
    assert _dial_error(seed, pat, STAGING) == reason
    # An API call for the leaf (what `gsh ls --cluster` sends), past gsh: not relayed.
    assert _leaf_call(seed.root.proxy, pat, STAGING) == (403, reason)
    assert _leaf_call(seed.root.proxy, pat, PROD)[0] == 200
    seed.root.wait_event("the root's audit of the refused dial",
                         lambda e: e["event"] == "proxy.dial.denied" and e["user"] == "pat"
                         and e["message"] == reason)


def test_the_other_leaf_refuses_the_same_certificate_presented_to_it(
        seed: Seed, pat: Client, tmp_path: Path) -> None:
    alice = _login(seed, tmp_path / "alice", "alice")  # no cluster_labels: every leaf
    assert not _node_refuses(seed.staging, alice)
    assert _node_refuses(seed.staging, pat)  # the leaf enforces the root's labels itself
    assert not _node_refuses(seed.prod, pat)
    reason = (f"root user pat from cluster {ROOT} may not use this cluster: roles "
              f"prod-access do not select cluster {STAGING} (labels env=staging)")
    seed.staging.wait_event("the leaf's audit of the refusal",
                            lambda e: e["event"] == "auth" and e["user"] == "pat"
                            and e["message"] == reason)
    # The leaf's proxy takes no root user's certificate of its own accord.
    assert direct.dial(seed.staging.proxy, pat.home, "node1", STAGING).refused


def test_removing_a_label_takes_effect_within_two_seconds(seed: Seed, pat: Client) -> None:
    assert _dial_error(seed, pat, PROD) == ""
    seed.root.gatectl("update", f"rc/{PROD}", "--set-labels=customer=acme").ok()
    started = time.monotonic()
    wait_for("the root proxy to refuse the unlabelled leaf",
             lambda: "may not reach cluster" in _dial_error(seed, pat, PROD),
             timeout=10, interval=0.05)
    wait_for("the leaf's node to refuse", lambda: _node_refuses(seed.prod, pat),
             timeout=10, interval=0.05)
    assert time.monotonic() - started < 2.0
    assert [c["name"] for c in pat.gsh("clusters", "--format=json").ok().json()] == [ROOT]
    rc = seed.root.gatectl("get", f"rc/{PROD}", "--format=json").ok().json()[0]
    assert rc["metadata"]["labels"] == {"customer": "acme"}

    seed.root.gatectl("update", f"rc/{PROD}", "--set-labels=env=prod,customer=acme").ok()
    wait_for("the leaf's node to take pat again", lambda: not _node_refuses(seed.prod, pat),
             timeout=10, interval=0.05)
    assert pat.gsh("ssh", f"--cluster={PROD}", "root@node1", "echo back").out == "back\n"
    seed.root.wait_event("the root's audit of the label change",
                         lambda e: e["event"] == "resource.update"
                         and e["fields"].get("kind") == "remote_cluster"
                         and e["fields"].get("labels") == {"env": "prod", "customer": "acme"})


@pytest.mark.parametrize(("args", "error"), [
    (("rc/us-east-1a", "--set-labels=env"),
     "invalid label 'env': expected key=value (e.g. --set-labels=env=prod,team=payments)"),
    (("rc/us-east-1a", "--set-labels=bad key=x"),
     "--set-labels (remote_cluster): metadata.labels.bad key.[key]: 'bad key' is not a "
     "valid label key: use letters, digits and / . _ : -"),
    (("role/access", "--set-labels=env=prod"),
     "gatectl update takes rc/NAME (a remote cluster), not 'role/access'"),
    (("rc/us-east-1a",), "give --set-labels=k=v,... (the labels to keep; --set-labels= "
                         "removes all)"),
    (("rc/us-west-2", "--set-labels=env=prod"), "remote_cluster us-west-2 not found"),
])
def test_bad_label_updates_say_what_is_wrong_and_change_nothing(
        seed: Seed, args: tuple[str, ...], error: str) -> None:
    res = seed.root.gatectl("update", *args)
    assert res.rc != 0 and res.err_lines == [f"error: {error}"], res
    rc = seed.root.gatectl("get", f"rc/{PROD}", "--format=json").ok().json()[0]
    assert rc["metadata"]["labels"] == {"env": "prod", "customer": "acme"}
