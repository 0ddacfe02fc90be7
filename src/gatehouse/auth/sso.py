"""SSO logins through an OIDC connector: the authorization code flow with PKCE (RFC 7636,
S256), ``state`` and ``nonce`` (OpenID Connect Core 1.0 §3.1).

1. ``begin``: gsh sends the key to certify, its loopback address and the hash of a
   secret it keeps; a pending login is stored under a fresh ``state``.
2. ``finish``: the IdP's redirect reaches the proxy, which hands its query here. The
   pending login is taken (once: a replayed callback finds nothing), the code redeemed,
   the ID token verified (pki.idtoken), its claims mapped to roles (rolemap) and the
   certificates signed for gsh's key. The outcome is kept for gsh, and the browser is
   sent to gsh's loopback listener with the login's id only.
3. ``complete``: gsh fetches the outcome, once, with its secret: whoever saw the URLs
   holds neither the key nor the secret.

Every refusal is logged and audited (``user.login.failure``, method oidc) with its reason.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import urllib.parse
import weakref
from pathlib import Path
from typing import Any

from gatehouse import rolemap
from gatehouse._sys.hostport import split_host_port
from gatehouse.auth import issuer
from gatehouse.auth.server import AuthServer
from gatehouse.errors import AccessDenied, BadParameter, GatehouseError, NotFound
from gatehouse.pki import sshcert
from gatehouse.pki.idtoken import UnknownSigningKey, allowed_algorithms, verify_id_token
from gatehouse.types.oidc import OIDCConnector, OIDCSpec, is_loopback_host
from gatehouse.types.resource import Metadata, is_name, parse_duration
from gatehouse.types.user import User, UserSpec
from gatehouse.wire.authapi import SSOBegin, SSOBeginReply, SSOCallback, SSOComplete, SSORedirect

__all__ = [
    "CALLBACK_PATH",
    "begin",
    "certify",
    "check_secret",
    "check_secret_hash",
    "client_secret",
    "complete",
    "connector_named",
    "discover",
    "finish",
    "refused",
    "username",
    "verified_claims",
]

log = logging.getLogger(__name__)

CALLBACK_PATH = "/v1/sso/oidc/callback"  # served by the proxy (proxy.web)
PENDING_TTL = dt.timedelta(minutes=10)  # the person's time at the IdP
DONE_TTL = dt.timedelta(minutes=2)  # gsh fetches as soon as its listener is called
NAME_HOLD = dt.timedelta(minutes=1)  # a login holds its user name this long before signing
# Claims about the token rather than the user: never traits.
_TOKEN_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash",
                           "c_hash", "sid", "auth_time", "jti", "acr", "amr"})
# The IdPs' JWKS as last fetched, per auth and jwks_uri: refreshed when a token names a
# key they do not hold (key rotation), once per login.
_JWKS: weakref.WeakKeyDictionary[AuthServer, dict[str, dict[str, Any]]] = \
    weakref.WeakKeyDictionary()


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def connector_file(server: AuthServer, field: str, path: str) -> str:
    """``path`` (a connector's ``field``), symlinks resolved, if it names a file in the
    auth's connector_files_dir; "" for none. The connector's author chooses the path and
    the auth reads the file (and sends a secret file's text to the connector's IdP): any
    other file of the auth's host, its own keys among them, is refused before it is
    looked at, so the refusal says nothing of whether it exists."""
    if not path:
        return ""
    allowed = os.path.realpath(server.connector_files)
    resolved = os.path.realpath(path)
    if not os.path.isabs(path) or os.path.commonpath([allowed, resolved]) != allowed:
        raise BadParameter(f"{field} {path[:200]!r}: the auth reads a connector's files only "
                           f"in its auth_service.connector_files_dir ({allowed})")
    return resolved


def ca_file(server: AuthServer, spec: OIDCSpec) -> str:
    """The connector's IdP CA file, checked (connector_file); "" for the system's CAs."""
    return connector_file(server, "ca_file", spec.ca_file)


def client_secret(server: AuthServer, spec: OIDCSpec) -> str:
    """The connector's client secret (read from client_secret_file on the auth's host)."""
    if spec.client_secret:
        return spec.client_secret
    if not spec.client_secret_file:
        raise BadParameter("the connector has neither client_secret nor client_secret_file")
    path = connector_file(server, "client_secret_file", spec.client_secret_file)
    try:
        secret = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise BadParameter(f"cannot read client_secret_file {spec.client_secret_file}: "
                           f"{reason or exc}") from None
    if not secret:
        raise BadParameter(f"client_secret_file {spec.client_secret_file} is empty")
    return secret


async def discover(server: AuthServer, spec: OIDCSpec) -> dict[str, Any]:
    """The IdP's discovery document (OpenID Connect Discovery 1.0 §4), checked: its
    issuer is the connector's, and it names the endpoints a login needs."""
    url = f"{spec.issuer_url}/.well-known/openid-configuration"
    ca = ca_file(server, spec)  # its own refusal, not "not discoverable"
    try:
        doc = await server.idp.get_json(url, ca)
    except GatehouseError as exc:
        raise BadParameter(f"issuer {spec.issuer_url} is not discoverable: {exc}") from None
    if doc.get("issuer") != spec.issuer_url:
        raise BadParameter(f"issuer {spec.issuer_url} is not discoverable: its discovery "
                           f"document names issuer {doc.get('issuer')!r}")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(field), str):
            raise BadParameter(f"issuer {spec.issuer_url} is not discoverable: its discovery "
                               f"document has no {field}")
    return doc


async def connector_named(server: AuthServer, name: str) -> OIDCConnector:
    try:
        return await server.oidc.get(name)
    except (NotFound, BadParameter):
        raise NotFound(f"no SSO connector {name[:80]!r} in cluster {server.cluster}") from None


def check_secret_hash(value: str) -> None:
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise BadParameter("secret_hash: expected 64 hex digits (SHA-256)")


def check_secret(secret: str, secret_hash: str) -> None:
    """AccessDenied unless ``secret`` is the one whose hash the login began with."""
    if not hmac.compare_digest(_sha256_hex(secret), secret_hash):
        raise AccessDenied("this SSO login was begun by another client (its secret does "
                           "not match)")


def check_code(code: str, code_hash: str) -> None:
    """AccessDenied unless ``code`` is the one the login's browser was sent back with."""
    if not hmac.compare_digest(_sha256_hex(code), code_hash):
        raise AccessDenied("this SSO login was finished in a browser that did not come back "
                           "to this client (the code from its loopback listener does not "
                           "match): a login link followed by someone else gives nothing")


def _check_client_redirect(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not is_loopback_host(parts.hostname) \
            or parts.port is None or parts.query or parts.fragment:
        raise BadParameter(f"client_redirect {url[:200]!r}: expected http://127.0.0.1:PORT/PATH "
                           "(gsh's loopback listener)")
    return url


async def refused(server: AuthServer, reason: str, remote: str, connector: str,
                   user: str = "") -> None:
    log.warning("sso login refused user=%s connector=%s remote=%s reason=%r", user,
                connector[:80], remote, reason)
    fields = {"method": "oidc", "connector": connector[:80]}
    if user:  # the IdP said who: always kept
        await server.audit.emit("user.login.failure", user=user, remote_addr=remote,
                                message=reason, fields=fields)
    else:  # a stranger's repeats are counted (auth.failures)
        await server.failures.emit("user.login.failure", remote_addr=remote, message=reason,
                                   fields=fields)


async def begin(server: AuthServer, req: SSOBegin, remote: str) -> SSOBeginReply:
    try:
        connector = await connector_named(server, req.connector)
        issuer.parse_public_key(req.public_key)
        _check_client_redirect(req.client_redirect)
        check_secret_hash(req.secret_hash)
        if req.ttl:
            parse_duration(req.ttl)
        spec = connector.spec
        redirect_uri = spec.redirect_url
        if not redirect_uri:
            split_host_port(req.proxy_addr)
            redirect_uri = f"https://{req.proxy_addr}{CALLBACK_PATH}"
        doc = await discover(server, spec)
    except GatehouseError as exc:
        await refused(server, str(exc), remote, req.connector)
        raise
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    request_id = secrets.token_urlsafe(24)
    await server.sso.put_pending(state, {
        "connector": connector.metadata.name, "public_key": req.public_key,
        "client_redirect": req.client_redirect, "secret_hash": req.secret_hash,
        "ttl": req.ttl or "", "nonce": nonce, "verifier": verifier,
        "redirect_uri": redirect_uri, "request_id": request_id, "remote": remote,
    }, server.clock.now() + PENDING_TTL)
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": spec.client_id, "redirect_uri": redirect_uri,
        "scope": " ".join(spec.scope), "state": state, "nonce": nonce,
        "code_challenge": _pkce_challenge(verifier), "code_challenge_method": "S256",
    })
    endpoint = doc["authorization_endpoint"]
    return SSOBeginReply(auth_url=f"{endpoint}{'&' if '?' in endpoint else '?'}{query}",
                         request_id=request_id)


async def finish(server: AuthServer, callback: SSOCallback, remote: str) -> SSORedirect:
    """The IdP's redirect: the login's outcome kept for gsh; where the browser goes next."""
    try:
        pending = await server.sso.take_pending(callback.state)
    except NotFound:
        reason = ("unknown, expired or already used login state: a replayed or forged "
                  "callback, or a login older than "
                  f"{int(PENDING_TTL.total_seconds() // 60)} minutes")
        await refused(server, reason, remote, "")
        raise AccessDenied(reason) from None
    name = pending["connector"]
    outcome: dict[str, Any]
    user = ""
    try:
        connector = await server.oidc.get(name)
        claims = await _redeem(server, connector, pending, callback)
        user = username(connector.spec, claims)
        outcome = await certify(server, connector, pending, claims, user)
    except GatehouseError as exc:
        await refused(server, str(exc), remote, name, user)
        outcome = {"error": str(exc)}
    # The code goes only to the browser, which takes it to the loopback listener of the
    # client that began the login (on the machine where the person logged in).
    code = secrets.token_urlsafe(32)
    await server.sso.put_done(pending["request_id"],
                              {**outcome, "secret_hash": pending["secret_hash"],
                               "code_hash": _sha256_hex(code)},
                              server.clock.now() + DONE_TTL)
    query = urllib.parse.urlencode({"id": pending["request_id"], "code": code})
    return SSORedirect(url=f"{pending['client_redirect']}?{query}")


async def _redeem(server: AuthServer, connector: OIDCConnector, pending: dict[str, Any],
                  callback: SSOCallback) -> dict[str, Any]:
    """The code for an ID token (RFC 6749 §4.1.3, with the PKCE verifier); its claims."""
    if callback.error:
        detail = f": {callback.error_description[:200]}" if callback.error_description else ""
        raise AccessDenied(f"the IdP refused the login: {callback.error[:80]}{detail}")
    if not callback.code:
        raise BadParameter("the IdP's callback carries no code")
    spec = connector.spec
    doc = await discover(server, spec)
    # RFC 9207: an IdP that names itself in its redirects must have sent this one (a
    # code from another IdP, mixed up by a user of several connectors, is not redeemed).
    if (callback.iss or doc.get("authorization_response_iss_parameter_supported")) \
            and callback.iss != spec.issuer_url:
        raise AccessDenied(f"the callback names issuer {callback.iss[:200]!r}, not the "
                           f"connector's {spec.issuer_url}")
    reply = await server.idp.post_form(doc["token_endpoint"], {
        "grant_type": "authorization_code", "code": callback.code,
        "redirect_uri": pending["redirect_uri"], "code_verifier": pending["verifier"],
    }, (spec.client_id, client_secret(server, spec)), ca_file(server, spec))
    if "error" in reply:
        detail = reply.get("error_description") or ""
        raise AccessDenied(f"the IdP refused the code: {str(reply['error'])[:80]}"
                           f"{': ' + str(detail)[:200] if detail else ''}")
    token = reply.get("id_token")
    if not isinstance(token, str):
        raise AccessDenied("the IdP's token response has no id_token (is openid in scope?)")
    return await verified_claims(server, spec, doc, token, pending["nonce"])


async def verified_claims(server: AuthServer, spec: OIDCSpec, doc: dict[str, Any],
                          token: str, nonce: str, *, nonce_required: bool = True
                          ) -> dict[str, Any]:
    """The ID token's claims, checked (pki.idtoken) against the IdP's JWKS."""
    algorithms = allowed_algorithms(doc.get("id_token_signing_alg_values_supported")
                                    or ["RS256"])  # RS256 is the spec's default
    cache = _JWKS.setdefault(server, {})
    uri = doc["jwks_uri"]

    def verify(jwks: dict[str, Any]) -> dict[str, Any]:
        return verify_id_token(token, jwks, issuer=spec.issuer_url, client_id=spec.client_id,
                               nonce=nonce, algorithms=algorithms, nonce_required=nonce_required,
                               now=int(server.clock.now().timestamp()))

    if uri in cache:
        try:
            return verify(cache[uri])
        except UnknownSigningKey:
            pass  # the IdP may have rotated its keys: fetch them once more
    cache[uri] = await server.idp.get_json(uri, ca_file(server, spec))
    return verify(cache[uri])


def username(spec: OIDCSpec, claims: dict[str, Any]) -> str:
    """The user's name: the connector's username_claim, else email, else sub."""
    names = [spec.username_claim] if spec.username_claim else ["email", "sub"]
    for claim in names:
        value = claims.get(claim)
        if not isinstance(value, str) or not value:
            continue
        if claim == "email" and claims.get("email_verified") is False:
            raise AccessDenied(f"the IdP says email {value[:200]!r} is not verified")
        if not is_name(value):
            raise AccessDenied(f"the ID token's {claim} claim {value[:200]!r} is not a usable "
                               "user name (letters, digits and . _ @ -)")
        return value
    raise AccessDenied(f"the ID token has no {' or '.join(names)} claim to name the user by")


async def _no_local_user(server: AuthServer, user: str, connector: str) -> None:
    with contextlib.suppress(NotFound):
        await server.users.get(user)
        raise AccessDenied(f"a local user is named {user}: connector {connector} may not log "
                           "in under that name (rename the local user, or name SSO users by "
                           "another claim: the connector's username_claim)")


async def certify(server: AuthServer, connector: OIDCConnector, pending: dict[str, Any],
                   claims: dict[str, Any], user: str) -> dict[str, Any]:
    """Roles from the claims, then certificates for the key gsh sent at the start. A
    local user's name is not the IdP's to give: the two would be one in the audit."""
    name = connector.metadata.name
    await _no_local_user(server, user, name)
    existing = {r.metadata.name for r in await server.roles.list()}
    mapped = rolemap.map_claims(connector.spec.claims_to_roles, claims, existing)
    roles = rolemap.require_claims_mapped(mapped, user, name)
    # Hold the name before signing, then look for a local user again: a local user made
    # meanwhile sees the hold, or this sees the user (each side writes, then looks).
    await server.sso.hold_name(user, name, server.clock.now() + NAME_HOLD)
    await _no_local_user(server, user, name)
    traits = {claim: values for claim in claims if claim not in _TOKEN_CLAIMS
              if (values := rolemap.claim_values(claims, claim))}
    sso_user = User(metadata=Metadata(name=user),
                    spec=UserSpec(roles=list(roles), traits=traits))
    ttl = parse_duration(pending["ttl"]) if pending["ttl"] else None
    certs = await server.issue_user_certs(sso_user, issuer.parse_public_key(pending["public_key"]),
                                          ttl=ttl, connector=name)
    await server.sso.hold_name(user, name, certs.expires)  # as long as the certificate
    await server.audit.emit("user.login", user=user, remote_addr=pending["remote"],
                            correlation_id=sshcert.correlation_id(user, certs.serial),
                            fields={"method": "oidc", "connector": name, "roles": list(roles)})
    log.info("sso login user=%s connector=%s roles=%s", user, name, ",".join(roles))
    return {"ssh_cert": certs.ssh_cert, "tls_cert": certs.tls_cert,
            "expires": certs.expires.isoformat(), "user": user, "connector": name,
            "roles": list(roles)}


async def complete(server: AuthServer, req: SSOComplete, remote: str) -> dict[str, Any]:
    """The login's outcome, once, to the client holding its secret and the code its
    browser came back with."""
    try:
        done = await server.sso.take_done(req.request_id)
        check_secret(req.secret, str(done.pop("secret_hash")))
        check_code(req.code, str(done.pop("code_hash")))
    except (NotFound, AccessDenied) as exc:
        await refused(server, str(exc), remote, "")
        raise AccessDenied(str(exc)) from None
    if "error" in done:
        raise AccessDenied(str(done["error"]))
    return done
