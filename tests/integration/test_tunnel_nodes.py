"""Nodes in tunnel mode: no listening socket, reached over the reverse tunnel they hold
to their proxy (ARCHITECTURE §4), as users reach any other node."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatehouse.process.harness import (
    Client,
    Cluster,
    Process,
    in_parallel,
    join,
    stop_all,
    wait_for,
)
from tests.integration.netns import Link, RootOnLink, linked_namespace


@pytest.fixture(scope="module")
def edge(cluster: Cluster) -> Iterator[Process]:
    """A tunnel-mode node joined through the proxy (no ssh_service.listen_addr)."""
    node = cluster.join_node("edge1", {"site": "berlin"}, tunnel=True)
    yield node
    node.stop()


def _edge(cluster: Cluster) -> dict[str, object] | None:
    return cluster.node_named("edge1")


def _connection(cluster: Cluster) -> object:
    node = _edge(cluster)
    return (node or {}).get("status", {}).get("connection")  # type: ignore[union-attr]


def wait_connection(cluster: Cluster, state: str, timeout: float = 15.0) -> None:
    wait_for(f"edge1 {state}", lambda: _connection(cluster) == state, timeout=timeout)


def test_a_tunnel_node_listens_nowhere_and_says_so(cluster: Cluster, edge: Process) -> None:
    assert "(ssh on a tunnel to 127.0.0.1:" in edge.output()
    wait_connection(cluster, "online")
    node = _edge(cluster)
    assert node is not None
    assert node["spec"] == {"hostname": "edge1", "addr": "", "cluster": cluster.name,  # type: ignore[index]
                            "host_id": node["metadata"]["name"], "tunnel": True}  # type: ignore[index]
    listening = _listening_ports(edge.pid)
    assert listening == [], f"the tunnel node listens on {listening}"


def _listening_ports(pid: int) -> list[int]:
    """TCP ports process ``pid`` listens on (from /proc: its sockets in LISTEN state)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(m.group(1))
    ports = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_gsh_ls_shows_the_tunnel(cluster: Cluster, edge: Process, alice: Client) -> None:
    wait_connection(cluster, "online")
    table = alice.gsh("ls").ok().out
    row = next(line for line in table.splitlines() if line.startswith("edge1"))
    assert "⟵ tunnel" in row and "offline" not in row
    nodes = alice.gsh("ls", "site=berlin", "--format=json").ok().json()
    assert [n["spec"]["tunnel"] for n in nodes] == [True]
    got = cluster.gatectl("get", f"node/{nodes[0]['metadata']['name']}").ok().out
    assert "tunnel: true" in got and "connection: online" in got, got


def test_gsh_ssh_reaches_a_tunnel_node(cluster: Cluster, edge: Process, alice: Client) -> None:
    wait_connection(cluster, "online")
    assert alice.gsh("ssh", "root@edge1", "echo over the tunnel").ok().out == \
        "over the tunnel\n"
    # Audited as on any node, with the user's address as the proxy saw it.
    started = cluster.wait_event("the session's start", lambda e: (
        e["event"] == "session.start" and e["node"] == "edge1"))
    assert started["user"] == "alice" and started["remote_addr"].startswith("127.0.0.1:")


def test_openssh_reaches_a_tunnel_node(cluster: Cluster, edge: Process, alice: Client) -> None:
    wait_connection(cluster, "online")
    config = alice.openssh_config()
    res = alice.openssh(config, f"root@edge1.{cluster.name}", "echo via openssh")
    assert res.rc == 0 and res.out == "via openssh\n", res


def test_a_tunnel_down_shows_offline_and_comes_back_by_itself(
        cluster: Cluster, edge: Process, alice: Client) -> None:
    wait_connection(cluster, "online")
    assert cluster.daemon is not None
    cluster.daemon.stop()  # the proxy (with the auth) goes away...
    cluster.restart()  # ...and comes back; the node was not touched
    wait_connection(cluster, "online", timeout=30)  # its backoff is at most 10 s
    wait_for("a session over the new tunnel", lambda: alice.gsh(
        "ssh", "root@edge1", "echo back").out == "back\n")

    edge.stop()  # now the node goes away: its tunnel with it
    started = time.monotonic()
    wait_connection(cluster, "offline", timeout=15)
    assert time.monotonic() - started < 15
    table = alice.gsh("ls").ok().out
    assert "⟵ tunnel (offline)" in next(line for line in table.splitlines()
                                        if line.startswith("edge1"))
    refused = alice.gsh("ssh", "root@edge1", "true")
    assert refused.rc != 0 and "edge1" in refused.err and "offline" in refused.err, refused
    edge.start().wait_up()
    wait_connection(cluster, "online")


def test_removing_a_node_closes_its_tunnel_and_refuses_its_redials(
        cluster: Cluster, alice: Client) -> None:
    node = cluster.join_node("edge2", {"site": "paris"}, tunnel=True)
    try:
        wait_for("edge2 online", lambda: ((cluster.node_named("edge2") or {}).get("status")
                                          or {}).get("connection") == "online")
        host_id = str(cluster.node_named("edge2")["metadata"]["name"])  # type: ignore[index]
        cluster.gatectl("rm", f"node/{host_id}").ok()
        started = time.monotonic()
        wait_for("the tunnel closed", lambda: "closed by the peer: tunnel refused" in
                 node.output(), timeout=2.0, interval=0.05)
        assert time.monotonic() - started <= 2.0
        # The node redials (it backs off, as from any lost tunnel): each is refused, audited.
        denied = cluster.wait_event("a redial refused", lambda e: (
            e["event"] == "access.denied" and e["user"] == host_id
            and e["fields"].get("verb") == "tunnel"))
        assert "not a registered node" in denied["message"]
        wait_for("a second refusal", lambda: node.output().count(
            "closed by the peer: tunnel refused") >= 2, timeout=20)
        assert cluster.node_named("edge2") is None
        refused = alice.gsh("ssh", "root@edge2", "true")
        assert refused.rc != 0 and "edge2" in refused.err, refused
    finally:
        node.stop()


# --- no ingress ------------------------------------------------------------------------------


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.5):
            return True
    except OSError:
        return False


@pytest.mark.needs_netns
def test_a_node_without_ingress_is_reached_over_its_tunnel(tmp_path: Path) -> None:
    """The node lives in a namespace whose firewall drops every inbound connection: the
    proxy's host cannot open TCP to it (not even to a port that listens there), yet gsh
    and OpenSSH reach the node."""
    with linked_namespace(ingress=False) as link:
        cluster = RootOnLink.on(link, tmp_path / "cluster", "test.example.com")
        bait = subprocess.Popen([*link.prefix, sys.executable, "-c", _LISTEN_FOREVER])
        try:
            node = cluster.start_node("walled", cluster.token("node"), {"site": "walled"},
                                      tunnel=True, proxy=f"{link.root_ip}:{cluster.proxy_port}",
                                      prefix=link.prefix)
            node.wait_up()
            # From the proxy's host, nothing in the namespace accepts a connection...
            wait_for("the bait listening", lambda: bait.poll() is None and _listening_in(link))
            assert not _connects(link.leaf_ip, BAIT_PORT), "the namespace takes connections"
            # ...while the node holds its tunnel, and users reach it over it.
            wait_for("walled online", lambda: ((cluster.node_named("walled") or {})
                                               .get("status") or {}).get("connection") == "online")
            cluster.add_user("alice", roles="access", logins="root")
            home = tmp_path / "alice"
            home.mkdir()
            alice = Client(home, cluster.proxy)
            alice.login("alice").ok()
            assert alice.gsh("ssh", "root@walled", "echo inside").ok().out == "inside\n"
            res = alice.openssh(alice.openssh_config(), f"root@walled.{cluster.name}",
                                "echo openssh inside")
            assert res.rc == 0 and res.out == "openssh inside\n", res
            assert not _connects(link.leaf_ip, BAIT_PORT)  # still no way in
        finally:
            bait.kill()
            bait.wait(10)
            cluster.stop()


@pytest.mark.needs_netns
def test_a_silently_cut_node_goes_offline_within_15_s_and_comes_back(tmp_path: Path) -> None:
    """The link to the node goes dark (no FIN, no RST): the proxy's kernel keepalive finds
    the dead tunnel, the node shows offline within 15 s; the link back, the node redials
    by itself."""
    with linked_namespace(ingress=False) as link:
        cluster = RootOnLink.on(link, tmp_path / "cluster", "test.example.com")
        try:
            node = cluster.start_node("walled", cluster.token("node"), {}, tunnel=True,
                                      proxy=f"{link.root_ip}:{cluster.proxy_port}",
                                      prefix=link.prefix)
            node.wait_up()

            def connection() -> object:
                return ((cluster.node_named("walled") or {}).get("status") or {}).get(
                    "connection")

            wait_for("walled online", lambda: connection() == "online")
            link.cut()
            wait_for("walled offline", lambda: connection() == "offline", timeout=15)
            link.heal()
            wait_for("walled online again", lambda: connection() == "online", timeout=45)
        finally:
            cluster.stop()


BAIT_PORT = 3022  # a node's usual SSH port, listening inside the namespace

_LISTEN_FOREVER = f"""
import socket, time
s = socket.create_server(("0.0.0.0", {BAIT_PORT}))
time.sleep(120)
"""


def _listening_in(link: Link) -> bool:
    """Whether the bait listens, seen from inside the namespace (where loopback is open)."""
    probe = f"import socket; socket.create_connection(('127.0.0.1', {BAIT_PORT}), 1)"
    done = subprocess.run([*link.prefix, sys.executable, "-c", probe], capture_output=True,
                          timeout=10)
    return done.returncode == 0


# --- a leaf's tunnel node, from the root -------------------------------------------------------


def test_a_leafs_tunnel_node_is_reached_from_the_root(tmp_path: Path) -> None:
    """gsh -> root proxy -> the leaf's tunnel -> leaf proxy -> the node's tunnel."""
    root = Cluster(tmp_path / "root", name="sso.example.com")
    leaf = Cluster(tmp_path / "leaf", name="us-east-1a", ssh=False)
    try:
        in_parallel(root.start, leaf.start)
        join(leaf, root, "{remote: access, local: [access]}")
        node = leaf.join_node("edge9", {"site": "leaf"}, tunnel=True)
        assert "tunnel to" in node.output()
        root.add_user("alice", roles="access", logins="root")
        home = tmp_path / "alice"
        home.mkdir()
        alice = Client(home, root.proxy)
        alice.login("alice").ok()
        wait_for("the leaf's tunnel node from the root", lambda: alice.gsh(
            "ssh", "--cluster=us-east-1a", "root@edge9", "echo two tunnels").out ==
            "two tunnels\n")
        [listed] = alice.gsh("ls", "--cluster=us-east-1a", "--format=json").ok().json()
        assert (listed["spec"]["hostname"], listed["spec"]["tunnel"]) == ("edge9", True)
        assert listed["status"]["connection"] == "online"
    finally:
        stop_all([*leaf.nodes.values(), *(c.daemon for c in (root, leaf) if c.daemon)])
