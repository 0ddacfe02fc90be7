"""What a root tells each leaf so that the leaf enforces the root's cluster labels too:
the leaf's labels at the root, and every root role's ``cluster_labels`` (allow and
deny). The root builds it from its roles (``of``) and pushes it over the leaf's tunnel
on every change; the leaf's auth keeps it with the trust and hands it to the leaf's
proxies and nodes in the trust snapshot. The decision over it is rbac's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import Field

from gatehouse.types.resource import Model
from gatehouse.types.role import Role, SelectorValue

__all__ = ["ClusterAccess", "ClusterRule"]


class ClusterRule(Model):
    """One root role's say on leaves: the clusters it selects, and those it refuses."""

    allow: dict[str, SelectorValue] = Field(default_factory=dict)
    deny: dict[str, SelectorValue] = Field(default_factory=dict)


class ClusterAccess(Model):
    labels: dict[str, str] = Field(default_factory=dict)  # the leaf's, as the root has them
    roles: dict[str, ClusterRule] = Field(default_factory=dict)  # root role name -> its rule

    @classmethod
    def of(cls, roles: Iterable[Role], labels: Mapping[str, str]) -> ClusterAccess:
        """A leaf with ``labels`` as the root's ``roles`` see it."""
        return cls(labels=dict(labels), roles={
            r.metadata.name: ClusterRule(allow=r.spec.allow.cluster_labels,
                                         deny=r.spec.deny.cluster_labels) for r in roles})
