"""Nodes: SSH servers registered with their cluster. Their labels are ``metadata.labels``."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from gatehouse.types.resource import HostPort, Model, Name, Resource

__all__ = ["Node", "NodeSpec", "NodeStatus"]


class NodeSpec(Model):
    hostname: str = Field(min_length=1)
    addr: HostPort
    cluster: Name
    host_id: str = Field(min_length=1)


class NodeStatus(Model):
    last_heartbeat: AwareDatetime | None = None


class Node(Resource):
    kind: Literal["node"] = "node"
    spec: NodeSpec
    status: NodeStatus | None = None
