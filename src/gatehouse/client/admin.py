"""How gatectl reaches the auth API: with a config's admin credentials, or an identity file."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from gatehouse._sys.hostport import dial_addr, split_host_port
from gatehouse.client.api import APIClient
from gatehouse.client.authclient import AuthClient
from gatehouse.config import DEFAULT_AUTH_ADDR, Config, load_config
from gatehouse.errors import BadParameter, NotFound
from gatehouse.pki import tls, x509
from gatehouse.pki.keystore import StoredIdentity

__all__ = ["AdminTarget", "admin_target", "identity_bundle"]


@dataclass(frozen=True)
class AdminTarget:
    addr: str
    cluster: str
    ssl_context: ssl.SSLContext
    config: Config | None
    unreachable_hint: str = ""  # which daemon to start when the auth does not answer

    def api(self) -> AuthClient:
        return AuthClient(APIClient(self.addr, self.ssl_context,
                                    server_hostname=f"auth.{self.cluster}",
                                    unreachable_hint=self.unreachable_hint))


def identity_bundle(store: StoredIdentity) -> str:
    """One file with key, certificate and trusted CAs, for `gatectl --identity`."""
    return (store.key_pem_file.read_text() + store.tls_cert_file.read_text()
            + store.cas_pem())


def _from_bundle(path: Path, addr: str) -> AdminTarget:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadParameter(f"cannot read identity file {path}: {exc.strerror}") from exc
    certs = x509.pem_blocks(text)
    if not certs or "PRIVATE KEY-----" not in text:
        raise BadParameter(f"identity file {path} needs a private key and a certificate")
    ident = x509.identity_of(x509.load_cert(certs[0]))
    # The bundle holds the key and the certificate: it is both files of the chain.
    ctx = tls.client_context("".join(certs[1:]), cert_file=path, key_file=path)
    return AdminTarget(addr, ident.cluster, ctx, None)


def admin_target(config: Path | None, identity: Path | None, auth_server: str) -> AdminTarget:
    if identity is not None:
        if not auth_server:
            raise BadParameter("--identity needs --auth-server=HOST:PORT")
        split_host_port(auth_server)
        return _from_bundle(identity, auth_server)
    cfg = load_config(config) if config else Config.single_node()
    if not cfg.auth_service.enabled:
        raise BadParameter(f"{config}: gatectl -c needs the config of a process running the "
                           "auth service")
    store = StoredIdentity(cfg.data_dir / "admin")
    if not store.exists():
        if config is None:  # `gatehouse start` without a config keeps its data here too
            raise NotFound(f"no admin credentials in {store.directory}: without -c, gatectl "
                           "reads ./gatehouse-data of the current directory; run it where "
                           "`gatehouse start` ran, or pass -c gatehouse.yaml")
        raise NotFound(f"no admin credentials in {store.directory} (the data_dir of "
                       f"{config}): has `gatehouse start -c {config}` run?")
    addr = dial_addr(auth_server or cfg.auth_service.listen_addr or DEFAULT_AUTH_ADDR)
    start = f"gatehouse start -c {config}" if config else "gatehouse start"
    return AdminTarget(addr, store.identity().cluster,
                       _from_bundle(store.directory / "identity.pem", addr).ssl_context, cfg,
                       unreachable_hint=f"is `{start}` running?")
