"""Logging in through an SSO connector (auth.sso has the protocol): gsh makes its key
and a secret, listens on a loopback port, asks the proxy to begin, has the browser
open the IdP, waits (bounded) for the browser to come back to its listener with the
login's id and a code, and fetches the certificates once with its secret and that code."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse._sys.hostport import split_host_port
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.client.login import save_login
from gatehouse.client.profile import Profile
from gatehouse.errors import AccessDenied, ConnectionProblem
from gatehouse.pki import sshcert, tls
from gatehouse.wire.authapi import (
    DeviceBegin,
    DeviceBeginReply,
    DevicePoll,
    SSOBegin,
    SSOCerts,
    SSOComplete,
)

__all__ = ["LOGIN_TIMEOUT", "login_with_device", "login_with_sso"]

LOGIN_TIMEOUT = 300.0  # seconds for the person at the IdP
_PAGE = ("<!DOCTYPE html><html><head><title>Gatehouse</title></head><body>"
         "<p>{}</p></body></html>")


@contextlib.asynccontextmanager
async def _listener(arrived: asyncio.Future[tuple[str, str]]) -> AsyncIterator[str]:
    """A loopback HTTP listener for the browser's return; yields its callback URL. The
    first request's ``id`` and ``code`` resolve ``arrived``; later ones are told it is
    over."""

    async def callback(request: web.Request) -> web.Response:
        if arrived.done():
            return web.Response(status=409, content_type="text/html",
                                text=_PAGE.format("This login is already complete."))
        arrived.set_result((request.query.get("id", ""), request.query.get("code", "")))
        return web.Response(content_type="text/html", text=_PAGE.format(
            "Gatehouse received the login: return to the terminal."))

    app = web.Application()
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/callback"
    finally:
        await runner.cleanup()
        sock.close()


async def login_with_sso(proxy: str, connector: str, ca_pem: str | None, ttl: str,
                         cluster: str, show: Callable[[str], None],
                         timeout: float = LOGIN_TIMEOUT) -> tuple[Profile, SSOCerts]:
    """Log in through ``connector``; ``show(url)`` sends the person to the IdP (opens the
    browser, or prints the URL). ``ca_pem`` None: --insecure, as with a password."""
    server_name = split_host_port(proxy)[0]
    ctx = tls.client_context(ca_pem)
    key = ed25519.Ed25519PrivateKey.generate()
    secret = secrets.token_urlsafe(32)
    arrived: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
    async with _listener(arrived) as client_redirect, \
            AuthClient(APIClient(proxy, ctx, server_hostname=server_name)) as api:
        started = await api.sso_begin(SSOBegin(
            connector=connector, public_key=sshcert.public_key_line(key.public_key()),
            client_redirect=client_redirect, proxy_addr=proxy, ttl=ttl or None,
            secret_hash=hashlib.sha256(secret.encode()).hexdigest()))
        show(started.auth_url)
        try:
            async with asyncio.timeout(timeout):
                request_id, code = await arrived
        except TimeoutError:
            raise ConnectionProblem(f"no login came back from the IdP within {timeout:.0f} s "
                                    "(was the login finished in the browser?)") from None
        if not secrets.compare_digest(request_id, started.request_id):
            raise AccessDenied("the browser came back with another login's id: not logged in")
        certs = await api.sso_complete(SSOComplete(request_id=request_id, secret=secret,
                                                   code=code))
    profile = await save_login(proxy, server_name, certs.user, key, certs, cluster)
    return profile, certs


async def login_with_device(proxy: str, connector: str, ca_pem: str | None, ttl: str,
                            cluster: str, show: Callable[[DeviceBeginReply], None]
                            ) -> tuple[Profile, SSOCerts]:
    """--headless: the device authorization grant (RFC 8628). ``show`` tells the person
    where to go and which code to enter; gsh polls until they have, or the code expires."""
    server_name = split_host_port(proxy)[0]
    key = ed25519.Ed25519PrivateKey.generate()
    secret = secrets.token_urlsafe(32)
    async with AuthClient(APIClient(proxy, tls.client_context(ca_pem),
                                    server_hostname=server_name)) as api:
        started = await api.sso_device_begin(DeviceBegin(
            connector=connector, public_key=sshcert.public_key_line(key.public_key()),
            ttl=ttl or None, secret_hash=hashlib.sha256(secret.encode()).hexdigest()))
        show(started)
        certs = await _poll(api, started, secret)
    profile = await save_login(proxy, server_name, certs.user, key, certs, cluster)
    return profile, certs


async def _poll(api: AuthClient, started: DeviceBeginReply, secret: str) -> SSOCerts:
    """Poll until the person has logged in at the IdP; bounded by the code's lifetime."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + started.expires_in
    interval = started.interval
    for _ in range(started.expires_in):  # at most one poll a second
        await asyncio.sleep(max(1, interval))
        reply = await api.sso_device_poll(DevicePoll(request_id=started.request_id,
                                                     secret=secret))
        if reply.certs is not None:
            return reply.certs
        interval = reply.interval or interval
        if loop.time() > deadline:
            break
    raise ConnectionProblem(f"the device login was not finished within {started.expires_in} s: "
                            "run gsh login again")
