"""A request's body read to its end, at a minimum pace.

A caller that hangs up before its body has all arrived (a node killed mid-upload) is an
event of the network, not a fault of the server: one line at INFO and ConnectionProblem,
not aiohttp's traceback at ERROR.

A caller that sends its body too slowly (slowloris: a byte now and then, holding the
connection and the handler for ever) is refused with LimitExceeded, which the API
answers 429 before the connection closes. The pace is Apache's mod_reqtimeout's
default for bodies: the first BODY_GRACE seconds are free, then each BODY_MIN_RATE
bytes received buy one more second. An honest caller on a slow link is served however
long its body takes; a slow one must keep spending bandwidth to hold its connection.
(The head of a request is bounded by aiohttp's keep-alive timer: the idle timeout.)
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from gatehouse.errors import ConnectionProblem, LimitExceeded

__all__ = ["BODY_GRACE", "BODY_MIN_RATE", "read_body"]

log = logging.getLogger(__name__)

BODY_GRACE = 20.0  # seconds for a body before its pace counts
BODY_MIN_RATE = 500  # bytes per second after that


async def read_body(request: web.Request) -> bytes:
    """The whole body; ConnectionProblem if the caller hangs up first, LimitExceeded if
    it falls behind the minimum pace."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    content = request.content
    grace, rate = BODY_GRACE, BODY_MIN_RATE
    timer: asyncio.TimerHandle | None = None

    def due() -> float:
        return started + grace + content.total_bytes / rate

    try:
        async with asyncio.timeout(None) as scope:

            def check() -> None:
                nonlocal timer
                if loop.time() >= due():
                    scope.reschedule(loop.time())
                else:
                    timer = loop.call_at(due(), check)

            timer = loop.call_at(due(), check)
            try:
                return await request.read()
            finally:
                timer.cancel()  # the last one check() set
    except ConnectionError as exc:
        log.info("caller %s hung up before its request body arrived: %s %s (%s)",
                 request.remote, request.method, request.path[:80], exc)
        raise ConnectionProblem(f"the caller hung up before its request body arrived: {exc}"
                                ) from None
    except TimeoutError:
        length = request.content_length
        reason = (f"request body came too slowly: {content.total_bytes} of "
                  f"{'an unknown number of' if length is None else length} bytes in "
                  f"{loop.time() - started:.0f} s (the "
                  f"first {grace:g} s are free, then at least {rate} bytes a second)")
        log.warning("refused remote=%s path=%r reason=%r", request.remote,
                    request.path[:80], reason)
        raise LimitExceeded(reason) from None
