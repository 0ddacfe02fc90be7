"""Fuzzing the SSH certificate codec (pki/sshcert.py): valid certificates round-trip; any
other blob, signed or not, fails with BadParameter alone (what the node and the auth
catch), and nothing it announces is allocated before it is there."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import struct

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import event, given
from hypothesis import strategies as st

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import sshcert
from gatehouse.pki.sshcert import Certificate, CertType
from tests.fuzz.budget import fuzz, peak_bytes

CA = ed25519.Ed25519PrivateKey.generate()
KEYS: list[sshcert.PublicKey] = [
    ed25519.Ed25519PrivateKey.generate().public_key(),
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
]
SIG_FIELD_LEN = 4 + (4 + 11) + (4 + 64)  # string(string("ssh-ed25519") + string(sig))
U32 = st.sampled_from([0, 1, 4, 32, 0x7FFFFFFF, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1)

_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=16)
_names = _text.filter(bool)


@st.composite
def certificates(draw: st.DrawFn) -> Certificate:
    cert_type = draw(st.sampled_from(CertType))
    if cert_type is CertType.USER:
        extensions = sshcert.user_extensions(
            draw(st.lists(_names.filter(lambda r: "," not in r), max_size=3)),
            draw(st.dictionaries(_text, st.lists(_text, max_size=3), max_size=3)),
            draw(_text), draw(_text), permit_pty=draw(st.booleans()),
            permit_port_forwarding=draw(st.booleans()))
    else:
        extensions = sshcert.host_extensions(draw(_text), draw(st.sampled_from(
            sshcert.HOST_ROLES)))
    extensions.update(draw(st.dictionaries(_names.map(lambda n: n + "@x"), _text, max_size=2)))
    valid_after = draw(st.integers(0, 2**64 - 2))
    return Certificate(
        cert_type=cert_type, key_id=draw(_text), principals=tuple(draw(st.lists(_names,
                                                                              max_size=4))),
        valid_after=valid_after, valid_before=draw(st.integers(valid_after + 1, 2**64 - 1)),
        public_key=draw(st.sampled_from(KEYS)), serial=draw(st.integers(0, 2**64 - 1)),
        critical_options=draw(st.dictionaries(_names, _text, max_size=3)),
        extensions=extensions, nonce=draw(st.binary(max_size=40)))


def signed(body: bytes) -> bytes:
    """``body`` (everything up to the signature) with CA's signature over it."""
    sig = sshcert._string(b"ssh-ed25519") + sshcert._string(CA.sign(body))
    return body + sshcert._string(sig)


def decodes_or_bad_parameter(blob: bytes) -> Certificate | None:
    """decode(blob); only BadParameter may stop it, and what decodes is usable."""
    try:
        cert = sshcert.decode(blob)
    except BadParameter as exc:
        event("BadParameter: " + re.sub(r"'.*'|\".*\"|\d+", "_", str(exc))[:50])
        return None
    event("decoded")
    for cert_type in CertType:
        with contextlib.suppress(AccessDenied):
            sshcert.check_validity(cert, now=cert.valid_after, cert_type=cert_type,
                                   principal=None)
    # Re-encoding what was read gives back the same certificate.
    again = sshcert.decode(signed(sshcert.sign(cert, CA)[:-SIG_FIELD_LEN]))
    assert again == dataclasses.replace(cert, signature_key=CA.public_key())
    return cert


@fuzz(150)
@given(certificates())
def test_valid_certificates_round_trip(cert: Certificate) -> None:
    blob = sshcert.sign(cert, CA)
    assert sshcert.decode(blob) == dataclasses.replace(cert, signature_key=CA.public_key())
    assert sshcert.from_openssh_line(sshcert.to_openssh_line(blob, "c")) == blob
    assert sshcert.is_certificate(blob)


_mutations = st.lists(st.one_of(
    st.tuples(st.just("flip"), st.integers(0), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("u32"), st.integers(0), U32),
), min_size=1, max_size=4)


def mutate(data: bytes, ops: list[tuple[str, int, object]]) -> bytes:
    out = bytearray(data)
    for op, where, arg in ops:
        at = where % (len(out) + 1)
        if op == "flip" and at < len(out):
            assert isinstance(arg, int)
            out[at] ^= arg
        elif op == "cut":
            assert isinstance(arg, int)
            del out[at:at + arg]
        elif op == "insert":
            assert isinstance(arg, bytes)
            out[at:at] = arg
        elif op == "u32":
            assert isinstance(arg, int)
            out[at:at + 4] = struct.pack(">I", arg)
    return bytes(out)


@fuzz(300)
@given(certificates(), _mutations, st.booleans())
def test_mutated_certificates_fail_with_bad_parameter(
        cert: Certificate, ops: list[tuple[str, int, object]], resign: bool) -> None:
    blob = sshcert.sign(cert, CA)
    # Signed again after the change, the parser meets it whole (not just the signature).
    mutant = signed(mutate(blob[:-SIG_FIELD_LEN], ops)) if resign else mutate(blob, ops)
    decodes_or_bad_parameter(mutant)


def _options(entries: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(sshcert._string(n) + sshcert._string(d) for n, d in entries)




def usually(valid: st.SearchStrategy[bytes], other: st.SearchStrategy[bytes]
            ) -> st.SearchStrategy[bytes]:
    """``valid`` three times in four, so that the fields after this one are reached too."""
    return st.integers(0, 3).flatmap(lambda i: valid if i else other)


_raw_text = usually(_text.map(str.encode), st.binary(max_size=12))
_option_data = usually(_raw_text.map(sshcert._string), st.binary(max_size=12))


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """A certificate body field by field, each valid or not, for the signature to cover."""
    key = draw(st.sampled_from(KEYS))
    kind, key_fields = sshcert._key_fields(key)
    option_lists = st.lists(st.tuples(_raw_text, _option_data), max_size=4)
    traits = st.sampled_from([b'{"a":["b"]}', b'{"a":"b"}', b"[[[]]]", b'{"a":[[]]}',
                              b"1" * 5000, b'{"a":' + b"[" * 3000])
    extensions = option_lists | traits.map(
        lambda t: [(sshcert.EXT_TRAITS.encode(), sshcert._string(t))])
    return b"".join((
        sshcert._string(draw(usually(st.just(kind.encode() + b"-cert-v01@openssh.com"),
                                     st.binary(max_size=30)))),
        sshcert._string(draw(st.binary(max_size=32))),
        draw(usually(st.just(key_fields), st.binary(max_size=80).map(
            lambda b: sshcert._string(b) * (kind.count("-") + 1)))),
        struct.pack(">Q", draw(st.integers(0, 2**64 - 1))),
        struct.pack(">I", draw(st.sampled_from([1, 2]) | U32)),
        sshcert._string(draw(_raw_text)),
        sshcert._string(b"".join(sshcert._string(p) for p in draw(st.lists(_raw_text,
                                                                            max_size=3)))),
        struct.pack(">Q", after := draw(st.integers(0, 2**64 - 2))),
        struct.pack(">Q", draw(st.integers(after + 1, 2**64 - 1) | st.integers(0, after))),
        sshcert._string(_options(draw(option_lists))),
        sshcert._string(_options(sorted(draw(extensions)))),
        sshcert._string(draw(st.binary(max_size=8))),
        sshcert._string(draw(usually(st.just(sshcert._key_blob(CA.public_key())),
                                     st.binary(max_size=60)))),
    ))


@fuzz(300)
@given(hostile_bodies())
def test_hostile_fields_fail_with_bad_parameter(body: bytes) -> None:
    decodes_or_bad_parameter(signed(body))


@fuzz(200)
@given(st.binary(max_size=600) | st.text(max_size=200).map(str.encode))
def test_random_bytes_fail_with_bad_parameter(data: bytes) -> None:
    decodes_or_bad_parameter(data)
    assert isinstance(sshcert.is_certificate(data), bool)


@fuzz(150)
@given(st.text(max_size=300))
def test_openssh_lines_fail_with_bad_parameter(line: str) -> None:
    try:
        blob = sshcert.from_openssh_line(line)
    except BadParameter:
        return
    decodes_or_bad_parameter(blob)


def test_a_length_of_four_gigabytes_is_not_allocated() -> None:
    blob = sshcert.sign(sshcert.Certificate(
        cert_type=CertType.USER, key_id="a", principals=("a",), valid_after=0,
        valid_before=1, public_key=KEYS[0]), CA)
    # The key id's length (after type, nonce, key, serial and cert type) says 4 GiB.
    at = blob.index(sshcert._string(b"a"))
    for hostile in (b"\xff\xff\xff\xff", blob[:at] + b"\xff\xff\xff\xff" + blob[at + 4:]):
        assert peak_bytes(lambda h=hostile: sshcert.decode(h), BadParameter) < 64 * 1024
