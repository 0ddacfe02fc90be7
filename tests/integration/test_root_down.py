"""Leaf access while the root is down, for real (issue 18, item 3): the root killed -9,
a root user reaches a leaf's node through the leaf's own proxy (published as
`proxy_service.public_addr`, learned at login), gsh says so on stderr; the session is
audited at the leaf and reaches the root's audit exactly once after the root returns.
A leaf that publishes no proxy cannot be reached so, and gsh says that instead.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import Client, Cluster, in_parallel, join, wait_for, wait_online
from tests.integration import direct

ROOT, OPEN, CLOSED = "sso.example.com", "us-east-1a", "us-east-1b"
ROLE_MAP = "{remote: access, local: [access]}"


class PublishedLeaf(Cluster):
    """A leaf whose proxy publishes its address (proxy_service.public_addr)."""

    def settings(self) -> dict[str, Any]:
        data = super().settings()
        data["proxy_service"]["public_addr"] = self.proxy
        return data


class Seed:
    def __init__(self, base: Path) -> None:
        self.root = Cluster(base / "root", name=ROOT)
        self.open = PublishedLeaf(base / "open", name=OPEN)
        self.closed = Cluster(base / "closed", name=CLOSED)

    def clusters(self) -> list[Cluster]:
        return [self.root, self.open, self.closed]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    s = Seed(tmp_path_factory.mktemp("rootdown"))
    try:
        in_parallel(*(c.start for c in s.clusters()))
        join(s.open, s.root, ROLE_MAP)
        join(s.closed, s.root, ROLE_MAP)
        s.root.add_user("alice", roles="access", logins="root")
        yield s
    finally:
        for c in s.clusters():
            c.stop(wait=False)


def _published(root: Cluster, leaf: str) -> str:
    found = root.gatectl("get", f"rc/{leaf}", "--format=json").ok().json()
    return str(found[0]["status"].get("proxy_addr", ""))


def _sessions(cluster: Cluster, leaf: str) -> list[dict[str, Any]]:
    """session.start events of alice on ``leaf``'s node1, as ``cluster``'s audit has them."""
    return [e for e in cluster.events("--type=session.start", "--user=alice")
            if e["cluster"] == leaf and e["node"] == "node1"]


def _kill(cluster: Cluster) -> None:
    assert cluster.daemon is not None
    os.killpg(cluster.daemon.pid, signal.SIGKILL)
    assert cluster.daemon.wait(10) == -signal.SIGKILL


def test_a_root_user_reaches_a_leaf_through_its_own_proxy_while_the_root_is_down(
        seed: Seed, tmp_path: Path) -> None:
    root, leaf = seed.root, seed.open
    # The leaf tells the root where its proxy is; the other leaf publishes none.
    wait_for("the leaf's proxy address at the root",
             lambda: _published(root, OPEN) == leaf.proxy)
    assert _published(root, CLOSED) == ""
    me = Client(tmp_path, root.proxy)
    me.login("alice").ok()
    before = {e["session_id"] for e in _sessions(leaf, OPEN)}

    _kill(root)
    marker = uuid.uuid4().hex
    done = me.gsh("ssh", f"--cluster={OPEN}", "root@node1", "echo", marker)
    assert (done.rc, done.out) == (0, f"{marker}\n"), done
    assert len(done.err_lines) == 1, done
    assert done.err_lines[0].startswith(f"gsh: cannot reach proxy {root.proxy}: "), done
    assert done.err_lines[0].endswith(
        f"; falling back to cluster {OPEN}'s own proxy at {leaf.proxy} "
        "(the root does not answer)"), done
    # Audited at the leaf.
    new = wait_for("the session in the leaf's audit", lambda: [
        e["session_id"] for e in _sessions(leaf, OPEN) if e["session_id"] not in before])
    assert len(new) == 1
    session_id = new[0]

    # A leaf with no public proxy: one clear line, no session.
    refused = me.gsh("ssh", f"--cluster={CLOSED}", "root@node1", "true")
    assert refused.rc == 255
    assert refused.err_lines[-1].endswith(
        f"cannot fall back to cluster {CLOSED}'s own proxy: it published no proxy address "
        "(proxy_service.public_addr) when you last logged in"), refused

    root.restart()
    wait_online(root, OPEN)
    # A session through the root, now back: the leaf forwards its events in order, so
    # once this one's start is at the root, every event before it has been forwarded.
    again = uuid.uuid4().hex
    assert me.gsh("ssh", f"--cluster={OPEN}", "root@node1", "echo", again).ok().err == ""
    wait_for("the later session at the root",
             lambda: {e["session_id"] for e in _sessions(root, OPEN)} - {session_id})
    at_root = [e for e in _sessions(root, OPEN) if e["session_id"] == session_id]
    assert len(at_root) == 1  # exactly once


def test_the_leaf_proxy_takes_the_root_certificate_only_for_its_own_nodes(
        seed: Seed, tmp_path: Path) -> None:
    """A root user at the leaf's proxy: its own nodes (by the leaf's role map), not
    a route onwards to another cluster."""
    assert seed.root.daemon is not None
    if not seed.root.daemon.alive():  # the test before failed with the root down
        seed.root.restart()
    me = Client(tmp_path, seed.root.proxy)
    me.login("alice").ok()
    assert not direct.dial(seed.open.proxy, me.home, "node1", OPEN).refused
    onwards = direct.dial(seed.open.proxy, me.home, "node1", CLOSED)
    assert onwards.reply is not None and onwards.reply.error == (
        f"user alice may not reach cluster {CLOSED}: a user of cluster {ROOT} reaches "
        f"only {OPEN} here")
