"""Tests for gatehouse.auth.api over real TLS on loopback: node resolution, user management
and audit events reported by hosts. The caller is whoever the client certificate says."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

import pytest

from gatehouse.auth.intake import EVENT_SKEW
from gatehouse.auth.server import NODE_TTL, AuthServer
from gatehouse.client.api import APIClient
from gatehouse.clock import FakeClock
from gatehouse.errors import AccessDenied, BadParameter, NotFound
from gatehouse.services.events import AuditEvent
from gatehouse.types.remote_cluster import RemoteCluster
from gatehouse.types.resource import Metadata
from gatehouse.types.user import User, UserSpec
from gatehouse.types.yaml_io import to_json_obj
from gatehouse.wire.eventsize import MAX_FIELDS, MAX_MESSAGE, fields_size
from tests.auth.conftest import API
from tests.auth.samples import CLUSTER, LOCAL_NODE_ADDR, NODE_ADDR, add_role, certify

PASSWORD = "correct horse battery"

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def clock() -> FakeClock:
    # The TLS handshake checks certificates against the real time, not this clock.
    return FakeClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


async def denied_events(server: AuthServer) -> list[AuditEvent]:
    return (await server.audit.search(types=["access.denied"])).events


# --- /v1/nodes/resolve --------------------------------------------------------------------


@pytest.fixture
async def db1(server: AuthServer) -> None:
    """A node db1 labelled env=prod, heartbeating at NODE_ADDR; a role that sees only dev."""
    await certify(server, "hid-1", "db1", [NODE_ADDR])
    await server.heartbeat("hid-1", "db1", NODE_ADDR, {"env": "prod"}, source=None)
    await add_role(server, "dev", allow={"node_labels": {"env": "dev"},
                                         "rules": [{"resources": ["node"],
                                                    "verbs": ["list", "read"]}]})


@pytest.mark.usefixtures("db1")
async def test_a_user_resolves_a_node_their_roles_select(api: API) -> None:
    client = await api.user("alice", ["access"])
    node = await client.get("/v1/nodes/resolve", target="db1")
    assert node["spec"]["addr"] == NODE_ADDR


@pytest.mark.usefixtures("db1")
async def test_a_user_may_not_resolve_a_node_their_roles_do_not_select(api: API) -> None:
    client = await api.user("bob", ["dev"])
    with pytest.raises(AccessDenied, match="user bob may not access node db1"):
        await client.get("/v1/nodes/resolve", target="db1")


@pytest.mark.usefixtures("db1")
async def test_resolving_a_node_not_selected_is_audited(api: API) -> None:
    client = await api.user("bob", ["dev"])
    with pytest.raises(AccessDenied):
        await client.get("/v1/nodes/resolve", target="db1")
    assert [(e.user, e.message) for e in await denied_events(api.server)] == [
        ("bob", "no role selects node db1")]


@pytest.mark.usefixtures("db1")
@pytest.mark.usefixtures("db1")
async def test_resolving_follows_node_labels_not_api_rules(api: API, server: AuthServer) -> None:
    """Reaching a node is SSH access: node_labels select it, no API rule is needed."""
    await add_role(server, "see-all", allow={"node_labels": {"*": "*"}})
    client = await api.user("carol", ["see-all"])
    node = await client.get("/v1/nodes/resolve", target="db1")
    assert node["metadata"]["name"] == "hid-1"


@pytest.mark.usefixtures("db1")
async def test_a_proxy_resolves_for_the_user_it_relays(api: API) -> None:
    client = await api.proxy_relaying(await api.user_cert("alice", ["access"]))
    node = await client.get("/v1/nodes/resolve", target="db1")
    assert node["metadata"]["name"] == "hid-1"


@pytest.mark.usefixtures("db1")
async def test_a_proxy_resolves_nothing_for_a_user_not_selected(api: API) -> None:
    client = await api.proxy_relaying(await api.user_cert("bob", ["dev"]))
    with pytest.raises(AccessDenied, match="user bob may not access node db1"):
        await client.get("/v1/nodes/resolve", target="db1")


@pytest.mark.usefixtures("db1")
async def test_a_proxy_may_not_resolve_in_its_own_name(api: API) -> None:
    client = await api.host("proxy", "proxy-hid", "proxy1", [])
    with pytest.raises(AccessDenied, match="only users are resolved to nodes"):
        await client.get("/v1/nodes/resolve", target="db1")


@pytest.mark.usefixtures("db1")
async def test_resolving_an_unregistered_target_is_not_found(api: API) -> None:
    client = await api.user("alice", ["access"])
    with pytest.raises(NotFound):
        await client.get("/v1/nodes/resolve", target="10.0.0.99:22")


# --- /v1/nodes: the listing -----------------------------------------------------------------


@pytest.fixture
async def fleet(server: AuthServer) -> None:
    """Six heartbeating nodes, db-1..3 (env=dev) and web-1..3 (env=prod), registered in an
    order unlike the listing's; a role that sees only dev."""
    for i, (hostname, env) in enumerate([("web-2", "prod"), ("db-3", "dev"), ("web-1", "prod"),
                                         ("db-1", "dev"), ("web-3", "prod"), ("db-2", "dev")]):
        addr = f"10.0.1.{i}:22"
        await certify(server, f"hid-{i}", hostname, [addr])
        await server.heartbeat(f"hid-{i}", hostname, addr, {"env": env}, source=None)
    await add_role(server, "dev", allow={"node_labels": {"env": "dev"},
                                         "rules": [{"resources": ["node"], "verbs": ["list"]}]})


def hostnames(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["spec"]["hostname"] for n in nodes]


DBS, WEBS = ["db-1", "db-2", "db-3"], ["web-1", "web-2", "web-3"]


@pytest.mark.usefixtures("fleet")
async def test_the_listing_is_node_resources_by_hostname(api: API, server: AuthServer) -> None:
    nodes = await (await api.admin()).get("/v1/nodes")
    assert hostnames(nodes) == DBS + WEBS
    assert nodes == [to_json_obj(await server.nodes.get(n["metadata"]["name"])) for n in nodes]


@pytest.mark.usefixtures("fleet")
async def test_a_user_lists_only_the_nodes_their_roles_select(api: API) -> None:
    bob = await api.user("bob", ["dev"])
    assert hostnames(await bob.get("/v1/nodes")) == DBS
    assert hostnames(await bob.get("/v1/nodes", limit="2")) == DBS[:2]
    assert await bob.get("/v1/nodes", labels=json.dumps({"env": "prod"})) == []


@pytest.mark.usefixtures("fleet")
async def test_a_listing_filters_by_labels_then_stops_at_the_limit(api: API) -> None:
    alice = await api.user("alice", ["access"])
    assert hostnames(await alice.get("/v1/nodes", limit="0")) == DBS + WEBS
    assert hostnames(await alice.get("/v1/nodes", limit="1")) == DBS[:1]
    assert hostnames(await alice.get("/v1/nodes", labels=json.dumps({"env": "prod"}),
                                     limit="2")) == WEBS[:2]
    assert await alice.get("/v1/nodes", labels=json.dumps({"env": "prod", "x": "y"})) == []


@pytest.mark.usefixtures("fleet")
async def test_a_listing_by_hostname_reads_only_that_hostname(api: API) -> None:
    assert hostnames(await (await api.admin()).get("/v1/nodes", hostname="web-2")) == ["web-2"]
    assert await (await api.admin()).get("/v1/nodes", hostname="web") == []
    bob = await api.user("bob", ["dev"])
    assert hostnames(await bob.get("/v1/nodes", hostname="db-3")) == ["db-3"]
    assert await bob.get("/v1/nodes", hostname="web-2") == []  # not selected by his roles


@pytest.mark.usefixtures("fleet")
async def test_nodes_that_stopped_heartbeating_are_not_listed(api: API, server: AuthServer,
                                                              clock: FakeClock) -> None:
    clock.advance(NODE_TTL - dt.timedelta(seconds=1))
    await server.heartbeat("hid-2", "web-1", "10.0.1.2:22", {"env": "prod"}, source=None)
    clock.advance(dt.timedelta(seconds=1))
    assert hostnames(await (await api.admin()).get("/v1/nodes")) == ["web-1"]


@pytest.mark.parametrize("query", [{"limit": "many"}, {"labels": "[1]"}, {"labels": "{"}])
async def test_a_malformed_node_query_is_bad_parameter(api: API, query: dict[str, str]) -> None:
    with pytest.raises(BadParameter, match="bad node query"):
        await (await api.admin()).get("/v1/nodes", **query)


@pytest.mark.usefixtures("fleet")
async def test_status_counts_the_nodes(api: API) -> None:
    status = await (await api.admin()).get("/v1/status")
    assert status["counts"]["nodes"] == 6


# --- heartbeats and removal through the API ---------------------------------------------


async def test_a_node_may_not_heartbeat_an_address_it_was_not_certified_with(api: API) -> None:
    node = await api.host("node", "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(AccessDenied, match="certified as db1"):
        await node.post("/v1/nodes/heartbeat", {"hostname": "db1", "addr": "10.9.9.9:22"})


async def test_a_node_may_not_heartbeat_an_address_it_does_not_call_from(api: API) -> None:
    node = await api.host("node", "hid-1", "db1", [NODE_ADDR])
    with pytest.raises(AccessDenied, match=f"may not advertise {NODE_ADDR}: it called from "
                                           "127.0.0.1"):
        await node.post("/v1/nodes/heartbeat", {"hostname": "db1", "addr": NODE_ADDR})


async def test_a_node_removed_by_the_admin_is_refused(api: API) -> None:
    node = await api.host("node", "hid-1", "db1", [LOCAL_NODE_ADDR])
    beat = {"hostname": "db1", "addr": LOCAL_NODE_ADDR}
    await node.post("/v1/nodes/heartbeat", beat)
    await (await api.admin()).delete("/v1/resources/node/hid-1")
    with pytest.raises(AccessDenied, match="not registered"):
        await node.post("/v1/nodes/heartbeat", beat)


# --- user management cannot grant more than its holder may ---------------------------------


@pytest.fixture
async def user_admin(api: API, server: AuthServer) -> APIClient:
    """A user who may manage users, but not roles."""
    await add_role(server, "user-admin", allow={"rules": [{"resources": ["user"],
                                                           "verbs": ["*"]}]})
    return await api.user("ursula", ["user-admin"])


def user_json(name: str, roles: list[str]) -> dict[str, Any]:
    return to_json_obj(User(metadata=Metadata(name=name), spec=UserSpec(roles=roles)))


async def test_creating_a_user_needs_role_update(user_admin: APIClient, server: AuthServer
                                                 ) -> None:
    with pytest.raises(AccessDenied, match='"update" on "role"'):
        await user_admin.post("/v1/resources", user_json("mallory", ["editor"]))
    with pytest.raises(NotFound):
        await server.users.get("mallory")


async def test_updating_a_user_needs_role_update(user_admin: APIClient, server: AuthServer
                                                 ) -> None:
    """Or a user manager could make themselves an editor."""
    with pytest.raises(AccessDenied, match='"update" on "role"'):
        await user_admin.post("/v1/resources?upsert=1", user_json("ursula", ["editor"]))
    assert (await server.users.get("ursula")).spec.roles == ["user-admin"]


async def test_setting_a_password_needs_role_update(user_admin: APIClient, api: API) -> None:
    await api.user("erin", ["editor"])
    with pytest.raises(AccessDenied, match='"update" on "role"'):
        await user_admin.post("/v1/users/erin/password", {"password": PASSWORD})


async def test_setting_totp_needs_role_update(user_admin: APIClient, api: API) -> None:
    await api.user("erin", ["editor"])
    with pytest.raises(AccessDenied, match='"update" on "role"'):
        await user_admin.post("/v1/users/erin/totp", {"enabled": False})


async def test_an_editor_manages_users(api: API, server: AuthServer) -> None:
    editor = await api.user("erin", ["editor"])
    await editor.post("/v1/resources", user_json("dave", ["access"]))
    await editor.post("/v1/users/dave/password", {"password": PASSWORD})
    await server.passwords.check("dave", PASSWORD)


async def test_a_user_with_an_unknown_role_is_refused_naming_the_roles(api: API,
                                                                       server: AuthServer
                                                                       ) -> None:
    """A typo (acess) made a user who could do nothing, and nobody said so."""
    admin = await api.admin()
    with pytest.raises(BadParameter) as refused:
        await admin.post("/v1/resources", user_json("bob", ["access", "acess", "x"]))
    assert str(refused.value) == ("unknown roles 'acess', 'x': the roles are access, auditor, "
                                  "editor")
    with pytest.raises(NotFound):
        await server.users.get("bob")
    await admin.post("/v1/resources", user_json("bob", ["access"]))
    with pytest.raises(BadParameter, match=r"^unknown role 'acess': "):
        await admin.post("/v1/resources?upsert=1", user_json("bob", ["acess"]))
    assert (await server.users.get("bob")).spec.roles == ["access"]


# --- audit events reported by hosts -------------------------------------------------------


def event(name: str, time: dt.datetime, **kw: Any) -> dict[str, Any]:
    return AuditEvent(event=name, time=time, cluster=CLUSTER, **kw).to_json_obj()


@pytest.fixture
async def node(api: API, server: AuthServer) -> APIClient:
    """Node db1 (host id hid-1), registered by a first heartbeat."""
    client = await api.host("node", "hid-1", "db1", [LOCAL_NODE_ADDR])
    await client.post("/v1/nodes/heartbeat", {"hostname": "db1", "addr": LOCAL_NODE_ADDR})
    return client


async def post(client: APIClient, *events: object) -> dict[str, int]:
    reply: dict[str, int] = await client.post("/v1/events", {"events": list(events)})
    return reply


async def stored(server: AuthServer, name: str) -> AuditEvent:
    [ev] = (await server.audit.search(types=[name])).events
    return ev


async def test_the_auth_stamps_cluster_and_node(node: APIClient, server: AuthServer,
                                                clock: FakeClock) -> None:
    await post(node, {**event("session.start", clock.now()), "cluster": "evil.example",
                      "node": "db9"})
    ev = await stored(server, "session.start")
    assert (ev.cluster, ev.node, ev.fields["server_id"]) == (CLUSTER, "db1", "hid-1")


async def test_the_auth_gives_each_event_its_own_id(node: APIClient, server: AuthServer,
                                                    clock: FakeClock) -> None:
    await post(node, event("exec", clock.now(), id="forged-id"))
    assert (await stored(server, "exec")).id != "forged-id"


@pytest.mark.parametrize("offset", [-EVENT_SKEW, dt.timedelta(seconds=-30), EVENT_SKEW])
async def test_a_hosts_time_is_kept_within_the_skew(node: APIClient, server: AuthServer,
                                                    clock: FakeClock, offset: dt.timedelta
                                                    ) -> None:
    await post(node, event("exec", clock.now() + offset))
    assert (await stored(server, "exec")).time == clock.now() + offset


@pytest.mark.parametrize("offset", [-EVENT_SKEW - dt.timedelta(seconds=1),
                                    dt.timedelta(days=-365), dt.timedelta(hours=2)])
async def test_a_hosts_time_beyond_the_skew_is_replaced(node: APIClient, server: AuthServer,
                                                        clock: FakeClock, offset: dt.timedelta
                                                        ) -> None:
    await post(node, event("exec", clock.now() + offset))
    assert (await stored(server, "exec")).time == clock.now()


@pytest.mark.parametrize(("role", "name", "allowed"), [
    ("node", "session.start", True), ("node", "session.end", True),
    ("node", "session.rejected", True), ("node", "exec", True), ("node", "auth", True),
    ("node", "port_forward", True), ("node", "port_forward.denied", True),
    ("node", "proxy.dial.denied", False), ("node", "user.login", False),
    ("node", "access.denied", False), ("node", "join", False),
    ("proxy", "proxy.dial.denied", True), ("proxy", "session.start", False),
    ("proxy", "user.login", False), ("proxy", "access.denied", False),
])
async def test_each_host_role_emits_only_its_own_events(api: API, clock: FakeClock, role: str,
                                                        name: str, allowed: bool) -> None:
    client = await api.host(role, "hid-1", f"{role}1", [NODE_ADDR] if role == "node" else [])
    reply = await post(client, event(name, clock.now()))
    assert reply == ({"stored": 1, "rejected": 0} if allowed else {"stored": 0, "rejected": 1})


async def test_a_forbidden_event_is_not_stored(node: APIClient, server: AuthServer,
                                               clock: FakeClock) -> None:
    await post(node, event("user.login", clock.now(), user="root"))
    assert (await server.audit.search(types=["user.login"])).events == []


async def test_an_oversized_event_is_stored_cut_to_fit(node: APIClient, server: AuthServer,
                                                       clock: FakeClock) -> None:
    command = "echo hi; : " + "x" * (8 * MAX_FIELDS)
    reply = await post(node, event("exec", clock.now(), message="m" * (MAX_MESSAGE + 1),
                                   fields={"command": command}))
    assert reply == {"stored": 1, "rejected": 0}
    ev = await stored(server, "exec")
    assert ev.message == "m" * MAX_MESSAGE
    assert ev.fields["command"].startswith("echo hi; : xxx")
    assert ev.fields["truncated"] == {"message": MAX_MESSAGE + 1, "command": len(command)}
    assert fields_size(ev.fields) <= MAX_FIELDS + 100  # and the auth's server_id


async def test_the_largest_event_allowed_is_stored(node: APIClient, clock: FakeClock) -> None:
    reply = await post(node, event("exec", clock.now(), message="x" * MAX_MESSAGE))
    assert reply == {"stored": 1, "rejected": 0}


async def test_a_malformed_event_is_rejected_alone(node: APIClient, clock: FakeClock) -> None:
    reply = await post(node, {"event": "exec"}, "not an object", event("exec", clock.now()))
    assert reply == {"stored": 1, "rejected": 2}


@pytest.mark.parametrize("bad", [{"time": "2026-01-01T00:00:00"}, {"message": 42}])
async def test_an_ill_typed_event_is_rejected_alone(node: APIClient, clock: FakeClock,
                                                    bad: dict[str, Any]) -> None:
    reply = await post(node, {**event("exec", clock.now()), **bad}, event("exec", clock.now()))
    assert reply == {"stored": 1, "rejected": 1}


# --- a leaf's events, relayed by the root proxy -------------------------------------------


@pytest.fixture
async def root_proxy(api: API, server: AuthServer) -> APIClient:
    """This cluster as a root with leaf us-east-1a; its proxy's API client."""
    await server.trust.remotes.create(RemoteCluster(metadata=Metadata(name="us-east-1a")))
    return await api.host("proxy", "proxy-hid", "proxy1", [])


def leaf_item(name: str, time: dt.datetime, **kw: Any) -> dict[str, Any]:
    ev = AuditEvent(event=name, time=time, cluster="us-east-1a", **kw)
    key = f"{int(time.timestamp() * 1_000_000):020d}/{ev.id}"
    return {"key": key, "event": ev.to_json_obj()}


async def test_leaf_events_are_stored_once_under_the_leafs_name(
    root_proxy: APIClient, server: AuthServer, clock: FakeClock,
) -> None:
    item = leaf_item("session.start", clock.now(), user="alice")
    item["event"]["cluster"] = "sso.example.com"  # a leaf claiming another cluster
    for _ in range(2):  # delivered twice (a lost acknowledgement)
        reply = await root_proxy.post("/v1/remote_events/us-east-1a", {"events": [item]})
        assert reply == {"stored": 1, "rejected": 0}
    found = (await server.audit.search(types=["session.start"])).events
    assert [(e.cluster, e.user) for e in found] == [("us-east-1a", "alice")]


async def test_malformed_or_oversized_leaf_events_are_rejected_alone(
    root_proxy: APIClient, server: AuthServer, clock: FakeClock,
) -> None:
    good = leaf_item("exec", clock.now(), user="alice")
    huge = leaf_item("exec", clock.now(), user="x" * (4 * MAX_FIELDS))
    unknown = leaf_item("exec", clock.now())
    unknown["event"]["event"] = "root.takeover"
    bad_key = {**leaf_item("exec", clock.now()), "key": "../../x"}
    reply = await root_proxy.post("/v1/remote_events/us-east-1a", {
        "events": [good, huge, unknown, bad_key, "not an object", {"key": "x"}]})
    assert reply == {"stored": 1, "rejected": 5}
    assert len((await server.audit.search(types=["exec"])).events) == 1


async def test_a_leaf_event_with_a_long_command_is_stored_cut_to_fit(
    root_proxy: APIClient, server: AuthServer, clock: FakeClock,
) -> None:
    command = "x" * (4 * MAX_FIELDS)
    item = leaf_item("exec", clock.now(), message=command, fields={"command": command})
    reply = await root_proxy.post("/v1/remote_events/us-east-1a", {"events": [item]})
    assert reply == {"stored": 1, "rejected": 0}
    ev = await stored(server, "exec")
    assert ev.fields["truncated"] == {"message": len(command), "command": len(command)}


async def test_events_for_an_unknown_leaf_are_refused(root_proxy: APIClient,
                                                      clock: FakeClock) -> None:
    with pytest.raises(AccessDenied, match="not a leaf"):
        await root_proxy.post("/v1/remote_events/elsewhere",
                              {"events": [leaf_item("exec", clock.now())]})


async def test_a_resent_host_event_is_stored_once(node: APIClient, server: AuthServer,
                                                  clock: FakeClock) -> None:
    ev = event("session.end", clock.now(), user="alice")
    assert await post(node, ev) == {"stored": 1, "rejected": 0}
    assert await post(node, ev) == {"stored": 1, "rejected": 0}  # after a lost reply
    assert len((await server.audit.search(types=["session.end"])).events) == 1


# --- a root proxy's report of the tunnels it holds ----------------------------------------


async def test_a_proxy_reports_every_tunnel_it_holds_in_one_call(root_proxy: APIClient,
                                                                 server: AuthServer) -> None:
    await root_proxy.post("/v1/remote_clusters/heartbeat", {"leaves": ["us-east-1a"]})
    [rc] = await server.trust.remote_clusters()
    assert rc.status.connection == "online"
    await root_proxy.post("/v1/remote_clusters/heartbeat", {"leaves": []})
    [rc] = await server.trust.remote_clusters()
    assert rc.status.connection == "offline"


async def test_only_a_proxy_reports_tunnels(api: API, node: APIClient,
                                            server: AuthServer) -> None:
    await server.trust.remotes.create(RemoteCluster(metadata=Metadata(name="us-east-1a")))
    for caller in (await api.admin(), node):
        with pytest.raises(AccessDenied):
            await caller.post("/v1/remote_clusters/heartbeat", {"leaves": ["us-east-1a"]})
    [rc] = await server.trust.remote_clusters()
    assert rc.status.connection == "offline"


@pytest.mark.parametrize("body", [{}, {"leaves": "us-east-1a"}, {"leaves": [1]}])
async def test_a_malformed_tunnel_report_is_refused(root_proxy: APIClient,
                                                    body: dict[str, Any]) -> None:
    with pytest.raises(BadParameter):
        await root_proxy.post("/v1/remote_clusters/heartbeat", body)


# --- a trust watch whose client went away -------------------------------------------------


async def test_a_watch_whose_client_vanished_ends_without_an_error(
        node: APIClient, server: AuthServer, caplog: pytest.LogCaptureFixture) -> None:
    """A killed node leaves its trust watch behind: the next line the auth writes to it
    fails. That is the client gone, not an internal error with a traceback."""
    caplog.set_level(logging.INFO, logger="gatehouse.auth.api")
    watch = node.lines("/v1/trust", watch="1")
    assert b"user_cas" in await anext(watch)
    await watch.aclose()
    await node.close()  # its connection, as a killed process's
    await add_role(server, "after-the-client-left")  # a new snapshot to write

    async def ended() -> None:
        while not any("client went away" in r.getMessage() for r in caplog.records):
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
            await asyncio.sleep(0.02)

    await asyncio.wait_for(ended(), 5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
