"""The user's profile: which proxy, who, which cluster; keys and pinned CAs.

Lives in ``$GATEHOUSE_HOME`` or ``~/.gatehouse``:

    profile.json     proxy, user, cluster, selected cluster, TLS server name
    keys/            the certified identity (see gatehouse.pki.keystore)
    known_hosts      @cert-authority lines for the clusters' host CAs (OpenSSH)
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gatehouse.client.hostscope import cluster_of, known_hosts_text
from gatehouse.errors import AccessDenied, NotFound
from gatehouse.pki import tls
from gatehouse.pki.keystore import StoredIdentity, write_private

__all__ = ["Profile", "gatehouse_home"]


def gatehouse_home() -> Path:
    return Path(os.environ.get("GATEHOUSE_HOME") or Path.home() / ".gatehouse").absolute()


@dataclass
class Profile:
    proxy: str  # host:port
    user: str
    cluster: str  # the cluster logged in to
    selected: str  # the cluster later commands go to
    server_name: str  # the name the proxy's TLS certificate must carry
    host_ca_ssh: str  # "ssh-ed25519 AAAA..." of the cluster's host CA
    leaves: dict[str, str] = field(default_factory=dict)  # leaf cluster -> its host CA
    # leaf cluster -> [its proxy's public address, its host CA (PEM) that signs that
    # proxy's TLS certificate]: where `gsh ssh` goes while the root does not answer
    leaf_proxies: dict[str, list[str]] = field(default_factory=dict)

    def host_ca(self, cluster: str) -> str:
        """The host CA that vouches for ``cluster``'s nodes (ssh public key line)."""
        if cluster == self.cluster:
            return self.host_ca_ssh
        try:
            return self.leaves[cluster]
        except KeyError:
            raise NotFound(f"unknown cluster {cluster}: `gsh clusters` lists the clusters "
                           "you can reach") from None

    def host_ca_for(self, host: str, cluster: str) -> str:
        """The host CA that may vouch for ``host`` as a node of ``cluster``: that cluster's,
        unless the name is another cluster's (AccessDenied: no CA vouches for a name
        outside its own cluster, as known_hosts says to OpenSSH)."""
        owner = cluster_of(host, self.clusters())
        if owner is not None and owner != cluster:
            raise AccessDenied(
                f"{host} is a name in cluster {owner}, not in {cluster}: the host CA of "
                f"{cluster} does not vouch for it (use the node's host id, or "
                f"--cluster={owner})")
        return self.host_ca(cluster)

    def clusters(self) -> list[str]:
        return [self.cluster, *sorted(self.leaves)]

    @staticmethod
    def directory() -> Path:
        return gatehouse_home()

    @property
    def identity(self) -> StoredIdentity:
        return StoredIdentity(self.directory() / "keys")

    @property
    def known_hosts(self) -> Path:
        return self.directory() / "known_hosts"

    def save(self) -> None:
        """Write profile.json and known_hosts; neither if a cluster's name or host CA
        does not pass (BadParameter: what the server sent is written nowhere)."""
        known = known_hosts_text({name: self.host_ca(name) for name in self.clusters()})
        home = self.directory()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(home / "profile.json", json.dumps(asdict(self), indent=2) + "\n")
        write_private(self.known_hosts, known)

    @classmethod
    def load(cls) -> Profile:
        path = cls.directory() / "profile.json"
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except FileNotFoundError:
            raise NotFound("not logged in: run `gsh login --proxy=HOST:PORT --user=NAME`") from None
        except (ValueError, TypeError) as exc:
            raise NotFound(f"profile {path} is unreadable ({exc}); log in again") from None

    @classmethod
    def remove(cls) -> bool:
        home = cls.directory()
        existed = (home / "profile.json").exists()
        for name in ("keys", "profile.json", "known_hosts"):
            path = home / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return existed

    def check_fresh(self) -> None:
        """AccessDenied, naming when and what to do, if the certificate has expired."""
        expires = self.identity.identity().expires
        if expires is not None and expires <= datetime.datetime.now(datetime.UTC):
            raise AccessDenied(
                f"your certificate for {self.user} expired at "
                f"{expires.isoformat(timespec='seconds')}: run `gsh login` again")

    def split_host(self, host: str) -> tuple[str, str]:
        """'node1.CLUSTER' -> ('node1', CLUSTER), on the longest known cluster suffix."""
        cluster = cluster_of(host, self.clusters())
        if cluster is None:
            return host, self.selected
        return host[: -len(cluster) - 1], cluster

    def ssl_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ident = self.identity
        return tls.client_context(ident.cas_pem(), cert_file=ident.tls_cert_file,
                                  key_file=ident.key_pem_file, alpn=alpn)
