"""The leaf side of the streams a root opens: an API call is relayed only in the name of
a user certificate the stream carries (review finding 2 of the hardening issue: a
stranger at the root reached the leaf's login through an anonymous stream)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gatehouse.clock import FakeMonotonic
from gatehouse.errors import ConnectionProblem
from gatehouse.tunnel.limits import MESSAGE_DEADLINE
from gatehouse.tunnel.mux import MuxSession, read_all
from gatehouse.tunnel.serve import StreamServer
from gatehouse.wire.dial import NodeRoute
from tests.tunnel.loopback import sessions

TIMEOUT = 5.0  # real seconds, for real I/O only


class Relay:
    """The leaf's auth as the stream server reaches it: records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes | None]] = []

    async def relay(self, method: str, path: str, body: bytes, client_der: bytes | None,
                    remote: str) -> tuple[int, bytes]:
        self.calls.append((method, path, client_der))
        return 200, b'{"ok": true}'

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        raise AssertionError("no SSH streams here")


@pytest.fixture
async def tunnel() -> AsyncIterator[tuple[MuxSession, Relay, list[tuple[str, Any]]]]:
    relay, audited = Relay(), []

    async def audit(event: str, fields: dict[str, Any]) -> None:
        audited.append((event, fields))

    clock = FakeMonotonic()
    server = StreamServer(relay, relay, audit, clock)
    root, leaf, listener = await sessions(server, clock)
    yield root, relay, audited
    await root.aclose()
    await leaf.wait_closed()
    listener.close()


def _api(cert: bytes) -> dict[str, Any]:
    return {"kind": "api", "method": "POST", "path": "/v1/login", "remote": "198.51.100.7:1",
            "client_cert": base64.b64encode(cert).decode()}


async def test_an_api_stream_without_a_certificate_is_refused_unsent(
        tunnel: tuple[MuxSession, Relay, list[tuple[str, Any]]]) -> None:
    root, relay, _ = tunnel
    with pytest.raises(ConnectionProblem, match="needs the certificate of a root cluster user"):
        await root.open(_api(b""))
    meta = _api(b"")
    del meta["client_cert"]
    with pytest.raises(ConnectionProblem, match="needs the certificate"):
        await root.open(meta)
    assert relay.calls == []


async def test_an_api_stream_with_a_certificate_is_relayed_in_its_name(
        tunnel: tuple[MuxSession, Relay, list[tuple[str, Any]]]) -> None:
    root, relay, _ = tunnel
    stream = await root.open(_api(b"\x30\x03der"))
    await stream.write(b"{}")
    stream.write_eof()
    reply = json.loads(await read_all(stream, 1 << 20))
    assert reply["status"] == 200
    assert relay.calls == [("POST", "/v1/login", b"\x30\x03der")]


async def test_a_relayed_call_whose_body_never_finishes_is_reset_at_the_deadline(
        tunnel: tuple[MuxSession, Relay, list[tuple[str, Any]]]) -> None:
    root, relay, _ = tunnel
    stream = await root.open(_api(b"\x30\x03der"))
    await stream.write(b"{")  # and nothing more, ever
    clock = root._clock
    assert isinstance(clock, FakeMonotonic)
    await asyncio.wait_for(clock.until_sleeping(1), TIMEOUT)
    clock.advance(MESSAGE_DEADLINE)
    with pytest.raises(ConnectionProblem, match=f"within {MESSAGE_DEADLINE:g} s"):
        await asyncio.wait_for(stream.read(), TIMEOUT)
    assert relay.calls == []


class Nodes:
    """The leaf's auth resolving one node, listening at ``addr`` as host ``hid-7``."""

    def __init__(self, addr: str) -> None:
        self.addr = addr

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        return NodeRoute(self.addr, "hid-7")

    async def relay(self, method: str, path: str, body: bytes, client_der: bytes | None,
                    remote: str) -> tuple[int, bytes]:
        raise AssertionError("no API streams here")


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

    clock = FakeMonotonic()
    root, leaf, listener = await sessions(StreamServer(nodes, nodes, audit, clock), clock)
    stream = await root.open({"kind": "ssh", "target": "db1", "user": "alice",
                              "client_cert": base64.b64encode(b"\x30\x03der").decode()})
    assert stream.accepted == {"host_id": "hid-7"}
    assert await read_all(stream, 1 << 10) == b"SSH-2.0-node\r\n"
    await root.aclose()
    await leaf.wait_closed()
    listener.close()
    node.close()
