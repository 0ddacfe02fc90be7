"""A leaf cluster in a network namespace of its own, linked to the root by a veth pair:
what the no-ingress and partition tests share.

``linked_namespace`` makes the namespace and its link (and removes both); the leaf's
processes and commands run in it through the harness's ``prefix``. The root's proxy
also listens on the link's address, which the leaf dials. ``Link.cut`` turns the link
into a silent black hole and ``Link.heal`` undoes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gatehouse.process.harness import Cluster, join

__all__ = ["LeafInNamespace", "Link", "RootOnLink", "join_over", "linked_namespace"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _iptables(ns: str, *rule: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "iptables", *rule], check=True,
                   capture_output=True, timeout=10)


def _unavailable() -> str:
    """Why network namespaces cannot be made here ("" when they can)."""
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


_SUBNETS_LOCK = Path("/run/gatehouse-test-subnets.lock")


def _claim_subnet(host_if: str) -> tuple[str, str]:
    """A /24 in 10.0.0.0/8 that no interface of the host is on, its .1 given to ``host_if``
    (the root's side): returns (root_ip, leaf_ip). Test runs in parallel (xdist workers,
    other checkouts) make links at once: a lock held from the choice to the assignment,
    and a random pick, keep their subnets apart (two links on one subnet misroute)."""
    with _SUBNETS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], check=True,
                               capture_output=True, text=True, timeout=10).stdout
        taken = {str(ipaddress.ip_interface(word).network) for word in shown.split()
                 if "/" in word and word[0].isdigit()}
        for _attempt in range(100):
            net = ipaddress.ip_network(f"10.{16 + secrets.randbelow(224)}."
                                       f"{secrets.randbelow(256)}.0/24")
            if str(net) not in taken:
                break
        else:
            raise RuntimeError(f"no free /24 in 10.0.0.0/8 for a test link: {sorted(taken)}")
        root_ip, leaf_ip = str(net[1]), str(net[2])
        _ip("addr", "add", f"{root_ip}/24", "dev", host_if)
    return root_ip, leaf_ip


@dataclass(frozen=True)
class Link:
    """The namespace ``ns``, reached from the root's side at ``leaf_ip``; the root's side
    is ``root_ip``."""

    ns: str
    root_ip: str
    leaf_ip: str

    @property
    def prefix(self) -> tuple[str, ...]:
        """Runs a command inside the namespace (it execs the command)."""
        return ("ip", "netns", "exec", self.ns)

    def cut(self) -> None:
        """A silent black hole between the leaf and the root: every packet dropped both
        ways, no FIN or RST ever sent, as when a link is cut."""
        self._black_hole("-I")

    def heal(self) -> None:
        self._black_hole("-D")

    def _black_hole(self, action: str) -> None:
        _iptables(self.ns, action, "INPUT", "-s", self.root_ip, "-j", "DROP")
        _iptables(self.ns, action, "OUTPUT", "-d", self.root_ip, "-j", "DROP")


@contextlib.contextmanager
def linked_namespace(*, ingress: bool) -> Iterator[Link]:
    """A namespace linked to this one; without ``ingress``, a firewall in it lets replies
    to its own connections in and nothing new. Skips where namespaces cannot be made
    (tests/conftest.py turns that skip into a failure as root)."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"ghleaf{tag}", f"ghr{tag}", f"ghl{tag}"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        root_ip, leaf_ip = _claim_subnet(host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{leaf_ip}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", root_ip)
        if not ingress:
            _iptables(ns, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
            _iptables(ns, "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                      "-j", "ACCEPT")
            _iptables(ns, "-A", "INPUT", "-j", "DROP")
        yield Link(ns, root_ip, leaf_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class RootOnLink(Cluster):
    """The root, with its proxy also on the link's address, which the leaf dials."""

    link: Link | None = None

    def settings(self) -> dict[str, Any]:
        assert self.link is not None, "set the link before starting the root"
        data = super().settings()
        data["proxy_service"]["listen_addr"] = f"0.0.0.0:{self.proxy_port}"
        data["proxy_service"]["public_addr"] = f"{self.link.root_ip}:{self.proxy_port}"
        return data

    @classmethod
    def on(cls, link: Link, workdir: Path, name: str) -> RootOnLink:
        """Started, on ``link``."""
        root = cls(workdir, name=name)
        root.link = link
        root.start()
        return root


class LeafInNamespace(Cluster):
    """A one-process leaf run inside a namespace, its services listening on ``host``."""

    host = "127.0.0.1"

    def settings(self) -> dict[str, Any]:
        data = super().settings()
        for service in ("auth_service", "proxy_service", "ssh_service"):
            port = data[service]["listen_addr"].rpartition(":")[2]
            data[service]["listen_addr"] = f"{self.host}:{port}"
        return data

    @classmethod
    def on(cls, link: Link, workdir: Path, name: str, *, host: str = "127.0.0.1"
           ) -> LeafInNamespace:
        """Started, inside ``link``'s namespace, listening on ``host``."""
        leaf = cls(workdir, name=name, prefix=link.prefix)
        leaf.host = host
        leaf.start()
        return leaf


def join_over(link: Link, leaf: Cluster, root: Cluster, role_map: str) -> None:
    """Join ``leaf`` (in the namespace) to ``root`` over the link; wait for its tunnel."""
    join(leaf, root, role_map, proxy_addr=f"{link.root_ip}:{root.proxy_port}")
