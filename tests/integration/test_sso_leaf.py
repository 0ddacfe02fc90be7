"""The root as the SSO entry point: a user who logged in through the root's connector
reaches a leaf's node, mapped by claims_to_roles at the root and then by the leaf's
role_map; the leaf's audit names the SSO user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatehouse.process.harness import Client, Cluster, join
from tests.integration.idp import Account, IdP, connector_yaml, proxy_ca_file, sso_login
from tests.integration.test_sso import ROLE

LEAF_ROLE = ROLE.replace("sso-dev", "leaf-dev")


@pytest.fixture(scope="module")
def leaf(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("leaf"), name="us-east-1a",
                 labels={"zone": "a"}).running(wait=False) as c:
        c.create(LEAF_ROLE).ok()
        join(c, cluster, "{remote: sso-dev, local: [leaf-dev]}")
        yield c


def test_sso_user_reaches_a_leaf_node_through_its_role_map(
        cluster: Cluster, leaf: Cluster, client: Client,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    idp = IdP(tmp_path_factory.mktemp("idp"), [f"https://{cluster.proxy}/v1/sso/oidc/callback"],
              {"carol": Account("carol-password", {"email": "carol@example.com",
                                                   "groups": ["admins"],
                                                   "unix_user": "root"})}).start()
    try:
        cluster.create(ROLE).ok()
        cluster.create(connector_yaml(idp)).ok()
        ca = proxy_ca_file(cluster, tmp_path_factory.mktemp("ca") / "ca.pem")
        login = sso_login(client, "corp", "carol", "carol-password", ca)
        assert login.rc == 0, login
        res = client.ssh("--cluster=us-east-1a", "root@node1", "echo", "from-the-leaf").ok()
        assert res.out == "from-the-leaf\n"
        event = leaf.wait_event("carol's session on the leaf",
                                lambda e: e["event"] == "session.start"
                                and e["user"] == "carol@example.com")
        assert event["cluster"] == "us-east-1a", event
    finally:
        idp.stop()
