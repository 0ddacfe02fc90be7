"""Trusted clusters, both ends (ARCHITECTURE §3).

Leaf side: a ``trusted_cluster`` resource names a root; creating it joins the
root (pin-verified, token sent only then) and stores the root's public CAs.
Editing it changes ``enabled`` and ``role_map`` in place; deleting it removes
the root's CAs, so nothing the root signed is trusted any more.

Root side: a leaf's join stores the leaf's public host CA (trusted only to
authenticate that leaf proxy's tunnel) and a ``remote_cluster`` record whose
status follows the tunnel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from gatehouse.auth.authorities import CertAuthority
from gatehouse.backend import Backend, Item, prefix_end
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, NotFound
from gatehouse.services.events import AuditLog
from gatehouse.services.resources import ResourceStore
from gatehouse.types.remote_cluster import RemoteCluster, RemoteClusterStatus
from gatehouse.types.resource import Metadata
from gatehouse.types.token import Token
from gatehouse.types.trusted_cluster import TrustedCluster

__all__ = ["ONLINE_WITHIN", "PublicCA", "TrustStore"]

log = logging.getLogger(__name__)

# A remote cluster counts as online while its tunnel heartbeats are this fresh.
ONLINE_WITHIN = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class PublicCA:
    cluster: str
    type: str
    ssh: str  # "ssh-ed25519 AAAA..."
    tls: str  # PEM

    def to_json(self) -> dict[str, str]:
        return {"cluster": self.cluster, "type": self.type, "ssh": self.ssh, "tls": self.tls}

    @classmethod
    def from_json(cls, raw: Any) -> PublicCA:
        try:
            return cls(str(raw["cluster"]), str(raw["type"]), str(raw["ssh"]), str(raw["tls"]))
        except (KeyError, TypeError) as exc:
            raise BadParameter(f"malformed certificate authority: {exc}") from exc

    @classmethod
    def of(cls, ca: CertAuthority) -> PublicCA:
        return cls(ca.cluster, ca.type, ca.ssh_public_line, ca.tls_cert_pem)


class TrustStore:
    def __init__(self, backend: Backend, clock: Clock, cluster: str, audit: AuditLog) -> None:
        self._backend = backend
        self._clock = clock
        self._cluster = cluster
        self._audit = audit
        self.trusted = ResourceStore(backend, "trusted_cluster", TrustedCluster)
        self.remotes = ResourceStore(backend, "remote_cluster", RemoteCluster)
        self.tokens = ResourceStore(backend, "token", Token)

    # --- leaf side ------------------------------------------------------------------------

    @staticmethod
    def _root_key(root: str, ca_type: str) -> bytes:
        return f"/authorities/trusted/{root}/{ca_type}".encode()

    async def root_cas(self, root: str) -> dict[str, PublicCA]:
        cas = {}
        for ca_type in ("user", "host"):
            with contextlib.suppress(NotFound):
                item = await self._backend.get(self._root_key(root, ca_type))
                cas[ca_type] = PublicCA.from_json(json.loads(item.value))
        return cas

    async def store_root(self, tc: TrustedCluster, cas: list[PublicCA]) -> None:
        """Record a completed join: the root's CAs, then the resource itself."""
        for ca in cas:
            if ca.cluster != tc.metadata.name:
                raise BadParameter(
                    f"the root at {tc.spec.proxy_addr} is cluster {ca.cluster!r}, not "
                    f"{tc.metadata.name!r}: name the trusted_cluster after the root"
                )
            await self._backend.put(Item(key=self._root_key(ca.cluster, ca.type),
                                         value=json.dumps(ca.to_json()).encode()))
        await self.trusted.upsert(tc)

    async def remove_root(self, root: str) -> None:
        await self.trusted.delete(root)
        await self._backend.delete_range(*_range(f"/authorities/trusted/{root}/"))

    async def trusted_user_cas(self) -> list[tuple[TrustedCluster, PublicCA]]:
        """The user CAs of every ENABLED trusted cluster, with its resource."""
        out = []
        for tc in await self.trusted.list():
            if not tc.spec.enabled:
                continue
            cas = await self.root_cas(tc.metadata.name)
            if "user" in cas:
                out.append((tc, cas["user"]))
        return out

    # --- root side ------------------------------------------------------------------------

    @staticmethod
    def _leaf_key(leaf: str) -> bytes:
        return f"/authorities/leaves/{leaf}/host".encode()

    async def accept_leaf(self, token_secret: str, leaf_ca: PublicCA, remote_addr: str) -> None:
        """Validate a leaf's join and remember its host CA; raises on any refusal."""
        try:
            if leaf_ca.type != "host":
                raise BadParameter("a leaf must send its host CA")
            if leaf_ca.cluster == self._cluster:
                raise AccessDenied(f"a leaf cannot share the root's name {self._cluster!r}")
            try:
                token = await self.tokens.get(token_secret)
            except NotFound:
                raise AccessDenied("join token is invalid, expired or already used") from None
            if token.spec.type != "trusted_cluster":
                raise AccessDenied(f"a {token.spec.type} token cannot join a trusted cluster")
            try:
                held = PublicCA.from_json(json.loads(
                    (await self._backend.get(self._leaf_key(leaf_ca.cluster))).value))
            except NotFound:
                held = None
            if held is not None and (held.ssh, held.tls) != (leaf_ca.ssh, leaf_ca.tls):
                raise AlreadyExists(
                    f"cluster {leaf_ca.cluster} is already joined with a different host CA; "
                    f"remove it first with `gatectl rm rc/{leaf_ca.cluster}`"
                )
            try:
                await self.tokens.delete(token_secret)
            except NotFound:
                raise AccessDenied("join token is invalid, expired or already used") from None
        except (AccessDenied, AlreadyExists, BadParameter) as exc:
            await self._audit.emit("trusted_cluster.join.failure", remote_addr=remote_addr,
                                   message=str(exc), fields={"leaf": leaf_ca.cluster})
            log.warning("leaf join refused leaf=%s remote=%s reason=%r", leaf_ca.cluster,
                        remote_addr, str(exc))
            raise
        await self._backend.put(Item(key=self._leaf_key(leaf_ca.cluster),
                                     value=json.dumps(leaf_ca.to_json()).encode()))
        with contextlib.suppress(AlreadyExists):
            await self.remotes.create(RemoteCluster(metadata=Metadata(name=leaf_ca.cluster)))
        await self._audit.emit("trusted_cluster.join", remote_addr=remote_addr,
                               fields={"leaf": leaf_ca.cluster})

    async def leaf_cas(self) -> list[PublicCA]:
        items = await self._backend.get_range(*_range("/authorities/leaves/"))
        return [PublicCA.from_json(json.loads(i.value)) for i in items]

    async def remove_leaf(self, leaf: str) -> None:
        await self.remotes.delete(leaf)
        await self._backend.delete_range(*_range(f"/authorities/leaves/{leaf}/"))

    async def leaf_heartbeat(self, leaf: str, online: bool) -> None:
        rc = await self.remotes.get(leaf)
        now = self._clock.now()
        status = RemoteClusterStatus(connection="online" if online else "offline",
                                     last_heartbeat=now if online else
                                     rc.status.last_heartbeat)
        await self.remotes.upsert(rc.model_copy(update={"status": status}))

    async def remote_clusters(self) -> list[RemoteCluster]:
        """Remote clusters with ``connection`` judged now (stale heartbeats are offline)."""
        now = self._clock.now()
        out = []
        for rc in await self.remotes.list():
            beat = rc.status.last_heartbeat
            online = (rc.status.connection == "online" and beat is not None
                      and now - beat <= ONLINE_WITHIN)
            status = RemoteClusterStatus(connection="online" if online else "offline",
                                         last_heartbeat=beat)
            out.append(rc.model_copy(update={"status": status}))
        return out


def _range(prefix: str) -> tuple[bytes, bytes]:
    raw = prefix.encode()
    return raw, prefix_end(raw)
