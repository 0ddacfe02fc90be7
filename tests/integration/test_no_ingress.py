"""No ingress: the leaf lives in a network namespace that can dial out to the root but
accepts no connection from it, and root users still reach the leaf's node.

The leaf's auth, proxy and node listen on every address of their namespace; a
firewall in the namespace drops every new inbound connection on its link. The
test shows the root's side cannot open TCP to any leaf port, then joins the
leaf and runs a command on its node as a root user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import (
    GATECTL,
    GATEHOUSE,
    Client,
    Cluster,
    Process,
    Result,
    connection,
    free_ports,
    run,
    stop_all,
    trusted_cluster_yaml,
    wait_for,
    wait_offline,
    wait_online,
    write_yaml,
)

ROOT, LEAF = "sso.example.com", "us-east-1a"

# As root or with CI=true, a skip of these tests fails the run (tests/conftest.py).
pytestmark = pytest.mark.needs_netns


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _can_make_namespaces() -> str:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip") or not shutil.which("iptables"):
        return "needs iproute2 and iptables (scripts/setup.sh installs them)"
    probe = f"ghprobe{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace here: {exc.stderr.decode().strip()}"
    _ip("netns", "del", probe)
    return ""


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """(namespace, root-side address, leaf-side address) joined by a veth pair."""
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"ghleaf{tag}", f"ghr{tag}", f"ghl{tag}"
    octet = 16 + secrets.randbelow(200)
    root_ip, leaf_ip = f"10.{octet}.77.1", f"10.{octet}.77.2"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{root_ip}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{leaf_ip}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", root_ip)
        # The leaf's firewall: replies to its own connections pass, nothing new comes in.
        for rule in (["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
                     ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                      "-j", "ACCEPT"],
                     ["-A", "INPUT", "-j", "DROP"]):
            subprocess.run(["ip", "netns", "exec", ns, "iptables", *rule], check=True,
                           capture_output=True, timeout=10)
        yield ns, root_ip, leaf_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class RootOnLink(Cluster):
    """The root, with its proxy also on the link address the leaf dials."""

    link_ip = ""

    def settings(self) -> dict[str, Any]:
        data = super().settings()
        data["proxy_service"]["listen_addr"] = f"0.0.0.0:{self.proxy_port}"
        data["proxy_service"]["public_addr"] = f"{self.link_ip}:{self.proxy_port}"
        return data


def _start_leaf(ns: str, config: Path) -> Process:
    """The leaf's `gatehouse start`, inside the network namespace; up once this returns."""
    leaf = Process("leaf", ["ip", "netns", "exec", ns, str(GATEHOUSE), "start", "-c",
                            str(config)], config.parent / "gatehouse.log", cwd=config.parent)
    leaf.start().wait_up()
    return leaf


def _leaf_gatectl(ns: str, config: Path, *args: str, input: str | None = None) -> Result:
    return run(["ip", "netns", "exec", ns, str(GATECTL), "-c", str(config), *args], input=input)


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.5):
            return True
    except OSError:
        return False


def _root_on_link(root_ip: str, workdir: Path) -> RootOnLink:
    root = RootOnLink(workdir, name=ROOT)
    root.link_ip = root_ip
    root.start()
    return root


def _leaf_config(leaf_dir: Path, host: str) -> tuple[Path, tuple[int, int, int]]:
    """A one-process leaf listening on ``host``; (config, (auth, proxy, ssh) ports)."""
    leaf_dir.mkdir()
    auth, proxy, ssh = free_ports(3)
    config = write_yaml(leaf_dir / "gatehouse.yaml", {
        "version": "v1",
        "gatehouse": {"nodename": "node1", "data_dir": str(leaf_dir / "data")},
        "auth_service": {"enabled": True, "cluster_name": LEAF,
                         "listen_addr": f"{host}:{auth}"},
        "proxy_service": {"enabled": True, "listen_addr": f"{host}:{proxy}"},
        "ssh_service": {"enabled": True, "listen_addr": f"{host}:{ssh}"},
    })
    return config, (auth, proxy, ssh)


def _join(ns: str, config: Path, root: Cluster, root_ip: str) -> None:
    """Join the leaf (in ``ns``) to the root over the link, and wait for its tunnel."""
    token = root.token("trusted_cluster")
    resource = trusted_cluster_yaml(root, token, "{remote: access, local: [access]}",
                                    proxy_addr=f"{root_ip}:{root.proxy_port}")
    _leaf_gatectl(ns, config, "create", "-", input=resource).ok()
    wait_online(root, LEAF, timeout=20)


def test_leaf_without_ingress_is_reached_through_its_tunnel(
    namespace: tuple[str, str, str], tmp_path: Path,
) -> None:
    ns, root_ip, leaf_ip = namespace
    root = _root_on_link(root_ip, tmp_path / "root")
    config, (auth, proxy, ssh) = _leaf_config(tmp_path / "leaf", "0.0.0.0")
    leaf = _start_leaf(ns, config)
    try:
        # From the root's side, not one leaf port accepts a connection...
        for port in (auth, proxy, ssh):
            assert not _connects(leaf_ip, port), f"leaf port {port} is reachable from the root"
        # ...while the leaf's services are up, and the leaf can reach the root.
        assert _leaf_gatectl(ns, config, "status").rc == 0

        _join(ns, config, root, root_ip)

        root.add_user("alice", roles="access", logins="root")
        home = tmp_path / "alice"
        home.mkdir()
        alice = Client(home, root.proxy)
        alice.login("alice").ok()
        wait_for("the leaf node through the tunnel", lambda: alice.gsh(
            "ssh", f"--cluster={LEAF}", "root@node1", "echo across").out == "across\n")
        nodes = alice.gsh("ls", f"--cluster={LEAF}", "--format=json").ok().json()
        assert nodes[0]["spec"]["addr"] == f"127.0.0.1:{ssh}"  # only meaningful inside

        # Still no way in, with the tunnel up.
        for port in (auth, proxy, ssh):
            assert not _connects(leaf_ip, port)
    finally:
        stop_all([leaf])
        root.stop()


def _iptables(ns: str, action: str, root_ip: str) -> None:
    """Add (-I) or delete (-D) a silent black hole between the leaf and the root: every
    packet dropped both ways, no FIN or RST ever sent, as when a link is cut."""
    for rule in (["INPUT", "-s", root_ip, "-j", "DROP"], ["OUTPUT", "-d", root_ip, "-j", "DROP"]):
        subprocess.run(["ip", "netns", "exec", ns, "iptables", action, *rule], check=True,
                       capture_output=True, timeout=10)


def test_a_silently_lost_tunnel_goes_offline_within_seconds_and_comes_back(
    namespace: tuple[str, str, str], tmp_path: Path,
) -> None:
    ns, root_ip, _ = namespace
    root = _root_on_link(root_ip, tmp_path / "root")
    config, _ = _leaf_config(tmp_path / "leaf", "127.0.0.1")
    leaf = _start_leaf(ns, config)
    try:
        _join(ns, config, root, root_ip)

        # The link goes dark: neither end hears a word, so only liveness checks can tell
        # (the kernel's TCP keepalive: about 11 s; the root's heartbeats: minutes).
        _iptables(ns, "-I", root_ip)
        wait_offline(root, LEAF, timeout=20)
        assert connection(root, LEAF) == "offline"

        # The link comes back: the leaf, which gave up on its half of the tunnel too,
        # dials again by itself.
        _iptables(ns, "-D", root_ip)
        wait_online(root, LEAF, timeout=45)
    finally:
        stop_all([leaf])
        root.stop()
