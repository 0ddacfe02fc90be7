"""The auth's network edge to OpenID providers (auth.idp.IdPClient) over HTTPS: discovery
documents and JWKS fetched, codes redeemed at the token endpoint. Replies are bounded
in size and time; failures are one line naming the URL."""

from __future__ import annotations

import json
import ssl
import urllib.parse
from typing import Any

import aiohttp

from gatehouse.errors import BadParameter, ConnectionProblem

__all__ = ["HTTPSIdP"]

TIMEOUT = 15.0  # seconds for one request, connection included
MAX_REPLY = 1 << 20  # bytes: a discovery document or JWKS is a few kB


class HTTPSIdP:
    def _ssl(self, ca_file: str) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise BadParameter(f"cannot use ca_file {ca_file}: {exc}") from None

    async def _request(self, method: str, url: str, ca_file: str,
                       **kw: Any) -> tuple[int, dict[str, Any]]:
        ctx = self._ssl(ca_file) if url.startswith("https://") else None
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.request(method, url, ssl=ctx or False, allow_redirects=False,
                                    **kw) as reply:
                body = await reply.content.read(MAX_REPLY + 1)
                status = reply.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionProblem(f"cannot reach {url}: {exc or type(exc).__name__}") from None
        if len(body) > MAX_REPLY:
            raise BadParameter(f"{url} replied with more than {MAX_REPLY} bytes")
        try:
            doc = json.loads(body)
        except ValueError:
            raise BadParameter(f"{url} replied {status} with no JSON") from None
        if not isinstance(doc, dict):
            raise BadParameter(f"{url} replied {status} with JSON that is not an object")
        return status, doc

    async def get_json(self, url: str, ca_file: str) -> dict[str, Any]:
        status, doc = await self._request("GET", url, ca_file)
        if status != 200:
            raise BadParameter(f"{url} replied {status}")
        return doc

    async def post_form(self, url: str, form: dict[str, str], basic_auth: tuple[str, str],
                        ca_file: str) -> dict[str, Any]:
        # RFC 6749 §2.3.1: the id and secret are form-encoded before Basic's base64.
        user, password = (urllib.parse.quote(part, safe="") for part in basic_auth)
        _, doc = await self._request("POST", url, ca_file, data=form,
                                     auth=aiohttp.BasicAuth(user, password))
        return doc
