"""Tests for gatehouse.auth.catalog's generic resources through the API's authorization
(in-process, memory backend): a node exists only by its join and its heartbeats, and
`rm node/ID` removes nodes, nothing else."""

from __future__ import annotations

import pytest

from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import Caller
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.pki import x509
from gatehouse.types.node import Node, NodeSpec
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec
from tests.auth.samples import CLUSTER, NODE_ADDR, add_role, certify, new_key

NODE_OPS = [{"resources": ["node"], "verbs": ["list", "read", "create", "update", "delete"]}]


async def node_operator(server: AuthServer) -> AuthWithRoles:
    """A user whose one role may do every verb on nodes, and nothing else."""
    await add_role(server, "node-ops", allow={"rules": NODE_OPS})
    await server.users.create(User(metadata=Metadata(name="ops"),
                                   spec=UserSpec(roles=["node-ops"])))
    ident = x509.Identity(kind="user", name="ops", cluster=CLUSTER, roles=("node-ops",),
                          logins=(), traits={}, route_to_cluster=CLUSTER)
    return AuthWithRoles(server, Caller(ident, "10.9.9.9"))


async def admin(server: AuthServer) -> tuple[AuthWithRoles, str]:
    """The admin credentials' API, and their host id."""
    certs = await server.issue_admin_certs(new_key())
    ident = x509.identity_of(x509.load_cert(certs.tls_cert))
    return AuthWithRoles(server, Caller(ident, "in-process", in_process=True)), ident.name


def node(name: str, hostname: str, addr: str) -> Node:
    return Node(metadata=Metadata(name=name, labels={"env": "prod"}),
                spec=NodeSpec(hostname=hostname, addr=addr, cluster=CLUSTER, host_id=name))


@pytest.fixture
async def db1(server: AuthServer) -> None:
    """A node that joined (host hid-1, db1) and heartbeats at NODE_ADDR."""
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {"env": "prod"}, source=None)


# --- a node is made by its join and heartbeats -------------------------------------------


@pytest.mark.usefixtures("db1")
@pytest.mark.parametrize("upsert", [False, True])
async def test_a_node_may_not_be_created_through_the_resource_api(server: AuthServer,
                                                                  upsert: bool) -> None:
    ops = await node_operator(server)
    with pytest.raises(BadParameter, match="a node is registered by joining"):
        await ops.put_resource(node("fake-1", "metadata", "169.254.169.254:80"), upsert=upsert)
    with pytest.raises(NotFound):
        await server.resolve_node("metadata")


@pytest.mark.usefixtures("db1")
async def test_a_joined_node_may_not_be_moved_through_the_resource_api(
        server: AuthServer) -> None:
    ops = await node_operator(server)
    with pytest.raises(BadParameter, match="a node is registered by joining"):
        await ops.put_resource(node("hid-1", "db1", "203.0.113.66:22"), upsert=True)
    with pytest.raises(BadParameter, match="a node is registered by joining"):
        await (await admin(server))[0].put_resource(node("hid-1", "db1", "203.0.113.66:22"),
                                                    upsert=True)
    assert (await server.resolve_node("db1")).spec.addr == NODE_ADDR


# --- rm node/ID removes nodes only ---------------------------------------------------------


async def test_rm_node_may_not_revoke_the_admin_credentials(server: AuthServer) -> None:
    ops = await node_operator(server)
    as_admin, admin_id = await admin(server)
    with pytest.raises(BadParameter, match=f"host {admin_id} is the admin credentials, not a "
                                           "node"):
        await ops.delete_resource("node", admin_id)
    await server.hosts.get(admin_id)
    await as_admin.status()


async def test_rm_node_may_not_revoke_a_proxy(server: AuthServer) -> None:
    ops = await node_operator(server)
    await certify(server, "proxy-hid", "proxy1", [], role="proxy")
    with pytest.raises(BadParameter, match=r"host proxy-hid is a proxy, not a node: "
                                           r"`gatectl rm proxy/proxy-hid`"):
        await ops.delete_resource("node", "proxy-hid")
    assert (await server.hosts.get("proxy-hid")).role == "proxy"


@pytest.mark.usefixtures("db1")
async def test_rm_node_revokes_a_node(server: AuthServer) -> None:
    ops = await node_operator(server)
    await ops.delete_resource("node", "hid-1")
    with pytest.raises(NotFound):
        await server.resolve_node("db1")
    node_api = AuthWithRoles(server, Caller(x509.Identity(
        kind="host", name="hid-1", cluster=CLUSTER, roles=("node",)), "10.0.0.7"))
    with pytest.raises(AccessDenied):
        await node_api.trust()
