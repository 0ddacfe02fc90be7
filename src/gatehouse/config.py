"""The gatehouse.yaml config: one source of truth, every default in this module."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from gatehouse._sys.hostport import dial_addr, split_host_port
from gatehouse.errors import BadParameter
from gatehouse.types.problems import describe_problems
from gatehouse.types.resource import Duration, LabelKey
from gatehouse.types.yaml_io import load_document

__all__ = [
    "DEFAULT_AUDIT_RETENTION",
    "DEFAULT_AUTH_ADDR",
    "DEFAULT_PROXY_ADDR",
    "DEFAULT_SSH_ADDR",
    "AuthLimits",
    "AuthSection",
    "Config",
    "GatehouseSection",
    "ProxyLimits",
    "ProxySection",
    "SSHSection",
    "StorageType",
    "load_config",
]

DEFAULT_AUTH_ADDR = "127.0.0.1:3025"
DEFAULT_PROXY_ADDR = "127.0.0.1:3080"
DEFAULT_SSH_ADDR = "127.0.0.1:3022"
DEFAULT_AUDIT_RETENTION = dt.timedelta(days=365)
# The one directory whose files an SSO connector may name (client_secret_file, ca_file).
DEFAULT_CONNECTOR_FILES_DIR = "/etc/gatehouse"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_addr(value: str | None) -> str | None:
    if value is not None:
        try:
            split_host_port(value)
        except BadParameter as exc:
            raise ValueError(str(exc)) from None  # pydantic adds where in the file
    return value


# The backends `gatehouse start` can open (gatehouse.backend.open_backend names them):
# a state that must outlive the process, so not "memory".
StorageType = Literal["sqlite", "postgres", "etcd"]


class Storage(_Strict):
    type: StorageType = "sqlite"
    path: str | None = None  # sqlite; default: <data_dir>/backend.sqlite
    conn_string: str | None = None  # postgres: postgresql://USER@HOST:PORT/DATABASE?...
    # etcd: its client URLs, this cluster's key prefix (default /gatehouse/<cluster_name>),
    # TLS files, and the PostgreSQL that holds the audit log when several auths share it.
    peers: list[str] = Field(default_factory=list)
    prefix: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    audit_conn_string: str | None = None

    @field_validator("conn_string", "audit_conn_string")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a URL such as postgresql://USER@HOST:PORT/DATABASE")
        return value

    @field_validator("peers")
    @classmethod
    def _urls(cls, peers: list[str]) -> list[str]:
        for peer in peers:
            if not peer.startswith(("http://", "https://")):
                raise ValueError(f"{peer!r} is not an http:// or https:// URL")
        return peers

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"{prefix!r}: expected a path like /gatehouse/CLUSTER "
                             "(starting with /, not ending with /)")
        return prefix

    @model_validator(mode="after")
    def _settings_of_its_type(self) -> Storage:
        if self.type == "postgres" and self.conn_string is None:
            raise ValueError("type postgres needs conn_string "
                             "(postgresql://USER@HOST:PORT/DATABASE)")
        if self.type != "sqlite" and self.path is not None:
            raise ValueError(f"path is for type sqlite; {self.type} does not take it")
        if self.type != "postgres" and self.conn_string is not None:
            raise ValueError("conn_string is for type postgres")
        if self.type != "etcd" and self.audit_conn_string is not None:
            raise ValueError("audit_conn_string is for type etcd (postgres keeps its audit "
                             "log in conn_string's database)")
        if self.type == "etcd" and not self.peers:
            raise ValueError("type etcd needs peers: [https://HOST:2379, ...]")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class GatehouseSection(_Strict):
    nodename: str = Field(default_factory=socket.gethostname)
    data_dir: str = "./gatehouse-data"
    join_token: str | None = None
    proxy_server: str | None = None
    auth_server: str | None = None
    # Several auths of one cluster (on one shared backend): calls go to the one that
    # last answered, and to the next when it cannot be connected to (client.failover).
    auth_servers: list[str] = Field(default_factory=list)
    storage: Storage = Field(default_factory=Storage)
    # Health, readiness and Prometheus metrics over plain HTTP (process.diag); off when unset.
    diag_addr: str | None = None

    _addrs = field_validator("proxy_server", "auth_server", "diag_addr")(_check_addr)

    @field_validator("auth_servers")
    @classmethod
    def _check_auth_servers(cls, addrs: list[str]) -> list[str]:
        for addr in addrs:
            _check_addr(addr)
        if len(set(addrs)) != len(addrs):
            raise ValueError("an address is listed twice")
        return addrs

    @model_validator(mode="after")
    def _one_auth_key(self) -> GatehouseSection:
        if self.auth_server and self.auth_servers:
            raise ValueError("auth_server and auth_servers are two ways of saying the "
                             "same: list every auth in auth_servers")
        return self

    def auth_addrs(self) -> list[str]:
        """Where a process without an auth of its own reaches one: the auths listed,
        else the proxy (which relays to its auth); empty if nothing is set."""
        if self.auth_servers:
            return list(self.auth_servers)
        server = self.auth_server or self.proxy_server
        return [server] if server else []


# "node": the cluster's nodes record every session; "off": they record none.
SessionRecording = Literal["node", "off"]


class AuthLimits(_Strict):
    """What a source address (an IPv4 address, an IPv6 /64) may cost the auth.

    Each login and join attempt takes one of the source's tokens, and so does each
    call without a certificate that is refused (401, 403); with none left, those
    calls and every other call without a certificate get 429 and Retry-After. Calls
    with a certificate are never refused for this (their caller is known).
    """

    attempts_burst: int = Field(default=30, ge=1)
    attempts_per_minute: int = Field(default=30, ge=1)
    tracked_sources: int = Field(default=65536, ge=1)  # buckets kept (least recent dropped)
    # A failure without a certificate (login, join, refusal) from a source is audited at
    # once; its repeats within the window become one event with a count.
    failure_window: Duration = dt.timedelta(minutes=1)
    failure_sources: int = Field(default=10000, ge=1)  # windows open at once
    # An HTTPS connection to the auth's port that has sent no complete request head this
    # long after it opened or after its last response is closed.
    idle_timeout: Duration = dt.timedelta(seconds=30)
    handshake_timeout: Duration = dt.timedelta(seconds=10)  # the TLS handshake on its port
    # Connections without a client certificate open at once on its port, per source and
    # in all (as ProxyLimits'); certificate holders (proxies, nodes, admins) are not counted.
    anonymous_per_source: int = Field(default=64, ge=1)
    anonymous_total: int = Field(default=4096, ge=1)


def _zero_or_duration(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """0 (or "0"): forever, as zero; else a positive duration, as Duration takes it."""
    return dt.timedelta(0) if value in (0, "0") else handler(value)


KeepFor = Annotated[Duration, WrapValidator(_zero_or_duration)]


class AuthSection(_Strict):
    enabled: bool = False
    cluster_name: str = "gatehouse.local"
    listen_addr: str = DEFAULT_AUTH_ADDR
    session_recording: SessionRecording = "node"
    # Where a joining node may say it is reached besides the address it joins from
    # (nodes behind NAT); none by default (auth.nodeaddr).
    node_address_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = \
        Field(default_factory=list)
    # Audit events expire this long after they are stored.
    audit_retention: Duration = DEFAULT_AUDIT_RETENTION
    # A remote cluster offline longer than this is removed (audited); 0 keeps them all.
    remote_cluster_offline_ttl: KeepFor = dt.timedelta(0)
    limits: AuthLimits = Field(default_factory=AuthLimits)
    # The only directory whose files an SSO connector may name: the connector's author
    # chooses the paths, the auth reads them (auth.sso.connector_file).
    connector_files_dir: str = DEFAULT_CONNECTOR_FILES_DIR

    _addrs = field_validator("listen_addr")(_check_addr)

    @field_validator("connector_files_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r}: expected an absolute path (a directory)")
        return value

    @field_validator("node_address_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if not isinstance(value, list):
            return value  # pydantic says what was expected
        networks = []
        for item in value:
            try:
                networks.append(ipaddress.ip_network(str(item)))
            except ValueError as exc:
                raise ValueError(f"{item!r} is not a network such as 10.1.0.0/16 ({exc})") \
                    from None
        return networks


class ProxyLimits(_Strict):
    """What a stranger's connections may hold on the proxy's port.

    A connection without a client certificate (one that the proxy's CAs verify)
    counts as anonymous from its TLS handshake until it closes; a source may hold
    ``anonymous_per_source`` of them, all sources ``anonymous_total``: past that the
    proxy closes a new one at once. Connections with a certificate are not counted
    (their holder is known; the benchmark's 10,000 leaf tunnels come from one address).
    """

    handshake_timeout: Duration = dt.timedelta(seconds=10)  # TLS, then the SSH dial line
    # An HTTPS connection that has sent no complete request head this long after its
    # handshake or its last response is closed (slow or idle clients).
    idle_timeout: Duration = dt.timedelta(seconds=30)
    anonymous_per_source: int = Field(default=64, ge=1)
    anonymous_total: int = Field(default=4096, ge=1)


class ProxySection(_Strict):
    enabled: bool = False
    listen_addr: str = DEFAULT_PROXY_ADDR
    public_addr: str | None = None
    limits: ProxyLimits = Field(default_factory=ProxyLimits)

    _addrs = field_validator("listen_addr", "public_addr")(_check_addr)


class SSHSection(_Strict):
    enabled: bool = False
    listen_addr: str = DEFAULT_SSH_ADDR
    public_addr: str | None = None
    labels: dict[LabelKey, str] = Field(default_factory=dict)

    _addrs = field_validator("listen_addr", "public_addr")(_check_addr)

    def advertised_addr(self) -> str:
        """The address the proxy dials: public_addr, else listen_addr (0.0.0.0 -> 127.0.0.1)."""
        return self.public_addr or dial_addr(self.listen_addr)


class Config(_Strict):
    version: Literal["v1"] = "v1"
    gatehouse: GatehouseSection = Field(default_factory=GatehouseSection)
    auth_service: AuthSection = Field(default_factory=AuthSection)
    proxy_service: ProxySection = Field(default_factory=ProxySection)
    ssh_service: SSHSection = Field(default_factory=SSHSection)

    @property
    def data_dir(self) -> Path:
        return Path(self.gatehouse.data_dir).absolute()

    @classmethod
    def single_node(cls) -> Config:
        """What `gatehouse start` runs without a config: everything, on loopback."""
        return cls(
            auth_service=AuthSection(enabled=True),
            proxy_service=ProxySection(enabled=True),
            ssh_service=SSHSection(enabled=True),
        )

    def node_tunnel(self) -> str:
        """The proxy a tunnel-mode SSH service dials ("" in direct mode): a node that
        joins through ``gatehouse.proxy_server`` and sets neither ``ssh_service.listen_addr``
        nor ``public_addr`` listens nowhere and holds a reverse tunnel to that proxy."""
        ssh = self.ssh_service
        if not ssh.enabled or self.auth_service.enabled or not self.gatehouse.proxy_server:
            return ""
        if {"listen_addr", "public_addr"} & ssh.model_fields_set:
            return ""
        return self.gatehouse.proxy_server

    def enabled_services(self) -> list[str]:
        return [
            name
            for name, svc in (
                ("auth", self.auth_service),
                ("proxy", self.proxy_service),
                ("ssh", self.ssh_service),
            )
            if svc.enabled
        ]


def load_config(path: Path) -> Config:
    """Read and validate a config file; any mistake is one BadParameter line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadParameter(f"cannot read config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise BadParameter(f"cannot read config {path}: it is not UTF-8 text") from None
    try:
        raw = load_document(text) or {}
    except BadParameter as exc:
        raise BadParameter(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise BadParameter(f"{path}: expected a mapping at the top level")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise BadParameter(f"{path}: {describe_problems(exc, noun='key')}") from None
    if not cfg.enabled_services():
        raise BadParameter(
            f"{path}: no service is enabled (auth_service, proxy_service, ssh_service)"
        )
    if not cfg.auth_service.enabled and not (
        cfg.gatehouse.auth_addrs()
    ):
        raise BadParameter(
            f"{path}: without auth_service, gatehouse.proxy_server or gatehouse.auth_servers "
            "must say where to join"
        )
    return cfg
