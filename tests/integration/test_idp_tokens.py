"""The ID token checks (pki.idtoken) against tokens and keys of the real IdP: its token
passes; the same token tampered with, or for another login's nonce, or checked for
another client, is refused; so is a code redeemed twice (the IdP's own refusal)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc.jwk import KeySet, RSAKey

from gatehouse.errors import AccessDenied
from gatehouse.pki.idtoken import verify_id_token
from tests.integration.idp import CLIENT_ID, CLIENT_SECRET, Account, Browser, IdP

REDIRECT = "https://127.0.0.1:9/v1/sso/oidc/callback"
NONCE = "nonce-of-this-login-0123456789"
VERIFIER = "verifier-of-this-login-0123456789-0123456789"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    provider = IdP(tmp_path_factory.mktemp("idp"), [REDIRECT], {
        "alice": Account("alice-password", {"email": "alice@example.com",
                                            "groups": ["admins"]})}).start()
    yield provider
    provider.stop()


def _redeem(idp: IdP, code: str) -> tuple[int, dict[str, Any]]:
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": REDIRECT, "code_verifier": VERIFIER})
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    request = urllib.request.Request(f"{idp.issuer}/token", data=form.encode(),
                                     headers={"Authorization": f"Basic {basic}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _code(idp: IdP) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest())
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT,
        "scope": "openid email groups", "state": "s", "nonce": NONCE,
        "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256"})
    page = Browser().login(f"{idp.issuer}/auth?{query}", "alice", "alice-password",
                           stop_at=REDIRECT)
    return urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["code"][0]


@pytest.fixture(scope="module")
def token(idp: IdP) -> str:
    status, reply = _redeem(idp, _code(idp))
    assert status == 200, reply
    return str(reply["id_token"])


def _verify(idp: IdP, token: str, *, nonce: str = NONCE, client: str = CLIENT_ID,
            jwks: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = idp.discovery()
    if jwks is None:
        with urllib.request.urlopen(doc["jwks_uri"], timeout=10) as reply:
            jwks = json.load(reply)
    return verify_id_token(token, jwks, issuer=idp.issuer, client_id=client, nonce=nonce,
                           algorithms=doc["id_token_signing_alg_values_supported"],
                           now=int(time.time()))


def test_the_idps_token_passes(idp: IdP, token: str) -> None:
    claims = _verify(idp, token)
    assert claims["sub"] == "alice" and claims["groups"] == ["admins"]


def test_tampered_token_is_refused(idp: IdP, token: str) -> None:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["admins", "everyone-else"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(AccessDenied, match="bad signature"):
        _verify(idp, f"{header}.{forged}.{signature}")


def test_wrong_nonce_or_client_is_refused(idp: IdP, token: str) -> None:
    with pytest.raises(AccessDenied, match="nonce"):
        _verify(idp, token, nonce="another-login")
    with pytest.raises(AccessDenied, match="audience"):
        _verify(idp, token, client="another-client")


def test_token_of_a_key_not_in_the_jwks_is_refused(idp: IdP, token: str) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "not-the-idps", "use": "sig"})
    with pytest.raises(AccessDenied, match="key the IdP's JWKS does not hold"):
        _verify(idp, token, jwks=KeySet([other]).as_dict(private=False))


def test_code_redeemed_twice_is_refused_by_the_idp(idp: IdP) -> None:
    code = _code(idp)
    assert _redeem(idp, code)[0] == 200
    status, reply = _redeem(idp, code)
    assert status == 400 and reply["error"] == "invalid_grant", reply
