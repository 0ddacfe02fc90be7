"""The auth API's budget of attempts per source address (AuthLimits): logins (SSO ones
as they begin) and joins spend it, and so do refused calls without a certificate; a
source that has none left gets 429 with Retry-After (RFC 6585 §4) for those calls and
for every other call without a certificate, until its budget refills. Calls with a
certificate are never refused for this: their caller is known, and answers for them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gatehouse.auth._apiutil import server_of, source_of
from gatehouse.ratelimit import retry_after
from gatehouse.ratelimit import source_of as source_key

__all__ = ["ATTEMPTS", "limit_attempts"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The calls that present a credential, and those that start an SSO login (each stores
# a pending login and asks the IdP: a stranger's repeats must cost them, not the auth).
ATTEMPTS = frozenset({"login", "join", "join_leaf", "sso_begin", "sso_device_begin"})
REFUSED = frozenset({401, 403})


def _too_many(source: str, wait: float) -> web.Response:
    seconds = retry_after(wait)
    return web.json_response(
        {"error": f"too many attempts from {source}: try again in {seconds} s"},
        status=429, headers={"Retry-After": str(seconds)})


@web.middleware
async def limit_attempts(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = server_of(request)
    addr, certified = source_of(request)
    call = request.match_info.route.name
    attempt = call in ATTEMPTS
    if certified and not attempt:
        return await handler(request)
    source, attempts = source_key(addr), server.attempts
    now = server.clock.now().timestamp()
    wait = attempts.take(source, now) if attempt else attempts.wait(source, now)
    if wait:
        return _too_many(source, wait)
    response = await handler(request)
    if not attempt:
        if response.status not in REFUSED:
            return response
        attempts.charge(source, server.clock.now().timestamp())
    if attempts.wait(source, server.clock.now().timestamp()):  # it spent the last token
        log.warning("attempts limited source=%s call=%s reason=%r", source, call,
                    "no attempt left: calls without a certificate get 429 until it refills")
    return response
