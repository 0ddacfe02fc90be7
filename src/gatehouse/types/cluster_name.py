"""The cluster's own name, fixed when the auth first starts."""

from __future__ import annotations

from typing import Literal

from gatehouse.types.resource import Model, Name, Resource

__all__ = ["ClusterName", "ClusterNameSpec"]


class ClusterNameSpec(Model):
    cluster_name: Name


class ClusterName(Resource):
    kind: Literal["cluster_name"] = "cluster_name"
    spec: ClusterNameSpec
    status: None = None
