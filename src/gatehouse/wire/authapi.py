"""The auth API as a typed interface: every call a service, agent or CLI makes of an
auth, with its request and reply models, and the HTTPS route that carries it.

Two implementations: ``client.authclient.AuthClient`` (HTTPS, what a remote process
uses) and ``auth.authz.AuthWithRoles`` (in-process, what a proxy or node uses when
it shares a process with its auth). Both pass through the same authorization, so a
caller tells them apart only by speed. The JSON shapes on the wire are the models'.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, NamedTuple, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gatehouse.errors import BadParameter
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.types.inventory import LeafInventory
from gatehouse.types.node import Node
from gatehouse.types.resource import Resource
from gatehouse.types.trusted_cluster import TrustedClusterStatus
from gatehouse.wire.names import EVENT_PAGE, RECORDING_TAIL
from gatehouse.wire.trust import PublicCA, TrustSnapshot

__all__ = [
    "API_PREFIX",
    "ROUTES",
    "AuthAPI",
    "CAStatus",
    "Certs",
    "ClusterInfo",
    "ClusterStatus",
    "DeviceBegin",
    "DeviceBeginReply",
    "DevicePoll",
    "DevicePollReply",
    "EventList",
    "EventPage",
    "EventQuery",
    "EventsStored",
    "Heartbeat",
    "JoinReply",
    "JoinRequest",
    "LeafInfo",
    "LeafJoinReply",
    "LeafJoinRequest",
    "LeafLoginRequest",
    "LoginRequest",
    "NodeQuery",
    "NodeTunnelVerdict",
    "NodeTunnels",
    "Ping",
    "ProxyAddr",
    "ProxyHeartbeat",
    "ProxySet",
    "RecordingDone",
    "RemoteTunnels",
    "RenewRequest",
    "RootTunnel",
    "RootTunnels",
    "Route",
    "SSOBegin",
    "SSOBeginReply",
    "SSOCallback",
    "SSOCerts",
    "SSOComplete",
    "SSORedirect",
    "TokenReply",
    "TokenRequest",
]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ping(_Message):
    """Who this auth is (anonymous): its cluster and the public parts of its CAs."""

    cluster: str
    host_ca_tls: str
    host_ca_ssh: str
    user_ca_ssh: str
    user_ca_tls: str


class Certs(Ping):
    """Certificates just issued, with the CAs to pin."""

    ssh_cert: str
    tls_cert: str
    expires: dt.datetime


class SSOCerts(Certs):
    """An SSO login's certificates, with who the IdP said the user is."""

    user: str
    connector: str
    roles: list[str]


class DeviceBegin(_Message):
    """gsh --headless starts a device login (RFC 8628): the key to certify and the
    SHA-256 (hex) of the secret it will poll with."""

    connector: str
    public_key: str
    secret_hash: str
    ttl: str | None = None


class DeviceBeginReply(_Message):
    request_id: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str = ""
    interval: int  # seconds between polls
    expires_in: int  # seconds the person has


class DevicePoll(_Message):
    request_id: str
    secret: str


class DevicePollReply(_Message):
    pending: bool  # the person has not finished at the IdP yet: poll again
    interval: int = 0  # seconds before the next poll (the IdP may ask to slow down)
    certs: SSOCerts | None = None


class JoinReply(Certs):
    host_id: str


class LoginRequest(_Message):
    user: str
    password: str
    public_key: str  # OpenSSH line
    otp: str = ""
    ttl: str | None = None  # a duration ("8h"); None: the roles' default


class LeafLoginRequest(_Message):
    """A root user asks a leaf for certificates of the leaf's user CA (auth/leaflogin.py)."""

    public_key: str  # OpenSSH line: the key of the user's root certificate


class SSOBegin(_Message):
    """gsh starts an SSO login: the key to certify, where its loopback listener waits for
    the browser, and the SHA-256 (hex) of a secret only it holds (to fetch the result)."""

    connector: str
    public_key: str  # OpenSSH line
    client_redirect: str  # http://127.0.0.1:PORT/... (loopback only)
    secret_hash: str
    proxy_addr: str  # the proxy gsh dialed: the IdP's redirect goes there by default
    ttl: str | None = None


class SSOBeginReply(_Message):
    auth_url: str  # where the browser goes (the IdP's authorization endpoint)
    request_id: str  # what the loopback callback will name


class SSOCallback(_Message):
    """The IdP's redirect to the proxy (its query parameters)."""

    state: str = ""
    code: str = ""
    error: str = ""
    error_description: str = ""
    iss: str = ""  # RFC 9207: the issuer that sent the browser back
    remote_addr: str = ""  # the browser's address, as the proxy saw it (believed of proxies)


class SSORedirect(_Message):
    url: str  # where the proxy sends the browser next (gsh's loopback listener)


class SSOComplete(_Message):
    """gsh fetches a login's outcome with its secret and the code the browser brought
    back to its loopback listener: only the client that began the login and received the
    browser's return gets the certificates (a login link sent to another person, who
    finishes it, gives its sender nothing)."""

    request_id: str
    secret: str
    code: str  # the browser's return: ?id=REQUEST_ID&code=CODE


class JoinRequest(_Message):
    token: str  # the secret part
    role: str  # node | proxy
    nodename: str
    public_key: str
    addrs: list[str]  # where it can be reached (host:port), for principals
    dns_names: list[str]  # proxies: the names their TLS certificate must carry


class RenewRequest(_Message):
    """A registered host asks for fresh certificates for ``public_key`` (its own)."""

    public_key: str


class LeafJoinRequest(_Message):
    token: str
    ca: PublicCA  # the leaf's host CA


class LeafJoinReply(_Message):
    cluster: str
    cas: list[PublicCA]  # the root's user and host CAs


class Heartbeat(_Message):
    hostname: str
    addr: str  # "" for a node on a tunnel
    labels: dict[str, str] = {}
    tunnel: bool = False  # the node is reached over its reverse tunnel, not at an address


class ProxyHeartbeat(_Message):
    """A proxy's presence: where tunnel agents reach it, and where it listens."""

    public_addr: str
    listen_addr: str


class ProxyAddr(_Message):
    name: str  # the proxy's host id: the name in its certificate
    addr: str  # its public address


class ProxySet(_Message):
    """The proxies of a cluster online now (a proxy heartbeat's reply)."""

    proxies: list[ProxyAddr]
    as_of: AwareDatetime | None = None  # when the auth read them from its registry


class NodeTunnels(_Message):
    """A proxy's report of the node tunnels it holds or was just offered (one call for all)."""

    host_ids: list[str]
    # The host ids whose registration the auth checks (None: every one): those just
    # offered, and all of them when the proxy was told something changed, or now and
    # then (each check is a read: 10,000 every few seconds cost an idle auth).
    verify: list[str] | None = None


class NodeTunnelVerdict(_Message):
    refused: dict[str, str] = {}  # host id -> why its tunnel may not stay


class NodeQuery(_Message):
    labels: dict[str, str] = {}
    limit: int = 0  # 0: all
    hostname: str | None = None  # only the nodes of this hostname (an index read)


class ClusterInfo(_Message):
    name: str
    type: str  # root | leaf
    status: str  # online | offline
    last_heartbeat: str | None
    host_ca_ssh: str
    # A leaf's own proxy, for `gsh ssh` while the root is down: the address it publishes
    # (proxy_service.public_addr; "" = none) and the host CA (PEM) its certificate has.
    proxy_addr: str = ""
    host_ca_tls: str = ""


class CAStatus(_Message):
    type: str
    ssh_fingerprint: str
    tls_fingerprint: str


class ClusterStatus(_Message):
    cluster: str
    cas: list[CAStatus]
    counts: dict[str, int]
    trusted_clusters: dict[str, TrustedClusterStatus] = {}  # root -> its tunnel (a leaf)


class LeafInfo(_Message):
    """What a leaf says of itself over its tunnel; the root shows it in its
    remote_cluster's status."""

    session_recording: str = Field(default="", max_length=16)  # node | off
    version: str = Field(default="", max_length=64)
    proxy_addr: str = Field(default="", max_length=256)  # its proxy_service.public_addr


class RemoteTunnels(_Message):
    """A root proxy's report: the leaves whose tunnels it holds, and what each said."""

    leaves: list[str]
    info: dict[str, LeafInfo] = {}


class RootTunnel(_Message):
    """A leaf proxy's tunnel to one root, as that proxy reports it to its auth."""

    root: str
    up: bool
    detail: str = ""  # why it is down: the last dial's failure, or why it closed
    refused: bool = False  # the root refuses this leaf's certificate: only a new join helps


class RootTunnels(_Message):
    roots: list[RootTunnel]


class TokenRequest(_Message):
    type: str
    ttl: str = "30m"


class TokenReply(_Message):
    token: str
    type: str
    expires: str


class EventsStored(_Message):
    stored: int
    rejected: int


class EventPage(_Message):
    """A page of this cluster's events in storing order: ``{"key", "event"}`` each."""

    events: list[dict[str, Any]]
    last: str


class EventQuery(_Message):
    since: str = ""  # a duration back from now ("1h"); "" for all
    types: list[str] = []
    user: str = ""
    cluster: str = ""
    limit: int = EVENT_PAGE  # at most this many, newest first (at most MAX_EVENT_PAGE)
    cursor: str = ""  # an earlier page's ``next``: continue after it


class EventList(_Message):
    """A page of a search, newest first; ``next`` continues it ("" after the last)."""

    events: list[dict[str, Any]]
    next: str = ""


class RecordingDone(_Message):
    """What a node says of a recording it finished uploading; it may carry the last
    bytes (at most RECORDING_TAIL, base64) as chunk ``tail_index``, so that a short
    session's recording takes one call."""

    user: str = ""
    login: str = ""
    start: str = ""
    end: str = ""
    command: str = ""
    truncated: bool = False
    tail: str = ""
    tail_index: int = 0

    def tail_chunk(self) -> tuple[int, bytes] | None:
        """The last chunk it carries as (index, bytes), if any; BadParameter if malformed."""
        if not self.tail:
            return None
        try:
            data = base64.b64decode(self.tail, validate=True)
        except binascii.Error:
            raise BadParameter("a recording's tail must be base64") from None
        if len(data) > RECORDING_TAIL:
            raise BadParameter(f"a recording's tail is at most {RECORDING_TAIL} bytes")
        return self.tail_index, data


API_PREFIX = "/v1/"  # every route's path starts so; a proxy relays nothing else


class Route(NamedTuple):
    method: str
    path: str  # {name} parts are URL-quoted by the client


ROUTES: dict[str, Route] = {
    "ping": Route("GET", "/v1/ping"),
    "login": Route("POST", "/v1/login"),
    "leaf_login": Route("POST", "/v1/leaf_login"),
    "join": Route("POST", "/v1/join"),
    "join_leaf": Route("POST", "/v1/trusted_clusters/join"),
    "sso_begin": Route("POST", "/v1/sso/oidc/begin"),
    "sso_finish": Route("POST", "/v1/sso/oidc/finish"),  # the proxy's, for the IdP's redirect
    "sso_complete": Route("POST", "/v1/sso/oidc/complete"),
    "sso_device_begin": Route("POST", "/v1/sso/oidc/device/begin"),
    "sso_device_poll": Route("POST", "/v1/sso/oidc/device/poll"),
    "clusters": Route("GET", "/v1/clusters"),
    "report_tunnels": Route("POST", "/v1/remote_clusters/heartbeat"),
    "report_root_tunnels": Route("POST", "/v1/trusted_clusters/heartbeat"),
    "put_cluster_access": Route("POST", "/v1/trusted_clusters/{root}/access"),
    "leaf_inventory": Route("GET", "/v1/trusted_clusters/{root}/inventory"),
    "status": Route("GET", "/v1/status"),
    "heartbeat": Route("POST", "/v1/nodes/heartbeat"),
    "report_node_tunnels": Route("POST", "/v1/nodes/tunnels"),
    "proxy_heartbeat": Route("POST", "/v1/proxies/heartbeat"),
    "renew": Route("POST", "/v1/hosts/renew"),
    "resolve_node": Route("GET", "/v1/nodes/resolve"),
    "list_nodes": Route("GET", "/v1/nodes"),
    "trust": Route("GET", "/v1/trust"),
    "post_events": Route("POST", "/v1/events"),
    "search_events": Route("GET", "/v1/events"),
    "export_events": Route("GET", "/v1/events/export"),
    "export_cursor": Route("GET", "/v1/events/export/cursor"),
    "set_export_cursor": Route("POST", "/v1/events/export/cursor"),
    "store_leaf_events": Route("POST", "/v1/remote_events/{leaf}"),
    "put_recording_chunk": Route("PUT", "/v1/recordings/{id}/chunks/{index}"),
    "complete_recording": Route("POST", "/v1/recordings/{id}/complete"),
    "list_recordings": Route("GET", "/v1/recordings"),
    "get_recording": Route("GET", "/v1/recordings/{id}"),
    "recording_cluster": Route("GET", "/v1/recordings/{id}/cluster"),
    "set_password": Route("POST", "/v1/users/{name}/password"),
    "set_totp": Route("POST", "/v1/users/{name}/totp"),
    "add_token": Route("POST", "/v1/tokens"),
    "get_resources": Route("GET", "/v1/resources/{kind}"),
    "get_resource": Route("GET", "/v1/resources/{kind}/{name}"),
    "put_resource": Route("POST", "/v1/resources"),
    "delete_resource": Route("DELETE", "/v1/resources/{kind}/{name}"),
}


class AuthAPI(Protocol):
    """Everything a caller may ask of an auth; each call is authorized for the caller."""

    # anonymous: the credential is in the request
    async def ping(self) -> Ping: ...
    async def login(self, req: LoginRequest) -> Certs: ...
    async def join(self, req: JoinRequest) -> JoinReply: ...
    async def join_leaf(self, req: LeafJoinRequest) -> LeafJoinReply: ...
    async def sso_begin(self, req: SSOBegin) -> SSOBeginReply: ...
    async def sso_finish(self, callback: SSOCallback) -> SSORedirect: ...
    async def sso_complete(self, req: SSOComplete) -> SSOCerts: ...
    async def sso_device_begin(self, req: DeviceBegin) -> DeviceBeginReply: ...
    async def sso_device_poll(self, req: DevicePoll) -> DevicePollReply: ...

    # hosts
    async def heartbeat(self, beat: Heartbeat) -> Node: ...
    async def renew(self, req: RenewRequest) -> Certs: ...

    # root users, relayed to a leaf
    async def leaf_login(self, req: LeafLoginRequest) -> Certs: ...
    async def trust(self) -> TrustSnapshot: ...
    def watch_trust(self) -> AsyncIterator[TrustSnapshot]: ...
    async def report_tunnels(self, leaves: list[str],
                             info: dict[str, LeafInfo] | None = None) -> None: ...
    async def report_node_tunnels(self, report: NodeTunnels) -> NodeTunnelVerdict: ...
    async def proxy_heartbeat(self, beat: ProxyHeartbeat) -> ProxySet: ...
    async def report_root_tunnels(self, roots: list[RootTunnel]) -> None: ...
    async def put_cluster_access(self, root: str, access: ClusterAccess) -> None: ...
    async def leaf_inventory(self, root: str) -> LeafInventory: ...
    async def post_events(self, events: list[dict[str, Any]]) -> EventsStored: ...
    async def export_events(self, after: str, limit: int) -> EventPage: ...
    async def export_cursor(self, root: str) -> str: ...
    async def set_export_cursor(self, root: str, after: str) -> None: ...
    async def store_leaf_events(self, leaf: str, events: list[Any]) -> EventsStored: ...
    async def put_recording_chunk(self, session_id: str, index: int, data: bytes) -> None: ...
    async def complete_recording(self, session_id: str,
                                 done: RecordingDone) -> dict[str, Any]: ...

    # users and admins
    async def resolve_node(self, target: str) -> Node: ...
    async def list_nodes(self, query: NodeQuery) -> list[dict[str, Any]]: ...
    async def clusters(self) -> list[ClusterInfo]: ...
    async def status(self) -> ClusterStatus: ...
    async def set_password(self, name: str, password: str) -> None: ...
    async def set_totp(self, name: str, enabled: bool) -> str: ...
    async def add_token(self, req: TokenRequest) -> TokenReply: ...
    async def get_resources(self, kind: str, name: str = "") -> list[Resource]: ...
    async def put_resource(self, res: Resource, *, upsert: bool) -> bool: ...
    async def delete_resource(self, kind: str, name: str) -> None: ...
    async def search_events(self, query: EventQuery) -> EventList: ...
    async def list_recordings(self) -> list[dict[str, Any]]: ...
    async def get_recording(self, session_id: str) -> bytes: ...
    async def recording_cluster(self, session_id: str) -> str: ...
