"""ID token verification (OpenID Connect Core 1.0 §3.1.3.7), on joserfc: the signature
against the IdP's JWKS with the algorithms it advertises (asymmetric ones only: never
``none``, never an HMAC keyed by something the client knows), then ``iss``, ``aud``
(and ``azp`` when there are several audiences), ``exp``, ``iat`` and ``nonce``. Pure:
the keys, the expected values and the time are given."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import errors as jose_errors
from joserfc import jwt
from joserfc.jwk import KeySet

from gatehouse.errors import AccessDenied

__all__ = ["SIGNING_ALGORITHMS", "UnknownSigningKey", "allowed_algorithms", "verify_id_token"]

# Public-key signatures (RFC 7518 §3.1, RFC 8037): what an ID token may be signed with.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                      "ES256", "ES384", "ES512", "EdDSA")
LEEWAY = 60  # seconds of clock skew tolerated on exp and iat


class UnknownSigningKey(AccessDenied):
    """The token names a key the JWKS does not hold (the IdP may have rotated its keys)."""


def allowed_algorithms(advertised: Iterable[str]) -> list[str]:
    """The IdP's advertised ID token algorithms that Gatehouse accepts; AccessDenied if none."""
    allowed = [alg for alg in advertised if alg in SIGNING_ALGORITHMS]
    if not allowed:
        raise AccessDenied("the IdP advertises no public-key ID token signing algorithm "
                           f"(id_token_signing_alg_values_supported: {list(advertised)})")
    return allowed


def _refused(reason: str) -> AccessDenied:
    return AccessDenied(f"ID token refused: {reason}")


def verify_id_token(token: str, jwks: Mapping[str, Any], *, issuer: str, client_id: str,
                    nonce: str, algorithms: list[str], now: int,
                    nonce_required: bool = True) -> dict[str, Any]:
    """The token's claims once every check passed; AccessDenied naming the first that
    failed (UnknownSigningKey when its key is not in ``jwks``). ``nonce_required``
    False: a token straight from the token endpoint of a back-channel grant (the device
    grant, RFC 8628) may carry no nonce; one it carries must still match."""
    algorithms = [alg for alg in algorithms if alg in SIGNING_ALGORITHMS]
    if not algorithms:
        raise _refused("no acceptable signing algorithm")
    try:
        keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
    except (jose_errors.JoseError, ValueError, TypeError, KeyError) as exc:
        raise _refused(f"the IdP's JWKS is unusable: {exc}") from None
    try:
        decoded = jwt.decode(token, keys, algorithms=algorithms)
    except jose_errors.InvalidKeyIdError:
        raise UnknownSigningKey("ID token refused: signed with a key the IdP's JWKS does "
                                "not hold") from None
    except jose_errors.UnsupportedAlgorithmError as exc:
        raise _refused(f"algorithm not allowed ({exc.description or exc})") from None
    except jose_errors.BadSignatureError:
        raise _refused("bad signature") from None
    except (jose_errors.JoseError, ValueError, TypeError) as exc:
        raise _refused(f"malformed token ({getattr(exc, 'error', '') or type(exc).__name__})"
                       ) from None
    claims: dict[str, Any] = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        now=now, leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
        aud={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except jose_errors.ExpiredTokenError:
        raise _refused("expired (exp)") from None
    except jose_errors.MissingClaimError as exc:
        raise _refused(str(exc.description)) from None
    except jose_errors.InvalidClaimError as exc:
        raise _refused(str(exc.description)) from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if client_id not in audiences:
        raise _refused(f"audience {audiences} is not this client ({client_id})")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise _refused("several audiences and azp is not this client")
    got = claims.get("nonce")
    if got is None and not nonce_required:
        return claims
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise _refused("nonce does not match this login")
    return claims
