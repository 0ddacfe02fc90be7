"""Tests for gatehouse.pki.x509: CAs, identity certificates, chain checks, PEM loading."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import x509
from gatehouse.pki.x509 import IDENTITY_OID, Identity

# Whole seconds: X.509 validity has no sub-second precision.
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=12)

USER_CA_KEY, USER_CA = x509.new_ca("sso.example.com", "user", NOW)
HOST_CA_KEY, HOST_CA = x509.new_ca("sso.example.com", "host", NOW)
# Same cluster and type as USER_CA, so the same subject name, but another key.
IMPOSTOR_KEY, IMPOSTOR_CA = x509.new_ca("sso.example.com", "user", NOW)
SUBJECT_KEY = ed25519.Ed25519PrivateKey.generate()

ALICE = Identity(
    kind="user",
    name="alice",
    cluster="sso.example.com",
    roles=("access", "auditor"),
    logins=("alice", "root"),
    traits={"logins": ["alice", "root"], "teams": ["payments"]},
    route_to_cluster="us-east-1a",
)


def issue_alice(
    ca_key: ed25519.Ed25519PrivateKey = USER_CA_KEY,
    ca_cert: cx509.Certificate = USER_CA,
    *,
    identity: Identity = ALICE,
    now: dt.datetime = NOW,
    dns_names: list[str] | None = None,
) -> cx509.Certificate:
    return x509.issue(ca_key, ca_cert, SUBJECT_KEY.public_key(), identity, now=now, ttl=TTL,
                      dns_names=dns_names)


# --- CAs ----------------------------------------------------------------------------------


def test_new_ca_is_a_self_signed_ca_valid_for_ten_years() -> None:
    assert USER_CA.subject == USER_CA.issuer
    USER_CA.verify_directly_issued_by(USER_CA)
    constraints = USER_CA.extensions.get_extension_for_class(cx509.BasicConstraints).value
    assert constraints.ca is True
    assert USER_CA.not_valid_before_utc <= NOW
    assert USER_CA.not_valid_after_utc - NOW == dt.timedelta(days=3650)


def test_new_ca_uses_the_key_it_is_given() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    _, cert = x509.new_ca("c", "host", NOW, key=key)
    assert cert.public_key() == key.public_key()


def test_ca_type_reads_the_subject() -> None:
    assert x509.ca_type(USER_CA) == "user"
    assert x509.ca_type(HOST_CA) == "host"
    assert x509.ca_type(issue_alice()) == ""


def test_ca_fingerprint_is_a_stable_sha256_of_the_public_key() -> None:
    fingerprint = x509.ca_fingerprint(USER_CA)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint)
    assert x509.ca_fingerprint(USER_CA) == fingerprint
    assert x509.ca_fingerprint(x509.load_cert(x509.pem_cert(USER_CA))) == fingerprint


def test_ca_fingerprint_differs_between_cas() -> None:
    prints = {x509.ca_fingerprint(ca) for ca in (USER_CA, HOST_CA, IMPOSTOR_CA)}
    assert len(prints) == 3


def test_ca_fingerprint_pins_the_key_not_the_certificate() -> None:
    _, reissued = x509.new_ca("sso.example.com", "user", NOW + dt.timedelta(days=1),
                              key=USER_CA_KEY)
    assert reissued != USER_CA
    assert x509.ca_fingerprint(reissued) == x509.ca_fingerprint(USER_CA)


# --- identities ---------------------------------------------------------------------------


def test_issue_and_identity_of_round_trip_every_field() -> None:
    cert = issue_alice()
    ident = x509.identity_of(cert)
    assert ident == Identity(
        kind="user",
        name="alice",
        cluster="sso.example.com",
        roles=("access", "auditor"),
        logins=("alice", "root"),
        traits={"logins": ["alice", "root"], "teams": ["payments"]},
        route_to_cluster="us-east-1a",
        expires=NOW + TTL,
    )
    assert ident.system_role == ""


def test_certificate_names_the_subject_and_its_validity() -> None:
    cert = issue_alice()
    assert cert.subject.rfc4514_string() == "CN=alice,O=sso.example.com"
    assert cert.issuer == USER_CA.subject
    assert cert.public_key() == SUBJECT_KEY.public_key()
    assert cert.not_valid_before_utc == NOW - x509.BACKDATE
    assert cert.not_valid_after_utc == NOW + TTL
    constraints = cert.extensions.get_extension_for_class(cx509.BasicConstraints).value
    assert constraints.ca is False


def test_host_identity_round_trips_with_its_system_role() -> None:
    host = Identity(kind="host", name="4f0c-host-id", cluster="sso.example.com",
                    roles=("proxy",))
    ident = x509.identity_of(issue_alice(HOST_CA_KEY, HOST_CA, identity=host))
    assert ident.kind == "host"
    assert ident.name == "4f0c-host-id"
    assert ident.system_role == "proxy"
    assert ident.logins == ()
    assert ident.traits == {}
    assert ident.route_to_cluster == ""


def test_without_names_a_certificate_is_for_tls_clients_only() -> None:
    cert = issue_alice()
    usages = cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(cx509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName)


def test_names_become_ip_and_dns_sans_and_allow_server_auth() -> None:
    cert = issue_alice(dns_names=["proxy.example.com", "127.0.0.1", "::1", "localhost",
                                  "127.0.0.1"])
    san = cert.extensions.get_extension_for_class(cx509.SubjectAlternativeName).value
    assert san.get_values_for_type(cx509.DNSName) == ["proxy.example.com", "localhost"]
    assert san.get_values_for_type(cx509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usages = cert.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}


def test_identity_of_a_certificate_without_an_identity_is_denied() -> None:
    with pytest.raises(AccessDenied, match="no Gatehouse identity"):
        x509.identity_of(USER_CA)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b"{}", b'{"kind":"robot","name":"x","cluster":"c","roles":[],'
     b'"logins":[],"traits":{}}', b'{"kind":"user","name":"x","cluster":"c","roles":[],'
     b'"logins":[],"traits":[]}'],
)
def test_identity_of_a_malformed_identity_is_bad_parameter(payload: bytes) -> None:
    cert = (
        cx509.CertificateBuilder()
        .subject_name(USER_CA.subject)
        .issuer_name(USER_CA.subject)
        .public_key(SUBJECT_KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + TTL)
        .add_extension(cx509.UnrecognizedExtension(IDENTITY_OID, payload), critical=False)
        .sign(USER_CA_KEY, None)
    )
    with pytest.raises(BadParameter, match="malformed Gatehouse identity"):
        x509.identity_of(cert)


names = st.text(st.characters(codec="utf-8"), max_size=20)


@given(
    kind=st.sampled_from(["user", "host"]),
    name=names,
    cluster=names,
    roles=st.lists(names, max_size=3).map(tuple),
    logins=st.lists(names, max_size=3).map(tuple),
    traits=st.dictionaries(names, st.lists(names, max_size=3), max_size=3),
    route=names,
)
def test_identity_json_round_trips(
    kind: str, name: str, cluster: str, roles: tuple[str, ...], logins: tuple[str, ...],
    traits: dict[str, list[str]], route: str,
) -> None:
    ident = Identity(kind=kind, name=name, cluster=cluster, roles=roles,  # type: ignore[arg-type]
                     logins=logins, traits=traits, route_to_cluster=route)
    assert Identity.from_json(ident.to_json(), None) == ident


# --- verify_issued_by ---------------------------------------------------------------------


def test_verify_returns_the_issuing_ca() -> None:
    cert = issue_alice()
    assert x509.verify_issued_by(cert, [HOST_CA, USER_CA], NOW) == USER_CA
    assert x509.verify_issued_by(cert, [USER_CA], NOW + TTL) == USER_CA  # last instant


def test_verify_refuses_another_ca() -> None:
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        x509.verify_issued_by(issue_alice(), [HOST_CA], NOW)


def test_verify_refuses_no_cas() -> None:
    with pytest.raises(AccessDenied):
        x509.verify_issued_by(issue_alice(), [], NOW)


def test_verify_refuses_a_ca_with_the_same_name_but_another_key() -> None:
    assert IMPOSTOR_CA.subject == USER_CA.subject
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        x509.verify_issued_by(issue_alice(IMPOSTOR_KEY, IMPOSTOR_CA), [USER_CA], NOW)
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        x509.verify_issued_by(issue_alice(), [IMPOSTOR_CA], NOW)


def test_verify_refuses_an_expired_certificate() -> None:
    with pytest.raises(AccessDenied, match="expired"):
        x509.verify_issued_by(issue_alice(), [USER_CA], NOW + TTL + dt.timedelta(seconds=1))


def test_verify_refuses_a_certificate_not_valid_yet() -> None:
    cert = issue_alice()
    # Issued certificates are backdated for clock drift, no more.
    x509.verify_issued_by(cert, [USER_CA], NOW - x509.BACKDATE)
    with pytest.raises(AccessDenied, match="not valid yet"):
        x509.verify_issued_by(cert, [USER_CA], NOW - x509.BACKDATE - dt.timedelta(seconds=1))


def test_verify_refuses_a_tampered_identity() -> None:
    der = issue_alice().public_bytes(serialization.Encoding.DER)
    assert der.count(b'"name":"alice"') == 1
    forged = cx509.load_der_x509_certificate(der.replace(b'"name":"alice"', b'"name":"admin"'))
    assert x509.identity_of(forged).name == "admin"  # identity_of alone does not check
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        x509.verify_issued_by(forged, [USER_CA], NOW)


def test_verify_refuses_a_tampered_signature() -> None:
    der = bytearray(issue_alice().public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the Ed25519 signature
    forged = cx509.load_der_x509_certificate(bytes(der))
    with pytest.raises(AccessDenied, match="not signed by a trusted"):
        x509.verify_issued_by(forged, [USER_CA], NOW)


# --- PEM ----------------------------------------------------------------------------------


def test_pem_round_trips() -> None:
    cert = issue_alice()
    assert x509.load_cert(x509.pem_cert(cert)) == cert
    assert x509.load_cert(x509.pem_cert(cert).encode()) == cert
    key = x509.load_key(x509.pem_key(USER_CA_KEY))
    assert key.public_key() == USER_CA_KEY.public_key()
    assert x509.load_key(x509.pem_key(USER_CA_KEY).encode()).public_key() == key.public_key()


@pytest.mark.parametrize("pem", ["", "junk", b"\xff\xfe", x509.pem_key(USER_CA_KEY)])
def test_load_cert_errors_are_bad_parameter(pem: str | bytes) -> None:
    with pytest.raises(BadParameter, match=r"malformed X\.509 certificate"):
        x509.load_cert(pem)


@pytest.mark.parametrize(
    "pem",
    ["", "junk", x509.pem_cert(USER_CA),
     x509.pem_key(USER_CA_KEY).replace("MC4CAQAw", "MC4CAQEw")],  # PKCS#8 version 1 -> 2
)
def test_load_key_errors_are_bad_parameter(pem: str) -> None:
    with pytest.raises(BadParameter, match="malformed private key"):
        x509.load_key(pem)


def test_load_key_refuses_other_key_types() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(BadParameter, match="not Ed25519"):
        x509.load_key(pem)


def test_load_key_of_an_encrypted_key_is_bad_parameter() -> None:
    pem = USER_CA_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(BadParameter):
        x509.load_key(pem)


# --- PEM ----------------------------------------------------------------------------------


def test_pem_blocks_picks_the_certificates_of_a_bundle_in_order() -> None:
    cert, ca = x509.pem_cert(issue_alice()), x509.pem_cert(USER_CA)
    bundle = x509.pem_key(SUBJECT_KEY) + cert + ca.rstrip("\n") + "\n\ntrailing text\n"
    assert x509.pem_blocks(bundle) == [cert, ca]
    assert x509.pem_blocks(bundle, "PRIVATE KEY") == [x509.pem_key(SUBJECT_KEY)]
    assert x509.pem_blocks("no pem here") == []


# --- hostile identities (the tunnel reads a certificate's identity to find its CA) --------


def _self_signed_identity(payload: bytes) -> cx509.Certificate:
    """A certificate with ``payload`` as its identity, signed by a key of its own."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = cx509.Name([cx509.NameAttribute(cx509.oid.NameOID.COMMON_NAME, "mallory")])
    return (
        cx509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + TTL)
        .add_extension(cx509.UnrecognizedExtension(IDENTITY_OID, payload), critical=False)
        .sign(key, None)
    )


def test_identity_with_deeply_nested_traits_is_bad_parameter() -> None:
    deep = ALICE.to_json().replace('"traits":{', '"traits":{"x":' + "[" * 5000 + "]" * 5000
                                   + ",")
    with pytest.raises(BadParameter, match="nested deeper than 3"):
        x509.identity_of(_self_signed_identity(deep.encode()))


def test_oversized_identity_is_bad_parameter() -> None:
    huge = Identity(kind="user", name="mallory", cluster="c",
                    traits={"x": ["y" * x509.MAX_IDENTITY]})
    with pytest.raises(BadParameter, match=f"longer than {x509.MAX_IDENTITY}"):
        x509.identity_of(_self_signed_identity(huge.to_json().encode()))
    with pytest.raises(BadParameter, match=f"longer than {x509.MAX_IDENTITY}"):
        issue_alice(identity=huge)


def test_identity_that_is_not_utf8_is_bad_parameter() -> None:
    with pytest.raises(BadParameter, match="malformed Gatehouse identity"):
        x509.identity_of(_self_signed_identity(b'{"kind":"\xff"}'))
