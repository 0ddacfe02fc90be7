"""The leaf side of the streams a root opens: an API call or a dial is served only in
the name of a user certificate this leaf takes from that root (relaycheck.py): review
finding 2 of the hardening issue (a stranger at the root reached the leaf's login
through an anonymous stream) and issue 15, finding 7 (another root's certificate,
relayed over this root's tunnel, was served). Refusals are logged and audited."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatehouse import __version__
from gatehouse.clock import FakeClock, FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.accesspush import AccessPush
from gatehouse.tunnel.limits import MESSAGE_DEADLINE
from gatehouse.tunnel.mux import MuxSession, MuxStream, read_all
from gatehouse.tunnel.serve import StreamServer
from gatehouse.types.cluster_access import ClusterAccess, ClusterRule
from gatehouse.wire.authapi import LeafInfo
from gatehouse.wire.dial import NodeRoute
from tests.tunnel.loopback import sessions
from tests.tunnel.relayed import NOW, Root, leaf_trust

A, B = Root.new("root-a"), Root.new("root-b")

TIMEOUT = 5.0  # real seconds, for real I/O only


class Relay:
    """The leaf's auth as the stream server reaches it: records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes | None]] = []
        self.access: list[tuple[str, ClusterAccess]] = []  # what roots said of labels

    async def store_access(self, root: str, access: ClusterAccess) -> None:
        self.access.append((root, access))

    async def relay(self, method: str, path: str, body: bytes, client_der: bytes | None,
                    remote: str) -> tuple[int, bytes]:
        self.calls.append((method, path, client_der))
        return 200, b'{"ok": true}'

    async def resolve_node(self, target: str, client_der: bytes | None, remote: str) -> NodeRoute:
        self.calls.append(("DIAL", target, client_der))
        raise ConnectionProblem(f"node {target} is not registered")


Tunnel = tuple[MuxSession, Relay, list[tuple[str, Any]]]


async def no_access(root: str, access: ClusterAccess) -> None:
    raise AssertionError(f"no word on cluster labels expected here ({root})")


async def no_tunnel_nodes(host_id: str, meta: dict[str, Any]) -> MuxStream:
    raise AssertionError(f"no tunnel node may be dialed here ({host_id})")


@pytest.fixture
async def tunnel() -> AsyncIterator[Tunnel]:
    """Root A's tunnel to a leaf that trusts roots A and B."""
    relay, audited = Relay(), []

    async def audit(event: str, fields: dict[str, Any]) -> None:
        audited.append((event, fields))

    timer = FakeMonotonic()
    trust = leaf_trust(A, B)
    server = StreamServer("root-a", relay, relay, audit, trust=lambda: trust,
                          clock=FakeClock(NOW), timer=timer, open_node=no_tunnel_nodes,
                          store_access=relay.store_access, proxy_addr="leaf.example.com:3080")
    root, leaf, listener = await sessions(server, timer)
    yield root, relay, audited
    await root.aclose()
    await leaf.wait_closed()
    listener.close()


def _api(cert: bytes) -> dict[str, Any]:
    return {"kind": "api", "method": "POST", "path": "/v1/login", "remote": "198.51.100.7:1",
            "client_cert": base64.b64encode(cert).decode()}


async def test_an_api_stream_without_a_certificate_is_refused_unsent(tunnel: Tunnel) -> None:
    root, relay, audited = tunnel
    with pytest.raises(ConnectionProblem, match="needs the certificate of a root cluster user"):
        await root.open(_api(b""))
    meta = _api(b"")
    del meta["client_cert"]
    with pytest.raises(ConnectionProblem, match="needs the certificate"):
        await root.open(meta)
    assert relay.calls == []
    assert [event for event, _ in audited] == ["proxy.dial.denied"] * 2


async def test_an_api_stream_with_the_roots_user_is_relayed_in_its_name(tunnel: Tunnel) -> None:
    root, relay, _ = tunnel
    alice = A.user_der("alice")
    stream = await root.open(_api(alice))
    await stream.write(b"{}")
    stream.write_eof()
    reply = json.loads(await read_all(stream, 1 << 20))
    assert reply["status"] == 200
    assert relay.calls == [("POST", "/v1/login", alice)]


@pytest.mark.parametrize("kind", ["api", "ssh"])
async def test_another_roots_user_is_refused_over_this_roots_tunnel(
        tunnel: Tunnel, kind: str) -> None:
    root, relay, audited = tunnel
    meta = {**_api(B.user_der("bob")), "kind": kind, "target": "node1"}
    with pytest.raises(ConnectionProblem, match="not signed by the user CA of root-a"):
        await root.open(meta)
    assert relay.calls == []  # neither relayed nor resolved
    [(event, fields)] = audited
    assert event == "proxy.dial.denied" and fields["user"] == "bob"
    assert fields["remote_addr"] == "198.51.100.7:1"
    assert fields["fields"] == {"root": "root-a", "kind": kind,
                                "target": "node1" if kind == "ssh" else "/v1/login"}


async def test_a_dial_goes_to_the_leafs_auth_in_the_users_name(tunnel: Tunnel) -> None:
    root, relay, audited = tunnel
    alice = A.user_der("alice")
    with pytest.raises(ConnectionProblem, match="node db9 is not registered"):
        await root.open({"kind": "ssh", "target": "db9", "client_cert":
                         base64.b64encode(alice).decode(), "remote": "198.51.100.7:1"})
    assert relay.calls == [("DIAL", "db9", alice)]
    assert audited[0][1]["user"] == "alice"


async def test_a_relayed_call_whose_body_never_finishes_is_reset_at_the_deadline(
        tunnel: Tunnel) -> None:
    root, relay, _ = tunnel
    stream = await root.open(_api(A.user_der("alice")))
    await stream.write(b"{")  # and nothing more, ever
    clock = root._clock
    assert isinstance(clock, FakeMonotonic)
    await asyncio.wait_for(clock.until_sleeping(1), TIMEOUT)
    clock.advance(MESSAGE_DEADLINE)
    with pytest.raises(ConnectionProblem, match=f"within {MESSAGE_DEADLINE:g} s"):
        await asyncio.wait_for(stream.read(), TIMEOUT)
    assert relay.calls == []


class Nodes(Relay):
    """The leaf's auth resolving one node, listening at ``addr`` as host ``hid-7``."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        return NodeRoute(self.addr, "hid-7")


async def test_an_ssh_stream_names_the_host_it_reached() -> None:
    """The root proxy passes the host id on to the user's client, which pins it."""
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-node\r\n")
        await writer.drain()
        writer.close()

    node = await asyncio.start_server(greet, "127.0.0.1", 0)
    nodes = Nodes(f"127.0.0.1:{node.sockets[0].getsockname()[1]}")

    async def audit(event: str, fields: dict[str, Any]) -> None:
        raise AssertionError(f"nothing to refuse: {event} {fields}")

    timer, trust = FakeMonotonic(), leaf_trust(A, B)
    server = StreamServer("root-a", nodes, nodes, audit, trust=lambda: trust,
                          clock=FakeClock(NOW), timer=timer, open_node=no_tunnel_nodes,
                          store_access=no_access)
    root, leaf, listener = await sessions(server, timer)
    stream = await root.open({"kind": "ssh", "target": "db1",
                              "client_cert": base64.b64encode(A.user_der("alice")).decode()})
    assert stream.accepted == {"host_id": "hid-7"}
    assert await read_all(stream, 1 << 10) == b"SSH-2.0-node\r\n"
    await root.aclose()
    await leaf.wait_closed()
    listener.close()
    node.close()


async def test_a_node_that_does_not_answer_is_named_as_the_roots_proxy_names_it() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{closed.getsockname()[1]}"
    nodes, audited = Nodes(addr), []

    async def audit(event: str, fields: dict[str, Any]) -> None:
        audited.append(fields["message"])

    timer, trust = FakeMonotonic(), leaf_trust(A, B)
    server = StreamServer("root-a", nodes, nodes, audit, trust=lambda: trust,
                          clock=FakeClock(NOW), timer=timer, open_node=no_tunnel_nodes,
                          store_access=no_access)
    root, leaf, listener = await sessions(server, timer)
    with pytest.raises(ConnectionProblem) as info:
        await root.open({"kind": "ssh", "target": "db1",
                         "client_cert": base64.b64encode(A.user_der("alice")).decode()})
    assert str(info.value) == audited[0] == f"node db1 at {addr} is unreachable"
    await root.aclose()
    await leaf.wait_closed()
    listener.close()


async def test_a_tunnel_node_of_the_leaf_is_reached_over_its_own_tunnel() -> None:
    """Root proxy -> leaf tunnel -> leaf proxy -> the node's tunnel: the leaf joins the
    root's stream to a stream on the node's tunnel, never dialing an address."""
    heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def node_ssh(stream: MuxStream) -> None:
        stream.accept({"host_id": "hid-9"})
        await stream.write(b"SSH-2.0-tunnel-node\r\n")
        stream.write_eof()
        heard.set_result(await read_all(stream, 1 << 10))

    timer, trust = FakeMonotonic(), leaf_trust(A, B)
    to_node, node, node_listener = await sessions(node_ssh, timer)  # the leaf proxy's end
    asked: list[tuple[str, dict[str, Any]]] = []

    async def open_node(host_id: str, meta: dict[str, Any]) -> MuxStream:
        asked.append((host_id, meta))
        return await to_node.open(meta)

    class TunnelNodes(Relay):
        async def resolve_node(self, target: str, client_der: bytes | None,
                               remote: str) -> NodeRoute:
            return NodeRoute("", "hid-9", tunnel=True)

    async def audit(event: str, fields: dict[str, Any]) -> None:
        raise AssertionError(f"nothing to refuse: {event} {fields}")

    nodes = TunnelNodes()
    server = StreamServer("root-a", nodes, nodes, audit, trust=lambda: trust,
                          clock=FakeClock(NOW), timer=timer, open_node=open_node,
                          store_access=no_access)
    root, leaf, listener = await sessions(server, timer)
    stream = await root.open({"kind": "ssh", "target": "edge",
                              "client_cert": base64.b64encode(A.user_der("alice")).decode()})
    assert stream.accepted == {"host_id": "hid-9"}
    assert await read_all(stream, 1 << 10) == b"SSH-2.0-tunnel-node\r\n"
    await stream.write(b"SSH-2.0-client\r\n")
    stream.write_eof()
    assert await asyncio.wait_for(heard, TIMEOUT) == b"SSH-2.0-client\r\n"
    assert [(h, m["kind"], m["target"]) for h, m in asked] == [("hid-9", "ssh", "edge")]
    await root.aclose()
    await leaf.wait_closed()
    await to_node.aclose()
    await node.wait_closed()
    listener.close()
    node_listener.close()


# --- the root's word on its cluster labels ------------------------------------------------

PROD_ONLY = ClusterAccess(labels={"env": "prod"},
                          roles={"access": ClusterRule(allow={"env": "prod"})})


async def test_the_roots_cluster_labels_go_to_the_leafs_auth_with_the_roots_name(
        tunnel: Tunnel) -> None:
    """No user certificate: the tunnel itself says the root sent it."""
    root, relay, audited = tunnel
    push = AccessPush(lambda leaf, meta: root.open(meta), lambda: ["leaf-1"],
                      lambda leaf: PROD_ONLY.model_dump_json().encode(), FakeMonotonic())
    assert await push.push_all() == 0
    assert relay.access == [("root-a", PROD_ONLY)]
    # The leaf's answer says what it is, for the root's `gatectl get rc`, and where its
    # own proxy is (for the root's users while the root is down).
    assert push.said == {"leaf-1": LeafInfo(session_recording="node", version=__version__,
                                            proxy_addr="leaf.example.com:3080")}
    assert await push.push_all() == 0  # nothing new: nothing sent
    push.tunnel_up("leaf-1")  # a new tunnel is told again
    assert await push.push_all() == 0
    assert relay.access == [("root-a", PROD_ONLY)] * 2
    assert (relay.calls, audited) == ([], [])


async def test_a_malformed_word_on_cluster_labels_is_not_kept_and_is_sent_again(
        tunnel: Tunnel) -> None:
    root, relay, _ = tunnel
    bodies = [b'{"labels": "not a mapping"}', PROD_ONLY.model_dump_json().encode()]
    push = AccessPush(lambda leaf, meta: root.open(meta), lambda: ["leaf-1"],
                      lambda leaf: bodies[0], FakeMonotonic())
    assert await push.push_all() == 1  # unconfirmed: retried
    assert relay.access == []
    bodies.pop(0)
    assert await push.push_all() == 0
    assert relay.access == [("root-a", PROD_ONLY)]
