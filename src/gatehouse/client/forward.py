"""Relaying an API call to this cluster's auth in the caller's name.

The relay passes on the caller's client certificate (DER, base64) so that the
auth re-verifies it against its own CAs: a proxy can relay identities it has
seen but cannot invent one. The auth believes these headers only from a
connection authenticated as a proxy of its cluster.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Sequence

import aiohttp

from gatehouse.client.failover import CONNECT_TIMEOUT, Failover
from gatehouse.errors import from_status
from gatehouse.wire.authapi import ROUTES
from gatehouse.wire.dial import NodeRoute
from gatehouse.wire.names import CLIENT_CERT_HEADER, REMOTE_ADDR_HEADER

__all__ = ["MAX_RELAYED_RESPONSE", "AuthForwarder", "ForwardedCall", "error_body"]

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

    def __init__(self, auth_addrs: Sequence[str], auth_ssl: ssl.SSLContext,
                 auth_hostname: str) -> None:
        """``auth_addrs``: the auth's addresses (the next is tried when one cannot be
        connected to: client.failover)."""
        self._failover = Failover(auth_addrs)
        self._ssl = auth_ssl
        self._hostname = auth_hostname
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No pool limit: trust watches of nodes joined through this proxy hold
                # connections for as long as they live.
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def open(self, call: ForwardedCall) -> AsyncIterator[aiohttp.ClientResponse]:
        def opening(addr: str) -> Awaitable[aiohttp.ClientResponse]:
            return self._http().request(
                call.method, f"https://{addr}{call.path}", data=call.body or None,
                headers=call.headers(), server_hostname=self._hostname)

        async with await self._failover.call(opening) as upstream:
            yield upstream

    async def resolve_node(self, target: str, client_der: bytes | None,
                           remote: str) -> NodeRoute:
        """Ask the auth, as the user, which node ``target`` is; returns where it is and
        its host id.

        The auth answers only for a registered node that the user's roles select.
        """
        path = ROUTES["resolve_node"].path + "?" + urllib.parse.urlencode({"target": target})
        status, body = await self.call(ForwardedCall("GET", path, b"", client_der, remote))
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        if status != 200:
            raise from_status(status, str(data.get("error") or f"cannot resolve {target}"))
        spec = data["spec"]
        return NodeRoute(str(spec["addr"]), str(spec["host_id"]), spec.get("tunnel") is True)

    async def call(self, call: ForwardedCall) -> tuple[int, bytes]:
        """A buffered call (status, body); for relaying over a tunnel."""
        try:
            async with self.open(call) as upstream:
                body = await upstream.content.read(MAX_RELAYED_RESPONSE)
                return upstream.status, body
        except (aiohttp.ClientError, OSError) as exc:
            return 502, error_body(f"the proxy cannot reach the auth service: {exc}")


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
