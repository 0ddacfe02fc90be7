"""A certified identity on disk: one Ed25519 key, its SSH and X.509 certificates.

Layout of an identity directory (keys 0600):

    key            the private key, OpenSSH format (ssh -i, asyncssh)
    key.pem        the same key, PKCS#8 PEM (TLS)
    key-cert.pub   the SSH certificate, one OpenSSH line (absent for admin creds)
    tls.crt        the X.509 certificate
    cas.pem        the X.509 CAs this identity trusts when it connects
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from gatehouse.errors import NotFound
from gatehouse.pki import x509

__all__ = ["StoredIdentity", "write_private"]


def write_private(path: Path, data: str | bytes) -> None:
    """Write a file only its owner may read, atomically."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class StoredIdentity:
    directory: Path

    @property
    def key_file(self) -> Path:
        return self.directory / "key"

    @property
    def key_pem_file(self) -> Path:
        return self.directory / "key.pem"

    @property
    def ssh_cert_file(self) -> Path:
        return self.directory / "key-cert.pub"

    @property
    def tls_cert_file(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def cas_file(self) -> Path:
        return self.directory / "cas.pem"

    def exists(self) -> bool:
        return self.tls_cert_file.exists() and self.key_pem_file.exists()

    def save(
        self,
        key: ed25519.Ed25519PrivateKey,
        tls_cert_pem: str,
        cas_pem: str,
        ssh_cert_line: str | None = None,
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(
            self.key_file,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        )
        write_private(self.key_pem_file, x509.pem_key(key))
        write_private(self.tls_cert_file, tls_cert_pem)
        write_private(self.cas_file, cas_pem)
        if ssh_cert_line is not None:
            write_private(self.ssh_cert_file, ssh_cert_line.strip() + "\n")

    def save_certs(self, tls_cert_pem: str, ssh_cert_line: str | None = None) -> None:
        """Renewed certificates for the stored key (each file replaced atomically)."""
        write_private(self.tls_cert_file, tls_cert_pem)
        if ssh_cert_line is not None:
            write_private(self.ssh_cert_file, ssh_cert_line.strip() + "\n")

    def _read(self, path: Path) -> str:
        try:
            return path.read_text()
        except FileNotFoundError as exc:
            raise NotFound(f"no credentials at {path}") from exc

    def key(self) -> ed25519.Ed25519PrivateKey:
        return x509.load_key(self._read(self.key_pem_file))

    def tls_cert(self) -> cx509.Certificate:
        return x509.load_cert(self._read(self.tls_cert_file))

    def identity(self) -> x509.Identity:
        return x509.identity_of(self.tls_cert())

    def cas_pem(self) -> str:
        return self._read(self.cas_file)

    def ssh_cert_line(self) -> str:
        return self._read(self.ssh_cert_file).strip()
