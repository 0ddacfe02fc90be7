"""The Gatehouse side: a root and a leaf cluster on loopback, joined for real.

Each cluster is one process with auth + proxy, and a node process that joins
through the proxy with a token from `gatectl tokens add` (a node is another
host in real life: its SSH work stays off the proxy's event loop). The auth and
the proxy share a process, as in `gatehouse start`'s default; the idle-tunnel
figures (bench/tunnels.py) are therefore of both together. The leaf joins the root with a
trusted_cluster token and resource, and its proxy dials the reverse tunnel.
A root user logged in with `gsh login` (its own GATEHOUSE_HOME) reaches both
nodes. Ports are picked at run time; every process is a `gatehouse start -c`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from bench.procs import BIN, BenchError, Daemon, Result, base_env, free_ports, run, wait_for

ROOT = "bench-root"
LEAF = "bench-leaf"
LEAF_UNRECORDED = "bench-leaf-norec"  # the same as LEAF, with session_recording: off
NODE = "node1"
USER = "bench"
LIGHT_LOGIN = "gh-bench"  # see bench/load.py
PASSWORD = "bench-password-0123"  # >= 12 characters
READY = 30.0


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Cluster:
    """One cluster's processes; ``admin`` is the config gatectl -c uses (the auth's)."""

    name: str
    dir: Path
    auth_addr: str = ""
    proxy_addr: str = ""
    admin: Path = Path()
    session_recording: str = "node"
    daemons: dict[str, Daemon] = field(default_factory=dict)

    def gatectl(self, *args: str, input: str | None = None) -> Result:
        return run([str(BIN / "gatectl"), "-c", str(self.admin), *args], input=input)

    def start_daemon(self, role: str, config: dict[str, Any]) -> Daemon:
        path = _write(self.dir / f"{role}.yaml", {"version": "v1", **config})
        starts = sum(1 for _ in self.dir.glob(f"{role}*.log"))  # a restart gets a new log
        daemon = Daemon(f"{self.name} {role}", [str(BIN / "gatehouse"), "start", "-c", str(path)],
                        self.dir / f"{role}{starts or ''}.log", cwd=self.dir)
        self.daemons[role] = daemon
        return daemon

    def wait_up(self, role: str) -> None:
        daemon = self.daemons[role]
        daemon.wait_ready("its 'is up' line", lambda: " is up (" in daemon.log_text(), READY)

    def token(self, kind: str) -> str:
        return self.gatectl("tokens", "add", f"--type={kind}").check().out.splitlines()[0]

    def start_main(self) -> None:
        """The auth + proxy process (ports picked now; again if one was taken meanwhile)."""
        for attempt in range(3):
            auth_port, proxy_port = free_ports(2)
            self.auth_addr = f"127.0.0.1:{auth_port}"
            self.proxy_addr = f"127.0.0.1:{proxy_port}"
            self.admin = self.dir / "main.yaml"
            daemon = self.start_daemon("main", {
                "gatehouse": {"nodename": "proxy", "data_dir": str(self.data_dir)},
                "auth_service": {"enabled": True, "cluster_name": self.name,
                                 "listen_addr": self.auth_addr,
                                 "session_recording": self.session_recording},
                "proxy_service": {"enabled": True, "listen_addr": self.proxy_addr},
            })
            try:
                self.wait_main()
                return
            except BenchError:
                if attempt == 2 or daemon.alive() or "already in use" not in daemon.log_text():
                    raise
                daemon.wait_stopped()

    def wait_main(self) -> None:
        self.wait_up("main")
        wait_for(f"{self.name}: gatectl status", lambda: self.gatectl("status").rc == 0, READY)

    def stop_main(self) -> None:
        self.daemons["main"].stop()

    def restart_main(self) -> None:
        """Start the auth + proxy process again, from the same config and data."""
        self.start_daemon("main", yaml.safe_load(self.admin.read_text()))
        self.wait_main()

    @property
    def data_dir(self) -> Path:
        return self.dir / "auth-data"

    @property
    def backend_path(self) -> Path:
        return self.data_dir / "backend.sqlite"

    def start_node(self) -> None:
        """A node-only process that joins through the proxy with a node token."""
        (port,) = free_ports(1)
        self.start_daemon("node", {
            "gatehouse": {"nodename": NODE, "data_dir": str(self.dir / "node-data"),
                          "join_token": self.token("node"), "proxy_server": self.proxy_addr},
            "ssh_service": {"enabled": True, "listen_addr": f"127.0.0.1:{port}",
                            "labels": {"env": "bench"}},
        })

@dataclass
class Gatehouse:
    root: Cluster
    leaf: Cluster
    unrecorded: Cluster  # a second leaf, recording nothing (bench/stream.py)
    home: Path  # the user's GATEHOUSE_HOME

    def quiet_pids(self) -> list[int]:
        """Every Gatehouse process, to wait for them to go idle between measurements."""
        return [d.pid for c in (self.root, self.leaf, self.unrecorded)
                for d in c.daemons.values()]

    def env(self) -> dict[str, str]:
        return base_env(GATEHOUSE_HOME=str(self.home), HOME=str(self.home))

    @property
    def gsh_path(self) -> Path:
        return BIN / "gsh"

    def gsh(self, *args: str, timeout: float = 60.0) -> Result:
        return run([str(self.gsh_path), *args], env=self.env(), timeout=timeout)

    @property
    def ssh_config(self) -> Path:
        return self.home / "ssh_config"


def _start_root(root: Cluster) -> None:
    root.start_main()
    root.start_node()
    root.wait_up("node")  # a node says it is up once its first heartbeat registered it
    root.gatectl("users", "add", USER, "--roles=access", f"--logins=root,{LIGHT_LOGIN}").check()
    root.gatectl("users", "set-password", USER, "--password-stdin",
                 input=PASSWORD + "\n").check()


def _start_leaf(leaf: Cluster) -> None:
    leaf.start_main()
    leaf.start_node()
    leaf.wait_up("node")


def in_parallel(*jobs: Any) -> None:
    """Run (function, argument) jobs in threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(fn: Any, arg: Any) -> None:
        try:
            fn(arg)
        except BaseException as exc:  # reported below, in this thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=job, daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def wait_leaf_online(root: Cluster, leaf: str) -> None:
    def online() -> bool:
        res = root.gatectl("get", f"rc/{leaf}", "--format=json")
        return res.rc == 0 and json.loads(res.out)[0]["status"]["connection"] == "online"

    wait_for(f"{leaf} online at the root", online, READY, interval=0.2)


def _join(root: Cluster, leaf: Cluster) -> None:
    token = root.token("trusted_cluster")
    leaf.gatectl("create", "-", input=yaml.safe_dump({
        "kind": "trusted_cluster", "version": "v1", "metadata": {"name": ROOT},
        "spec": {"enabled": True, "token": token, "proxy_addr": root.proxy_addr,
                 "role_map": [{"remote": "access", "local": ["access"]}]},
    })).check()
    wait_leaf_online(root, leaf.name)


def start_gatehouse(dir: Path) -> Gatehouse:
    """Start both clusters, join the leaf, log the user in; check both nodes answer."""
    root, leaf = Cluster(ROOT, dir / "root"), Cluster(LEAF, dir / "leaf")
    unrecorded = Cluster(LEAF_UNRECORDED, dir / "leaf-norec", session_recording="off")
    for c in (root, leaf, unrecorded):
        c.dir.mkdir(parents=True)
    in_parallel((_start_root, root), (_start_leaf, leaf), (_start_leaf, unrecorded))
    in_parallel((partial(_join, root), leaf), (partial(_join, root), unrecorded))
    gh = Gatehouse(root, leaf, unrecorded, dir / "home")
    gh.home.mkdir()
    run([str(BIN / "gsh"), "login", f"--proxy={root.proxy_addr}", f"--user={USER}",
         "--password-stdin", "--insecure"], env=gh.env(), input=PASSWORD + "\n").check()
    gh.ssh_config.write_text(gh.gsh("config").check().out)

    def answers(cluster: str) -> None:
        res = gh.gsh("ssh", f"--cluster={cluster}", f"root@{NODE}", "true")
        if res.rc != 0:
            raise BenchError(f"`gsh ssh --cluster={cluster} root@{NODE} true` failed: "
                             f"{(res.err.strip().splitlines() or ['?'])[-1]}")

    in_parallel(*((answers, cluster) for cluster in (ROOT, LEAF, LEAF_UNRECORDED)))
    return gh
