"""Whom a proxy's client speaks for: hostile user certificates are refused with the
project's error kinds, which both proxy paths (the web relay and the SSH dial) turn
into a refusal."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import x509
from gatehouse.proxy.usercert import authenticate_user

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
CA_KEY, CA = x509.new_ca("sso.example.com", "user", NOW)
DEEP = ('{"kind":"user","name":"mallory","cluster":"sso.example.com","roles":[],'
        '"logins":[],"traits":{"x":' + "[" * 5000 + "]" * 5000 + "}}").encode()


def _der(identity: bytes, key: ed25519.Ed25519PrivateKey, issuer: cx509.Name) -> bytes:
    subject = ed25519.Ed25519PrivateKey.generate().public_key()
    cert = (
        cx509.CertificateBuilder()
        .subject_name(issuer).issuer_name(issuer).public_key(subject)
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(hours=1))
        .add_extension(cx509.UnrecognizedExtension(x509.IDENTITY_OID, identity),
                       critical=False)
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_self_signed_certificate_is_denied_before_its_identity_is_read() -> None:
    der = _der(DEEP, ed25519.Ed25519PrivateKey.generate(), CA.subject)
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        authenticate_user(der, [CA], NOW)


def test_a_deeply_nested_identity_is_bad_parameter() -> None:
    with pytest.raises(BadParameter, match="nested deeper than 3"):
        authenticate_user(_der(DEEP, CA_KEY, CA.subject), [CA], NOW)
