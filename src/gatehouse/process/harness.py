"""Real Gatehouse processes on loopback, for `gatehouse demo`, the integration tests and
the benchmark: one way to write configs, start and stop `gatehouse start`, and drive
gatectl and gsh.

- ``Process``: one child process with its output in a log file (a `gatehouse start`, or
  anything else a caller runs alongside: sshd, load generators).
- ``Cluster``: one `gatehouse start` process with auth + proxy (+ the ssh service of
  ``nodename``) on ports picked at run time, plus node processes joined with tokens;
  gatectl, tokens and users through its admin config. With ``proxy_apart`` the proxy
  is a process of its own, joined with a proxy token; ``start_proxy(NAME)`` adds more.
- ``Client``: one user's gsh profile (``GATEHOUSE_HOME``).
- ``prefix`` (of a Cluster or a Client): a command its processes and commands run
  under, as another machine would run them: ``ip netns exec NS`` (a network of its
  own), ``env LD_PRELOAD=... FAKETIME=+10m`` (a clock of its own). The prefix must
  exec the command, not wait for it, so that signals reach the program.
- ``join``: a leaf joined to a root with a trusted_cluster token and resource.

Readiness is what the daemon signals: the " is up (" line it prints once every
service it runs is serving (a node's, once its first heartbeat registered it).
Every command has a timeout and every wait a deadline. Every process started is
registered until it is stopped (SIGTERM, then SIGKILL past ``STOP_TIMEOUT``) and an
``atexit`` hook kills what is left, so nothing outlives the program that started it.
Processes run in their own session: a Ctrl-C in the terminal reaches only the
program, which then stops them. Failures raise ``HarnessError``: one line naming the
command or process (and its log); a failed command's whole output is added as a note.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gatehouse.errors import GatehouseError
from gatehouse.process.ports import free_ports

__all__ = [
    "BIN",
    "CMD_TIMEOUT",
    "GATECTL",
    "GATEHOUSE",
    "GSH",
    "PASSWORD",
    "READY_TIMEOUT",
    "RUNNING",
    "Client",
    "Cluster",
    "HarnessError",
    "Process",
    "Result",
    "base_env",
    "connection",
    "free_ports",
    "in_parallel",
    "join",
    "run",
    "stop_all",
    "trusted_cluster_yaml",
    "wait_for",
    "wait_offline",
    "wait_online",
    "write_yaml",
]

BIN = Path(sys.executable).parent  # the virtualenv's scripts, next to this Python
GATEHOUSE = BIN / "gatehouse"
GATECTL = BIN / "gatectl"
GSH = BIN / "gsh"

PASSWORD = "correct-horse-battery"  # users' default password (>= 12 characters)
READY_TIMEOUT = 30.0  # a process must be serving within this
STOP_TIMEOUT = 10.0  # SIGTERM grace before SIGKILL
CMD_TIMEOUT = 60.0  # any single command
UP_LINE = " is up ("  # what `gatehouse start` prints once every service serves

T = TypeVar("T")


class HarnessError(GatehouseError):
    """A process or command the harness drives failed or timed out; str() is one line."""


def base_env(**extra: str) -> dict[str, str]:
    """The environment for every child: the venv's scripts first, no stray gsh profile."""
    env = dict(os.environ)
    env.pop("GATEHOUSE_HOME", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env.update(extra)
    return env


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass(frozen=True)
class Result:
    """What a command did: exit status, stdout, stderr (text), and how long it took."""

    argv: tuple[str, ...]
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def ok(self) -> Result:
        """Self if it succeeded; HarnessError naming the command and its last stderr line."""
        if self.rc != 0:
            last = (self.err_lines or ["(no stderr)"])[-1].strip()
            exc = HarnessError(f"`{' '.join(self.argv)}` exited {self.rc}: {last}")
            exc.add_note(str(self))
            raise exc
        return self

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return (f"`{' '.join(self.argv)}` -> rc={self.rc}\n--- stdout:\n{self.out}"
                f"\n--- stderr:\n{self.err}")


def run(argv: list[str], *, env: dict[str, str] | None = None, input: str | bytes | None = None,
        timeout: float = CMD_TIMEOUT, cwd: Path | None = None) -> Result:
    """Run a command to completion (HarnessError past ``timeout``), capturing its output.
    ``env`` defaults to ``base_env()``; bytes ``input`` makes the output bytes-decoded."""
    argv = [str(a) for a in argv]
    text = not isinstance(input, bytes)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=text, env=env or base_env(),
            timeout=timeout, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        error = HarnessError(f"`{' '.join(argv)}` did not finish within {timeout:.0f} s")
        error.add_note(f"stdout: {exc.stdout!r}\nstderr: {exc.stderr!r}")
        raise error from None
    except OSError as exc:
        raise HarnessError(f"cannot run {argv[0]}: {exc.strerror}") from None
    out = proc.stdout if text else proc.stdout.decode(errors="replace")
    err = proc.stderr if text else proc.stderr.decode(errors="replace")
    return Result(tuple(argv), proc.returncode, out, err, time.perf_counter() - start)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 15.0,
             interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy (returned); HarnessError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def in_parallel(*calls: Callable[[], object]) -> None:
    """Run the calls in threads (starting processes mostly waits); re-raise the first
    failure once all are done."""
    errors: list[BaseException] = []

    def wrap(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(call,), daemon=True) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# Every process started and not yet reaped: their logs go into test failure reports.
RUNNING: list[Process] = []
_closing = threading.Event()  # set by stop_all(final=True): nothing may start after it
# Held from the check of _closing until a started process is in RUNNING (and by stop_all
# while it sets _closing and picks what to stop): a process a set-up thread is starting
# while the program stops everything is stopped too, not left running.
_starting = threading.Lock()


class Process:
    """A child process (argv) with stdout and stderr appended to ``log``."""

    def __init__(self, name: str, argv: list[str], log: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = False  # sent SIGTERM by us: not a failure if it is gone
        self._log_start = 0  # where this start's output begins in the log

    def start(self) -> Process:
        """Start (or start again, appending to the log); returns self."""
        with _starting:
            if _closing.is_set():  # a set-up thread still going after the program stopped all
                raise HarnessError(f"not starting {self.name}: everything is being stopped")
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("ab") as out:
                self._log_start = out.tell()
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=self.env or base_env(), cwd=self.cwd, start_new_session=True)
            self.stopping = False
            if self not in RUNNING:
                RUNNING.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> str:
        """The log since the latest start."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def last_line(self) -> str:
        """The output's last line that says something (not a traceback's box drawing)."""
        lines = [line.strip(" |+") for line in self.output().splitlines()]
        lines = [line for line in lines if any(c.isalpha() for c in line)]
        text = lines[-1] if lines else "(empty log)"
        return text if len(text) <= 160 else text[:157] + "..."

    def wait_ready(self, what: str, check: Callable[[], object],
                   timeout: float = READY_TIMEOUT) -> None:
        """Poll ``check``; fail early, naming the log's last line, if the process died."""
        deadline = time.monotonic() + timeout
        while not check():
            if not self.alive():
                rc = self.proc.returncode if self.proc else None
                raise HarnessError(f"{self.name} exited with {rc} before {what}: "
                                   f"{self.last_line()} (log: {self.log})")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.name}: no {what} within {timeout:.0f} s "
                                   f"(log: {self.log})")
            time.sleep(0.05)

    def wait_up(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for a `gatehouse start`'s readiness line (of this start, not an earlier)."""
        self.wait_ready("its 'is up' line", lambda: UP_LINE in self.output(), timeout)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); ``wait_stopped`` finishes the job."""
        self.stopping = True
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        """Its exit status once it exits within ``timeout``; None if it is still running."""
        assert self.proc is not None, f"{self.name} was never started"
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self in RUNNING:
            RUNNING.remove(self)
        return rc

    def wait_stopped(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the exit; SIGKILL its process group past ``timeout``. Its exit status."""
        rc = self.wait(timeout)
        if rc is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            rc = self.wait(timeout)
        if rc is None:
            raise HarnessError(f"{self.name} (pid {self.pid}) outlived SIGKILL by {timeout:.0f} s")
        return rc

    def stop(self) -> int:
        self.terminate()
        return self.wait_stopped()


def stop_all(processes: Iterable[Process] | None = None, *, wait: bool = True,
             final: bool = False) -> None:
    """Stop processes (default: every one running), SIGTERM to all at once, then wait for
    each (SIGKILL past STOP_TIMEOUT). ``wait=False`` only signals them: a later
    ``stop_all()`` reaps them. ``final``: no process may start after this."""
    with _starting:
        if final:
            _closing.set()
        chosen = list(reversed(RUNNING)) if processes is None else list(processes)
    for p in chosen:
        p.terminate()
    if wait:
        for p in chosen:
            if p.proc is not None:
                p.wait_stopped()


@atexit.register
def _kill_leftovers() -> None:
    """Last resort (e.g. the program was interrupted): no process outlives it."""
    for p in RUNNING:
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)


def _start_gatehouse(name: str, config: Path, log: Path, prefix: tuple[str, ...]) -> Process:
    return Process(name, [*prefix, str(GATEHOUSE), "start", "-c", str(config)], log,
                   cwd=config.parent).start()


@dataclass
class Cluster:
    """A cluster in ``workdir``: a `gatehouse start` process (``daemon``) with auth + proxy
    and, if ``ssh``, the ssh service of ``nodename``; plus joined ``nodes``. Its config,
    data and log are ``workdir``'s gatehouse.yaml, data/ and gatehouse.log. Its
    processes and gatectl run under ``prefix`` (see the module docstring)."""

    workdir: Path
    name: str = "test.example.com"
    nodename: str = "node1"
    labels: dict[str, str] = field(default_factory=lambda: {"env": "dev"})
    ssh: bool = True
    session_recording: str = "node"
    prefix: tuple[str, ...] = ()
    auth_port: int = 0
    proxy_port: int = 0
    ssh_port: int = 0
    proxy_apart: bool = False  # the proxy in a process of its own (``proxy_process``)
    diag: bool = False  # gatehouse.diag_addr on each process (``diag_addr(process)``)
    diag_ports: dict[str, int] = field(default_factory=dict)  # "daemon", "proxy" -> port
    storage: dict[str, Any] | None = None  # gatehouse.storage (default: SQLite in data/)
    daemon: Process | None = None
    proxy_process: Process | None = None
    more_proxies: dict[str, Process] = field(default_factory=dict)  # start_proxy(NAME)
    proxy_addrs: dict[str, str] = field(default_factory=dict)  # each extra proxy's address
    nodes: dict[str, Process] = field(default_factory=dict)
    # More auth processes on the cluster's storage, started after the first (by name);
    # then the proxies and nodes joined straight with the auth list every auth, each
    # proxy beginning with a different one (auth_server_list).
    extra_auths: tuple[str, ...] = ()
    auths: dict[str, Process] = field(default_factory=dict)  # extra_auths' processes
    auth_ports: dict[str, int] = field(default_factory=dict)  # extra_auths' ports

    @property
    def config(self) -> Path:
        return self.workdir / "gatehouse.yaml"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def settings(self) -> dict[str, Any]:
        """The config's contents (a subclass may change them)."""
        data: dict[str, Any] = {
            "version": "v1",
            "gatehouse": {"nodename": self.nodename, "data_dir": str(self.data_dir),
                          **({"storage": self.storage} if self.storage else {})},
            "auth_service": {"enabled": True, "cluster_name": self.name,
                             "listen_addr": f"127.0.0.1:{self.auth_port}",
                             "session_recording": self.session_recording,
                             # Repeated failures fold into one event per window: a short
                             # window lets tests see the counts without waiting a minute.
                             "limits": {"failure_window": "2s"},
                             # Files an SSO connector names (connector_files_dir).
                             "connector_files_dir": str(self.connector_files)},
        }
        if self.diag:
            data["gatehouse"]["diag_addr"] = self.diag_addr("daemon")
        if not self.proxy_apart:
            data["proxy_service"] = {"enabled": True, "listen_addr": self.proxy}
        if self.ssh:
            data["ssh_service"] = {"enabled": True, "listen_addr": f"127.0.0.1:{self.ssh_port}",
                                   "labels": self.labels}
        return data

    @property
    def connector_files(self) -> Path:
        """The directory whose files this cluster's SSO connectors may name."""
        return self.workdir / "connector-files"

    def write_config(self) -> None:
        """Pick free ports and write the config."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth_port, self.proxy_port, self.ssh_port = free_ports(3)
        if self.diag:
            self.diag_ports = dict(zip(("daemon", "proxy"), free_ports(2), strict=True))
        write_yaml(self.config, self.settings())

    def diag_addr(self, process: str) -> str:
        """Where ``process`` ("daemon"; "proxy" with ``proxy_apart``; a name given to
        ``start_proxy``) serves /healthz, /readyz and /metrics (``diag``)."""
        return f"127.0.0.1:{self.diag_ports[process]}"

    def start(self) -> Cluster:
        """Start the cluster's process and wait until it is up; new ports if one was taken
        between picking it and binding it."""
        attempts = 3
        fresh = not self.data_dir.exists()
        while True:
            attempts -= 1
            if fresh:  # a try cut short by a taken port certified its node at that port
                shutil.rmtree(self.data_dir, ignore_errors=True)
            self.write_config()
            self.daemon = _start_gatehouse(self.name, self.config, self.workdir / "gatehouse.log",
                                           self.prefix)
            try:
                self.daemon.wait_up()
                break
            except HarnessError:
                if (not attempts or self.daemon.alive()
                        or "already in use" not in self.daemon.output()):
                    raise
                self.daemon.wait_stopped()
        for name in self.extra_auths:
            self.start_auth(name)
        if self.proxy_apart:
            self.start_proxy()
        return self

    def auth_config(self, name: str = "") -> Path:
        """The config of the first auth process, or of the extra auth ``name``."""
        return self.workdir / f"{name}.yaml" if name else self.config

    def start_auth(self, name: str) -> Process:
        """The extra auth ``name`` (of ``extra_auths``): the first auth's settings, with
        its own port and data_dir and no other service; up once it serves. Started
        again, it keeps its port."""
        process = self.auths.get(name)
        if process is None:
            self.auth_ports[name] = free_ports(1)[0]
            settings = self.settings()
            settings.pop("proxy_service", None)
            settings.pop("ssh_service", None)
            settings["gatehouse"].update(nodename=name,
                                         data_dir=str(self.workdir / f"{name}-data"))
            settings["gatehouse"].pop("diag_addr", None)
            if self.diag:
                self.diag_ports.setdefault(name, free_ports(1)[0])
                settings["gatehouse"]["diag_addr"] = self.diag_addr(name)
            settings["auth_service"]["listen_addr"] = f"127.0.0.1:{self.auth_ports[name]}"
            write_yaml(self.auth_config(name), settings)
            process = self.auths[name] = Process(
                f"{self.name} {name}", [str(GATEHOUSE), "start", "-c",
                                        str(self.auth_config(name))],
                self.workdir / f"{name}.log", cwd=self.workdir)
        process.start().wait_up()
        return process

    def auth_server_list(self, first: int = 0) -> dict[str, Any]:
        """The gatehouse keys that name the auth(s), beginning with the auth ``first``
        (an index into the first auth and ``extra_auths``)."""
        addrs = [f"127.0.0.1:{self.auth_port}",
                 *(f"127.0.0.1:{self.auth_ports[n]}" for n in self.extra_auths)]
        if len(addrs) == 1:
            return {"auth_server": addrs[0]}
        first %= len(addrs)
        return {"auth_servers": addrs[first:] + addrs[:first]}

    def start_proxy(self, name: str = "") -> Process:
        """The proxy's own process (``proxy_apart``), or with a ``name`` one more proxy of
        the cluster on a port of its own (``proxy_addrs[name]``), joined straight with the
        auth with a proxy token at its first start; up once it serves. Started again, it
        keeps the identity and address it joined with."""
        process = self.more_proxies.get(name) if name else self.proxy_process
        if process is None:
            addr = self.proxy
            if name:
                addr = self.proxy_addrs[name] = f"127.0.0.1:{free_ports(1)[0]}"
            stem = name or "proxy"
            settings: dict[str, Any] = {
                "version": "v1",
                "gatehouse": {"nodename": stem, "data_dir": str(self.workdir / f"{stem}-data"),
                              "join_token": self.token("proxy"),
                              **self.auth_server_list(len(self.more_proxies) + bool(name))},
                "proxy_service": {"enabled": True, "listen_addr": addr},
            }
            if self.diag:
                self.diag_ports.setdefault(stem, free_ports(1)[0])
                settings["gatehouse"]["diag_addr"] = self.diag_addr(stem)
            config = write_yaml(self.workdir / f"{stem}.yaml", settings)
            process = Process(f"{self.name} {stem}", [str(GATEHOUSE), "start", "-c",
                                                      str(config)],
                              self.workdir / f"{stem}.log", cwd=self.workdir)
            if name:
                self.more_proxies[name] = process
            else:
                self.proxy_process = process
        process.start().wait_up()
        return process

    def restart(self) -> None:
        """Start the cluster's process again (after a stop), from the same config and data."""
        assert self.daemon is not None, f"{self.name} was never started"
        self.daemon.start().wait_up()

    def stop(self, *, wait: bool = True) -> None:
        """Stop the nodes and the cluster's process (``wait``: see ``stop_all``)."""
        stop_all([*self.nodes.values(), *self.more_proxies.values(),
                  *(p for p in (self.proxy_process, *self.auths.values(), self.daemon)
                    if p is not None)], wait=wait)

    @contextlib.contextmanager
    def running(self, *, wait: bool = True) -> Iterator[Cluster]:
        """Started, and stopped on exit (``wait=False``: reaped by a later ``stop_all()``)."""
        try:
            yield self.start()
        finally:
            self.stop(wait=wait)

    # --- admin ------------------------------------------------------------------------------

    def gatectl(self, *args: str, input: str | None = None,
                timeout: float = CMD_TIMEOUT, auth: str = "") -> Result:
        """gatectl with the admin credentials of the first auth (or of ``auth``, one of
        ``extra_auths``)."""
        return run([*self.prefix, str(GATECTL), "-c", str(self.auth_config(auth)), *args],
                   input=input, timeout=timeout)

    def add_user(self, name: str, *, roles: str = "access", logins: str = "root",
                 password: str = PASSWORD) -> str:
        """Create a user with a password; returns the password."""
        self.gatectl("users", "add", name, f"--roles={roles}", f"--logins={logins}").ok()
        self.gatectl("users", "set-password", name, "--password-stdin",
                     input=password + "\n").ok()
        return password

    def logged_in(self, name: str, home: Path, *, roles: str = "access",
                  logins: str = "root") -> Client:
        """A new user (add_user) and their gsh in ``home``, logged in through this
        cluster's proxy."""
        self.add_user(name, roles=roles, logins=logins)
        home.mkdir(parents=True, exist_ok=True)
        client = Client(home, self.proxy)
        client.login(name).ok()
        return client

    def create(self, text: str, *, force: bool = False) -> Result:
        """`gatectl create [-f] -` with ``text`` on stdin."""
        return self.gatectl("create", *(["-f"] if force else []), "-", input=text)

    def token(self, kind: str = "node") -> str:
        """A fresh join token of ``kind`` (node, proxy, trusted_cluster)."""
        return self.gatectl("tokens", "add", f"--type={kind}").ok().out.splitlines()[0]

    def node_list(self) -> list[dict[str, Any]]:
        return list(self.gatectl("get", "node", "--format=json").ok().json())

    def node_named(self, hostname: str) -> dict[str, Any] | None:
        return next((n for n in self.node_list() if n["spec"]["hostname"] == hostname), None)

    def events(self, *args: str) -> list[dict[str, Any]]:
        return list(self.gatectl("events", "--format=json", *args).ok().json())

    def wait_event(self, what: str, match: Callable[[dict[str, Any]], bool],
                   timeout: float = 15.0) -> dict[str, Any]:
        """The newest audit event ``match`` accepts (nodes upload theirs asynchronously)."""
        return wait_for(what, lambda: next((e for e in self.events() if match(e)), None),
                        timeout=timeout, interval=0.3)

    # --- more nodes -------------------------------------------------------------------------

    def node_config(self, nodename: str, token: str, labels: dict[str, str], *,
                    via: str = "proxy", tunnel: bool = False, proxy: str = "") -> Path:
        """A node-only config joining through the proxy (as the README shows; at ``proxy``
        if given) or the auth; ``tunnel``: in tunnel mode (through the proxy, no
        listen_addr)."""
        (port,) = free_ports(1)
        server = ({"proxy_server": proxy or self.proxy} if via == "proxy" or tunnel
                  else self.auth_server_list())
        listen = {} if tunnel else {"listen_addr": f"127.0.0.1:{port}"}
        return write_yaml(self.workdir / f"{nodename}.yaml", {
            "version": "v1",
            "gatehouse": {"nodename": nodename, "data_dir": str(self.workdir / f"{nodename}-data"),
                          "join_token": token, **server},
            "ssh_service": {"enabled": True, **listen, "labels": labels},
        })

    def start_node(self, nodename: str, token: str, labels: dict[str, str], *,
                   via: str = "proxy", tunnel: bool = False, proxy: str = "",
                   prefix: tuple[str, ...] | None = None) -> Process:
        """Start a node process joining with ``token`` (not waiting for it), under
        ``prefix`` if given (else the cluster's)."""
        path = self.node_config(nodename, token, labels, via=via, tunnel=tunnel, proxy=proxy)
        node = _start_gatehouse(f"{self.name} {nodename}", path, self.workdir / f"{nodename}.log",
                                self.prefix if prefix is None else prefix)
        self.nodes[nodename] = node
        return node

    def join_node(self, nodename: str, labels: dict[str, str], *, token: str | None = None,
                  via: str = "proxy", tunnel: bool = False) -> Process:
        """A node process joined with a fresh (or the given) token, up once its first
        heartbeat registered it with the cluster."""
        node = self.start_node(nodename, token or self.token("node"), labels, via=via,
                               tunnel=tunnel)
        node.wait_up()
        return node


# --- trusted clusters -------------------------------------------------------------------------

def trusted_cluster_yaml(root: Cluster, token: str, role_map: str, *, enabled: bool = True,
                         proxy_addr: str = "") -> str:
    """A trusted_cluster resource; ``role_map`` is YAML flow mappings, one rule per line."""
    rules = "".join(f"    - {line}\n" for line in role_map.strip().splitlines())
    return (
        "kind: trusted_cluster\nversion: v1\n"
        f"metadata: {{name: {root.name}}}\n"
        f"spec:\n  enabled: {'true' if enabled else 'false'}\n  token: {token}\n"
        f"  proxy_addr: {proxy_addr or root.proxy}\n  role_map:\n{rules}"
    )


def join(leaf: Cluster, root: Cluster, role_map: str, *, proxy_addr: str = "") -> str:
    """Join ``leaf`` to ``root`` with a fresh token, wait for its tunnel; returns the
    resource created on the leaf."""
    text = trusted_cluster_yaml(root, root.token("trusted_cluster"), role_map,
                                proxy_addr=proxy_addr)
    leaf.create(text).ok()
    wait_online(root, leaf.name)
    return text


def connection(root: Cluster, leaf: str) -> str:
    """The leaf's connection as the root sees it: online, offline, or absent."""
    found = root.gatectl("get", f"rc/{leaf}", "--format=json")
    if found.rc != 0:
        return "absent"
    return str(found.json()[0]["status"]["connection"])


def wait_online(root: Cluster, leaf: str, timeout: float = READY_TIMEOUT) -> None:
    wait_for(f"{leaf} online at the root", lambda: connection(root, leaf) == "online",
             timeout=timeout)


def wait_offline(root: Cluster, leaf: str, timeout: float = 15.0) -> None:
    wait_for(f"{leaf} offline at the root", lambda: connection(root, leaf) != "online",
             timeout=timeout)


@dataclass
class Client:
    """One user's gsh: its own profile directory (GATEHOUSE_HOME, and HOME); gsh runs
    under ``prefix`` (see the module docstring)."""

    home: Path
    proxy: str
    prefix: tuple[str, ...] = ()

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(GATEHOUSE_HOME=str(self.home), HOME=str(self.home), **extra)

    def gsh(self, *args: str, input: str | bytes | None = None,
            timeout: float = CMD_TIMEOUT) -> Result:
        return run([*self.prefix, str(GSH), *args], env=self.env(), input=input, timeout=timeout)

    def login(self, user: str, password: str = PASSWORD, *extra: str) -> Result:
        return self.gsh("login", f"--proxy={self.proxy}", f"--user={user}", "--password-stdin",
                        "--insecure", *extra, input=password + "\n")

    def ssh(self, target: str, *command: str, input: str | bytes | None = None,
            timeout: float = CMD_TIMEOUT) -> Result:
        return self.gsh("ssh", target, *command, input=input, timeout=timeout)

    def openssh_config(self) -> Path:
        """`gsh config` written to ``home``/ssh_config."""
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
