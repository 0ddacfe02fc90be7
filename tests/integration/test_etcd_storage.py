"""A cluster whose state lives in etcd (gatehouse.storage type etcd), on a real etcd:
logins and sessions work, a restart keeps users and CAs, and a second auth on the
same prefix without storage.audit_conn_string refuses to start."""

from __future__ import annotations

from pathlib import Path

from gatehouse.process.harness import GATEHOUSE, Client, Cluster, base_env, free_ports, run

from ..etcdserver import EtcdServer, fresh_prefix


def test_a_cluster_on_etcd_keeps_users_and_cas_across_a_restart(
        etcd: EtcdServer, tmp_path: Path) -> None:
    storage = {"type": "etcd", "peers": [etcd.url], "prefix": fresh_prefix()}
    with Cluster(tmp_path / "cluster", storage=storage).running() as cluster:
        assert not (cluster.data_dir / "backend.sqlite").exists()
        erin = cluster.logged_in("erin", tmp_path / "erin")
        assert erin.ssh("root@node1", "echo on-etcd").ok().out == "on-etcd\n"

        second = Cluster(tmp_path / "second", storage=storage, ssh=False)
        second.write_config()
        refused = run([str(GATEHOUSE), "start", "-c", str(second.config)], env=base_env(),
                      timeout=30)
        assert refused.rc != 0 and len(refused.err_lines) == 1, refused
        assert "several auths on etcd need gatehouse.storage.audit_conn_string" in \
            refused.err_lines[-1], refused

        assert cluster.daemon is not None
        cluster.daemon.stop()
        cluster.restart()
        # The certificate issued before the restart is still trusted: the CAs are kept.
        assert erin.ssh("root@node1", "echo again").ok().out == "again\n"
        again = Client(tmp_path / "erin-again", cluster.proxy)
        again.login("erin").ok()  # and so is the user
        assert again.ssh("root@node1", "echo new-login").ok().out == "new-login\n"


def test_an_auth_whose_etcd_is_unreachable_says_so_in_one_line(tmp_path: Path) -> None:
    peers = [f"http://127.0.0.1:{port}" for port in free_ports(2)]  # nobody listens
    cluster = Cluster(tmp_path / "cluster", storage={"type": "etcd", "peers": peers}, ssh=False)
    cluster.write_config()
    res = run([str(GATEHOUSE), "start", "-c", str(cluster.config)], env=base_env(), timeout=30)
    assert res.rc != 0 and len(res.err_lines) == 1, res
    assert res.err_lines[0].startswith(f"error: etcd unreachable ({peers[0]}: "), res
    assert peers[1] in res.err_lines[0]
