"""`gatectl backend copy`: a cluster stopped on SQLite is copied to PostgreSQL and starts
there with its CAs, users (and their passwords), roles, tokens, audit log and
recordings; a running source, a non-empty destination and a bad URI are refused in
one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        assert alice.ssh("root@node1", "echo", "before-the-move").ok().out == \
            "before-the-move\n"
        session = cluster.wait_event("alice's session.start", lambda e: (
            e["event"] == "session.start" and e["user"] == "alice"))["session_id"]
        wait_for(f"recording {session} listed", lambda: any(
            r["session_id"] == session
            for r in alice.gsh("recordings", "ls", "--format=json").ok().json()), timeout=20)
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
