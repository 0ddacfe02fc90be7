"""`gatehouse start` on PostgreSQL storage (gatehouse.storage: {type: postgres, conn_string}):
a whole cluster runs on a real PostgreSQL 15 (tests/pgserver.py), its audit log and
recordings (metadata and bytes) are rows of that database, a restart keeps users,
CAs and recordings, and the cluster goes on after PostgreSQL restarts under it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gatehouse.process.harness import Client, Cluster, wait_for
from tests.pgserver import PgServer


def test_a_cluster_runs_on_postgres_and_keeps_its_state_across_a_restart(
        pg_server: PgServer, tmp_path: Path, make_client: Callable[[Cluster], Client]) -> None:
    conn_string = pg_server.new_database()
    database = conn_string.rsplit("/", 1)[1]

    def rows(sql: str) -> list[str]:
        return pg_server.psql(sql, database).split()

    cluster = Cluster(tmp_path / "cluster", storage={"type": "postgres",
                                                     "conn_string": conn_string})
    with cluster.running():
        cluster.add_user("alice", roles="access,auditor", logins="root")
        alice = make_client(cluster)
        alice.login("alice").ok()
        assert alice.ssh("root@node1", "echo", "on-postgres").ok().out == "on-postgres\n"
        start = cluster.wait_event("alice's session.start", lambda e: (
            e["event"] == "session.start" and e["user"] == "alice"))
        session = start["session_id"]
        # The audit log and the recording's metadata are rows of the database, not a file.
        assert not (cluster.data_dir / "backend.sqlite").exists()
        assert int(rows(f"SELECT count(*) FROM gatehouse_items WHERE key LIKE '/events/%' "
                        f"AND position(convert_to('{session}', 'UTF8') IN value) > 0")[0]) >= 1
        wait_for(f"recording {session} listed", lambda: any(
            r["session_id"] == session
            for r in alice.gsh("recordings", "ls", "--format=json").ok().json()), timeout=20)
        assert rows(f"SELECT count(*) FROM gatehouse_items "
                    f"WHERE key = convert_to('/recording_meta/{session}', 'UTF8')") == ["1"]
        # Its bytes too: any auth on the database serves it, none keeps a file of it.
        assert int(rows(f"SELECT count(*) FROM gatehouse_items "
                        f"WHERE key LIKE '/recording_chunks/{session}/%'")[0]) >= 1
        assert not list(cluster.data_dir.rglob(f"*{session}*"))  # (the node's spool is empty)
        users = json.dumps(cluster.gatectl("get", "user", "--format=json").ok().json())
        cas = cluster.gatectl("get", "ca", "--format=json").ok().json()

        cluster.stop()
        cluster.restart()
        assert "alice" in cluster.gatectl("users", "ls").ok().out
        assert cluster.gatectl("get", "ca", "--format=json").ok().json() == cas
        assert "alice" in users
        # alice's certificate, signed before the restart, still opens a session.
        wait_for("node1 back", lambda: cluster.node_named("node1"), timeout=20)
        assert alice.ssh("root@node1", "echo", "again").ok().out == "again\n"
        assert any(e["event"] == "session.start" and e["session_id"] == session
                   for e in cluster.events("--type=session.start"))
        assert "on-postgres" in alice.gsh("play", session).ok().out

        # PostgreSQL restarts under the running cluster: the auth reconnects by itself.
        pg_server.restart(1.0)
        wait_for("the auth writing again after PostgreSQL restarted", lambda: cluster.gatectl(
            "users", "add", "bob", "--roles=access", "--logins=root").rc == 0, timeout=20)
        assert cluster.daemon is not None and cluster.daemon.alive()
        cluster.gatectl("users", "set-password", "bob", "--password-stdin",
                        input="a long password for bob\n").ok()
        bob = make_client(cluster)
        bob.login("bob", "a long password for bob").ok()
        assert bob.ssh("root@node1", "echo", "after-outage").ok().out == "after-outage\n"
