"""`gatehouse demo`: the seed's three clusters, for real, on loopback.

A root ``sso.example.com`` and two leaves ``us-east-1a`` and ``us-east-1b``,
each its own `gatehouse start` process (auth + proxy + one node), joined with
real trusted-cluster tokens through the same commands an operator types, and a
root user who reaches every node. It drives the real CLIs and leaves their
state in one directory so the printed commands work afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gatehouse.errors import ConnectionProblem, GatehouseError

__all__ = ["CLUSTERS", "run_demo"]

ROOT = "sso.example.com"
LEAVES = ("us-east-1a", "us-east-1b")
CLUSTERS = (ROOT, *LEAVES)
USER = "alice"

# The role maps of the seed's example, one flavour per leaf.
ROLE_MAPS = {
    "us-east-1a": '    - {remote: access, local: [access]}\n',
    "us-east-1b": ('    - {remote: "^acc(.*)$", local: [access]}\n'
                   '    - {remote: "*", local: [visitor]}\n'),
}
VISITOR_ROLE = """kind: role
version: v1
metadata: {name: visitor, description: "See the nodes, log in nowhere"}
spec:
  allow:
    node_labels: {"*": "*"}
    rules: [{resources: [node], verbs: [list, read]}]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Cluster:
    name: str
    config: Path
    proxy: str
    process: subprocess.Popen[bytes] | None = None


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or name)


def _write_config(base: Path, name: str) -> _Cluster:
    data = base / name
    data.mkdir(parents=True, exist_ok=True)
    auth, proxy, ssh = _free_port(), _free_port(), _free_port()
    config = data / "gatehouse.yaml"
    config.write_text(
        "version: v1\n"
        f"gatehouse: {{nodename: node1, data_dir: {data / 'data'}}}\n"
        f"auth_service: {{enabled: true, cluster_name: {name}, listen_addr: 127.0.0.1:{auth}}}\n"
        f"proxy_service: {{enabled: true, listen_addr: 127.0.0.1:{proxy}}}\n"
        f"ssh_service: {{enabled: true, listen_addr: 127.0.0.1:{ssh}, "
        f"labels: {{cluster: {name}}}}}\n"
    )
    return _Cluster(name, config, f"127.0.0.1:{proxy}")


class _Demo:
    def __init__(self, base: Path) -> None:
        self.base = base
        # The demo user's gsh profile: $GATEHOUSE_HOME if set, else inside the demo directory
        # (so that the demo never replaces a real ~/.gatehouse profile).
        self.home = Path(os.environ.get("GATEHOUSE_HOME") or base / "home")
        self.env = {**os.environ, "GATEHOUSE_HOME": str(self.home)}
        self.clusters = {name: _write_config(base, name) for name in CLUSTERS}

    def run(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run([_bin(args[0]), *args[1:]], input=stdin.encode(),
                              capture_output=True, env=self.env, timeout=60, check=False)
        if done.returncode != 0:
            raise ConnectionProblem(f"`{' '.join(args)}` failed: "
                                    f"{done.stderr.decode().strip() or done.returncode}")
        return done.stdout.decode()

    def gatectl(self, cluster: str, *args: str, stdin: str = "") -> str:
        return self.run("gatectl", "-c", str(self.clusters[cluster].config), *args, stdin=stdin)

    def start(self) -> None:
        for c in self.clusters.values():
            log = (c.config.parent / "gatehouse.log").open("wb")
            c.process = subprocess.Popen([_bin("gatehouse"), "start", "-c", str(c.config)],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        for name in CLUSTERS:
            while True:
                try:
                    self.gatectl(name, "status")
                    break
                except ConnectionProblem:
                    proc = self.clusters[name].process
                    if proc is not None and proc.poll() is not None:
                        raise ConnectionProblem(
                            f"cluster {name} exited; see {self.clusters[name].config.parent}"
                            "/gatehouse.log") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)

    def join_leaves(self) -> None:
        for leaf in LEAVES:
            token = self.gatectl(ROOT, "tokens", "add", "--type=trusted_cluster",
                                 "--ttl=15m").splitlines()[0]
            if leaf == "us-east-1b":
                self.gatectl(leaf, "create", "-", stdin=VISITOR_ROLE)
            resource = (
                "kind: trusted_cluster\nversion: v1\n"
                f"metadata: {{name: {ROOT}}}\n"
                "spec:\n  enabled: true\n"
                f"  token: {token}\n  proxy_addr: {self.clusters[ROOT].proxy}\n"
                "  role_map:\n" + ROLE_MAPS[leaf]
            )
            (self.clusters[leaf].config.parent / "trusted_cluster.yaml").write_text(resource)
            self.gatectl(leaf, "create", "-", stdin=resource)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = self.gatectl(ROOT, "get", "rc", "--format=json")
            if status.count('"online"') == len(LEAVES):
                return
            time.sleep(0.3)
        raise ConnectionProblem("the leaves' tunnels did not come up within 30 s")

    def add_user(self, password: str) -> None:
        self.gatectl(ROOT, "users", "add", USER, "--roles=access", "--logins=root")
        self.gatectl(ROOT, "users", "set-password", USER, "--password-stdin",
                     stdin=password + "\n")
        self.run("gsh", "login", f"--proxy={self.clusters[ROOT].proxy}", f"--user={USER}",
                 "--password-stdin", "--insecure", stdin=password + "\n")

    def stop(self) -> None:
        for c in self.clusters.values():
            if c.process is not None and c.process.poll() is None:
                os.killpg(c.process.pid, signal.SIGTERM)
        for c in self.clusters.values():
            if c.process is not None:
                try:
                    c.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(c.process.pid, signal.SIGKILL)

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


def run_demo(base: Path, *, wait: bool = True) -> None:
    """Start the three clusters, join them, log the demo user in; serve until Ctrl-C."""
    if base.exists() and any(base.iterdir()):
        raise GatehouseError(f"{base} is not empty: remove it or pass another --dir")
    demo = _Demo(base)
    password = "demo-" + secrets.token_urlsafe(12)
    try:
        print("starting three clusters ...", file=sys.stderr, flush=True)
        demo.start()
        print("joining the leaves to the root ...", file=sys.stderr, flush=True)
        demo.join_leaves()
        demo.add_user(password)
        print(demo.next_steps(password), flush=True)
        if wait:
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
    finally:
        demo.stop()
