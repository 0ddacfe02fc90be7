"""`gatehouse demo`: the seed's three clusters, for real, on loopback.

A root ``sso.example.com`` and two leaves ``us-east-1a`` and ``us-east-1b``,
each its own `gatehouse start` process (auth + proxy + one node), joined with
real trusted-cluster tokens through the same commands an operator types, and a
root user who reaches every node. It drives the real CLIs through the process
harness and leaves their state in one directory so the printed commands work
afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType

from gatehouse.errors import GatehouseError
from gatehouse.process.harness import Client, Cluster, in_parallel, join, stop_all

__all__ = ["CLUSTERS", "run_demo"]

ROOT = "sso.example.com"
LEAVES = ("us-east-1a", "us-east-1b")
CLUSTERS = (ROOT, *LEAVES)
USER = "alice"

# The role maps of the seed's example, one flavour per leaf.
ROLE_MAPS = {
    "us-east-1a": "{remote: access, local: [access]}",
    "us-east-1b": ('{remote: "^acc(.*)$", local: [access]}\n'
                   '{remote: "*", local: [visitor]}'),
}
VISITOR_ROLE = """kind: role
version: v1
metadata: {name: visitor, description: "See the nodes, log in nowhere"}
spec:
  allow:
    node_labels: {"*": "*"}
    rules: [{resources: [node], verbs: [list, read]}]
"""


class _Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        # The demo user's gsh profile: $GATEHOUSE_HOME if set, else inside the demo directory
        # (so that the demo never replaces a real ~/.gatehouse profile).
        self.home = Path(os.environ.get("GATEHOUSE_HOME") or base / "home")
        self.clusters = {name: Cluster(base / name, name=name, labels={"cluster": name})
                         for name in CLUSTERS}

    def start(self) -> None:
        in_parallel(*(c.start for c in self.clusters.values()))

    def join_leaves(self) -> None:
        root = self.clusters[ROOT]
        for name in LEAVES:
            leaf = self.clusters[name]
            if name == "us-east-1b":
                leaf.create(VISITOR_ROLE).ok()
            resource = join(leaf, root, ROLE_MAPS[name])
            (leaf.workdir / "trusted_cluster.yaml").write_text(resource)

    def add_user(self, password: str) -> None:
        root = self.clusters[ROOT]
        root.add_user(USER, roles="access", logins="root", password=password)
        self.home.mkdir(parents=True, exist_ok=True)
        Client(self.home, root.proxy).login(USER, password).ok()

    def next_steps(self, password: str) -> str:
        root = self.clusters[ROOT]
        env = f"export GATEHOUSE_HOME={self.home}"
        return "\n".join([
            f"gatehouse demo: root {ROOT} (proxy {root.proxy}) with leaves "
            f"{', '.join(LEAVES)}, joined over reverse tunnels.",
            f"user {USER} (password {password}) is logged in. Try, in another terminal:",
            f"  {env}",
            "  gsh clusters",
            "  gsh ls --all",
            "  gsh ssh --cluster=us-east-1a root@node1 'hostname; id -un'",
            "  gsh login us-east-1b && gsh ssh root@node1",
            "  gsh config > ssh_config && ssh -F ssh_config root@node1.us-east-1b 'echo hi'",
            f"  gatectl -c {root.config} get rc",
            f"  gatectl -c {self.clusters['us-east-1a'].config} events --type=session.start",
            f"  gatectl -c {self.clusters['us-east-1b'].config} get trusted_cluster "
            "--format=yaml",
            f"state and logs: {self.base}; Ctrl-C stops the three clusters.",
        ])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: run_demo's finally stops the clusters


def run_demo(base: Path) -> None:
    """Start the three clusters, join them, log the demo user in; serve until Ctrl-C or
    SIGTERM. Either, at any point (also while starting), stops every process it started:
    it needs no terminal (a script runs it in the background and sends SIGTERM)."""
    if base.exists() and any(base.iterdir()):
        raise GatehouseError(f"{base} is not empty: remove it or pass another --dir")
    demo = _Demo(base)
    password = "demo-" + secrets.token_urlsafe(12)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print("starting three clusters ...", file=sys.stderr, flush=True)
        demo.start()
        print("joining the leaves to the root ...", file=sys.stderr, flush=True)
        demo.join_leaves()
        demo.add_user(password)
        print(demo.next_steps(password), flush=True)
        while True:
            signal.pause()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # stopping is bounded: let it finish
            signal.signal(sig, signal.SIG_IGN)
        stop_all(final=True)  # every process this program started; none may start after
