"""The typed auth interface (wire.authapi.AuthAPI) over HTTPS: what remote processes use.

The one module that turns calls into ``/v1/...`` paths (URL-quoting every part a
caller supplies) and replies into models; errors come back as the kinds the auth
raised (client.api).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gatehouse.client.api import APIClient
from gatehouse.errors import BadParameter, ConnectionProblem
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory
from gatehouse.types.node import Node
from gatehouse.types.problems import describe_problems
from gatehouse.types.resource import Resource
from gatehouse.types.yaml_io import from_json_obj, to_json_obj
from gatehouse.wire.authapi import (
    ROUTES,
    Certs,
    ClusterInfo,
    ClusterStatus,
    DeviceBegin,
    DeviceBeginReply,
    DevicePoll,
    DevicePollReply,
    EventList,
    EventPage,
    EventQuery,
    EventsStored,
    Heartbeat,
    JoinReply,
    JoinRequest,
    LeafInfo,
    LeafJoinReply,
    LeafJoinRequest,
    LeafLoginRequest,
    LoginRequest,
    NodeQuery,
    NodeTunnels,
    NodeTunnelVerdict,
    Ping,
    ProxyHeartbeat,
    ProxySet,
    RecordingDone,
    RemoteTunnels,
    RenewRequest,
    RootTunnel,
    RootTunnels,
    SSOBegin,
    SSOBeginReply,
    SSOCallback,
    SSOCerts,
    SSOComplete,
    SSORedirect,
    TokenReply,
    TokenRequest,
)
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["AuthClient"]


def _path(call: str, **parts: object) -> str:
    return ROUTES[call].path.format(
        **{k: urllib.parse.quote(str(v), safe="") for k, v in parts.items()})


class AuthClient:
    """An AuthAPI that reaches an auth (directly, or through a proxy) over HTTPS."""

    def __init__(self, http: APIClient) -> None:
        self.http = http

    @property
    def addr(self) -> str:
        return self.http.addr

    async def __aenter__(self) -> AuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.close()

    async def _call(self, call: str, body: object = None, params: dict[str, str] | None = None,
                    **parts: object) -> Any:
        return await self.http.request(ROUTES[call].method, _path(call, **parts), body=body,
                                       params=params)

    # anonymous -----------------------------------------------------------------------------

    async def ping(self) -> Ping:
        return _parse(Ping, await self._call("ping"))

    async def login(self, req: LoginRequest) -> Certs:
        return _parse(Certs, await self._call("login", req.model_dump(mode="json")))

    async def leaf_login(self, req: LeafLoginRequest) -> Certs:
        return _parse(Certs, await self._call("leaf_login", req.model_dump(mode="json")))

    async def join(self, req: JoinRequest) -> JoinReply:
        return _parse(JoinReply, await self._call("join", req.model_dump(mode="json")))

    async def join_leaf(self, req: LeafJoinRequest) -> LeafJoinReply:
        return _parse(LeafJoinReply, await self._call("join_leaf", req.model_dump(mode="json")))

    async def sso_begin(self, req: SSOBegin) -> SSOBeginReply:
        return _parse(SSOBeginReply, await self._call("sso_begin", req.model_dump(mode="json")))

    async def sso_finish(self, callback: SSOCallback) -> SSORedirect:
        return _parse(SSORedirect, await self._call("sso_finish",
                                                    callback.model_dump(mode="json")))

    async def sso_complete(self, req: SSOComplete) -> SSOCerts:
        return _parse(SSOCerts, await self._call("sso_complete", req.model_dump(mode="json")))

    async def sso_device_begin(self, req: DeviceBegin) -> DeviceBeginReply:
        return _parse(DeviceBeginReply, await self._call("sso_device_begin",
                                                         req.model_dump(mode="json")))

    async def sso_device_poll(self, req: DevicePoll) -> DevicePollReply:
        return _parse(DevicePollReply, await self._call("sso_device_poll",
                                                        req.model_dump(mode="json")))

    # hosts ---------------------------------------------------------------------------------

    async def heartbeat(self, beat: Heartbeat) -> Node:
        return _resource(Node, await self._call("heartbeat", beat.model_dump(mode="json")))

    async def report_node_tunnels(self, report: NodeTunnels) -> NodeTunnelVerdict:
        return _parse(NodeTunnelVerdict, await self._call("report_node_tunnels",
                                                          report.model_dump(mode="json")))

    async def proxy_heartbeat(self, beat: ProxyHeartbeat) -> ProxySet:
        return _parse(ProxySet, await self._call("proxy_heartbeat", beat.model_dump(mode="json")))

    async def renew(self, req: RenewRequest) -> Certs:
        return _parse(Certs, await self._call("renew", req.model_dump(mode="json")))

    async def trust(self) -> TrustSnapshot:
        return TrustSnapshot.from_json(await self._call("trust"))

    async def watch_trust(self) -> AsyncIterator[TrustSnapshot]:
        async for line in self.http.lines(ROUTES["trust"].path, watch="1"):
            if line.strip():
                try:
                    raw = json.loads(line)
                except ValueError as exc:
                    raise ConnectionProblem(f"malformed trust stream: {exc}") from exc
                yield TrustSnapshot.from_json(raw)

    async def report_tunnels(self, leaves: list[str],
                             info: dict[str, LeafInfo] | None = None) -> None:
        await self._call("report_tunnels",
                         RemoteTunnels(leaves=leaves, info=info or {}).model_dump())

    async def report_root_tunnels(self, roots: list[RootTunnel]) -> None:
        await self._call("report_root_tunnels", RootTunnels(roots=roots).model_dump())

    async def put_cluster_access(self, root: str, access: ClusterAccess) -> None:
        await self._call("put_cluster_access", access.model_dump(mode="json"), root=root)

    async def leaf_inventory(self, root: str) -> LeafInventory:
        return _parse(LeafInventory, await self._call("leaf_inventory", root=root))

    async def post_events(self, events: list[dict[str, Any]]) -> EventsStored:
        return _parse(EventsStored, await self._call("post_events", {"events": events}))

    async def export_events(self, after: str, limit: int) -> EventPage:
        return _parse(EventPage, await self._call("export_events",
                                                  params={"after": after, "limit": str(limit)}))

    async def export_cursor(self, root: str) -> str:
        return str((await self._call("export_cursor", params={"root": root}))["after"])

    async def set_export_cursor(self, root: str, after: str) -> None:
        await self._call("set_export_cursor", {"root": root, "after": after})

    async def store_leaf_events(self, leaf: str, events: list[Any]) -> EventsStored:
        return _parse(EventsStored, await self._call("store_leaf_events", {"events": events},
                                                     leaf=leaf))

    async def put_recording_chunk(self, session_id: str, index: int, data: bytes) -> None:
        await self.http.put_bytes(_path("put_recording_chunk", id=session_id, index=index), data)

    async def complete_recording(self, session_id: str, done: RecordingDone) -> dict[str, Any]:
        return dict(await self._call("complete_recording", done.model_dump(mode="json"),
                                     id=session_id))

    # users and admins ----------------------------------------------------------------------

    async def resolve_node(self, target: str) -> Node:
        return _resource(Node, await self._call("resolve_node", params={"target": target}))

    async def list_nodes(self, query: NodeQuery) -> list[dict[str, Any]]:
        params = {"labels": json.dumps(query.labels), "limit": str(query.limit)}
        if query.hostname is not None:
            params["hostname"] = query.hostname
        return list(await self._call("list_nodes", params=params))

    async def clusters(self) -> list[ClusterInfo]:
        return [_parse(ClusterInfo, c) for c in await self._call("clusters")]

    async def status(self) -> ClusterStatus:
        return _parse(ClusterStatus, await self._call("status"))

    async def set_password(self, name: str, password: str) -> None:
        await self._call("set_password", {"password": password}, name=name)

    async def set_totp(self, name: str, enabled: bool) -> str:
        return str((await self._call("set_totp", {"enabled": enabled}, name=name))["otpauth_uri"])

    async def add_token(self, req: TokenRequest) -> TokenReply:
        return _parse(TokenReply, await self._call("add_token", req.model_dump(mode="json")))

    async def get_resources(self, kind: str, name: str = "") -> list[Resource]:
        found = await (self._call("get_resource", kind=kind, name=name) if name
                       else self._call("get_resources", kind=kind))
        return [from_json_obj(obj) for obj in found]

    async def put_resource(self, res: Resource, *, upsert: bool) -> bool:
        """Store ``res``; True when it was created, False when it replaced one."""
        status, _ = await self.http.exchange(
            ROUTES["put_resource"].method, _path("put_resource"), body=to_json_obj(res),
            params={"upsert": "1"} if upsert else None)
        return status == 201

    async def delete_resource(self, kind: str, name: str) -> None:
        await self._call("delete_resource", kind=kind, name=name)

    async def search_events(self, query: EventQuery) -> EventList:
        params = {k: v for k, v in (("since", query.since), ("type", ",".join(query.types)),
                                    ("user", query.user), ("cluster", query.cluster),
                                    ("limit", str(query.limit)), ("cursor", query.cursor)) if v}
        return _parse(EventList, await self._call("search_events", params=params))

    async def list_recordings(self) -> list[dict[str, Any]]:
        return list(await self._call("list_recordings"))

    async def get_recording(self, session_id: str) -> bytes:
        return await self.http.get_bytes(_path("get_recording", id=session_id))

    async def recording_cluster(self, session_id: str) -> str:
        return str((await self._call("recording_cluster", id=session_id))["cluster"])


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], raw: Any) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConnectionProblem(f"malformed reply from the auth: {describe_problems(exc)}"
                                ) from None


def _resource(kind: type[Node], raw: Any) -> Node:
    res = from_json_obj(raw)
    if not isinstance(res, kind):
        raise BadParameter(f"the auth answered with a {res.kind}, not a {kind.__name__}")
    return res
