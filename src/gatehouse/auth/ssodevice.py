"""``gsh login --headless``: SSO through the OAuth 2.0 device authorization grant
(RFC 8628). The auth asks the IdP for a device code (§3.1) and gives gsh the user code
and verification URL; gsh polls the auth with its secret, and the auth polls the IdP's
token endpoint (§3.4) until the person has logged in elsewhere. The ID token comes
straight from the token endpoint, then is checked, mapped and certified as for a
browser login (auth.sso)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from gatehouse.auth import issuer, sso
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, BadParameter, GatehouseError, NotFound
from gatehouse.types.resource import parse_duration
from gatehouse.wire.authapi import DeviceBegin, DeviceBeginReply, DevicePoll

__all__ = ["DEVICE_GRANT", "begin", "poll"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_EXPIRY = 1800  # seconds a device login may wait, whatever the IdP says
SLOW_DOWN = 5  # seconds added to the interval on the IdP's slow_down (RFC 8628 §3.5)


def _refusal(reply: dict[str, Any], what: str) -> AccessDenied:
    detail = reply.get("error_description") or ""
    return AccessDenied(f"the IdP refused the {what}: {str(reply['error'])[:80]}"
                        f"{': ' + str(detail)[:200] if detail else ''}")


async def begin(server: AuthServer, req: DeviceBegin, remote: str) -> DeviceBeginReply:
    try:
        connector = await sso.connector_named(server, req.connector)
        issuer.parse_public_key(req.public_key)
        sso.check_secret_hash(req.secret_hash)
        if req.ttl:
            parse_duration(req.ttl)
        spec = connector.spec
        doc = await sso.discover(server, spec)
        endpoint = doc.get("device_authorization_endpoint")
        if not isinstance(endpoint, str):
            raise BadParameter(f"the IdP of connector {connector.metadata.name} does not offer "
                               "the device authorization grant (no "
                               "device_authorization_endpoint): log in without --headless")
        nonce = secrets.token_urlsafe(32)
        reply = await server.idp.post_form(endpoint, {
            "client_id": spec.client_id, "scope": " ".join(spec.scope), "nonce": nonce,
        }, (spec.client_id, sso.client_secret(server, spec)), sso.ca_file(server, spec))
        if "error" in reply:
            raise _refusal(reply, "device login")
        fields = {k: reply.get(k) for k in ("device_code", "user_code", "verification_uri")}
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise BadParameter("the IdP's device authorization reply lacks device_code, "
                               "user_code or verification_uri")
        interval = max(1, min(int(reply.get("interval") or 5), 60))
        expires_in = max(1, min(int(reply.get("expires_in") or 600), MAX_EXPIRY))
    except (GatehouseError, ValueError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, GatehouseError) else f"bad IdP reply: {exc}"
        await sso.refused(server, reason, remote, req.connector)
        if isinstance(exc, GatehouseError):
            raise
        raise BadParameter(reason) from None
    request_id = secrets.token_urlsafe(24)
    await server.sso.put_device(request_id, {
        "connector": connector.metadata.name, "public_key": req.public_key,
        "secret_hash": req.secret_hash, "ttl": req.ttl or "", "nonce": nonce,
        "device_code": fields["device_code"], "interval": interval, "remote": remote,
        "next_poll": (server.clock.now() + dt.timedelta(seconds=interval)).isoformat(),
    }, server.clock.now() + dt.timedelta(seconds=expires_in))
    complete = reply.get("verification_uri_complete")
    return DeviceBeginReply(
        request_id=request_id, user_code=str(fields["user_code"]),
        verification_uri=str(fields["verification_uri"]),
        verification_uri_complete=complete if isinstance(complete, str) else "",
        interval=interval, expires_in=expires_in)


async def poll(server: AuthServer, req: DevicePoll,
               remote: str) -> tuple[dict[str, Any] | None, int]:
    """(None, seconds to wait) while the person is at the IdP; then (the outcome, 0),
    once: the login ends with it. AccessDenied (audited) if it failed."""
    try:
        pending = await server.sso.get_device(req.request_id)
        sso.check_secret(req.secret, str(pending["secret_hash"]))
        # The IdP is asked once an interval, whoever polls how often (RFC 8628 §3.5).
        due, wait = await server.sso.claim_poll(req.request_id, server.clock.now())
    except (NotFound, AccessDenied) as exc:
        await sso.refused(server, str(exc), remote, "")
        raise AccessDenied(str(exc)) from None
    if not due:
        return None, wait
    name = pending["connector"]
    user = ""
    try:
        connector = await sso.connector_named(server, name)
        spec = connector.spec
        doc = await sso.discover(server, spec)
        reply = await server.idp.post_form(doc["token_endpoint"], {
            "grant_type": DEVICE_GRANT, "device_code": pending["device_code"],
        }, (spec.client_id, sso.client_secret(server, spec)), sso.ca_file(server, spec))
        error = reply.get("error")
        if error == "authorization_pending":
            return None, wait
        if error == "slow_down":
            return None, await server.sso.slow_down(req.request_id, SLOW_DOWN,
                                                    server.clock.now())
        await server.sso.end_device(req.request_id)  # once: a racing poll finds nothing
        if error:
            raise _refusal(reply, "device login")
        token = reply.get("id_token")
        if not isinstance(token, str):
            raise AccessDenied("the IdP's token response has no id_token (is openid in "
                               "scope?)")
        # From the token endpoint itself: an IdP may leave the nonce out (RFC 8628 has none).
        claims = await sso.verified_claims(server, spec, doc, token, pending["nonce"],
                                           nonce_required=False)
        user = sso.username(spec, claims)
        return await sso.certify(server, connector, pending, claims, user), 0
    except GatehouseError as exc:
        await sso.refused(server, str(exc), remote, name, user)
        raise
