"""gatehouse.diag_addr on real daemons: health, readiness a load balancer can act on,
and Prometheus metrics that move with what the cluster does."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatehouse.process.harness import (
    GATEHOUSE,
    Client,
    Cluster,
    free_ports,
    run,
    wait_for,
    write_yaml,
)


def _get(addr: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{addr}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _samples(addr: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = _get(addr, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def diag_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("diag"), diag=True, proxy_apart=True).start()
    yield cluster
    cluster.stop()


def test_metrics_move_with_logins_sessions_and_storage(
    diag_cluster: Cluster, make_client: Callable[[Cluster], Client], username: str,
) -> None:
    daemon = diag_cluster.diag_addr("daemon")
    assert _get(daemon, "/healthz") == (200, "ok\n")
    assert _get(daemon, "/readyz") == (200, "ready\n")
    before = _samples(daemon)
    diag_cluster.add_user(username, roles="access", logins="root")
    client = make_client(diag_cluster)
    client.login(username).ok()
    assert client.login(username, password="not the password").rc != 0
    assert client.ssh("root@node1", "true").rc == 0

    def grew(name: str, labels: tuple[tuple[str, str], ...] = (), by: float = 1) -> bool:
        now = _samples(daemon)
        return now.get((name, labels), 0) >= before.get((name, labels), 0) + by

    assert grew("gatehouse_logins_total", (("outcome", "success"),))
    assert grew("gatehouse_logins_total", (("outcome", "failure"),))
    assert grew("gatehouse_certificates_issued_total", (("kind", "user"),))
    assert grew("gatehouse_backend_operation_seconds_count", (("operation", "put"),))
    # the node's events reach the auth through the spool: counted as they arrive
    wait_for("the session counted", lambda: grew("gatehouse_sessions_total",
                                                 (("outcome", "started"),)), timeout=15)
    assert grew("gatehouse_audit_events_forwarded_total")
    assert _samples(daemon)[("gatehouse_audit_events_pending", ())] >= 0
    proxy = _samples(diag_cluster.diag_addr("proxy"))
    assert proxy[("gatehouse_tunnels", (("kind", "leaf"),))] == 0
    # a proxy issues nothing: the series it never touched are absent
    assert ("gatehouse_certificates_issued_total", (("kind", "host"),)) not in proxy


def test_a_proxy_is_not_ready_while_its_auth_is_down(diag_cluster: Cluster) -> None:
    """What a load balancer checks (HAProxy's `option httpchk GET /readyz`)."""
    proxy = diag_cluster.diag_addr("proxy")
    assert _get(proxy, "/readyz") == (200, "ready\n")
    assert diag_cluster.daemon is not None
    diag_cluster.daemon.stop()
    try:
        status, text = _get(proxy, "/readyz")
        assert status == 503 and text.startswith("proxy: ") and text.count("\n") == 1, text
        assert _get(proxy, "/healthz") == (200, "ok\n")  # up, not ready
    finally:
        diag_cluster.restart()
    wait_for("the proxy ready again", lambda: _get(proxy, "/readyz") == (200, "ready\n"),
             timeout=20)


def test_diag_addr_in_use_fails_the_start_in_one_line(diag_cluster: Cluster,
                                                      tmp_path: Path) -> None:
    taken = diag_cluster.diag_addr("daemon")
    config = write_yaml(tmp_path / "gatehouse.yaml", {
        "version": "v1",
        "gatehouse": {"data_dir": str(tmp_path / "data"), "diag_addr": taken},
        "auth_service": {"enabled": True, "listen_addr": f"127.0.0.1:{free_ports(1)[0]}"}})
    res = run([str(GATEHOUSE), "start", "-c", str(config)], timeout=30)
    assert res.rc != 0 and res.err_lines == [
        f"error: {config}: gatehouse.diag_addr {taken} is already in use: is another "
        "gatehouse running? Stop it, or set gatehouse.diag_addr to a free port"], res
    assert not (tmp_path / "data" / "backend.sqlite").exists()  # nothing created
