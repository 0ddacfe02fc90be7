"""Tests for gatehouse.pki.sshcert: round trips, tampering, and interop with real OpenSSH."""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.public_key import SSHOpenSSHCertificate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import sshcert
from gatehouse.pki.sshcert import (
    EXT_CLUSTER,
    EXT_HOST_ROLE,
    EXT_ROLES,
    EXT_ROUTE,
    EXT_TRAITS,
    Certificate,
    CertType,
)

CA = ed25519.Ed25519PrivateKey.generate()
OTHER_CA = ed25519.Ed25519PrivateKey.generate()
SUBJECTS: dict[str, sshcert.PublicKey] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate().public_key(),
    "ecdsa-p256": ec.generate_private_key(ec.SECP256R1()).public_key(),
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
}
T0 = 1704067200  # 2024-01-01T00:00:00Z
DAY = 86400
SIG_FIELD_LEN = 4 + (4 + 11) + (4 + 64)  # string(string("ssh-ed25519") + string(sig))

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="OpenSSH's ssh-keygen is not installed")
needs_ssh = pytest.mark.skipif(
    shutil.which("ssh") is None, reason="OpenSSH's ssh client is not installed")


def user_cert(key: sshcert.PublicKey | None = None, **overrides: Any) -> Certificate:
    fields: dict[str, Any] = {
        "cert_type": CertType.USER,
        "key_id": "alice",
        "principals": ("alice", "root"),
        "valid_after": T0,
        "valid_before": T0 + DAY,
        "public_key": key or SUBJECTS["ed25519"],
        "serial": 7,
        "critical_options": {"force-command": "uptime", "source-address": "10.0.0.0/8"},
        "extensions": sshcert.user_extensions(
            ["admin", "dev-payments"], {"logins": ["alice", "root"], "team": ["pay"]},
            "us-east-1a", "sso.example.com"),
    }
    fields.update(overrides)
    return Certificate(**fields)


def host_cert(**overrides: Any) -> Certificate:
    fields: dict[str, Any] = {
        "cert_type": CertType.HOST,
        "key_id": "3f2a-node1",
        "principals": ("node1", "node1.us-east-1a", "3f2a-node1", "127.0.0.1"),
        "valid_after": T0,
        "valid_before": T0 + 365 * DAY,
        "public_key": SUBJECTS["ed25519"],
        "extensions": sshcert.host_extensions("us-east-1a", "node"),
    }
    fields.update(overrides)
    return Certificate(**fields)


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def resign(blob: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes in the signed part of ``blob`` and sign it again with CA."""
    body = blob[:-SIG_FIELD_LEN].replace(old, new)
    return body + ssh_string(ssh_string(b"ssh-ed25519") + ssh_string(CA.sign(body)))


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_user_cert_round_trip(kind: str) -> None:
    cert = user_cert(SUBJECTS[kind])
    decoded = sshcert.decode(sshcert.sign(cert, CA))
    assert decoded == dataclasses.replace(cert, signature_key=CA.public_key())
    assert decoded.roles == ("admin", "dev-payments")
    assert decoded.traits == {"logins": ["alice", "root"], "team": ["pay"]}
    assert decoded.route_to_cluster == "us-east-1a"
    assert decoded.cluster == "sso.example.com"
    assert decoded.critical_options == {"force-command": "uptime",
                                        "source-address": "10.0.0.0/8"}


def test_host_cert_round_trip() -> None:
    decoded = sshcert.decode(sshcert.sign(host_cert(), CA))
    assert decoded.cert_type is CertType.HOST
    assert decoded.principals == ("node1", "node1.us-east-1a", "3f2a-node1", "127.0.0.1")
    assert (decoded.cluster, decoded.host_role) == ("us-east-1a", "node")
    assert decoded.roles == () and decoded.traits == {} and decoded.route_to_cluster == ""


_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"),
                max_size=12)
_name = _text.filter(bool)


@settings(max_examples=50, deadline=None)
@given(
    key_id=_text,
    principals=st.lists(_name, max_size=4),
    roles=st.lists(_name.filter(lambda r: "," not in r), max_size=4),
    traits=st.dictionaries(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=3),
                           max_size=3),
    route=_text,
    cluster=_text,
    serial=st.integers(0, 2**64 - 1),
    valid_after=st.integers(0, 2**64 - 2),
)
def test_round_trip_property(key_id: str, principals: list[str], roles: list[str],
                             traits: dict[str, list[str]], route: str, cluster: str,
                             serial: int, valid_after: int) -> None:
    ext = sshcert.user_extensions(roles, traits, route, cluster, permit_port_forwarding=True)
    cert = user_cert(key_id=key_id, principals=tuple(principals), serial=serial,
                     valid_after=valid_after, valid_before=2**64 - 1, extensions=ext)
    decoded = sshcert.decode(sshcert.sign(cert, CA))
    assert decoded == dataclasses.replace(cert, signature_key=CA.public_key())
    assert (decoded.roles, decoded.traits) == (tuple(roles), traits)
    assert (decoded.route_to_cluster, decoded.cluster) == (route, cluster)


def test_wire_encoding_of_options_and_extensions() -> None:
    """PROTOCOL.certkeys: (string name, string data); a value is a string inside data."""
    blob = sshcert.sign(user_cert(), CA)
    assert ssh_string(b"permit-pty") + ssh_string(b"") in blob
    assert (ssh_string(b"force-command") + ssh_string(ssh_string(b"uptime"))) in blob
    assert (ssh_string(EXT_CLUSTER.encode())
            + ssh_string(ssh_string(b"sso.example.com"))) in blob
    assert ssh_string(EXT_ROLES.encode()) + ssh_string(ssh_string(b"admin,dev-payments")) in blob


# --- malformed input ---------------------------------------------------------------


def test_every_flipped_byte_is_rejected() -> None:
    blob = sshcert.sign(user_cert(), CA)
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]
        with pytest.raises(BadParameter):
            sshcert.decode(tampered)


def test_truncated_and_trailing_bytes_are_rejected() -> None:
    blob = sshcert.sign(user_cert(), CA)
    for cut in (0, 3, len(blob) // 2, len(blob) - 1):
        with pytest.raises(BadParameter, match="truncated"):
            sshcert.decode(blob[:cut])
    with pytest.raises(BadParameter, match="trailing"):
        sshcert.decode(blob + b"\0")


def test_signature_by_another_key_is_rejected() -> None:
    blob = sshcert.sign(user_cert(), CA)
    forged = blob[:-64] + OTHER_CA.sign(blob[:-SIG_FIELD_LEN])
    with pytest.raises(BadParameter, match="does not verify"):
        sshcert.decode(forged)


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=64), at=st.integers(0, 300))
def test_garbage_raises_only_bad_parameter(data: bytes, at: int) -> None:
    blob = sshcert.sign(host_cert(), CA)
    assert at < len(blob)
    with pytest.raises(BadParameter):
        sshcert.decode(blob[:at] + data)


_A, _B = ssh_string(b"a@x"), ssh_string(b"b@x")


@pytest.mark.parametrize(("old", "new", "what"), [
    # Each replacement keeps the length, and resign() redoes the signature.
    (_A + ssh_string(b"") + _B, _B + ssh_string(b"") + _A, "extensions"),
    (_A + ssh_string(b"") + _B, _A + ssh_string(b"") + _A, "extensions"),
    (_A + ssh_string(ssh_string(b"1")) + _B + ssh_string(ssh_string(b"2")),
     _B + ssh_string(ssh_string(b"2")) + _A + ssh_string(ssh_string(b"1")), "critical options"),
    (_B + ssh_string(ssh_string(b"2")), _A + ssh_string(ssh_string(b"2")), "critical options"),
])
def test_unsorted_or_repeated_options_are_rejected(old: bytes, new: bytes, what: str) -> None:
    cert = user_cert(extensions={"b@x": "", "a@x": ""},
                     critical_options={"b@x": "2", "a@x": "1"})
    blob = sshcert.sign(cert, CA)
    assert blob.count(old) == 1 and len(old) == len(new)
    assert sshcert.decode(resign(blob, old, old)) == sshcert.decode(blob)
    with pytest.raises(BadParameter, match=f"{what}: .* repeated or out of lexical order"):
        sshcert.decode(resign(blob, old, new))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"valid_before": T0}, "must be before"),
    ({"valid_before": 2**64}, "unsigned 64-bit"),
    ({"key_id": "a\0b"}, "key id"),
    ({"principals": ("",)}, "principal"),
    ({"cert_type": 3}, "certificate type"),
    ({"public_key": ec.generate_private_key(ec.SECP384R1()).public_key()}, "public key"),
    ({"extensions": {EXT_TRAITS: "[1]"}}, "traits@gatehouse"),
    ({"extensions": {EXT_ROLES: "a,,b"}}, "empty role"),
    ({"extensions": {EXT_HOST_ROLE: "database"}}, "node, proxy, auth"),
    ({"extensions": {"": "x"}}, "extension name"),
])
def test_invalid_certificates_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(BadParameter, match=match):
        user_cert(**overrides)


def test_user_extensions() -> None:
    assert sshcert.user_extensions([], {}, "", "root") == {"permit-pty": "", EXT_CLUSTER: "root"}
    ext = sshcert.user_extensions(["a"], {"k": ["v"]}, "leaf", "root", permit_pty=False,
                                  permit_port_forwarding=True, permit_agent_forwarding=True)
    assert ext == {"permit-port-forwarding": "", "permit-agent-forwarding": "",
                   EXT_ROLES: "a", EXT_TRAITS: '{"k":["v"]}', EXT_ROUTE: "leaf",
                   EXT_CLUSTER: "root"}
    with pytest.raises(BadParameter, match="contain no ','"):
        sshcert.user_extensions(["a,b"], {}, "", "root")
    with pytest.raises(BadParameter, match="list of strings"):
        sshcert.user_extensions([], {"logins": "root"}, "", "root")
    with pytest.raises(BadParameter, match="host role"):
        sshcert.host_extensions("leaf", "db")


def test_openssh_lines() -> None:
    blob = sshcert.sign(user_cert(SUBJECTS["rsa"]), CA)
    line = sshcert.to_openssh_line(blob, "alice@sso")
    assert line.startswith("ssh-rsa-cert-v01@openssh.com AAAA") and line.endswith(" alice@sso")
    assert sshcert.from_openssh_line(line + "\n") == blob
    kind, b64, _ = line.split()
    for bad in ("", f"ssh-rsa {b64}", f"{kind} not!base64",
                f"ssh-ed25519-cert-v01@openssh.com {b64}"):
        with pytest.raises(BadParameter, match="certificate line"):
            sshcert.from_openssh_line(bad)


@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_public_key_line_and_fingerprint_match_asyncssh(kind: str) -> None:
    key = SUBJECTS[kind]
    imported = asyncssh.import_public_key(sshcert.public_key_line(key))
    assert imported.export_public_key().decode().strip() == sshcert.public_key_line(key)
    assert imported.get_fingerprint("sha256") == sshcert.fingerprint(key)


# --- check_validity ----------------------------------------------------------------


def test_check_validity_accepts_the_window_edges() -> None:
    cert = user_cert()
    sshcert.check_validity(cert, now=T0, cert_type=CertType.USER, principal="root")
    sshcert.check_validity(cert, now=T0 + DAY - 1, cert_type=CertType.USER, principal=None)


@pytest.mark.parametrize(("cert", "now", "cert_type", "principal", "match"), [
    (user_cert(), T0 - 1, CertType.USER, "alice",
     r"not yet valid \(valid from 2024-01-01T00:00:00Z\)"),
    (user_cert(), T0 + DAY, CertType.USER, "alice", "expired at 2024-01-02T00:00:00Z"),
    (user_cert(), T0, CertType.HOST, None, "user certificate, expected a host certificate"),
    (user_cert(), T0, CertType.USER, "bob", r"'bob' is not listed .*listed: alice, root"),
    (user_cert(principals=()), T0, CertType.USER, "alice", r"listed: none"),
    (user_cert(critical_options={"verify-required": ""}), T0, CertType.USER, "alice",
     "unsupported critical option"),
    (host_cert(critical_options={"force-command": "x"}), T0, CertType.HOST, "node1",
     "unsupported critical option"),
])
def test_check_validity_denies(cert: Certificate, now: int, cert_type: CertType,
                               principal: str | None, match: str) -> None:
    with pytest.raises(AccessDenied, match=match):
        sshcert.check_validity(cert, now=now, cert_type=cert_type, principal=principal)


# --- interop with real OpenSSH and asyncssh ----------------------------------------


def ssh_keygen(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh-keygen", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "TZ": "UTC"})


@needs_ssh_keygen
@pytest.mark.parametrize("kind", sorted(SUBJECTS))
def test_ssh_keygen_reads_our_certificate(tmp_path: Path, kind: str) -> None:
    blob = sshcert.sign(user_cert(SUBJECTS[kind]), CA)
    (tmp_path / "cert.pub").write_text(sshcert.to_openssh_line(blob, "alice") + "\n")
    out = ssh_keygen("-L", "-f", "cert.pub", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "user certificate" in text and 'Key ID: "alice"' in text and "Serial: 7" in text
    assert "Valid: from 2024-01-01T00:00:00 to 2024-01-02T00:00:00" in text
    assert f"Signing CA: ED25519 {sshcert.fingerprint(CA.public_key())}" in text
    principals = text.split("Principals:")[1].split("Critical Options:")[0].split()
    assert principals == ["alice", "root"]
    assert "force-command uptime" in text and "source-address 10.0.0.0/8" in text
    assert "permit-pty\n" in text
    # ssh-keygen prints unknown extensions as the hex of their data: string(value)
    for name, value in [(EXT_ROLES, "admin,dev-payments"), (EXT_ROUTE, "us-east-1a"),
                        (EXT_CLUSTER, "sso.example.com")]:
        assert f"{name} UNKNOWN OPTION: {ssh_string(value.encode()).hex()}" in text
    assert EXT_TRAITS in text
    listed = ssh_keygen("-l", "-f", "cert.pub", cwd=tmp_path)
    assert sshcert.fingerprint(SUBJECTS[kind]) in listed.stdout


@needs_ssh_keygen
def test_ssh_keygen_rejects_our_certificate_when_tampered(tmp_path: Path) -> None:
    blob = bytearray(sshcert.sign(user_cert(), CA))
    blob[-1] ^= 1
    (tmp_path / "cert.pub").write_text(sshcert.to_openssh_line(bytes(blob)) + "\n")
    assert ssh_keygen("-L", "-f", "cert.pub", cwd=tmp_path).returncode != 0


@needs_ssh_keygen
@pytest.mark.parametrize(("kind", "host"), [("ed25519", False), ("ecdsa-p256", True),
                                            ("rsa", False)])
def test_we_read_ssh_keygen_certificates(tmp_path: Path, kind: str, host: bool) -> None:
    ca_file = tmp_path / "ca"
    ca_file.write_bytes(CA.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.OpenSSH,
                                         serialization.NoEncryption()))
    ca_file.chmod(0o600)
    (tmp_path / "key.pub").write_text(sshcert.public_key_line(SUBJECTS[kind]) + "\n")
    options = ["-h"] if host else ["-O", "critical:force-command=uptime",
                                   "-O", "extension:foo@example.com=bar baz",
                                   "-O", "extension:flag@example.com"]
    out = ssh_keygen("-s", "ca", "-I", "my-id", "-n", "p1,p2", "-z", "42",
                     "-V", "20240101:20240102", *options, "key.pub", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cert = sshcert.decode(sshcert.from_openssh_line((tmp_path / "key-cert.pub").read_text()))
    assert cert.cert_type is (CertType.HOST if host else CertType.USER)
    assert (cert.key_id, cert.principals, cert.serial) == ("my-id", ("p1", "p2"), 42)
    assert (cert.valid_after, cert.valid_before) == (T0, T0 + DAY)
    assert cert.public_key == SUBJECTS[kind]
    assert cert.signature_key == CA.public_key()
    if not host:
        assert cert.critical_options == {"force-command": "uptime"}
        assert cert.extensions["foo@example.com"] == "bar baz"
        assert cert.extensions["flag@example.com"] == ""
        assert cert.extensions["permit-pty"] == ""


def test_asyncssh_imports_our_certificate() -> None:
    blob = sshcert.sign(user_cert(SUBJECTS["ecdsa-p256"]), CA)
    imported = asyncssh.import_certificate(sshcert.to_openssh_line(blob))
    assert isinstance(imported, SSHOpenSSHCertificate)
    assert imported.principals == ["alice", "root"]
    assert imported.options["force-command"] == "uptime"
    assert imported.options["permit-pty"] is True
    assert imported.signing_key.export_public_key().decode().strip() == (
        sshcert.public_key_line(CA.public_key()))


class _OpenServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no user authentication: this test is about the host certificate


@needs_ssh
@pytest.mark.parametrize("trusted", [True, False])
async def test_openssh_client_accepts_our_host_certificate(tmp_path: Path,
                                                           trusted: bool) -> None:
    """A real ``ssh`` trusts our host cert (with Gatehouse extensions) via @cert-authority."""
    host_key = ed25519.Ed25519PrivateKey.generate()
    blob = sshcert.sign(host_cert(public_key=host_key.public_key(), valid_after=0,
                                  valid_before=2**64 - 1), CA if trusted else OTHER_CA)
    key = asyncssh.import_private_key(host_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    server = await asyncssh.create_server(
        _OpenServer, "127.0.0.1", 0,
        server_host_keys=[(key, asyncssh.import_certificate(sshcert.to_openssh_line(blob)))],
        process_factory=lambda process: process.exit(0))
    try:
        port = server.sockets[0].getsockname()[1]
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"@cert-authority * {sshcert.public_key_line(CA.public_key())}\n")
        proc = await asyncio.create_subprocess_exec(
            "ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-p", str(port), "alice@127.0.0.1", "true",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        server.close()
        await server.wait_closed()
    if trusted:
        assert proc.returncode == 0, stderr.decode()
    else:
        assert proc.returncode == 255 and b"Host key verification failed" in stderr


def test_is_certificate_tells_certificates_from_plain_keys() -> None:
    ca = ed25519.Ed25519PrivateKey.generate()
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    cert = Certificate(cert_type=CertType.USER, key_id="alice", principals=("root",),
                       valid_after=0, valid_before=2**40, public_key=key)
    assert sshcert.is_certificate(sshcert.sign(cert, ca))
    plain = binascii.a2b_base64(sshcert.public_key_line(key).split()[1])
    assert not sshcert.is_certificate(plain)
    assert not sshcert.is_certificate(b"\x00\x00")


# --- hostile traits (a certificate is decoded before its CA is looked up) -----------------


def self_signed_with_traits(traits_json: str) -> bytes:
    """A user certificate signed by a key of the sender's own, its traits set as given: what
    any other encoder produces (ours checks the traits when the certificate is built)."""
    cert = user_cert()
    object.__setattr__(cert, "extensions", {**cert.extensions, EXT_TRAITS: traits_json})
    return sshcert.sign(cert, OTHER_CA)


def test_deeply_nested_traits_are_bad_parameter() -> None:
    deep = '{"logins":' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(BadParameter, match="nested deeper than 2"):
        sshcert.decode(self_signed_with_traits(deep))


def test_oversized_traits_are_bad_parameter() -> None:
    huge = json.dumps({"logins": ["x" * sshcert.MAX_TRAITS]})
    with pytest.raises(BadParameter, match=f"longer than {sshcert.MAX_TRAITS}"):
        sshcert.decode(self_signed_with_traits(huge))
    with pytest.raises(BadParameter, match=f"longer than {sshcert.MAX_TRAITS}"):
        sshcert.user_extensions([], {"logins": ["x" * sshcert.MAX_TRAITS]}, "", "")


def test_traits_at_the_limits_are_read() -> None:
    name = "x" * (sshcert.MAX_TRAITS - len('{"":[""]}'))
    decoded = sshcert.decode(sshcert.sign(user_cert(extensions=sshcert.user_extensions(
        [], {name: [""]}, "", "")), CA))
    assert decoded.traits == {name: [""]}
    # Brackets inside strings are text, not nesting.
    assert sshcert.decode(self_signed_with_traits('{"[[[":["]]]{{{"]}')).traits == {
        "[[[": ["]]]{{{"]}
