"""What the auth API's handlers share: who is calling, and the request's JSON body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gatehouse.auth.identify import Caller, authorize, identify
from gatehouse.auth.server import AuthServer
from gatehouse.errors import BadParameter
from gatehouse.pki.tls import peer_der
from gatehouse.wire.names import CLIENT_CERT_HEADER, REMOTE_ADDR_HEADER

__all__ = ["SERVER", "authorized", "caller_of", "json_body", "required", "server_of"]

SERVER: web.AppKey[AuthServer] = web.AppKey("server", AuthServer)


def server_of(request: web.Request) -> AuthServer:
    return request.app[SERVER]


async def caller_of(request: web.Request) -> Caller | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    return await identify(
        server_of(request),
        peer_der(ssl_object),
        request.headers.get(CLIENT_CERT_HEADER),
        request.remote or "",
        request.headers.get(REMOTE_ADDR_HEADER),
    )


async def authorized(request: web.Request, resource: str, verb: str | None) -> Caller:
    return await authorize(server_of(request), await caller_of(request), resource, verb)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadParameter("request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadParameter("request body must be a JSON object")
    return data


def required(body: dict[str, Any], name: str, kind: type = str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind):
        raise BadParameter(f"field {name!r} is missing or not a {kind.__name__}")
    return value
