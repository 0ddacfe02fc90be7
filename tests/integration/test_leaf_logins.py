"""Leaf-local logins for real: a root and a leaf joined over the tunnel; a leaf role
grants a login the root knows nothing of. `gsh login LEAF` gets the leaf's own
certificate (through the root proxy and the leaf's tunnel), which `gsh ssh` and
`ssh -F` then use; without it the login is refused with the way to get it. The leaf's
certificate lives no longer than the root's, dies with the trust within 2 s, and is
refused to a user whose root cluster labels keep them off the leaf (audited there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from gatehouse.pki import sshcert
from gatehouse.pki.keystore import StoredIdentity
from gatehouse.process.harness import PASSWORD, Client, Cluster, in_parallel, join, wait_for
from tests.integration import direct

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("ssh") is None,
    reason="needs root (to create a login the root knows nothing of), useradd and OpenSSH")

ROOT, LEAF = "sso.example.com", "us-east-1a"
ROLE_MAP = ("{remote: access, local: [access, deployer]}\n"
            "{remote: staging-only, local: [deployer]}\n"
            "{remote: watcher, local: [viewer]}")
VIEWER = """kind: role
version: v1
metadata: {name: viewer}
spec:
  allow:
    node_labels: {"*": "*"}
"""
WATCHER = VIEWER.replace("name: viewer", "name: watcher")
STAGING_ONLY = """kind: role
version: v1
metadata: {name: staging-only}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
    cluster_labels: {env: staging}
"""
DEPLOYER = """kind: role
version: v1
metadata: {name: deployer}
spec:
  options: {max_session_ttl: 20m}
  allow:
    logins: [LOGIN]
    node_labels: {"*": "*"}
"""


class Pair:
    def __init__(self, base: Path, deploy: str) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.leaf = Cluster(base / "leaf", name=LEAF)
        self.deploy = deploy  # a login of the leaf's role only
        self.trust = ""  # the trusted_cluster the leaf joined with


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    deploy = "gh-dep-" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", deploy], check=True, timeout=30)
    p = Pair(tmp_path_factory.mktemp("leaflogin"), deploy)
    try:
        in_parallel(p.root.start, p.leaf.start)
        p.root.create(STAGING_ONLY).ok()
        p.leaf.create(DEPLOYER.replace("LOGIN", deploy)).ok()
        p.leaf.create(VIEWER).ok()
        p.root.create(WATCHER).ok()
        p.trust = join(p.leaf, p.root, ROLE_MAP)
        p.root.gatectl("update", f"rc/{LEAF}", "--set-labels=env=prod").ok()
        p.root.add_user("alice", roles="access", logins="root")
        p.root.add_user("sam", roles="staging-only", logins="root")
        p.root.add_user("vic", roles="watcher", logins="root")
        yield p
    finally:
        for c in (p.root, p.leaf):
            c.stop(wait=False)
        subprocess.run(["userdel", "-r", deploy], check=False, timeout=30,
                       stderr=subprocess.DEVNULL)


def _login(pair: Pair, home: Path, user: str, *extra: str) -> Client:
    home.mkdir(parents=True, exist_ok=True)
    me = Client(home, pair.root.proxy)
    me.login(user, PASSWORD, *extra).ok()
    return me


def _valid_before(path: Path) -> int:
    return sshcert.decode(sshcert.from_openssh_line(path.read_text())).valid_before


def _leaf_cert(me: Client) -> Path:
    return me.home / "keys" / "leaves" / LEAF / "key-cert.pub"


def test_a_leaf_only_login_works_after_gsh_login_leaf(pair: Pair, tmp_path: Path) -> None:
    me = _login(pair, tmp_path / "alice", "alice")
    who = ("ssh", f"--cluster={LEAF}", f"{pair.deploy}@node1", "id -un")
    before = me.gsh(*who)
    assert before.rc == 255 and len(before.err_lines) == 1, before
    assert before.err_lines[0].endswith(f"run: gsh login {LEAF}"), before

    got = me.gsh("login", LEAF).ok()
    assert f"certified by {LEAF} for logins" in got.out and pair.deploy in got.out, got
    assert me.gsh(*who).out == f"{pair.deploy}\n"
    # The root's own login still works with the leaf's certificate (mapped `access`).
    assert me.gsh("ssh", f"--cluster={LEAF}", "root@node1", "echo root").out == "root\n"
    res = me.openssh(me.openssh_config(), f"{pair.deploy}@node1.{LEAF}", "id -un",
                     options=("StrictHostKeyChecking=yes",))
    assert res.out == f"{pair.deploy}\n", res
    # Audited at the leaf with its own code, and forwarded to the root.
    issued = pair.leaf.wait_event("the leaf's record of the issuance",
                                  lambda e: e["event"] == "leaf.login" and e["user"] == "alice")
    assert issued["code"] == "TL001I"
    pair.root.wait_event("the leaf's record, forwarded to the root",
                         lambda e: e["event"] == "leaf.login" and e["user"] == "alice"
                         and e["cluster"] == LEAF)


def test_the_leaf_certificate_never_outlives_the_root_certificate(
        pair: Pair, tmp_path: Path) -> None:
    short = _login(pair, tmp_path / "short", "alice", "--ttl=10m")
    short.gsh("login", LEAF).ok()
    root_cert = StoredIdentity(short.home / "keys").ssh_cert_file
    assert _valid_before(_leaf_cert(short)) == _valid_before(root_cert)

    long = _login(pair, tmp_path / "long", "alice", "--ttl=2h")
    started = time.time()
    long.gsh("login", LEAF).ok()
    # The leaf role's max_session_ttl (20m) is shorter than the root certificate's 2h.
    assert _valid_before(_leaf_cert(long)) <= started + 20 * 60 + 5


def test_cluster_labels_that_deny_the_leaf_deny_its_certificate(
        pair: Pair, tmp_path: Path) -> None:
    """The root does not route sam to the leaf (and the leaf would refuse too: its own
    decision, tests/auth/test_leaflogin.py); a user the leaf maps to roles without a
    login is refused by the leaf itself, which audits why."""
    sam = _login(pair, tmp_path / "sam", "sam")
    res = sam.gsh("login", LEAF)
    assert res.rc != 0 and len(res.err_lines) == 1 and not _leaf_cert(sam).exists(), res
    assert f"unknown cluster {LEAF}" in res.err_lines[0], res

    vic = _login(pair, tmp_path / "vic", "vic")
    res = vic.gsh("login", LEAF)
    reason = "the roles viewer give user vic no logins on this cluster"
    assert res.rc == 1 and res.err_lines == [
        f"error: {LEAF} did not certify you for its own logins: {reason}"], res
    assert not _leaf_cert(vic).exists()
    refused = pair.leaf.wait_event(
        "the leaf's record of the refusal",
        lambda e: e["event"] == "leaf.login.failure" and e["user"] == "vic")
    assert refused["code"] == "TL001W" and refused["message"] == reason


def test_disabling_the_trust_refuses_the_leaf_certificate_within_2s(
        pair: Pair, tmp_path: Path) -> None:
    me = _login(pair, tmp_path / "me", "alice")
    me.gsh("login", LEAF).ok()
    cert = _leaf_cert(me)
    # Straight to the leaf's node: the leaf's own user CA signed it, so only the origin
    # recorded in it ties it to the trust.
    assert direct.ssh(pair.leaf.ssh_port, me.home, pair.deploy, "id -un", cert) == \
        f"{pair.deploy}\n"

    def refused() -> bool:
        try:
            direct.ssh(pair.leaf.ssh_port, me.home, pair.deploy, "true", cert)
        except asyncssh.PermissionDenied:
            return True
        return False

    pair.leaf.create(pair.trust.replace("enabled: true", "enabled: false"), force=True).ok()
    started = time.monotonic()
    wait_for("the leaf's node to refuse the leaf certificate", refused, timeout=10,
             interval=0.05)
    assert time.monotonic() - started < 2.0
    denied = pair.leaf.wait_event("the node's record of the refusal",
                                  lambda e: e["event"] == "auth" and e["login"] == pair.deploy
                                  and "disabled" in e["message"])
    assert f"trust in cluster {ROOT} is disabled" in denied["message"]
