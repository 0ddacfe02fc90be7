"""The proxy's web/API front: forwards /v1/* to the auth service.

The proxy passes on the caller's client certificate (DER, base64) so that the
auth re-verifies it against its own CAs: a proxy can relay identities it has
seen but cannot invent one. The auth believes these headers only from a
connection authenticated as a proxy of its cluster.
"""

from __future__ import annotations

import base64
import ssl

import aiohttp
from aiohttp import web

from gatehouse.tls import peer_der

__all__ = ["CLIENT_CERT_HEADER", "REMOTE_ADDR_HEADER", "make_web_app"]

CLIENT_CERT_HEADER = "X-Gatehouse-Client-Cert"
REMOTE_ADDR_HEADER = "X-Gatehouse-Remote-Addr"
MAX_BODY = 1 << 20


def make_web_app(auth_addr: str, auth_ssl: ssl.SSLContext, auth_hostname: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    sessions: list[aiohttp.ClientSession] = []

    async def on_startup(_: web.Application) -> None:
        sessions.append(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=auth_ssl, limit=256),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        )

    async def on_cleanup(_: web.Application) -> None:
        for s in sessions:
            await s.close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        transport = request.transport
        der = peer_der(transport.get_extra_info("ssl_object") if transport else None)
        # Always set, empty for an anonymous client: the auth must never mistake a
        # forwarded request for one the proxy makes in its own name.
        headers[CLIENT_CERT_HEADER] = base64.b64encode(der).decode() if der else ""
        if request.remote:
            headers[REMOTE_ADDR_HEADER] = request.remote
        body = await request.read()
        try:
            async with sessions[0].request(
                request.method,
                f"https://{auth_addr}{request.rel_url}",
                data=body or None,
                headers=headers,
                server_hostname=auth_hostname,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                response.content_type = upstream.content_type
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response(
                {"error": f"the proxy cannot reach the auth service: {exc}"}, status=502
            )

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app
