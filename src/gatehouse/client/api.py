"""The HTTPS transport under client.authclient (directly, or forwarded by a proxy).

Errors come back as the same kinds the server raised (gatehouse.errors), with
the server's one-line message; an unreachable server is ConnectionProblem.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import aiohttp

from gatehouse._sys.tlsfailure import verify_failure
from gatehouse.client.failover import CONNECT_TIMEOUT, Failover
from gatehouse.errors import ConnectionProblem, GatehouseError, from_status
from gatehouse.wire.names import WATCH_SILENCE

__all__ = ["APIClient"]

MAX_LINE = 256 << 20
# Seconds an idle connection is kept: above a direct node's longest pause between
# heartbeats (wire.names.NODE_HEARTBEAT x (1 + wire.cadence.JITTER)), so that each
# heartbeat reuses its connection (a new one costs the auth a TLS handshake: ~5 ms,
# three heartbeats' worth), and below the
# servers' default idle_timeout (30 s), so that a server never closes one as it is reused.
KEEPALIVE = 28.0


class APIClient:
    def __init__(
        self,
        addr: str | Sequence[str],
        ssl_context: ssl.SSLContext,
        *,
        server_hostname: str | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        unreachable_hint: str = "",
    ) -> None:
        """``addr``: one address, or several of one service (the next is tried when
        one cannot be connected to: client.failover). ``unreachable_hint``: what to
        tell a person when ``addr`` does not answer (which daemon should be running)."""
        self._headers = headers
        self._hint = unreachable_hint
        self._failover = Failover(addr)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        # With several addresses, a connect that hangs (a dead machine) gives up early
        # enough to try the next.
        several = len(self._failover.addrs) > 1
        self._timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT) if several else None)
        self._session: aiohttp.ClientSession | None = None

    @property
    def addr(self) -> str:
        """The address calls go to (the one that last answered)."""
        return self._failover.current

    async def __aenter__(self) -> APIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32,
                                               keepalive_timeout=KEEPALIVE),
                headers=self._headers,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Any:
        """The reply's JSON."""
        return (await self.exchange(method, path, body=body, params=params, data=data))[1]

    async def exchange(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """The reply's status and JSON."""

        async def attempt(addr: str) -> tuple[int, Any]:
            async with self._http().request(
                method,
                f"https://{addr}{path}",
                json=body if data is None else None,
                data=data,
                params=params,
                server_hostname=self._server_hostname,
            ) as resp:
                try:
                    reply = await resp.json(content_type=None)
                except ValueError:
                    reply = None
                if resp.status >= 400:
                    message = reply.get("error") if isinstance(reply, dict) else None
                    raise from_status(resp.status, message or f"HTTP {resp.status} from {path}")
                return resp.status, reply

        try:
            return await self._failover.call(attempt)
        except GatehouseError:
            raise
        except aiohttp.ClientConnectorCertificateError as exc:
            error = exc.certificate_error
            why = (verify_failure(error, dt.datetime.now(dt.UTC))
                   if isinstance(error, ssl.SSLCertVerificationError) else str(error))
            raise ConnectionProblem(f"TLS verification of {self.addr} failed: {why}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    async def get_bytes(self, path: str) -> bytes:
        """A binary response body (recordings)."""

        async def attempt(addr: str) -> bytes:
            async with self._http().get(f"https://{addr}{path}",
                                        server_hostname=self._server_hostname) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    try:
                        message = json.loads(data).get("error")
                    except (ValueError, AttributeError):
                        message = None
                    raise from_status(resp.status, message or f"HTTP {resp.status} from {path}")
                return data

        try:
            return await self._failover.call(attempt)
        except GatehouseError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: BaseException) -> ConnectionProblem:
        """One line: the address, why (the OS's words for a refused or failed connect),
        and the hint."""
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            reason = os.strerror(cause.errno) if cause.errno else cause.strerror
        else:
            reason = str(exc) or type(exc).__name__
        hint = f"; {self._hint}" if self._hint else ""
        return ConnectionProblem(f"cannot reach {self._failover.describe()}: {reason}{hint}")

    async def put_bytes(self, path: str, data: bytes) -> Any:
        return await self.request("PUT", path, body=None, data=data)

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: object) -> Any:
        return await self.request("POST", path, body=body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def lines(self, path: str, *, silence: float = WATCH_SILENCE,
                    **params: str) -> AsyncIterator[bytes]:
        """A streamed response, one line at a time (the auth's watch endpoints, which
        write a keepalive line when quiet): ConnectionProblem after ``silence``
        seconds without a byte."""
        def opening(addr: str) -> Awaitable[aiohttp.ClientResponse]:
            return self._http().get(
                f"https://{addr}{path}",
                params=params or None,
                server_hostname=self._server_hostname,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT,
                                          sock_read=silence),
            )

        try:
            async with await self._failover.call(opening) as resp:
                if resp.status >= 400:
                    data = await resp.json(content_type=None)
                    message = data.get("error") if isinstance(data, dict) else None
                    raise from_status(resp.status, message or f"HTTP {resp.status} from {path}")
                # Lines can be large (a trust snapshot of a root with many leaves):
                # split them ourselves instead of aiohttp's 512 KiB readline limit.
                pending = b""
                async for chunk in resp.content.iter_any():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line + b"\n"
                    if len(pending) > MAX_LINE:
                        raise ConnectionProblem(f"a line from {path} exceeds {MAX_LINE} bytes")
        except GatehouseError:
            raise
        except aiohttp.ServerTimeoutError as exc:
            raise ConnectionProblem(f"lost {self.addr}: nothing heard on {path} for "
                                    f"{silence:g} s") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise ConnectionProblem(f"lost {self.addr}: {reason}") from exc
