"""The root's record of a joined leaf; its status follows the leaf's tunnel heartbeats."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, Field, SerializerFunctionWrapHandler, model_serializer

from gatehouse.types.resource import Model, Resource

__all__ = ["RemoteCluster", "RemoteClusterSpec", "RemoteClusterStatus"]


class RemoteClusterSpec(Model):
    """Empty: everything about a remote cluster is status."""


class RemoteClusterStatus(Model):
    connection: Literal["online", "offline"] = "offline"
    last_heartbeat: AwareDatetime | None = None
    # What the leaf last said of itself over its tunnel (None: it has not said).
    session_recording: str | None = None  # node | off
    version: str | None = None  # its Gatehouse version
    proxy_addr: str | None = None  # its proxy_service.public_addr (users' way in without us)

    @model_serializer(mode="wrap")
    def _drop_unsaid(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("session_recording", "version", "proxy_addr"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class RemoteCluster(Resource):
    kind: Literal["remote_cluster"] = "remote_cluster"
    spec: RemoteClusterSpec = Field(default_factory=RemoteClusterSpec)
    status: RemoteClusterStatus = Field(default_factory=RemoteClusterStatus)
