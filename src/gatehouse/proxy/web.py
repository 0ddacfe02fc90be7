"""The proxy's web/API front: forwards /v1/* to the auth service, or to a leaf.

The proxy passes on the caller's client certificate (DER, base64) so that the
auth re-verifies it against its own CAs: a proxy can relay identities it has
seen but cannot invent one. The auth believes these headers only from a
connection authenticated as a proxy of its cluster.

A request carrying ``X-Gatehouse-Cluster: LEAF`` goes through LEAF's reverse
tunnel to LEAF's proxy, which relays it to LEAF's auth the same way: the leaf
authorizes the root user itself, through its role map.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from gatehouse.errors import GatehouseError, from_status
from gatehouse.tls import peer_der

__all__ = [
    "CLIENT_CERT_HEADER",
    "CLUSTER_HEADER",
    "REMOTE_ADDR_HEADER",
    "AuthForwarder",
    "ForwardedCall",
    "make_web_app",
]

CLIENT_CERT_HEADER = "X-Gatehouse-Client-Cert"
REMOTE_ADDR_HEADER = "X-Gatehouse-Remote-Addr"
CLUSTER_HEADER = "X-Gatehouse-Cluster"
MAX_BODY = (1 << 20) + 65536  # a recording chunk and its framing
MAX_RELAYED_RESPONSE = 64 << 20


class ForwardedCall:
    """One API call as relayed: what the caller asked, and who the caller is."""

    def __init__(self, method: str, path: str, body: bytes, client_der: bytes | None,
                 remote: str) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.client_der = client_der
        self.remote = remote

    def headers(self) -> dict[str, str]:
        # Always set, empty for an anonymous client: the auth must never mistake a
        # forwarded request for one the proxy makes in its own name.
        return {
            "Content-Type": "application/json",
            CLIENT_CERT_HEADER: base64.b64encode(self.client_der).decode()
            if self.client_der else "",
            REMOTE_ADDR_HEADER: self.remote,
        }


class AuthForwarder:
    """Relays calls to this cluster's auth with the caller's certificate attached."""

    def __init__(self, auth_addr: str, auth_ssl: ssl.SSLContext, auth_hostname: str) -> None:
        self._base = f"https://{auth_addr}"
        self._ssl = auth_ssl
        self._hostname = auth_hostname
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No pool limit: trust watches of nodes joined through this proxy hold
                # connections for as long as they live.
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def open(self, call: ForwardedCall) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self._http().request(
            call.method, self._base + call.path, data=call.body or None,
            headers=call.headers(), server_hostname=self._hostname,
        ) as upstream:
            yield upstream

    async def resolve_node(self, target: str, client_der: bytes | None, remote: str) -> str:
        """Ask the auth, as the user, which node ``target`` is; returns its address.

        The auth answers only for a registered node that the user's roles select.
        """
        path = "/v1/nodes/resolve?" + urllib.parse.urlencode({"target": target})
        status, body = await self.call(ForwardedCall("GET", path, b"", client_der, remote))
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        if status != 200:
            raise from_status(status, str(data.get("error") or f"cannot resolve {target}"))
        return str(data["spec"]["addr"])

    async def call(self, call: ForwardedCall) -> tuple[int, bytes]:
        """A buffered call (status, body); for relaying over a tunnel."""
        try:
            async with self.open(call) as upstream:
                body = await upstream.content.read(MAX_RELAYED_RESPONSE)
                return upstream.status, body
        except (aiohttp.ClientError, OSError) as exc:
            return 502, _error_body(f"the proxy cannot reach the auth service: {exc}")


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


RelayToLeaf = Callable[[str, ForwardedCall], Awaitable[tuple[int, bytes]]]


def make_web_app(forwarder: AuthForwarder, cluster: str,
                 relay_to_leaf: RelayToLeaf) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    streams: set[asyncio.Task[Any]] = set()

    async def end_streams(_: web.Application) -> None:
        """On shutdown: a relayed stream (a node's trust watch) lasts as long as the
        auth's, and would hold the shutdown for its whole grace period."""
        for task in streams:
            task.cancel()

    async def on_cleanup(_: web.Application) -> None:
        await forwarder.close()

    async def forward(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        call = ForwardedCall(
            request.method, str(request.rel_url), await request.read(),
            peer_der(transport.get_extra_info("ssl_object") if transport else None),
            request.remote or "",
        )
        target = request.headers.get(CLUSTER_HEADER, "")
        if target and target != cluster:
            try:
                status, body = await relay_to_leaf(target, call)
            except GatehouseError as exc:
                status, body = exc.status, _error_body(str(exc))
            return web.Response(status=status, body=body, content_type="application/json")
        try:
            async with forwarder.open(call) as upstream:
                response = web.StreamResponse(status=upstream.status)
                response.content_type = upstream.content_type
                await response.prepare(request)
                task = asyncio.current_task()
                assert task is not None
                streams.add(task)
                try:
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                finally:
                    streams.discard(task)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response(
                {"error": f"the proxy cannot reach the auth service: {exc}"}, status=502
            )

    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app
