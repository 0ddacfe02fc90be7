"""Two auth processes on one shared backend, two proxies behind HAProxy (which checks
each proxy's /readyz), a node that lists both auths (gatehouse.auth_servers): the
set-up of the failover tests (docs/high-availability.md shows this HAProxy config)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gatehouse.process.harness import Client, Cluster, Process, stop_all, wait_for
from tests.integration.haproxy import start_haproxy

CLUSTER = "ha.example.com"
FAILOVER_LIMIT = 5.0  # seconds: the bound on a failover


def haproxy_config(port: int, proxies: list[tuple[str, str]]) -> str:
    """HAProxy in TCP mode on ``port`` in front of ``proxies`` ((address, diag address)):
    a proxy whose /readyz fails twice is out; a refused connection goes to the other."""
    lines = [
        "global", "    maxconn 512",
        "defaults", "    mode tcp", "    timeout connect 2s", "    timeout client 1h",
        "    timeout server 1h", "    timeout check 2s", "    retries 2",
        "    option redispatch",
        "frontend gatehouse", f"    bind 127.0.0.1:{port}", "    default_backend proxies",
        "backend proxies", "    balance roundrobin", "    option httpchk GET /readyz",
        "    default-server inter 1s fall 2 rise 2",
    ]
    for i, (addr, diag) in enumerate(proxies, 1):
        host, diag_port = diag.rsplit(":", 1)
        lines.append(f"    server p{i} {addr} check addr {host} port {diag_port}")
    return "\n".join([*lines, ""])


@dataclass
class TwoAuths:
    cluster: Cluster
    balancer: str
    haproxy: Process
    work: Path
    homes: int = 0

    def client(self, proxy: str = "") -> Client:
        """A gsh profile of its own, for the balancer (or ``proxy``)."""
        self.homes += 1
        home = self.work / f"home{self.homes}"
        home.mkdir()
        return Client(home, proxy or self.balancer)


@contextlib.contextmanager
def two_auths(work: Path, storage: dict[str, Any]) -> Iterator[TwoAuths]:
    """The cluster on ``storage``: auths "daemon" (the first) and "auth2", proxies
    "proxy" (which calls the first auth first) and "proxy2" (auth2 first), node2
    joined with both auths listed, HAProxy in front of the proxies."""
    cluster = Cluster(work / "cluster", name=CLUSTER, ssh=False, proxy_apart=True, diag=True,
                      storage=storage, extra_auths=("auth2",))
    haproxy: Process | None = None
    try:
        cluster.start()
        cluster.start_proxy("proxy2")
        balancer, haproxy = start_haproxy(work, partial(haproxy_config, proxies=[
            (cluster.proxy, cluster.diag_addr("proxy")),
            (cluster.proxy_addrs["proxy2"], cluster.diag_addr("proxy2"))]))
        cluster.join_node("node2", {"env": "ha"}, via="auth")
        yield TwoAuths(cluster, balancer, haproxy, work)
    finally:
        stop_all([p for p in (haproxy,) if p is not None])
        cluster.stop()


@dataclass
class Attempts:
    """Logins made one after another in a thread until stopped: (start, end, ok) of each,
    on the monotonic clock."""

    client: Client
    user: str
    made: list[tuple[float, float, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, limit: int = 200) -> Attempts:
        def loop() -> None:
            for _ in range(limit):
                if self._stop.is_set():
                    return
                begun = time.monotonic()
                result = self.client.login(self.user)
                self.made.append((begun, time.monotonic(), result.rc == 0))
                if result.rc != 0:
                    self.errors.append((result.err_lines or ["(no stderr)"])[-1])
                time.sleep(0.1)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(120)

    def succeeded(self) -> int:
        return sum(ok for _, _, ok in self.made)

    def wait_ok_after(self, moment: float, count: int = 1, timeout: float = 30) -> float:
        """Seconds from ``moment`` to the end of the ``count``-th successful login begun
        after it."""
        def done() -> float | None:
            ends = [end for begun, end, ok in self.made if ok and begun >= moment]
            return ends[count - 1] - moment if len(ends) >= count else None

        return wait_for("logins after the fault", done, timeout=timeout, interval=0.1)
