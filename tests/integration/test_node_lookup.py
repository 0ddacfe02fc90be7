"""Finding a node across clusters, for real: the root holds the inventory each leaf
pushes over its tunnel (a node joining a leaf shows within seconds, a removed one goes),
`gsh ls --all [--search=TEXT] [label=value]` reads it in one request, and `gsh ssh
LOGIN@NODE` without --cluster finds the one cluster a name is in, or says where it is
several times, or that it is nowhere. Each user sees only what the root's cluster labels
and the leaf's role map give them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import Client, Cluster, in_parallel, join, wait_for

ROOT, PROD, STAGING = "sso.example.com", "us-east-1a", "us-east-1b"
ROLE_MAP = "{remote: prod-access, local: [access]}\n{remote: access, local: [access]}"
ROLES = """kind: role
version: v1
metadata: {name: prod-access}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
    cluster_labels: {env: prod}
    rules: [{resources: [node], verbs: [list, read]}]
---
kind: role
version: v1
metadata: {name: viewer}
spec:
  allow:
    logins: [root]
    node_labels: {"*": "*"}
    rules: [{resources: [node], verbs: [list, read]}]
"""


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Cluster]]:
    base = tmp_path_factory.mktemp("lookup")
    root = Cluster(base / "root", name=ROOT, nodename="gate")
    prod = Cluster(base / "prod", name=PROD, nodename="node7", labels={"env": "prod"})
    staging = Cluster(base / "staging", name=STAGING, nodename="node7",
                      labels={"env": "staging"})
    clusters = [root, prod, staging]
    try:
        in_parallel(*(c.start for c in clusters))
        root.create(ROLES).ok()
        in_parallel(lambda: join(prod, root, ROLE_MAP), lambda: join(staging, root, ROLE_MAP))
        root.gatectl("update", f"rc/{PROD}", "--set-labels=env=prod").ok()
        root.gatectl("update", f"rc/{STAGING}", "--set-labels=env=staging").ok()
        root.add_user("alice", roles="access", logins="root")  # every leaf
        root.add_user("pat", roles="prod-access", logins="root")  # the prod leaf only
        root.add_user("vic", roles="viewer", logins="root")  # no leaf maps viewer
        yield clusters
    finally:
        for c in clusters:
            c.stop(wait=False)


def _user(seed: list[Cluster], home: Path, name: str) -> Client:
    home.mkdir(parents=True, exist_ok=True)
    me = Client(home, seed[0].proxy)
    me.login(name).ok()
    return me


@pytest.fixture(scope="module")
def alice(seed: list[Cluster], tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _user(seed, tmp_path_factory.mktemp("alice"), "alice")


@pytest.fixture(scope="module")
def pat(seed: list[Cluster], tmp_path_factory: pytest.TempPathFactory) -> Client:
    return _user(seed, tmp_path_factory.mktemp("pat"), "pat")


def _listed(me: Client, *args: str) -> list[tuple[str, str]]:
    nodes = me.gsh("ls", "--all", "--format=json", *args).ok().json()
    return sorted((n["spec"]["hostname"], n["spec"]["cluster"]) for n in nodes)


EVERY = [("gate", ROOT), ("node7", PROD), ("node7", STAGING)]


def test_ls_all_shows_the_leaves_nodes_each_user_may_see(
        seed: list[Cluster], alice: Client, pat: Client, tmp_path: Path) -> None:
    wait_for("both leaves' inventories at the root", lambda: _listed(alice) == EVERY)
    assert _listed(pat) == [("gate", ROOT), ("node7", PROD)]  # the root's cluster labels
    vic = _user(seed, tmp_path / "vic", "vic")
    assert _listed(vic) == [("gate", ROOT)]  # the leaves' role maps give vic nothing
    table = alice.gsh("ls", "--all").ok().out.splitlines()
    assert table[0].split() == ["Node", "Address", "Cluster", "Labels"], table
    assert sorted(line.split()[2] for line in table[1:]) == [ROOT, PROD, STAGING], table


def test_search_and_label_filters_work_across_clusters(
        seed: list[Cluster], alice: Client, pat: Client) -> None:
    wait_for("both leaves' inventories at the root", lambda: _listed(alice) == EVERY)
    assert _listed(alice, "--search=STAGING") == [("node7", STAGING)]  # a label, any case
    assert _listed(alice, "--search=gat") == [("gate", ROOT)]
    assert _listed(alice, "--search=node7") == [("node7", PROD), ("node7", STAGING)]
    assert _listed(alice, "env=prod") == [("node7", PROD)]
    assert _listed(alice, "env=prod", "--search=staging") == []
    assert _listed(pat, "--search=staging") == []  # never a node of a leaf pat can't reach
    assert _listed(alice, "--search=nothing-like-it") == []


def test_ssh_without_cluster_finds_the_one_cluster_or_says_why_not(
        seed: list[Cluster], alice: Client, pat: Client) -> None:
    wait_for("both leaves' inventories at the root", lambda: _listed(alice) == EVERY)
    assert alice.gsh("ssh", "root@gate", "echo root").out == "root\n"  # selected: no look-up
    ambiguous = alice.gsh("ssh", "root@node7", "echo which")
    assert ambiguous.rc == 255 and ambiguous.err_lines == [
        f"error: node7 in {PROD} and {STAGING}: give --cluster=CLUSTER to choose one"
    ], ambiguous
    assert alice.gsh("ssh", f"--cluster={STAGING}", "root@node7", "echo b").out == "b\n"
    # To pat, node7 is in the prod leaf only: a unique match connects.
    found = pat.gsh("ssh", "root@node7", "echo prod")
    assert (found.rc, found.out) == (0, "prod\n"), found
    assert found.err_lines == [f"gsh: node7 is in cluster {PROD}"], found
    unknown = alice.gsh("ssh", "root@node8", "true")
    assert unknown.rc == 255 and len(unknown.err_lines) == 1, unknown
    assert unknown.err_lines[0].endswith(
        "; no node node8 in any other cluster you can reach either"), unknown


def test_a_node_joining_a_leaf_shows_at_the_root_and_goes_when_removed(
        seed: list[Cluster], alice: Client) -> None:
    prod = seed[1]
    node = prod.join_node("web9", {"env": "prod", "team": "web"})
    try:
        wait_for("web9 in the root's inventory",
                 lambda: _listed(alice, "--search=web9") == [("web9", PROD)], timeout=10)
        assert alice.gsh("ssh", "root@web9", "echo web").out == "web\n"
        host_id = str(prod.node_named("web9")["metadata"]["name"])  # type: ignore[index]
    finally:
        node.stop()
    prod.gatectl("rm", f"node/{host_id}").ok()
    wait_for("web9 gone from the root's inventory",
             lambda: _listed(alice, "--search=web9") == [], timeout=10)
