"""A real etcd (Debian's etcd-server) on loopback ports picked at run time, for tests.

``shared()`` starts one per test process (each xdist worker has its own) on first
use (the session fixture in tests/conftest.py stops it at the end); ``EtcdServer``
starts more, with TLS too. Each test takes a fresh key prefix (``fresh_prefix``), so
tests never see each other's keys.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gatehouse.backend.etcd import EtcdSettings
from gatehouse.process.harness import free_ports

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def fresh_prefix() -> str:
    return f"/gatehouse/test-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class TLSFiles:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


class EtcdServer:
    """One etcd member in a temporary directory (under /dev/shm when there is one,
    since etcd fsyncs each write); ``start``/``stop`` may repeat on the same data."""

    def __init__(self, *, tls: bool = False) -> None:
        shm = Path("/dev/shm")
        self.root = Path(tempfile.mkdtemp(prefix="gatehouse-etcd-",
                                          dir=shm if shm.is_dir() else None))
        self.client_port, self.peer_port = free_ports(2)
        self.tls = make_tls_files(self.root / "tls") if tls else None
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def settings(self, prefix: str | None = None) -> EtcdSettings:
        files = self.tls
        return EtcdSettings(
            peers=[self.url], prefix=prefix or fresh_prefix(),
            tls_ca_file=str(files.ca) if files else None,
            tls_cert_file=str(files.client_cert) if files else None,
            tls_key_file=str(files.client_key) if files else None)

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd = ["etcd", "--name", "test", "--data-dir", str(self.root / "data"),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"test={peer}", "--logger", "zap",
               "--log-outputs", str(self.root / "etcd.log")]
        if self.tls is not None:
            cmd += ["--cert-file", str(self.tls.server_cert), "--key-file",
                    str(self.tls.server_key), "--trusted-ca-file", str(self.tls.ca),
                    "--client-cert-auth"]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._healthy():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become healthy on {self.url}:\n"
                                   + self.log_tail())
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        log = self.root / "etcd.log"
        return "\n".join(log.read_text().splitlines()[-20:]) if log.exists() else "(no log)"

    def _healthy(self) -> bool:
        if self.tls is not None:  # a client certificate is needed: ask through the backend
            return _tls_healthy(self)
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False


def _tls_healthy(server: EtcdServer) -> bool:
    assert server.tls is not None
    ctx = ssl.create_default_context(cafile=str(server.tls.ca))
    ctx.load_cert_chain(str(server.tls.client_cert), str(server.tls.client_key))
    try:
        with urllib.request.urlopen(server.url + "/health", timeout=1, context=ctx) as resp:
            return b'"true"' in resp.read()
    except OSError:
        return False


_shared: EtcdServer | None = None


def shared() -> EtcdServer:
    """This test process's etcd, started on first use."""
    global _shared
    if _shared is None:
        server = EtcdServer()
        server.start()
        _shared = server
    return _shared


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.remove()
        _shared = None


def make_tls_files(directory: Path) -> TLSFiles:
    directory.mkdir(mode=0o700)
    now = dt.datetime.now(dt.UTC)

    def issue(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, *, ca: bool = False,
              ip: str | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if ip is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                 x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        return builder.sign(signer, hashes.SHA256())

    def write(name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
              ) -> tuple[Path, Path]:
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test etcd CA")])
    ca_cert = issue("test etcd CA", ca_key, ca_name, ca_key, ca=True)
    ca_path, _ = write("ca", ca_key, ca_cert)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    server = write("server", server_key,
                   issue("127.0.0.1", server_key, ca_name, ca_key, ip="127.0.0.1"))
    client = write("client", client_key, issue("gatehouse", client_key, ca_name, ca_key))
    return TLSFiles(ca_path, *server, *client)
