"""Each cluster's host CA vouches only for its own cluster's names (issue 15, finding 7).

A root `sso.example.com` and a leaf `leaf.example.com` in the same domain (a leaf
named `example.com`, whose names would hold every root host name, no longer joins:
tests/auth/test_leaf_join_checks.py). The leaf (or any operator of one of its nodes) can hold a
certificate from the leaf's host CA naming `node1.sso.example.com`, here simply a
leaf node named so. Reached instead of the root's node1 (a redirected connection,
played here by a ProxyCommand that dials the leaf), it must be refused: by plain
OpenSSH through `gsh config`'s known_hosts, and by gsh itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import GSH, Client, Cluster, in_parallel, join

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None,
                                reason="OpenSSH client `ssh` is not installed")

ROOT, LEAF = "sso.example.com", "leaf.example.com"
ROOT_NAME = f"node1.{ROOT}"  # the root's node1, as `gsh config` names it
IMPOSTOR = ROOT_NAME  # a leaf node's own name that reads as the root's node1
TO_LEAF = f'ProxyCommand="{GSH}" proxy ssh --cluster={LEAF} %r@%h'  # the redirect


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster]]:
    base = tmp_path_factory.mktemp("scope")
    root = Cluster(base / "root", name=ROOT)
    leaf = Cluster(base / "leaf", name=LEAF, nodename=IMPOSTOR)
    try:
        in_parallel(root.start, leaf.start)
        join(leaf, root, "{remote: access, local: [access]}")
        root.add_user("alice", roles="access", logins="root")
        yield root, leaf
    finally:
        root.stop(wait=False)
        leaf.stop(wait=False)


@pytest.fixture(scope="module")
def alice(clusters: tuple[Cluster, Cluster],
          tmp_path_factory: pytest.TempPathFactory) -> Client:
    me = Client(tmp_path_factory.mktemp("alice"), clusters[0].proxy)
    me.login("alice").ok()
    return me


@pytest.fixture(scope="module")
def ssh_config(alice: Client) -> Path:
    return alice.openssh_config()


def test_openssh_reaches_each_cluster_by_its_own_names(alice: Client, ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"root@{ROOT_NAME}", "echo root")
    assert (res.rc, res.out) == (0, "root\n"), res
    # The leaf node, by its name in the leaf: NODE.CLUSTER, split on the longest suffix.
    res = alice.openssh(ssh_config, f"root@{IMPOSTOR}.{LEAF}", "echo leaf")
    assert (res.rc, res.out) == (0, "leaf\n"), res


def test_openssh_refuses_a_leaf_host_certificate_for_a_root_name(
        alice: Client, ssh_config: Path) -> None:
    res = alice.openssh(ssh_config, f"root@{ROOT_NAME}", "echo impostor", options=(TO_LEAF,))
    assert res.rc == 255 and res.out == "", res
    assert "Host key verification failed" in res.err, res


def test_known_hosts_scopes_each_cluster_to_its_own_names(alice: Client) -> None:
    known = (alice.home / "known_hosts").read_text().splitlines()
    patterns = {line.split()[1] for line in known if line.startswith("@cert-authority ")}
    assert patterns == {f"*.{ROOT}", f"*.{LEAF}"}, known


def test_gsh_refuses_a_root_name_in_the_leaf(clusters: tuple[Cluster, Cluster],
                                             alice: Client) -> None:
    res = alice.gsh("ssh", f"--cluster={LEAF}", f"root@{IMPOSTOR}", "echo impostor")
    assert res.rc == 255 and res.out == "", res
    assert res.err_lines == [
        f"error: {IMPOSTOR} is a name in cluster {ROOT}, not in {LEAF}: the host CA of "
        f"{LEAF} does not vouch for it (use the node's host id, or --cluster={ROOT})"], res
    # The same node by its host id is the leaf's own, verified by the leaf's host CA.
    node = clusters[1].node_named(IMPOSTOR)
    assert node is not None
    res = alice.gsh("ssh", f"--cluster={LEAF}", f"root@{node['metadata']['name']}", "echo leaf")
    assert (res.rc, res.out) == (0, "leaf\n"), res
