"""Tests for gatehouse.pki.jointoken: tokens that carry a pin of the cluster's host CA."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.pki import x509
from gatehouse.pki.jointoken import JoinToken

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_, HOST_CA = x509.new_ca("sso.example.com", "host", NOW)
_, OTHER_CA = x509.new_ca("sso.example.com", "host", NOW)
FINGERPRINT = x509.ca_fingerprint(HOST_CA)
OTHER_FINGERPRINT = x509.ca_fingerprint(OTHER_CA)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{65}")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def test_generated_token_is_65_url_safe_characters() -> None:
    text = str(JoinToken.generate(FINGERPRINT))
    assert len(text) == 65
    assert TOKEN_RE.fullmatch(text)


def test_generate_parse_str_round_trip() -> None:
    token = JoinToken.generate(FINGERPRINT)
    assert len(token.secret) == 22
    assert len(token.pin) == 43
    assert str(token) == token.secret + token.pin
    assert JoinToken.parse(str(token)) == token


def test_parse_ignores_surrounding_whitespace() -> None:
    token = JoinToken.generate(FINGERPRINT)
    assert JoinToken.parse(f"  {token}\n") == token


def test_secrets_are_fresh_and_the_pin_is_the_cas() -> None:
    a, b = JoinToken.generate(FINGERPRINT), JoinToken.generate(FINGERPRINT)
    assert a.secret != b.secret
    assert a.pin == b.pin
    assert JoinToken.generate(OTHER_FINGERPRINT).pin != a.pin


def test_matches_the_pinned_ca_only() -> None:
    token = JoinToken.parse(str(JoinToken.generate(FINGERPRINT)))
    assert token.matches(FINGERPRINT)
    assert not token.matches(OTHER_FINGERPRINT)


def test_matches_after_the_ca_certificate_is_reissued_with_the_same_key() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _, first = x509.new_ca("c", "host", NOW, key=key)
    _, second = x509.new_ca("c", "host", NOW + dt.timedelta(days=1), key=key)
    token = JoinToken.generate(x509.ca_fingerprint(first))
    assert token.matches(x509.ca_fingerprint(second))


@pytest.mark.parametrize("fingerprint", ["", "sha256:", "md5:" + "ab" * 16,
                                         "sha256:" + "ab" * 31, "SHA256:abc"])
def test_a_fingerprint_that_is_not_sha256_is_bad_parameter(fingerprint: str) -> None:
    with pytest.raises(BadParameter, match="not a sha256 CA fingerprint"):
        JoinToken.generate(fingerprint)
    with pytest.raises(BadParameter, match="not a sha256 CA fingerprint"):
        JoinToken.generate(FINGERPRINT).matches(fingerprint)


def test_a_fingerprint_with_non_hex_digits_is_bad_parameter() -> None:
    with pytest.raises(BadParameter):
        JoinToken.generate(FINGERPRINT).matches("sha256:" + "zz" * 32)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a" * 64,
        "a" * 66,
        "a" * 22,
        "a" * 64 + "+",
        "a" * 64 + "/",
        "a" * 64 + "=",
        "a" * 32 + " " + "a" * 32,
        "a" * 32 + "\n" + "a" * 32,
        "a" * 64 + "é",
        "a" * 64 + "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not [0-9]
    ],
)
def test_parse_rejects_wrong_length_or_characters(text: str) -> None:
    with pytest.raises(BadParameter, match="malformed join token"):
        JoinToken.parse(text)


@given(st.text(ALPHABET, min_size=65, max_size=65))
def test_any_65_alphabet_characters_parse_and_print_back(text: str) -> None:
    token = JoinToken.parse(text)
    assert str(token) == text
    assert token.secret == text[:22]


@given(st.text())
def test_parse_of_garbage_raises_only_bad_parameter(text: str) -> None:
    try:
        token = JoinToken.parse(text)
    except BadParameter:
        return
    assert TOKEN_RE.fullmatch(str(token))
    assert str(token) == text.strip()


@given(st.text(ALPHABET + "+/= \n\t.é", min_size=60, max_size=70))
def test_parse_of_near_tokens_raises_only_bad_parameter(text: str) -> None:
    try:
        token = JoinToken.parse(text)
    except BadParameter:
        assert not TOKEN_RE.fullmatch(text.strip())
        return
    assert str(token) == text.strip()
