"""Join tokens. The secret is the token's name; ``metadata.expires`` ends it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator

from gatehouse.types.resource import Metadata, Model, Resource, invalid

__all__ = ["TOKEN_TYPES", "Token", "TokenMetadata", "TokenSpec", "TokenType"]

TokenType = Literal["node", "proxy", "trusted_cluster"]
TOKEN_TYPES: tuple[TokenType, ...] = ("node", "proxy", "trusted_cluster")
# Generated tokens use the URL-safe base64 alphabet, so they may start with "-" or "_".
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,253}")


def _check_secret(value: str) -> str:
    if _SECRET_RE.fullmatch(value) is None:
        raise invalid("a token is made of letters, digits, '_' and '-' (at most 253)")
    return value


class TokenMetadata(Metadata):
    name: Annotated[str, AfterValidator(_check_secret)]


class TokenSpec(Model):
    type: TokenType


class Token(Resource):
    kind: Literal["token"] = "token"
    metadata: TokenMetadata
    spec: TokenSpec
    status: None = None
