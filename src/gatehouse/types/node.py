"""Nodes: SSH servers registered with their cluster. Their labels are ``metadata.labels``.

A node in direct mode is dialed at ``addr``; a node in tunnel mode (``tunnel``) has no
address: its proxy reaches it over the reverse tunnel the node holds, and the listing
says whether that tunnel is up (``status.connection``, judged when listed).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from gatehouse.types.resource import HostPort, Model, Name, Resource

__all__ = ["Node", "NodeSpec", "NodeStatus"]


class NodeSpec(Model):
    hostname: str = Field(min_length=1)
    addr: HostPort | Literal[""] = ""
    tunnel: bool = False
    cluster: Name
    host_id: str = Field(min_length=1)

    @model_validator(mode="after")
    def _reached_somehow(self) -> Self:
        if self.tunnel and self.addr:
            raise ValueError(f"a node on a tunnel has no address (got {self.addr!r})")
        if not self.tunnel and not self.addr:
            raise ValueError("addr is required for a node that is not on a tunnel")
        return self


class NodeStatus(Model):
    last_heartbeat: AwareDatetime | None = None
    # A tunnel node only: whether a proxy holds its tunnel now.
    connection: Literal["online", "offline"] | None = None


class Node(Resource):
    kind: Literal["node"] = "node"
    spec: NodeSpec
    status: NodeStatus | None = None
