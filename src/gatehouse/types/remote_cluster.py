"""The root's record of a joined leaf; its status follows the leaf's tunnel heartbeats."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from gatehouse.types.resource import Model, Resource

__all__ = ["RemoteCluster", "RemoteClusterSpec", "RemoteClusterStatus"]


class RemoteClusterSpec(Model):
    """Empty: everything about a remote cluster is status."""


class RemoteClusterStatus(Model):
    connection: Literal["online", "offline"] = "offline"
    last_heartbeat: AwareDatetime | None = None


class RemoteCluster(Resource):
    kind: Literal["remote_cluster"] = "remote_cluster"
    spec: RemoteClusterSpec = Field(default_factory=RemoteClusterSpec)
    status: RemoteClusterStatus = Field(default_factory=RemoteClusterStatus)
