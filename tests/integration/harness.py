"""Real Gatehouse processes on loopback, driven through gatectl, gsh and OpenSSH's ssh.

A ``Cluster`` is one ``gatehouse start -c FILE`` process running auth, proxy and
ssh service on ports picked at run time; ``Cluster.join_node`` adds a node
process that joins with a token; a ``Client`` is one user's gsh profile
(``GATEHOUSE_HOME``). Every subprocess call has a timeout, every wait a
deadline, and every process started here is stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

BIN = Path(sys.executable).parent
GATEHOUSE = BIN / "gatehouse"
GATECTL = BIN / "gatectl"
GSH = BIN / "gsh"

CLUSTER = "test.example.com"
PASSWORD = "correct-horse-battery"  # >= 12 characters
READY_TIMEOUT = 30.0  # a process must be serving within this
NODE_TIMEOUT = 10.0  # a joining node must be listed within this
STOP_TIMEOUT = 10.0  # SIGTERM grace before SIGKILL
CMD_TIMEOUT = 30.0  # any single gatectl/gsh/ssh call

T = TypeVar("T")

# Every process started and not yet stopped: their logs go into failure reports.
RUNNING: list[Daemon] = []
# Processes sent SIGTERM whose exit nobody waited for yet (see reap_stopping).
STOPPING: list[Daemon] = []


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (bound together so that they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class Result:
    """What a command did: exit status, stdout, stderr (text)."""

    argv: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def ok(self) -> Result:
        """Assert success; returns self for chaining."""
        assert self.rc == 0, f"{self} failed"
        return self

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return (f"`{' '.join(self.argv)}` -> rc={self.rc}\n--- stdout:\n{self.out}"
                f"\n--- stderr:\n{self.err}")


def run(argv: list[str], *, env: dict[str, str] | None = None, input: str | bytes | None = None,
        timeout: float = CMD_TIMEOUT, cwd: Path | None = None) -> Result:
    """Run a command to completion (killed after ``timeout``), capturing its output."""
    text = not isinstance(input, bytes)
    try:
        proc = subprocess.run(
            [str(a) for a in argv], input=input, capture_output=True, text=text, env=env,
            timeout=timeout, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`{' '.join(map(str, argv))}` did not finish within {timeout} s\n"
            f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        ) from None
    out = proc.stdout if text else proc.stdout.decode(errors="replace")
    err = proc.stderr if text else proc.stderr.decode(errors="replace")
    return Result(tuple(map(str, argv)), proc.returncode, out, err)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0,
             interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GATEHOUSE_HOME", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


class Daemon:
    """One `gatehouse start -c FILE` process; stdout and stderr go to ``log``."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(GATEHOUSE), "start", "-c", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=base_env(), cwd=self.config.parent, start_new_session=True,
            )
        RUNNING.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Poll ``check`` until it passes; fail early (with the log) if the process died.

        ``check`` runs a CLI (half a second each), so first wait cheaply for the line
        the daemon prints once its services are up.
        """
        deadline = time.monotonic() + timeout
        while " is up (" not in self.log_text() and time.monotonic() < deadline:
            if not self.alive():
                break
            time.sleep(0.05)
        while not check():
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.proc and self.proc.returncode} before it "
                    f"was ready; its log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} not ready within {timeout} s; its log:\n{self.log_text()}"
                )
            time.sleep(0.2)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); ``wait_stopped`` finishes the job."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the exit after SIGTERM; SIGKILL it past ``timeout``. Returns the status."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait(STOP_TIMEOUT)
        if self in RUNNING:
            RUNNING.remove(self)
        return rc

    def stop(self) -> int:
        self.terminate()
        return self.wait_stopped()


def stop_all(daemons: list[Daemon], *, wait: bool = True) -> None:
    """Stop several processes at once (each may take a moment to close its connections).

    ``wait=False`` only sends SIGTERM: ``reap_stopping`` waits later (and SIGKILLs),
    so that a module's teardown does not hold up the next module.
    """
    for d in daemons:
        d.terminate()
        if d in RUNNING:
            RUNNING.remove(d)
        STOPPING.append(d)
    if wait:
        reap_stopping()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (e.g. the test run was interrupted): no process outlives the run."""
    for d in [*RUNNING, *STOPPING]:
        if d.alive():
            assert d.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(d.proc.pid, signal.SIGKILL)


def reap_stopping() -> None:
    """Wait for every process sent SIGTERM; SIGKILL those that take too long."""
    while STOPPING:
        d = STOPPING.pop()
        if d.proc is not None:
            d.wait_stopped()


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Cluster:
    """A one-process cluster (auth + proxy + ssh service ``node1``) plus joined nodes."""

    workdir: Path
    name: str = CLUSTER
    nodename: str = "node1"
    labels: dict[str, str] = field(default_factory=lambda: {"env": "dev"})
    session_recording: str = "node"
    auth_port: int = 0
    proxy_port: int = 0
    ssh_port: int = 0
    daemon: Daemon | None = None
    nodes: dict[str, Daemon] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.workdir / "gatehouse.yaml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def write_config(self) -> None:
        self.auth_port, self.proxy_port, self.ssh_port = free_ports(3)
        write_yaml(self.config, {
            "version": "v1",
            "gatehouse": {"nodename": self.nodename, "data_dir": str(self.data_dir)},
            "auth_service": {"enabled": True, "cluster_name": self.name,
                             "listen_addr": f"127.0.0.1:{self.auth_port}",
                             "session_recording": self.session_recording},
            "proxy_service": {"enabled": True, "listen_addr": self.proxy},
            "ssh_service": {"enabled": True, "listen_addr": f"127.0.0.1:{self.ssh_port}",
                            "labels": self.labels},
        })

    def start(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.write_config()
            log = self.workdir / f"gatehouse{attempt or ''}.log"
            self.daemon = Daemon("gatehouse", self.config, log).start()
            try:
                self.daemon.wait_ready(lambda: self.gatectl("status").rc == 0)
                return self
            except AssertionError:
                # Someone took one of the free ports between our check and the bind: again.
                if self.daemon.alive() or "already in use" not in self.daemon.log_text():
                    raise
                self.daemon.wait_stopped()
        raise AssertionError("could not find free ports for the cluster")

    def stop(self, *, wait: bool = True) -> None:
        stop_all([*self.nodes.values(), *([self.daemon] if self.daemon else [])], wait=wait)

    # --- admin ------------------------------------------------------------------------------

    def gatectl(self, *args: str, input: str | None = None,
                timeout: float = CMD_TIMEOUT) -> Result:
        return run([str(GATECTL), "-c", str(self.config), *args], env=base_env(), input=input,
                   timeout=timeout)

    def add_user(self, name: str, *, roles: str = "access", logins: str = "root",
                 password: str = PASSWORD) -> str:
        """Create a user with a password; returns the password."""
        self.gatectl("users", "add", name, f"--roles={roles}", f"--logins={logins}").ok()
        self.gatectl("users", "set-password", name, "--password-stdin",
                     input=password + "\n").ok()
        return password

    def create(self, text: str, *, force: bool = False) -> Result:
        """`gatectl create [-f] -` with ``text`` on stdin."""
        return self.gatectl("create", *(["-f"] if force else []), "-", input=text)

    def token(self, kind: str = "node") -> str:
        res = self.gatectl("tokens", "add", f"--type={kind}").ok()
        return res.out.splitlines()[0]

    def node_list(self) -> list[dict[str, Any]]:
        return list(self.gatectl("get", "node", "--format=json").ok().json())

    def node_named(self, hostname: str) -> dict[str, Any] | None:
        return next((n for n in self.node_list() if n["spec"]["hostname"] == hostname), None)

    def events(self, *args: str) -> list[dict[str, Any]]:
        return list(self.gatectl("events", "--format=json", *args).ok().json())

    def wait_event(self, what: str, match: Callable[[dict[str, Any]], bool],
                   timeout: float = 15.0) -> dict[str, Any]:
        """The first audit event ``match`` accepts (nodes upload theirs asynchronously)."""
        return wait_for(what, lambda: next((e for e in self.events() if match(e)), None),
                        timeout=timeout, interval=0.3)

    # --- more nodes ---------------------------------------------------------------------------

    def node_config(self, nodename: str, token: str, labels: dict[str, str], *,
                    via: str = "proxy") -> Path:
        """A node-only config joining through the proxy (as the README shows) or the auth."""
        (port,) = free_ports(1)
        server = ({"proxy_server": self.proxy} if via == "proxy"
                  else {"auth_server": f"127.0.0.1:{self.auth_port}"})
        return write_yaml(self.workdir / f"{nodename}.yaml", {
            "version": "v1",
            "gatehouse": {"nodename": nodename, "data_dir": str(self.workdir / f"{nodename}-data"),
                          "join_token": token, **server},
            "ssh_service": {"enabled": True, "listen_addr": f"127.0.0.1:{port}",
                            "labels": labels},
        })

    def join_node(self, nodename: str, labels: dict[str, str], *, token: str | None = None,
                  via: str = "proxy") -> Daemon:
        """Start a node process that joins with a fresh (or the given) token; wait until the
        cluster lists it."""
        path = self.node_config(nodename, token or self.token("node"), labels, via=via)
        node = Daemon(nodename, path, self.workdir / f"{nodename}.log").start()
        self.nodes[nodename] = node
        node.wait_ready(lambda: self.node_named(nodename) is not None, timeout=NODE_TIMEOUT)
        return node


@contextlib.contextmanager
def running_cluster(workdir: Path, *, wait: bool = False, **kw: Any) -> Iterator[Cluster]:
    """A started cluster, stopped on exit (``wait=False``: reaped by ``reap_stopping``)."""
    cluster = Cluster(workdir, **kw)
    try:
        yield cluster.start()
    finally:
        cluster.stop(wait=wait)


@dataclass
class Client:
    """One user's gsh: its own profile directory (GATEHOUSE_HOME)."""

    home: Path
    proxy: str

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(GATEHOUSE_HOME=str(self.home), HOME=str(self.home), **extra)

    def gsh(self, *args: str, input: str | bytes | None = None,
            timeout: float = CMD_TIMEOUT) -> Result:
        return run([str(GSH), *args], env=self.env(), input=input, timeout=timeout)

    def login(self, user: str, password: str = PASSWORD, *extra: str) -> Result:
        return self.gsh("login", f"--proxy={self.proxy}", f"--user={user}", "--password-stdin",
                        "--insecure", *extra, input=password + "\n")

    def ssh(self, target: str, *command: str, input: str | bytes | None = None,
            timeout: float = CMD_TIMEOUT) -> Result:
        return self.gsh("ssh", target, *command, input=input, timeout=timeout)

    def openssh_config(self) -> Path:
        path = self.home / "ssh_config"
        path.write_text(self.gsh("config").ok().out)
        return path

    def openssh(self, config: Path, target: str, *command: str,
                options: tuple[str, ...] = ()) -> Result:
        """OpenSSH's ssh with ``-F config``; never prompts, never reads ~/.ssh."""
        opts: list[str] = []
        for opt in ("BatchMode=yes", "GlobalKnownHostsFile=/dev/null", *options):
            opts += ["-o", opt]
        return run(["ssh", "-F", str(config), *opts, target, *command], env=self.env())
