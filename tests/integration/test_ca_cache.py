"""A node keeps deciding with the trust it last received while its auth is unreachable."""

from __future__ import annotations

import json
from collections.abc import Callable

from gatehouse.process.harness import Client, Cluster, run, stop_all


def test_node_keeps_working_while_its_auth_is_down(
    fresh_cluster: Cluster, make_client: Callable[[Cluster], Client], username: str,
) -> None:
    cluster = fresh_cluster
    node = cluster.join_node("node2", {"env": "cache"}, via="auth")
    node_addr = next(n["spec"]["addr"] for n in cluster.node_list()
                     if n["spec"]["hostname"] == "node2")
    cluster.add_user(username, roles="access", logins="root")
    client = make_client(cluster)
    client.login(username).ok()
    assert client.ssh("root@node2", "echo via-proxy").out == "via-proxy\n"

    # The auth (and the proxy with it) goes away; node2 stays up on its own.
    assert cluster.daemon is not None
    stop_all([cluster.daemon])
    assert node.alive()

    # Straight to node2 with plain OpenSSH: the certificate is checked against the
    # user CA and roles node2 cached from its last trust snapshot.
    profile = json.loads((client.home / "profile.json").read_text())
    keys = client.home / "keys"
    host, port = node_addr.rsplit(":", 1)
    res = run(["ssh", "-p", port, "-i", str(keys / "key"),
               "-o", f"CertificateFile={keys / 'key-cert.pub'}", "-o", "IdentitiesOnly=yes",
               "-o", f"UserKnownHostsFile={client.home / 'known_hosts'}",
               "-o", f"HostKeyAlias=node2.{profile['cluster']}",
               "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
               f"root@{host}", "echo from-cache"], env=client.env(), timeout=30)
    assert (res.rc, res.out) == (0, "from-cache\n"), res
    stop_all([node])
