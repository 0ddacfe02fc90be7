"""The Gatehouse side: a root and two leaf clusters on loopback, joined for real.

Each cluster is one process with auth + proxy, and a node process that joins
through the proxy with a token from `gatectl tokens add` (a node is another
host in real life: its SSH work stays off the proxy's event loop). The auth and
the proxy share a process, as in `gatehouse start`'s default; the idle-tunnel
figures (bench/tunnels.py) are therefore of both together. The leaves join the
root with a trusted_cluster token and resource, and their proxies dial the
reverse tunnels; the second leaf records no session (bench/stream.py). The root
also has a node in tunnel mode (it dials the root's proxy, as nodes behind NAT do). A root
user logged in with `gsh login` (its own GATEHOUSE_HOME) reaches every node.
The processes are gatehouse.process.harness's, on ports picked at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gatehouse.process.harness import Client, Cluster, HarnessError, in_parallel, join

ROOT = "bench-root"
LEAF = "bench-leaf"
LEAF_UNRECORDED = "bench-leaf-norec"  # the same as LEAF, with session_recording: off
NODE = "node1"
TUNNEL_NODE = "edge1"  # a node of the root in tunnel mode: it dials the root's proxy
USER = "bench"
LIGHT_LOGIN = "gh-bench"  # see bench/load.py
PASSWORD = "bench-password-0123"  # >= 12 characters
ROLE_MAP = "{remote: access, local: [access]}"


@dataclass
class Gatehouse:
    root: Cluster
    leaf: Cluster
    unrecorded: Cluster  # a second leaf, recording nothing (bench/stream.py)
    client: Client  # the user's gsh, logged in to the root

    def quiet_pids(self) -> list[int]:
        """Every Gatehouse process, to wait for them to go idle between measurements."""
        return [p.pid for c in (self.root, self.leaf, self.unrecorded)
                for p in (c.daemon, *c.nodes.values()) if p is not None]

    @property
    def ssh_config(self) -> Path:
        """`gsh config`'s output, for OpenSSH's ssh -F."""
        return self.client.home / "ssh_config"


def _cluster(name: str, dir: Path, session_recording: str = "node") -> Cluster:
    """Auth + proxy in one process; the node joins as a process of its own."""
    return Cluster(dir, name=name, nodename="proxy", ssh=False,
                   session_recording=session_recording)


def _start(cluster: Cluster, *, tunnel_node: bool = False) -> None:
    cluster.start()
    cluster.join_node(NODE, {"env": "bench"})
    if tunnel_node:
        cluster.join_node(TUNNEL_NODE, {"env": "bench"}, tunnel=True)


def start_gatehouse(dir: Path) -> Gatehouse:
    """Start the clusters, join the leaves, log the user in; check every node answers."""
    root, leaf = _cluster(ROOT, dir / "root"), _cluster(LEAF, dir / "leaf")
    unrecorded = _cluster(LEAF_UNRECORDED, dir / "leaf-norec", session_recording="off")
    in_parallel(partial(_start, root, tunnel_node=True), partial(_start, leaf),
                partial(_start, unrecorded))
    in_parallel(partial(root.add_user, USER, roles="access", logins=f"root,{LIGHT_LOGIN}",
                        password=PASSWORD),
                partial(join, leaf, root, ROLE_MAP), partial(join, unrecorded, root, ROLE_MAP))
    (dir / "home").mkdir()
    gh = Gatehouse(root, leaf, unrecorded, Client(dir / "home", root.proxy))
    gh.client.login(USER, PASSWORD).ok()
    gh.client.openssh_config()

    def answers(cluster: str, node: str = NODE) -> None:
        res = gh.client.gsh("ssh", f"--cluster={cluster}", f"root@{node}", "true")
        if res.rc != 0:
            raise HarnessError(f"`gsh ssh --cluster={cluster} root@{node} true` failed: "
                               f"{(res.err_lines or ['?'])[-1]}")

    in_parallel(*(partial(answers, cluster) for cluster in (ROOT, LEAF, LEAF_UNRECORDED)),
                partial(answers, ROOT, TUNNEL_NODE))
    return gh
