"""ID token checks (pki.idtoken) with keys the test makes: each way a token can be
wrong is refused with its reason; only a token that passes every check gives claims."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from gatehouse.errors import AccessDenied
from gatehouse.pki.idtoken import UnknownSigningKey, allowed_algorithms, verify_id_token

ISSUER = "https://idp.example.com"
CLIENT = "gatehouse"
NONCE = "n-0123456789"
NOW = 1_800_000_000
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
JWKS = KeySet([KEY]).as_dict(private=False)


def _claims(**change: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "sub": "alice", "aud": CLIENT, "exp": NOW + 300, "iat": NOW - 5,
              "nonce": NONCE, "email": "alice@example.com", "groups": ["admins"]}
    claims.update(change)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims: dict[str, Any] | None = None, key: Any = KEY,
           header: dict[str, Any] | None = None) -> str:
    return jwt.encode(header or {"alg": "RS256", "kid": "k1"}, claims or _claims(), key)


def _verify(token: str, nonce: str = NONCE, jwks: dict[str, Any] = JWKS,
            algorithms: list[str] | None = None) -> dict[str, Any]:
    return verify_id_token(token, jwks, issuer=ISSUER, client_id=CLIENT, nonce=nonce,
                           algorithms=algorithms or ["RS256"], now=NOW)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_a_good_token_gives_its_claims() -> None:
    claims = _verify(_token())
    assert claims["sub"] == "alice" and claims["groups"] == ["admins"]


@pytest.mark.parametrize(("claims", "reason"), [
    (_claims(iss="https://evil.example.com"), "iss"),
    (_claims(aud="someone-else"), "audience"),
    (_claims(aud=[CLIENT, "other"]), "azp"),
    (_claims(exp=NOW - 120), "expired"),
    (_claims(iat=NOW + 3600), "issued in the future"),
    (_claims(exp=None), "exp"),
    (_claims(nonce="another-login"), "nonce"),
    (_claims(nonce=None), "nonce"),
    (_claims(sub=None), "sub"),
])
def test_wrong_claims_are_refused(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(AccessDenied, match=reason):
        _verify(_token(claims))


def test_several_audiences_with_azp_pass() -> None:
    assert _verify(_token(_claims(aud=[CLIENT, "other"], azp=CLIENT)))["sub"] == "alice"


def test_tampered_payload_is_refused() -> None:
    header, _, signature = _token().split(".")
    forged = _b64(_claims(groups=["admins", "root-everything"]))
    with pytest.raises(AccessDenied, match="bad signature"):
        _verify(f"{header}.{forged}.{signature}")


def test_alg_none_is_refused_even_if_listed() -> None:
    unsigned = f"{_b64({'alg': 'none'})}.{_b64(_claims())}."
    with pytest.raises(AccessDenied):
        _verify(unsigned, algorithms=["none", "RS256"])
    assert allowed_algorithms(["none", "RS256", "HS256"]) == ["RS256"]
    with pytest.raises(AccessDenied, match="no public-key"):
        allowed_algorithms(["none", "HS256"])


def test_hmac_token_is_refused() -> None:
    """A token MACed with a key an attacker knows (the client secret, or the public key's
    bytes) is not an IdP's signature."""
    secret = OctKey.import_key(b"client-secret-known-to-many-00000000")
    token = _token(key=secret, header={"alg": "HS256", "kid": "k1"})
    with pytest.raises(AccessDenied):
        _verify(token, algorithms=["HS256", "RS256"])


def test_unknown_key_asks_for_a_refresh() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig"})
    with pytest.raises(UnknownSigningKey):
        _verify(_token(key=other, header={"alg": "RS256", "kid": "k2"}))
    rotated = KeySet([KEY, other]).as_dict(private=False)
    assert _verify(_token(key=other, header={"alg": "RS256", "kid": "k2"}),
                   jwks=rotated)["sub"] == "alice"


def test_key_of_the_right_kid_but_other_signer_is_refused() -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(AccessDenied, match="bad signature"):
        _verify(_token(key=impostor))


def test_garbage_is_refused() -> None:
    for token in ("", "a.b.c", "not a token"):
        with pytest.raises(AccessDenied):
            _verify(token)
