"""Join tokens that carry a pin of the issuing cluster's host CA (pure).

A token is ``<secret><pin>``: 22 url-safe base64 characters of secret (128
bits) and 43 of SHA-256 over the host CA's SubjectPublicKeyInfo, as kubeadm's
discovery hash does. The joining side checks the server against the pin before
it sends the secret; only the secret is stored by the auth.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass

from gatehouse.errors import BadParameter

__all__ = ["JoinToken"]

_SECRET_LEN = 22
_PIN_LEN = 43
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


def _pin_of(fingerprint: str) -> str:
    """'sha256:<hex>' (x509.ca_fingerprint) -> 43 url-safe base64 characters."""
    algo, _, hexdigest = fingerprint.partition(":")
    try:
        if algo != "sha256" or len(hexdigest) != 64:
            raise ValueError(algo)
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        raise BadParameter(f"not a sha256 CA fingerprint: {fingerprint!r}") from None
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class JoinToken:
    secret: str
    pin: str

    @classmethod
    def generate(cls, ca_fingerprint: str) -> JoinToken:
        return cls(secrets.token_urlsafe(16), _pin_of(ca_fingerprint))

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        text = text.strip()
        if len(text) != _SECRET_LEN + _PIN_LEN or not _ALPHABET.match(text):
            raise BadParameter(
                "malformed join token: expected the 65 characters `gatectl tokens add` printed"
            )
        return cls(text[:_SECRET_LEN], text[_SECRET_LEN:])

    def __str__(self) -> str:
        return self.secret + self.pin

    def matches(self, ca_fingerprint: str) -> bool:
        """Does the server's host CA carry the fingerprint this token pins?"""
        return hmac.compare_digest(self.pin, _pin_of(ca_fingerprint))
