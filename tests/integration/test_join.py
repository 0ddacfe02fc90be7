"""A second node process joins with a single-use token; bad tokens fail clearly.

The README's way is `gatehouse.proxy_server` (the node reaches the auth through
the proxy); `gatehouse.auth_server` (straight to the auth) is tested too.
"""

from __future__ import annotations

import re
import socket

import pytest

from gatehouse.process.harness import Client, Cluster, Process, wait_for

JOIN_TIMEOUT = 30.0



@pytest.fixture(scope="module")
def node2(cluster: Cluster) -> Process:
    """Joined through the proxy, as the README shows."""
    return cluster.join_node("node2", {"env": "prod", "team": "payments"}, via="proxy")


@pytest.fixture(scope="module")
def node3(cluster: Cluster) -> Process:
    """Joined straight with the auth (gatehouse.auth_server)."""
    return cluster.join_node("node3", {"env": "staging", "team": "search"}, via="auth")


def _start_and_wait_exit(cluster: Cluster, nodename: str, token: str) -> tuple[int, str]:
    """Start a node (joining through the proxy) that should fail; its exit status and output."""
    node = cluster.start_node(nodename, token, {"env": "prod"})
    try:
        rc = node.wait(JOIN_TIMEOUT)
        assert rc is not None, f"{nodename} still running after {JOIN_TIMEOUT} s"
    finally:
        node.stop()
    return rc, node.log_text()


def _unused_tokens(cluster: Cluster) -> list[str]:
    return [t["metadata"]["name"]
            for t in cluster.gatectl("tokens", "ls", "--format=json").ok().json()]


def test_token_is_alone_on_the_first_line(cluster: Cluster) -> None:
    res = cluster.gatectl("tokens", "add", "--type=node", "--ttl=15m").ok()
    first = res.out.splitlines()[0]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", first), res
    assert any(first.startswith(name) for name in _unused_tokens(cluster))


def test_node_joined_via_auth_is_listed_with_its_labels(cluster: Cluster, node3: Process,
                                                        alice: Client) -> None:
    nodes = {n["spec"]["hostname"]: n for n in cluster.node_list()}
    assert {"node1", "node3"} <= set(nodes)
    assert nodes["node3"]["metadata"]["labels"] == {"env": "staging", "team": "search"}
    assert nodes["node3"]["spec"]["cluster"] == cluster.name
    assert nodes["node1"]["spec"]["host_id"] != nodes["node3"]["spec"]["host_id"]
    listed = alice.gsh("ls", "team=search", "--format=json").ok().json()
    assert [n["spec"]["hostname"] for n in listed] == ["node3"]


def test_ssh_to_node_joined_via_auth(cluster: Cluster, node3: Process, alice: Client) -> None:
    addr = cluster.node_named("node3")["spec"]["addr"]  # type: ignore[index]
    res = alice.ssh("root@node3", "echo $SSH_CONNECTION")
    assert res.rc == 0 and res.out.split()[2:] == addr.split(":"), res


def test_node_joined_via_proxy_is_listed_with_its_labels(cluster: Cluster, node2: Process,
                                                         alice: Client) -> None:
    nodes = {n["spec"]["hostname"]: n for n in cluster.node_list()}
    assert nodes["node2"]["metadata"]["labels"] == {"env": "prod", "team": "payments"}
    assert nodes["node2"]["spec"]["cluster"] == cluster.name
    listed = alice.gsh("ls", "env=prod", "--format=json").ok().json()
    assert [n["spec"]["hostname"] for n in listed] == ["node2"]
    assert "node2" in alice.gsh("ls").ok().out


def test_ssh_to_node_joined_via_proxy(cluster: Cluster, node2: Process, alice: Client) -> None:
    res = alice.ssh("root@node2", "hostname")
    assert (res.rc, res.out) == (0, socket.gethostname() + "\n"), res
    # The session really ends on node2's SSH listener, not node1's.
    addr = cluster.node_named("node2")["spec"]["addr"]  # type: ignore[index]
    res = alice.ssh("root@node2", "echo $SSH_CONNECTION")
    assert res.out.split()[2:] == addr.split(":"), res


@pytest.fixture(scope="module")
def used_token(cluster: Cluster) -> str:
    """A token a node (node4) has joined with."""
    token = cluster.token("node")
    cluster.join_node("node4", {"env": "prod"}, token=token, via="auth")
    assert not any(token.startswith(name) for name in _unused_tokens(cluster))
    return token


def test_used_token_cannot_join_again(cluster: Cluster, used_token: str) -> None:
    rc, log = _start_and_wait_exit(cluster, "node5", used_token)
    assert rc != 0
    assert "invalid, expired or already used" in log, log
    assert cluster.node_named("node5") is None
    failures = wait_for("a join.failure event", lambda: [
        e for e in cluster.events("--type=join.failure")
        if "node5" in (e["node"], *e["fields"].get("names", []))])
    assert "already used" in failures[0]["message"]


def test_used_token_fails_with_one_line(cluster: Cluster, used_token: str) -> None:
    rc, log = _start_and_wait_exit(cluster, "node6", used_token)
    assert rc != 0
    assert log.strip().splitlines() == [
        "error: join token is invalid, expired or already used"
    ], log


def test_garbled_token_cannot_join(cluster: Cluster) -> None:
    rc, log = _start_and_wait_exit(cluster, "node7", "not-a-token")
    assert rc != 0
    assert "malformed join token" in log, log
    assert cluster.node_named("node7") is None


def test_garbled_token_fails_with_one_line(cluster: Cluster) -> None:
    rc, log = _start_and_wait_exit(cluster, "node8", "x" * 65)
    assert rc != 0
    lines = log.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "token" in lines[0], log


def test_bogus_token_of_right_shape_is_refused(cluster: Cluster) -> None:
    """Right pin (so the cluster is trusted), unknown secret: the auth refuses it."""
    real = cluster.token("node")
    bogus = "A" * 22 + real[22:]
    rc, log = _start_and_wait_exit(cluster, "node9", bogus)
    assert rc != 0
    assert "invalid, expired or already used" in log, log
    assert cluster.node_named("node9") is None


def test_token_with_wrong_pin_is_not_sent(cluster: Cluster) -> None:
    real = cluster.token("node")
    wrong_pin = real[:22] + "B" * 43
    rc, log = _start_and_wait_exit(cluster, "node10", wrong_pin)
    assert rc != 0
    assert "does not match the pin" in log, log
    # The token never reached the auth, so it is still unused.
    assert any(real.startswith(name) for name in _unused_tokens(cluster))


def test_a_trusted_cluster_token_cannot_join_a_node(cluster: Cluster) -> None:
    """The converse of a node token used for a trusted-cluster join: refused by the auth,
    audited, and the token is not spent."""
    token = cluster.token("trusted_cluster")
    rc, log = _start_and_wait_exit(cluster, "node11", token)
    assert rc != 0
    assert log.strip().splitlines() == ["error: a trusted_cluster token cannot join a node"], log
    assert cluster.node_named("node11") is None
    assert any(token.startswith(name) for name in _unused_tokens(cluster))
    failures = wait_for("a join.failure event", lambda: [
        e for e in cluster.events("--type=join.failure")
        if "node11" in (e["node"], *e["fields"].get("names", []))])
    assert failures[0]["message"] == "a trusted_cluster token cannot join a node"
