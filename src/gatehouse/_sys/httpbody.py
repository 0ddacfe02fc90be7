"""A request's body read to its end. A caller that hangs up before it has all arrived (a
node killed mid-upload) is an event of the network, not a fault of the server: one line
at INFO and ConnectionProblem, not aiohttp's traceback at ERROR."""

from __future__ import annotations

import logging

from aiohttp import web

from gatehouse.errors import ConnectionProblem

__all__ = ["read_body"]

log = logging.getLogger(__name__)


async def read_body(request: web.Request) -> bytes:
    """The whole body; ConnectionProblem if the caller hangs up first."""
    try:
        return await request.read()
    except ConnectionError as exc:
        log.info("caller %s hung up before its request body arrived: %s %s (%s)",
                 request.remote, request.method, request.path[:80], exc)
        raise ConnectionProblem(f"the caller hung up before its request body arrived: {exc}"
                                ) from None
