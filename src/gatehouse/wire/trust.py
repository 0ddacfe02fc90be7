"""What nodes and proxies decide with, as their auth shares it (pure).

The trust snapshot holds the user CAs to accept (the cluster's own and each
enabled trusted root's), the roots a leaf dials with their role maps and what
each last said of its cluster labels (``ClusterAccess``), the leaves' host CAs a
root proxy accepts tunnels from with their labels, the roles and users, and
whether sessions are recorded. The auth builds it (auth.trustview) and pushes a
new one on every change; this module is the one place it is encoded and parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gatehouse import rbac
from gatehouse.errors import BadParameter
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.role import Role
from gatehouse.types.trusted_cluster import RoleMapping
from gatehouse.types.yaml_io import from_json_obj, to_json_obj

__all__ = ["PublicCA", "RootCluster", "TrustSnapshot"]


@dataclass(frozen=True)
class PublicCA:
    """The public parts of a cluster's CA: what others pin."""

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


@dataclass(frozen=True)
class RootCluster:
    """A root this (leaf) cluster trusts."""

    name: str
    enabled: bool
    proxy_addr: str
    role_map: tuple[RoleMapping, ...]
    host_ca_tls: str
    joined_at: float = 0.0  # Unix time of the last join: a new join redials at once
    # The root's cluster labels for this cluster, as it last pushed them (None: not yet).
    access: ClusterAccess | None = None

    def cluster_refusal(self, cert_roles: Iterable[str], cluster: str) -> str:
        """Why this root's user holding ``cert_roles`` may not use ``cluster`` (this one),
        by the root's cluster labels; "" when they may (rolemap.Trust)."""
        decision = rbac.check_cluster_access(self.access, cert_roles, cluster)
        return "" if decision.allowed else decision.reason


@dataclass(frozen=True)
class TrustSnapshot:
    cluster: str = ""
    user_cas: tuple[PublicCA, ...] = ()  # this cluster's, then each enabled root's
    roots: dict[str, RootCluster] = field(default_factory=dict)
    leaf_host_cas: dict[str, str] = field(default_factory=dict)  # leaf cluster -> TLS CA PEM
    leaf_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # leaf -> its labels
    roles: dict[str, Role] = field(default_factory=dict)
    users: frozenset[str] = frozenset()
    connectors: frozenset[str] = frozenset()  # SSO connectors: their users need no record
    record_sessions: bool = True  # False only when the auth says session_recording: off
    user_ca_lines: dict[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # "ssh-ed25519 AAAA" -> its cluster: what a node looks a certificate's signer up in.
        lines = {" ".join(ca.ssh.split()[:2]): ca.cluster for ca in self.user_cas}
        object.__setattr__(self, "user_ca_lines", lines)

    def cluster_access(self, leaf: str) -> ClusterAccess:
        """What a root tells ``leaf`` of its cluster labels (and decides with itself)."""
        return ClusterAccess.of(self.roles.values(), self.leaf_labels.get(leaf, {}))

    def leaf_refusal(self, roles: Iterable[str], leaf: str) -> str:
        """Why a user of this (root) cluster holding ``roles`` may not see or reach
        ``leaf`` ("" if they may; "" for a leaf this cluster does not have, which the
        tunnel server calls unknown)."""
        if leaf not in self.leaf_host_cas:
            return ""
        decision = rbac.check_cluster_access(self.cluster_access(leaf), roles, leaf)
        return "" if decision.allowed else decision.reason

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "user_cas": [ca.to_json() for ca in self.user_cas],
            "trusted_clusters": [
                {"name": r.name, "enabled": r.enabled, "proxy_addr": r.proxy_addr,
                 "role_map": [m.model_dump() for m in r.role_map], "host_ca_tls": r.host_ca_tls,
                 "joined_at": r.joined_at,
                 "access": r.access.model_dump() if r.access is not None else None}
                for r in self.roots.values()],
            "leaf_host_cas": [{"cluster": name, "type": "host", "ssh": "", "tls": pem}
                              for name, pem in self.leaf_host_cas.items()],
            "leaf_labels": self.leaf_labels,
            "roles": [to_json_obj(r) for r in self.roles.values()],
            "users": sorted(self.users),
            "connectors": sorted(self.connectors),
            "session_recording": "node" if self.record_sessions else "off",
        }

    @classmethod
    def from_json(cls, raw: object) -> TrustSnapshot:
        if not isinstance(raw, dict):
            raise BadParameter(f"malformed trust snapshot: expected an object, got "
                               f"{type(raw).__name__}")
        try:
            roles: dict[str, Role] = {}
            for obj in raw.get("roles", []):
                res = from_json_obj(obj)
                if isinstance(res, Role):
                    roles[res.metadata.name] = res
            roots = {
                r["name"]: RootCluster(
                    name=r["name"], enabled=bool(r["enabled"]), proxy_addr=r["proxy_addr"],
                    role_map=tuple(RoleMapping.model_validate(m) for m in r["role_map"]),
                    host_ca_tls=r["host_ca_tls"], joined_at=float(r.get("joined_at", 0.0)),
                    access=(ClusterAccess.model_validate(r["access"])
                            if r.get("access") is not None else None),
                )
                for r in raw.get("trusted_clusters", [])
            }
            return cls(
                cluster=str(raw.get("cluster", "")),
                user_cas=tuple(PublicCA.from_json(ca) for ca in raw.get("user_cas", [])),
                roots=roots,
                leaf_host_cas={ca["cluster"]: ca["tls"] for ca in raw.get("leaf_host_cas", [])},
                leaf_labels={str(k): {str(lk): str(lv) for lk, lv in v.items()}
                             for k, v in raw.get("leaf_labels", {}).items()},
                roles=roles,
                users=frozenset(raw.get("users", [])),
                connectors=frozenset(raw.get("connectors", [])),
                record_sessions=raw.get("session_recording") != "off",
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadParameter(f"malformed trust snapshot: {exc}") from exc
