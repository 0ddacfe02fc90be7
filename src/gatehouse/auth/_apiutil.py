"""What the auth API's handlers share: the caller's authorized view of the auth, and
the request's JSON body parsed into its model."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gatehouse._sys.httpbody import read_body
from gatehouse.auth.authz import AuthWithRoles
from gatehouse.auth.identify import identify, is_proxy, relayed
from gatehouse.auth.server import AuthServer
from gatehouse.errors import BadParameter
from gatehouse.pki.tls import peer_der
from gatehouse.types.problems import describe_problems
from gatehouse.wire.names import CLIENT_CERT_HEADER, REMOTE_ADDR_HEADER

__all__ = ["RELAYED", "SERVER", "api_of", "body_of", "json_body", "server_of", "source_of"]

SERVER: web.AppKey[AuthServer] = web.AppKey("server", AuthServer)
# Served on a co-located proxy's port: every connection's client is one the proxy relays.
RELAYED: web.AppKey[bool] = web.AppKey("relayed", bool)
_M = TypeVar("_M", bound=BaseModel)


def server_of(request: web.Request) -> AuthServer:
    return request.app[SERVER]


async def api_of(request: web.Request) -> AuthWithRoles:
    """The auth as the caller its TLS certificate (or a relaying proxy's header) proves."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if request.app[RELAYED]:
        client = await relayed(server_of(request), peer_der(ssl_object), request.remote or "")
        return AuthWithRoles(server_of(request), client)
    caller = await identify(
        server_of(request),
        peer_der(ssl_object),
        request.headers.get(CLIENT_CERT_HEADER),
        request.remote or "",
        request.headers.get(REMOTE_ADDR_HEADER),
    )
    return AuthWithRoles(server_of(request), caller, request.remote or "")


def source_of(request: web.Request) -> tuple[str, bool]:
    """Where the caller is (an address) and whether it showed a certificate: a proxy of
    this cluster speaks for the client it relays (``api_of`` checks who that is)."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = peer_der(ssl_object)
    remote = request.remote or ""
    forwarded = request.headers.get(CLIENT_CERT_HEADER)
    if request.app[RELAYED] or not der or forwarded is None \
            or not is_proxy(server_of(request), der):
        return remote, bool(der)
    return request.headers.get(REMOTE_ADDR_HEADER) or remote, bool(forwarded)


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await read_body(request))
    except (ValueError, RecursionError):  # deep nesting: RecursionError, not ValueError
        raise BadParameter("request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadParameter("request body must be a JSON object")
    return data


async def body_of(request: web.Request, model: type[_M]) -> _M:
    """The JSON body as ``model``; BadParameter naming every bad field otherwise."""
    try:
        return model.model_validate(await json_body(request))
    except ValidationError as exc:
        raise BadParameter(f"request body: {describe_problems(exc)}") from None
