"""``gatehouse.diag_addr``: health, readiness and metrics over plain HTTP, for load
balancers and operators.

- ``/healthz``: 200 while the process runs.
- ``/readyz``: 200 once every enabled service has started and each readiness check
  (the auth's backend answers a read; a proxy's or node's auth answers a ping)
  passes within CHECK_TIMEOUT; 503 with one line per problem otherwise.
- ``/metrics``: gatehouse.metrics in Prometheus' text format.

Nothing here is secret, and nothing here changes state; still, bind it to loopback
or a management network (it has no authentication, as a health port usually has not).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gatehouse import metrics
from gatehouse._sys.hostport import listen_error, split_host_port
from gatehouse.errors import GatehouseError

__all__ = ["CHECK_TIMEOUT", "Readiness", "serving"]

CHECK_TIMEOUT = 2.0

Check = Callable[[], Awaitable[object]]


class Readiness:
    """Whether this process serves: started, and every check passes."""

    def __init__(self) -> None:
        self.started = False
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """``check`` raises (or takes longer than CHECK_TIMEOUT) when ``name`` cannot
        serve."""
        self._checks[name] = check

    async def problems(self) -> list[str]:
        """What keeps this process from serving, one line each; [] when ready."""
        if not self.started:
            return ["starting: not every enabled service serves yet"]
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
        return [f"{name}: {problem}" for name, problem in zip(names, results, strict=True)
                if problem]

    @staticmethod
    async def _run(check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await check()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:g} s"
        except (GatehouseError, OSError) as exc:
            return str(exc) or type(exc).__name__
        return ""


def _app(readiness: Readiness) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness.problems()
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ready\n")

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


@contextlib.asynccontextmanager
async def serving(addr: str, readiness: Readiness) -> AsyncIterator[str]:
    """Serve the diag endpoints on ``addr`` (``gatehouse.diag_addr``) meanwhile; yields
    it."""
    host, port = split_host_port(addr)
    runner = web.AppRunner(_app(readiness), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise listen_error("gatehouse.diag_addr", addr, exc) from None
        yield addr
    finally:
        await runner.cleanup()
