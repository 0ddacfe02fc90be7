"""Two auths on etcd state (issue 14: "the same auth failover on etcd state"): kill -9
of the first under logins leaves the cluster serving through auth2, with the
certificates, users and tokens it had, and the audit log (in the PostgreSQL named by
storage.audit_conn_string, which both auths share) holds one user.login per
successful login."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from gatehouse.process.harness import wait_for
from tests.etcdserver import EtcdServer, fresh_prefix
from tests.integration.twoauths import FAILOVER_LIMIT, Attempts, TwoAuths, two_auths
from tests.pgserver import PgServer


@pytest.fixture
def ha(etcd: EtcdServer, pg_server: PgServer,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoAuths]:
    storage = {"type": "etcd", "peers": [etcd.url], "prefix": fresh_prefix(),
               "audit_conn_string": pg_server.new_database()}
    with two_auths(tmp_path_factory.mktemp("ha-etcd"), storage) as setup:
        setup.cluster.add_user("alice", roles="access", logins="root")
        yield setup


def test_kill_an_auth_on_etcd_state(ha: TwoAuths) -> None:
    cluster = ha.cluster
    alice = ha.client()
    alice.login("alice").ok()  # a certificate issued before the kill
    token = cluster.token("node")  # a token made before the kill
    cluster.add_user("carol", roles="access", logins="root")
    carol = Attempts(ha.client(), "carol").start()
    wait_for("logins going on", lambda: carol.succeeded() >= 2, timeout=30)

    assert cluster.daemon is not None
    killed = time.monotonic()
    os.kill(cluster.daemon.pid, signal.SIGKILL)
    cluster.daemon.wait_stopped()
    first = carol.wait_ok_after(killed)
    slowest = max(end - begun for begun, end, _ in carol.made if end < killed)
    print(f"\non etcd: the first login begun after kill -9 of the first auth ended "
          f"{first:.2f} s after it (the slowest before it took {slowest:.2f} s); logins "
          f"(begun, relative to the kill; took): "
          f"{[(round(b - killed, 2), round(e - b, 2)) for b, e, _ in carol.made]}")
    carol.stop()
    assert first - slowest <= FAILOVER_LIMIT, carol.errors
    assert carol.succeeded() >= len(carol.made) - 2, carol.errors
    made, ok = len(carol.made), carol.succeeded()
    got = wait_for("the logins' events", lambda: (n if (n := len(cluster.gatectl(
        "events", "--format=json", "--type=user.login", "--user=carol", "--limit=10000",
        auth="auth2").ok().json())) >= ok else None), timeout=20)
    print(f"{made} login attempts, {ok} succeeded, {got} user.login events")
    assert ok <= got <= made

    # The state is the cluster's, not the dead auth's: its certificate, its token, its
    # users serve through auth2.
    assert alice.ssh("root@node2", "echo kept").ok().out == "kept\n"
    cluster.join_node("node3", {"env": "ha"}, token=token, via="auth").wait_up()
    assert alice.ssh("root@node3", "echo joined").ok().out == "joined\n"
    cluster.gatectl("users", "add", "dave", "--roles=access", "--logins=root",
                    auth="auth2").ok()
    assert "dave" in cluster.gatectl("users", "ls", auth="auth2").ok().out
