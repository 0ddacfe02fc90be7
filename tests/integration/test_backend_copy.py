"""`gatectl backend copy`: a cluster stopped on SQLite is copied to PostgreSQL and starts
there with its CAs, users (and their passwords), roles, tokens, audit log and
recordings; a running source, a non-empty destination and a bad URI are refused in
one line. Copied to etcd with storage.audit_conn_string, the audit log and recordings
are rows of that PostgreSQL, and two auths on the etcd prefix both write there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatehouse.backend import EtcdBackend, EtcdSettings, prefix_end
from gatehouse.clock import SystemClock
from gatehouse.process.harness import (
    GATECTL,
    Client,
    Cluster,
    Result,
    base_env,
    run,
    wait_for,
    write_yaml,
)
from tests.etcdserver import EtcdServer, fresh_prefix
from tests.pgserver import PgServer

ROLE = """kind: role
version: v1
metadata: {name: team-payments}
spec:
  allow: {logins: [root], node_labels: {"*": "*"}}
"""


def copy(*args: str) -> Result:
    return run([str(GATECTL), "backend", "copy", *args], env=base_env(), timeout=60)


def cas(cluster: Cluster) -> list[Any]:
    return list(cluster.gatectl("status", "--format=json").ok().json()["cas"])


def record_a_session(cluster: Cluster, client: Client, text: str) -> str:
    """A session of alice's on node1, whose recording the auth has; its id."""
    assert client.ssh("root@node1", "echo", text).ok().out == f"{text}\n"
    session: str = cluster.wait_event("alice's session.start", lambda e: (
        e["event"] == "session.start" and e["user"] == "alice"))["session_id"]
    wait_for(f"recording {session} listed", lambda: any(
        r["session_id"] == session
        for r in client.gsh("recordings", "ls", "--format=json").ok().json()), timeout=20)
    return session


def test_a_cluster_stopped_on_sqlite_starts_on_postgres_with_everything(
        pg_server: PgServer, tmp_path: Path, make_client: Callable[[Cluster], Client]) -> None:
    cluster = Cluster(tmp_path / "cluster")
    source = f"sqlite:{cluster.data_dir}"
    target = f"postgres:{pg_server.new_database()}"
    with cluster.running():
        cluster.create(ROLE).ok()
        cluster.add_user("alice", roles="access,auditor,team-payments", logins="root")
        token = cluster.token("node")
        alice = make_client(cluster)
        alice.login("alice").ok()
        session = record_a_session(cluster, alice, "before-the-move")
        fingerprints = cas(cluster)

        running = copy(f"--from={source}", f"--to={target}")
        assert running.rc != 0 and len(running.err_lines) == 1, running
        assert "is in use by another gatehouse process" in running.err_lines[0], running

    done = copy(f"--from={source}", f"--to={target}", "--format=json").ok().json()
    assert done["recordings"] == 1 and done["recording_bytes"] > 0, done
    assert done["items"] > 10 and done["audit_items"] > 5, done
    again = copy(f"--from={source}", f"--to={target}")
    assert again.rc != 0 and again.err_lines == [
        f"error: {target} is not empty; refusing to copy into it (--force removes what is "
        "there first)"], again
    copy(f"--from={source}", f"--to={target}", "--force").ok()
    bad = copy(f"--from={source}", "--to=mongo:somewhere")
    assert bad.rc != 0 and len(bad.err_lines) == 1 and "unknown kind 'mongo'" in bad.err_lines[0]

    # The SQLite files go away: what the cluster has now comes from PostgreSQL.
    (cluster.data_dir / "backend.sqlite").rename(tmp_path / "old.sqlite")
    (cluster.data_dir / "recordings").rename(tmp_path / "old-recordings")
    cluster.storage = {"type": "postgres", "conn_string": target.removeprefix("postgres:")}
    write_yaml(cluster.config, cluster.settings())  # same ports, storage on PostgreSQL
    cluster.restart()
    try:
        assert cas(cluster) == fingerprints
        assert "team-payments" in [r["metadata"]["name"] for r in
                                   cluster.gatectl("get", "role", "--format=json").ok().json()]
        assert token[:8] in cluster.gatectl("tokens", "ls").ok().out
        again_alice = make_client(cluster)
        again_alice.login("alice").ok()  # the same password
        assert any(e["session_id"] == session for e in cluster.events("--type=session.start"))
        assert any(r["session_id"] == session for r in
                   again_alice.gsh("recordings", "ls", "--format=json").ok().json())
        assert "before-the-move" in again_alice.gsh("play", session).ok().out
        wait_for("node1 back", lambda: cluster.node_named("node1"), timeout=20)
        assert again_alice.ssh("root@node1", "echo", "after").ok().out == "after\n"
    finally:
        cluster.stop()


def etcd_keys(settings: EtcdSettings, prefix: bytes) -> list[bytes]:
    async def keys() -> list[bytes]:
        async with await EtcdBackend.open(settings, clock=SystemClock()) as backend:
            return [i.key for i in await backend.get_range(prefix, prefix_end(prefix))]
    return asyncio.run(keys())


def test_a_cluster_copied_to_etcd_keeps_its_audit_log_in_postgres_shared_by_two_auths(
        etcd: EtcdServer, pg_server: PgServer, tmp_path: Path,
        make_client: Callable[[Cluster], Client]) -> None:
    conn_string = pg_server.new_database()
    database = conn_string.rsplit("/", 1)[1]
    prefix = fresh_prefix()
    cluster = Cluster(tmp_path / "cluster")
    with cluster.running():
        cluster.add_user("alice", roles="access,auditor", logins="root")
        alice = make_client(cluster)
        alice.login("alice").ok()
        session = record_a_session(cluster, alice, "moved-to-etcd")
        fingerprints = cas(cluster)
    target = f"etcd:{etcd.url}?prefix={prefix}&audit_conn_string={conn_string}"
    no_home = copy(f"--from=sqlite:{cluster.data_dir}", f"--to=etcd:{etcd.url}?prefix={prefix}")
    assert no_home.rc != 0 and len(no_home.err_lines) == 1, no_home
    assert "add &data_dir=PATH" in no_home.err_lines[0], no_home
    copy(f"--from=sqlite:{cluster.data_dir}", f"--to={target}").ok()

    (cluster.data_dir / "backend.sqlite").rename(tmp_path / "old.sqlite")
    (cluster.data_dir / "recordings").rename(tmp_path / "old-recordings")
    storage = {"type": "etcd", "peers": [etcd.url], "prefix": prefix,
               "audit_conn_string": conn_string}
    cluster.storage = storage
    write_yaml(cluster.config, cluster.settings())
    cluster.restart()
    second = Cluster(tmp_path / "second", storage=storage, ssh=False)
    try:
        assert cas(cluster) == fingerprints
        again = make_client(cluster)
        again.login("alice").ok()
        assert "moved-to-etcd" in again.gsh("play", session).ok().out
        # A second auth on the same prefix starts (the audit trail is shared, not split),
        # and what either writes to the audit log, both read.
        second.start()
        second.add_user("bob", roles="access", logins="root")
        assert any(e["event"] == "user.create" and e["fields"]["name"] == "bob"
                   for e in cluster.events("--type=user.create"))
        via_second = make_client(second)
        via_second.login("alice").ok()
        assert "moved-to-etcd" in via_second.gsh("play", session).ok().out
        assert any(e["session_id"] == session for e in second.events("--type=session.start"))
        # The audit log and the recording are PostgreSQL's rows; etcd holds neither.
        rows = pg_server.psql("SELECT count(*) FROM gatehouse_items WHERE key LIKE "
                              "'/events/%' OR key LIKE '/recording_%'", database).split()
        assert int(rows[0]) > 5, rows
        settings = etcd.settings(prefix)
        assert etcd_keys(settings, b"/users/"), "the state is in etcd"
        assert etcd_keys(settings, b"/events/") == etcd_keys(settings, b"/recording_") == []
    finally:
        second.stop()
        cluster.stop()
