"""A proxy of this cluster, as it registers itself with its auth: where users and tunnel
agents reach it (``public_addr``) and where it listens. Its status says whether it
heartbeats now (judged when listed)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from gatehouse.types.resource import HostPort, Model, Resource

__all__ = ["Proxy", "ProxySpec", "ProxyStatus"]


class ProxySpec(Model):
    hostname: str = Field(min_length=1)
    public_addr: HostPort  # what tunnel agents dial to reach this proxy itself
    listen_addr: HostPort


class ProxyStatus(Model):
    connection: Literal["online", "offline"] = "offline"
    last_heartbeat: AwareDatetime | None = None


class Proxy(Resource):
    """Named by the proxy's host id (the name in its certificate)."""

    kind: Literal["proxy"] = "proxy"
    spec: ProxySpec
    status: ProxyStatus = Field(default_factory=ProxyStatus)
