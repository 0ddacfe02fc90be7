"""No ingress: the leaf lives in a network namespace that can dial out to the root but
accepts no connection from it, and root users still reach the leaf's node.

The leaf's auth, proxy and node listen on every address of their namespace; a
firewall in the namespace drops every new inbound connection on its link. The
test shows the root's side cannot open TCP to any leaf port, then joins the
leaf and runs a command on its node as a root user.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import Client, connection, wait_for, wait_offline, wait_online
from tests.integration.netns import (
    LeafInNamespace,
    Link,
    RootOnLink,
    join_over,
    linked_namespace,
)

ROOT, LEAF = "sso.example.com", "us-east-1a"
MAP = "{remote: access, local: [access]}"

# As root or with CI=true, a skip of these tests fails the run (tests/conftest.py).
pytestmark = pytest.mark.needs_netns


@pytest.fixture
def link() -> Iterator[Link]:
    """A namespace for the leaf that accepts no connection from outside."""
    with linked_namespace(ingress=False) as made:
        yield made


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.5):
            return True
    except OSError:
        return False


def test_leaf_without_ingress_is_reached_through_its_tunnel(link: Link, tmp_path: Path) -> None:
    root = RootOnLink.on(link, tmp_path / "root", ROOT)
    leaf = LeafInNamespace.on(link, tmp_path / "leaf", LEAF, host="0.0.0.0")
    try:
        ports = (leaf.auth_port, leaf.proxy_port, leaf.ssh_port)
        # From the root's side, not one leaf port accepts a connection...
        for port in ports:
            assert not _connects(link.leaf_ip, port), f"leaf port {port} is reachable from the root"
        # ...while the leaf's services are up, and the leaf can reach the root.
        assert leaf.gatectl("status").rc == 0

        join_over(link, leaf, root, MAP)

        root.add_user("alice", roles="access", logins="root")
        home = tmp_path / "alice"
        home.mkdir()
        alice = Client(home, root.proxy)
        alice.login("alice").ok()
        wait_for("the leaf node through the tunnel", lambda: alice.gsh(
            "ssh", f"--cluster={LEAF}", "root@node1", "echo across").out == "across\n")
        nodes = alice.gsh("ls", f"--cluster={LEAF}", "--format=json").ok().json()
        assert nodes[0]["spec"]["addr"] == f"127.0.0.1:{leaf.ssh_port}"  # only meaningful inside

        # Still no way in, with the tunnel up.
        for port in ports:
            assert not _connects(link.leaf_ip, port)
    finally:
        leaf.stop()
        root.stop()


def test_a_silently_lost_tunnel_goes_offline_within_seconds_and_comes_back(
    link: Link, tmp_path: Path,
) -> None:
    root = RootOnLink.on(link, tmp_path / "root", ROOT)
    leaf = LeafInNamespace.on(link, tmp_path / "leaf", LEAF)
    try:
        join_over(link, leaf, root, MAP)

        # The link goes dark: neither end hears a word, so only liveness checks can tell
        # (the kernel's TCP keepalive: about 11 s; the root's heartbeats: minutes).
        link.cut()
        wait_offline(root, LEAF, timeout=20)
        assert connection(root, LEAF) == "offline"

        # The link comes back: the leaf, which gave up on its half of the tunnel too,
        # dials again by itself.
        link.heal()
        wait_online(root, LEAF, timeout=45)
    finally:
        leaf.stop()
        root.stop()
