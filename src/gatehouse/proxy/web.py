"""The proxy's web/API front: forwards /v1/* to the auth service, or to a leaf. When the
auth shares the proxy's process, the front is the auth's own API app instead (each
client relayed by the certificate it presented here: auth.local), with no hop.

The proxy passes on the caller's client certificate (DER, base64) so that the
auth re-verifies it against its own CAs: a proxy can relay identities it has
seen but cannot invent one. The auth believes these headers only from a
connection authenticated as a proxy of its cluster.

The IdP's redirect of an SSO login (``GET /v1/sso/oidc/callback``) is the proxy's
own: it hands the query to the auth (``sso_finish``) and sends the browser on to gsh's
loopback listener, or shows why the login failed.

A request carrying ``X-Gatehouse-Cluster: LEAF`` goes through LEAF's reverse
tunnel to LEAF's proxy, which relays it to LEAF's auth the same way: the leaf
authorizes the root user itself, through its role map. Only a request with a
valid user certificate of this cluster is relayed: a leaf behind a firewall
shows none of its endpoints (login, join) to strangers who reach the root.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from gatehouse._sys.httpbody import read_body
from gatehouse.client.forward import AuthForwarder, ForwardedCall, error_body
from gatehouse.errors import AccessDenied, GatehouseError
from gatehouse.pki import x509
from gatehouse.pki.tls import peer_der
from gatehouse.wire.authapi import API_PREFIX, SSOCallback, SSORedirect
from gatehouse.wire.names import CLUSTER_HEADER, RECORDING_CHUNK

__all__ = ["RelayToLeaf", "make_web_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

MAX_BODY = RECORDING_CHUNK + 65536  # a recording chunk and its framing


RelayToLeaf = Callable[[str, ForwardedCall], Awaitable[tuple[int, bytes]]]
Authenticate = Callable[[bytes], x509.Identity]  # a client certificate (DER) -> its user
CheckReach = Callable[[x509.Identity, str], None]  # (user, leaf): AccessDenied if not theirs
Audit = Callable[[str, dict[str, Any]], Awaitable[None]]  # (event, fields) to this cluster
FinishSSO = Callable[[SSOCallback], Awaitable[SSORedirect]]
SSO_CALLBACK = "/v1/sso/oidc/callback"


def _sso_callback(finish: FinishSSO) -> Handler:
    async def callback(request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            redirect = await finish(SSOCallback(
                state=query.get("state", "")[:256], code=query.get("code", "")[:4096],
                error=query.get("error", "")[:256],
                error_description=query.get("error_description", "")[:1024],
                iss=query.get("iss", "")[:1024], remote_addr=request.remote or ""))
        except GatehouseError as exc:
            return web.Response(status=exc.status, text=f"Gatehouse login failed: {exc}\n")
        # Returned, not raised: the auth's app turns raised HTTP exceptions into JSON.
        return web.Response(status=302, headers={"Location": redirect.url})

    return callback


def _call_of(request: web.Request, body: bytes) -> ForwardedCall:
    transport = request.transport
    return ForwardedCall(
        request.method, str(request.rel_url), body,
        peer_der(transport.get_extra_info("ssl_object") if transport else None),
        request.remote or "",
    )


def _leaf_routing(cluster: str, relay_to_leaf: RelayToLeaf, authenticate: Authenticate,
                  check_reach: CheckReach, audit: Audit) -> Middleware:
    """A request of one of this cluster's users for another cluster goes through that
    leaf's tunnel, if their roles' cluster labels select the leaf (a refusal is audited,
    as a refused SSH dial is)."""

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        target = request.headers.get(CLUSTER_HEADER, "")
        if not target or target == cluster:
            return await handler(request)
        try:
            call = _call_of(request, await read_body(request))
            try:
                user = authenticate(call.client_der or b"")
            except AccessDenied as exc:
                log.warning("leaf relay refused cluster=%r remote=%s path=%r reason=%r",
                            target[:80], call.remote, call.path[:80], str(exc))
                raise AccessDenied(f"requests for cluster {target[:80]!r} need a user "
                                   f"certificate of {cluster}: {exc}") from None
            try:
                check_reach(user, target)
            except AccessDenied as exc:
                await audit("proxy.dial.denied", {
                    "user": user.name, "remote_addr": call.remote,
                    "fields": {"leaf": target[:80]},
                    "message": f"{call.method} {call.path[:80]} for cluster {target[:80]} "
                               f"refused: {exc}"})
                raise
            status, body = await relay_to_leaf(target, call)
        except GatehouseError as exc:
            status, body = exc.status, error_body(str(exc))
        return web.Response(status=status, body=body, content_type="application/json")

    return route


def make_web_app(forwarder: AuthForwarder, cluster: str, relay_to_leaf: RelayToLeaf,
                 authenticate: Authenticate, check_reach: CheckReach, finish_sso: FinishSSO,
                 local: web.Application | None = None, *, audit: Audit,
                 own_routes: dict[str, Handler] | None = None) -> web.Application:
    """The front: ``local`` (the co-located auth's API app) or a relay to the auth;
    ``authenticate`` vouches for the users whose requests go on to leaves,
    ``check_reach`` for the leaves they may reach (``audit`` takes its refusals);
    ``finish_sso`` hands an IdP's
    redirect to the auth; ``own_routes`` (GET path -> handler) the proxy answers itself."""
    routing = _leaf_routing(cluster, relay_to_leaf, authenticate, check_reach, audit)
    async def on_cleanup(_: web.Application) -> None:
        await forwarder.close()

    if local is not None:
        local.middlewares.insert(0, routing)
        local.on_cleanup.append(on_cleanup)
        local.router.add_route("GET", SSO_CALLBACK, _sso_callback(finish_sso))
        for path, handler in (own_routes or {}).items():
            local.router.add_route("GET", path, handler)
        return local
    app = web.Application(middlewares=[routing], client_max_size=MAX_BODY)

    streams: set[asyncio.Task[Any]] = set()

    async def end_streams(_: web.Application) -> None:
        """On shutdown: a relayed stream (a node's trust watch) lasts as long as the
        auth's, and would hold the shutdown for its whole grace period. These are
        aiohttp's request tasks: the runner's cleanup awaits them (within its
        shutdown_timeout) after this hook."""
        for task in streams:
            task.cancel()

    async def forward(request: web.Request) -> web.StreamResponse:
        try:
            call = _call_of(request, await read_body(request))
        except GatehouseError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        try:
            async with forwarder.open(call) as upstream:
                response = web.StreamResponse(status=upstream.status)
                response.content_type = upstream.content_type
                await response.prepare(request)
                await _relay(upstream, response, request)
                return response
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response(
                {"error": f"the proxy cannot reach the auth service: {exc}"}, status=502
            )

    async def _relay(upstream: aiohttp.ClientResponse, response: web.StreamResponse,
                     request: web.Request) -> None:
        """The body, as it comes. If either side breaks once the status is sent, the
        caller's connection is closed: that is all it can learn then (a node's trust
        watch reconnects; without this it would wait on a stream nobody feeds)."""
        task = asyncio.current_task()
        assert task is not None
        streams.add(task)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientError, OSError) as exc:
            log.info("relay of %s broke: %s", request.path, exc)
            response.force_close()
            if request.transport is not None:
                request.transport.abort()
        finally:
            streams.discard(task)

    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("GET", SSO_CALLBACK, _sso_callback(finish_sso))
    for path, handler in (own_routes or {}).items():
        app.router.add_route("GET", path, handler)
    app.router.add_route("*", API_PREFIX + "{tail:.*}", forward)
    return app
