"""Fuzzing join tokens (pki/jointoken.py), what `gatehouse start` reads from a config
and a flag: a token round-trips through its text and pins its CA; any other text is
BadParameter alone, and so is any fingerprint that is not one."""

from __future__ import annotations

import contextlib
import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gatehouse.errors import BadParameter
from gatehouse.pki.jointoken import JoinToken
from tests.fuzz.budget import fuzz

_fingerprints = st.binary(min_size=1, max_size=16).map(
    lambda b: "sha256:" + hashlib.sha256(b).hexdigest())
_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@fuzz(100)
@given(_fingerprints, _fingerprints)
def test_tokens_round_trip_and_pin_their_ca(fingerprint: str, other: str) -> None:
    token = JoinToken.generate(fingerprint)
    assert JoinToken.parse(f"  {token}\n") == token
    assert token.matches(fingerprint)
    assert token.matches(other) == (other == fingerprint)


_texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=80),
    st.text(_alphabet, min_size=60, max_size=70),
    st.text(_alphabet + " \n\t\u00e9\u0660", min_size=63, max_size=67),
)


@fuzz(200)
@given(_texts, st.one_of(_fingerprints, st.text(max_size=80), st.text(
    "0123456789abcdefABCDEF \u0660", min_size=64, max_size=64).map(lambda h: "sha256:" + h)))
def test_any_text_is_a_token_or_bad_parameter(text: str, fingerprint: str) -> None:
    with contextlib.suppress(BadParameter):
        token = JoinToken.parse(text)
        assert JoinToken.parse(str(token)) == token
        assert isinstance(token.matches(fingerprint), bool)
