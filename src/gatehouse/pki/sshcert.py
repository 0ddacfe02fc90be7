"""OpenSSH certificates encoded, signed and verified without I/O (OpenSSH PROTOCOL.certkeys).

asyncssh cannot write or read custom extensions, so Gatehouse builds its certificates
here and signs them with its Ed25519 CA key. Subject keys may be Ed25519, ECDSA P-256 or
RSA; CA signatures are always ``ssh-ed25519``.

Gatehouse's extension values are plain UTF-8 strings, each wrapped as an SSH ``string``
inside the extension's data field like ``force-command`` (flag extensions have empty data):

    roles@gatehouse             role names joined by ","            (user certificates)
    traits@gatehouse            compact JSON object {name: [value, ...]}, sorted keys,
                                at most MAX_TRAITS characters
    route-to-cluster@gatehouse  the cluster the user is heading to
    cluster@gatehouse           the issuing cluster's name          (user and host)
    role@gatehouse              node | proxy | auth                 (host certificates)
    origin@gatehouse            the root cluster whose user (key id) a leaf's own user CA
                                certified (leaf-local logins, auth/leaflogin.py)

The traits' cap keeps a certificate well inside one SSH packet (RFC 4253 §6.1: 35000
bytes must be accepted; OpenSSH takes up to 256 KiB), where it travels at login; the
decoder refuses more, and JSON nested deeper than the format's two levels, before it
parses any (see _boundedjson).

OpenSSH's ``ssh`` ignores unknown host-certificate extensions (it only refuses host
certificates with critical options), so host metadata lives in extensions as well.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_ssh_public_key,
)

from gatehouse.errors import AccessDenied, BadParameter
from gatehouse.pki import _boundedjson

__all__ = [
    "EXT_CLUSTER", "EXT_CONNECTOR", "EXT_HOST_ROLE", "EXT_ORIGIN", "EXT_ROLES", "EXT_ROUTE",
    "EXT_TRAITS",
    "HOST_ROLES",
    "MAX_TRAITS",
    "CertType", "Certificate", "PublicKey", "check_validity", "correlation_id", "decode",
    "fingerprint",
    "from_openssh_line", "host_extensions", "is_certificate", "parse_public_key",
    "public_key_line", "sign",
    "to_openssh_line", "user_extensions",
]

EXT_ROLES = "roles@gatehouse"
EXT_TRAITS = "traits@gatehouse"
EXT_ROUTE = "route-to-cluster@gatehouse"
EXT_CLUSTER = "cluster@gatehouse"
EXT_HOST_ROLE = "role@gatehouse"
EXT_CONNECTOR = "connector@gatehouse"  # the SSO connector a user logged in through
EXT_ORIGIN = "origin@gatehouse"  # the root cluster of a leaf-certified root user
HOST_ROLES = ("node", "proxy", "auth")
MAX_TRAITS = 64 * 1024  # characters of traits@gatehouse JSON

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_CERT_SUFFIX = "-cert-v01@openssh.com"
_CERT_TYPES = {kind + _CERT_SUFFIX: kind for kind in ("ssh-ed25519", "ecdsa-sha2-nistp256",
                                                     "ssh-rsa")}
_MAX_U64 = 2**64 - 1
_MIN_RSA_BITS = 2048
# PROTOCOL.certkeys "Critical options": the only ones defined, and only for user certs.
_USER_CRITICAL_OPTIONS = frozenset({"force-command", "source-address"})


class CertType(enum.IntEnum):
    """SSH_CERT_TYPE_* (PROTOCOL.certkeys "New public key formats")."""

    USER = 1
    HOST = 2


@dataclass(frozen=True)
class Certificate:
    """An OpenSSH certificate's fields; validated on construction (BadParameter)."""

    cert_type: CertType
    key_id: str
    principals: tuple[str, ...]
    valid_after: int
    valid_before: int
    public_key: PublicKey
    serial: int = 0
    critical_options: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, str] = field(default_factory=dict)
    nonce: bytes = field(default_factory=lambda: os.urandom(32), repr=False)
    signature_key: ed25519.Ed25519PublicKey | None = None

    def __post_init__(self) -> None:
        try:
            cert_type = CertType(self.cert_type)
        except ValueError:
            raise BadParameter(f"certificate type {self.cert_type!r}: expected 1 (user) "
                               "or 2 (host)") from None
        _check_text("key id", self.key_id)
        principals = tuple(self.principals)
        for principal in principals:
            _check_text("principal", principal, empty=False)
        for name, value in (("serial", self.serial), ("valid_after", self.valid_after),
                            ("valid_before", self.valid_before)):
            if not 0 <= value <= _MAX_U64:
                raise BadParameter(f"{name} {value}: expected an unsigned 64-bit integer")
        if self.valid_after >= self.valid_before:
            raise BadParameter(f"validity: valid_after {self.valid_after} must be before "
                               f"valid_before {self.valid_before}")
        _key_fields(self.public_key)  # rejects unsupported key types
        options = _frozen_options("critical option", self.critical_options)
        extensions = _frozen_options("extension", self.extensions)
        object.__setattr__(self, "cert_type", cert_type)
        object.__setattr__(self, "principals", principals)
        object.__setattr__(self, "critical_options", options)
        object.__setattr__(self, "extensions", extensions)
        # Parse ours now so that a malformed value fails here, not at first use.
        _ = self.roles, self.traits, self.host_role

    @property
    def roles(self) -> tuple[str, ...]:
        """Role names from ``roles@gatehouse`` (comma-joined); () when absent."""
        value = self.extensions.get(EXT_ROLES, "")
        roles = tuple(value.split(",")) if value else ()
        if "" in roles:
            raise BadParameter(f"extension {EXT_ROLES} {value!r}: empty role name")
        return roles

    @property
    def traits(self) -> dict[str, list[str]]:
        """Traits from ``traits@gatehouse`` (a JSON object of string lists); {} when absent."""
        value = self.extensions.get(EXT_TRAITS, "")
        if not value:
            return {}
        traits = _boundedjson.loads(value, f"extension {EXT_TRAITS}", max_chars=MAX_TRAITS,
                                    max_depth=2)
        if not isinstance(traits, dict) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v)
                for v in traits.values()):
            raise BadParameter(f"extension {EXT_TRAITS}: expected a JSON object of string "
                               f"lists, got {value[:80]!r}")
        return traits

    @property
    def route_to_cluster(self) -> str:
        """The cluster the user is heading to (``route-to-cluster@gatehouse``); "" if absent."""
        return self.extensions.get(EXT_ROUTE, "")

    @property
    def cluster(self) -> str:
        """The issuing cluster (``cluster@gatehouse``); "" when absent."""
        return self.extensions.get(EXT_CLUSTER, "")

    @property
    def connector(self) -> str:
        """The SSO connector of a user who logged in through one; "" for a local user."""
        return self.extensions.get(EXT_CONNECTOR, "")

    @property
    def origin(self) -> str:
        """The root cluster of a root user this cluster certified itself; "" otherwise."""
        return self.extensions.get(EXT_ORIGIN, "")

    @property
    def host_role(self) -> str:
        """A host certificate's Gatehouse role (``role@gatehouse``); "" when absent."""
        role = self.extensions.get(EXT_HOST_ROLE, "")
        return _check_host_role(role, f"extension {EXT_HOST_ROLE}") if role else ""


def user_extensions(
    roles: Iterable[str],
    traits: Mapping[str, Iterable[str]],
    route_to_cluster: str,
    cluster: str,
    *,
    permit_pty: bool = True,
    permit_port_forwarding: bool = False,
    permit_agent_forwarding: bool = False,
    connector: str = "",
    origin: str = "",
) -> dict[str, str]:
    """A user certificate's extensions: the standard permit-* flags plus Gatehouse's own.

    permit-X11-forwarding and permit-user-rc are never granted. Empty roles, traits or
    route are left out rather than encoded as empty values.
    """
    ext = {name: "" for name, wanted in (("permit-pty", permit_pty),
                                         ("permit-port-forwarding", permit_port_forwarding),
                                         ("permit-agent-forwarding", permit_agent_forwarding))
           if wanted}
    role_list = list(roles)
    for role in role_list:
        if not role or "," in role:
            raise BadParameter(f"role name {role!r}: must be non-empty and contain no ','")
    if role_list:
        ext[EXT_ROLES] = ",".join(role_list)
    trait_map = {}
    for name, values in traits.items():
        if isinstance(values, str):
            raise BadParameter(f"trait {name!r}: expected a list of strings, got a string")
        trait_map[name] = list(values)
    if trait_map:
        ext[EXT_TRAITS] = _boundedjson.check_size(
            json.dumps(trait_map, sort_keys=True, separators=(",", ":")), "traits", MAX_TRAITS)
    if route_to_cluster:
        ext[EXT_ROUTE] = route_to_cluster
    if cluster:
        ext[EXT_CLUSTER] = cluster
    if connector:
        ext[EXT_CONNECTOR] = connector
    if origin:
        ext[EXT_ORIGIN] = origin
    return ext


def host_extensions(cluster: str, role: str) -> dict[str, str]:
    """A host certificate's extensions: the issuing cluster and the host's role."""
    return {EXT_CLUSTER: cluster, EXT_HOST_ROLE: _check_host_role(role, "host role")}


def sign(cert: Certificate, ca_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The certificate's wire blob, signed by ``ca_key`` (PROTOCOL.certkeys: the signature
    covers every field up to and including the signature key; ``cert.signature_key`` is
    ignored)."""
    kind, key_fields = _key_fields(cert.public_key)
    body = b"".join((
        _string((kind + _CERT_SUFFIX).encode()),
        _string(cert.nonce),
        key_fields,
        cert.serial.to_bytes(8, "big"),
        cert.cert_type.to_bytes(4, "big"),
        _string(cert.key_id.encode()),
        _string(b"".join(_string(p.encode()) for p in cert.principals)),
        cert.valid_after.to_bytes(8, "big"),
        cert.valid_before.to_bytes(8, "big"),
        _string(_encode_options(cert.critical_options)),
        _string(_encode_options(cert.extensions)),
        _string(b""),  # reserved
        _string(_key_blob(ca_key.public_key())),
    ))
    return body + _string(_string(b"ssh-ed25519") + _string(ca_key.sign(body)))


def correlation_id(key_id: str, serial: int) -> str:
    """Ties a login to what its certificate does anywhere: the auth logs it when it signs,
    and nodes of the cluster and of its leaves report it for sessions the cert opens."""
    return f"{key_id}:{serial}"


def is_certificate(blob: bytes) -> bool:
    """Whether a public key blob is (claims to be) an OpenSSH certificate."""
    try:
        kind = _Reader(blob, "public key").string()
    except BadParameter:
        return False
    return kind.decode(errors="replace") in _CERT_TYPES


def decode(blob: bytes) -> Certificate:
    """Parse a certificate blob and verify its CA signature; BadParameter on any fault."""
    r = _Reader(blob, "certificate")
    cert_kind = r.text()
    kind = _CERT_TYPES.get(cert_kind)
    if kind is None:
        raise BadParameter(f"certificate type {cert_kind!r}: expected one of "
                           f"{', '.join(_CERT_TYPES)}")
    nonce = r.string()
    public_key = _read_key(r, kind)
    serial, cert_type, key_id = r.uint(8), r.uint(4), r.text()
    pr = _Reader(r.string(), "certificate principals")
    principals = []
    while not pr.done():
        principals.append(pr.text())
    valid_after, valid_before = r.uint(8), r.uint(8)
    critical = _decode_options(r.string(), "critical options")
    extensions = _decode_options(r.string(), "extensions")
    r.string()  # reserved: "ignored in this version of the protocol"
    ca_key = _parse_ed25519_blob(r.string(), "certificate signature key")
    signed = blob[:r.pos]
    sr = _Reader(r.string(), "certificate signature")
    if sr.string() != b"ssh-ed25519":
        raise BadParameter("certificate signature: expected an ssh-ed25519 signature")
    signature = sr.string()
    sr.finish()
    r.finish()
    try:
        ca_key.verify(signature, signed)
    except InvalidSignature:
        raise BadParameter("certificate signature does not verify against its CA key "
                           f"{fingerprint(ca_key)}") from None
    if cert_type not in (CertType.USER, CertType.HOST):
        raise BadParameter(f"certificate type {cert_type}: expected 1 (user) or 2 (host)")
    return Certificate(
        cert_type=CertType(cert_type), key_id=key_id, principals=tuple(principals),
        valid_after=valid_after, valid_before=valid_before, public_key=public_key,
        serial=serial, critical_options=critical, extensions=extensions, nonce=nonce,
        signature_key=ca_key)


def to_openssh_line(blob: bytes, comment: str = "") -> str:
    """The ``TYPE BASE64 [COMMENT]`` line of a ``-cert.pub`` file."""
    kind = _Reader(blob, "certificate").text()
    if kind not in _CERT_TYPES:
        raise BadParameter(f"certificate type {kind!r}: not an OpenSSH certificate type")
    if "\n" in comment or "\r" in comment:
        raise BadParameter("comment: must be a single line")
    line = f"{kind} {base64.b64encode(blob).decode()}"
    return f"{line} {comment}" if comment else line


def from_openssh_line(line: str) -> bytes:
    """The blob of a ``-cert.pub`` line (not verified: pass it to decode())."""
    parts = line.strip().split(maxsplit=2)
    if len(parts) < 2 or parts[0] not in _CERT_TYPES:
        raise BadParameter(f"certificate line {line[:60]!r}: expected "
                           "'<type>-cert-v01@openssh.com BASE64 [comment]'")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise BadParameter("certificate line: invalid base64") from None
    if _Reader(blob, "certificate").text() != parts[0]:
        raise BadParameter(f"certificate line: blob type does not match {parts[0]!r}")
    return blob


def public_key_line(key: PublicKey) -> str:
    """``ssh-ed25519 AAAA...`` for a plain public key, as in known_hosts or authorized_keys."""
    kind, _ = _key_fields(key)
    return f"{kind} {base64.b64encode(_key_blob(key)).decode()}"


def parse_public_key(line: str, what: str = "public key") -> ed25519.Ed25519PublicKey:
    """The key of ``line``, which must be exactly ``public_key_line`` of an Ed25519 key.

    Nothing may follow the key: a line a peer sent is kept, served and written into
    known_hosts, where a comment with a newline in it is a second entry (a leaf's
    ``KEY x\n@cert-authority * KEY`` trusted its CA for every host name), and
    load_ssh_public_key reads only the first two fields."""
    try:
        key = load_ssh_public_key(line.encode())
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise BadParameter(f"malformed {what} {line[:80]!r}: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BadParameter(f"{what} {line[:80]!r} must be ssh-ed25519")
    canonical = public_key_line(key)
    if line != canonical:
        extra = line.removeprefix(canonical)
        got = f"{extra[:80]!r} after the key" if extra != line else repr(line[:100])
        raise BadParameter(f"{what} is not one canonical line: got {got}, expected "
                           "'ssh-ed25519 BASE64' and nothing else")
    return key


def fingerprint(key: PublicKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it (unpadded base64 of the blob's hash)."""
    digest = hashlib.sha256(_key_blob(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def check_validity(cert: Certificate, *, now: int, cert_type: CertType,
                   principal: str | None) -> None:
    """Raise AccessDenied unless ``cert`` may be used at ``now`` as ``cert_type`` for
    ``principal`` (None: any). The signature was checked by decode().

    Follows PROTOCOL.certkeys: valid_after <= now < valid_before, and unrecognised
    critical options refuse the certificate (host certificates may carry none; for user
    certificates the caller enforces force-command and source-address). Stricter than
    the spec, an empty principal list matches no principal rather than all of them.
    """
    if cert.cert_type != cert_type:
        raise AccessDenied(f"certificate is a {cert.cert_type.name.lower()} certificate, "
                           f"expected a {cert_type.name.lower()} certificate")
    if now < cert.valid_after:
        raise AccessDenied(f"certificate is not yet valid (valid from "
                           f"{_iso(cert.valid_after)})")
    if now >= cert.valid_before:
        raise AccessDenied(f"certificate expired at {_iso(cert.valid_before)}")
    known = _USER_CRITICAL_OPTIONS if cert_type is CertType.USER else frozenset()
    unknown = sorted(set(cert.critical_options) - known)
    if unknown:
        raise AccessDenied(f"certificate has unsupported critical option(s): "
                           f"{', '.join(unknown)}")
    if principal is not None and principal not in cert.principals:
        listed = ", ".join(cert.principals) or "none"
        raise AccessDenied(f"principal {principal!r} is not listed in the certificate "
                           f"(listed: {listed})")


# --- wire encoding (RFC 4251 §5) -----------------------------------------------------


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _mpint(n: int) -> bytes:
    # Non-negative only; a leading zero byte keeps the sign bit clear (RFC 4251 §5).
    return _string(n.to_bytes((n.bit_length() + 8) // 8, "big") if n else b"")


def _key_fields(key: object) -> tuple[str, bytes]:
    """The plain key type and its encoded fields (as they follow the nonce in a cert)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ssh-ed25519", _string(key.public_bytes_raw())
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return "ecdsa-sha2-nistp256", _string(b"nistp256") + _string(point)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS:
        numbers = key.public_numbers()
        return "ssh-rsa", _mpint(numbers.e) + _mpint(numbers.n)
    raise BadParameter(f"public key {type(key).__name__}: expected Ed25519, ECDSA P-256 or "
                       f"RSA (at least {_MIN_RSA_BITS} bits)")


def _key_blob(key: object) -> bytes:
    kind, key_fields = _key_fields(key)
    return _string(kind.encode()) + key_fields


def _encode_options(options: Mapping[str, str]) -> bytes:
    # PROTOCOL.certkeys "Critical options": (string name, string data) tuples in lexical
    # order; a value is itself a string inside data, a flag has empty data.
    return b"".join(
        _string(name.encode()) + _string(_string(value.encode()) if value else b"")
        for name, value in sorted(options.items(), key=lambda item: item[0].encode()))


def _decode_options(blob: bytes, what: str) -> dict[str, str]:
    r = _Reader(blob, what)
    options: dict[str, str] = {}
    previous = b""
    while not r.done():
        raw_name = r.string()
        name = _text(raw_name, what)
        if options and raw_name <= previous:
            raise BadParameter(f"{what}: {name!r} is repeated or out of lexical order "
                               "(PROTOCOL.certkeys requires sorted, unique names)")
        data = r.string()
        value = ""
        if data:
            inner = _Reader(data, f"{what} {name!r}")
            value = inner.text()
            inner.finish()
        options[name] = value
        previous = raw_name
    return options


def _frozen_options(what: str, options: Mapping[str, str]) -> Mapping[str, str]:
    for name, value in options.items():
        _check_text(f"{what} name", name, empty=False)
        _check_text(f"{what} {name!r} value", value)
    return MappingProxyType(dict(sorted(options.items(), key=lambda i: i[0].encode())))


def _check_host_role(role: str, what: str) -> str:
    if role not in HOST_ROLES:
        raise BadParameter(f"{what} {role!r}: expected one of {', '.join(HOST_ROLES)}")
    return role


def _check_text(what: str, value: object, *, empty: bool = True) -> None:
    # OpenSSH reads these fields as C strings: no embedded NUL.
    if not isinstance(value, str) or "\0" in value or (not empty and not value):
        raise BadParameter(f"{what} {value!r}: expected a{'' if empty else ' non-empty'} "
                           "string without NUL characters")


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BadParameter(f"{what}: invalid UTF-8") from None
    _check_text(what, text)
    return text


def _read_key(r: _Reader, kind: str) -> PublicKey:
    try:
        if kind == "ssh-ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(r.string())
        if kind == "ecdsa-sha2-nistp256":
            if r.string() != b"nistp256":
                raise ValueError("curve must be nistp256")
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), r.string())
        key = rsa.RSAPublicNumbers(e=r.mpint(), n=r.mpint()).public_key()
    except ValueError as exc:
        raise BadParameter(f"certificate public key: {exc}") from None
    _key_fields(key)  # minimum RSA size
    return key


def _parse_ed25519_blob(blob: bytes, what: str) -> ed25519.Ed25519PublicKey:
    r = _Reader(blob, what)
    if r.string() != b"ssh-ed25519":
        raise BadParameter(f"{what}: only ssh-ed25519 CA keys are supported")
    key = _read_key(r, "ssh-ed25519")
    r.finish()
    return cast(ed25519.Ed25519PublicKey, key)


def _iso(ts: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"unix time {ts}"


class _Reader:
    """Reads RFC 4251 values from a buffer; every fault is a BadParameter naming ``what``."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data, self._what, self.pos = data, what, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self._data):
            raise BadParameter(f"{self._what}: truncated")
        chunk = self._data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self._take(size), "big")

    def string(self) -> bytes:
        return self._take(self.uint(4))

    def text(self) -> str:
        return _text(self.string(), self._what)

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise BadParameter(f"{self._what}: negative mpint")
        return int.from_bytes(raw, "big")

    def done(self) -> bool:
        return self.pos == len(self._data)

    def finish(self) -> None:
        if not self.done():
            raise BadParameter(f"{self._what}: {len(self._data) - self.pos} trailing bytes")
