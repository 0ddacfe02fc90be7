"""The one-line handshake that opens a forwarded stream (pure).

After TLS (ALPN ``gatehouse-ssh/1``) the client sends one JSON line naming its
target; the proxy answers one JSON line, and from then on the stream carries
the user's SSH session bytes untouched, end to end with the node. The answer names
the host id of the node the proxy resolved and dialed: the client then accepts only
that host's certificate (another host's certificate may carry the same node name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gatehouse.errors import BadParameter

__all__ = ["MAX_LINE", "DialReply", "DialRequest", "NodeRoute"]

MAX_LINE = 4096


@dataclass(frozen=True)
class DialRequest:
    target: str  # node name, host id, or host:port of a registered node
    cluster: str = ""  # "" = the proxy's own cluster
    port: int = 0  # 0 = the node's advertised port

    def encode(self) -> bytes:
        body = {"target": self.target, "cluster": self.cluster, "port": self.port}
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> DialRequest:
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise BadParameter("dial request is not one line of at most 4096 bytes")
        try:
            raw = json.loads(line)
            target, cluster, port = raw["target"], raw.get("cluster", ""), raw.get("port", 0)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise BadParameter(f"malformed dial request: {type(exc).__name__}") from exc
        if not isinstance(target, str) or not target or not isinstance(cluster, str):
            raise BadParameter("dial request needs a target and a cluster name")
        if type(port) is not int or not 0 <= port <= 65535:
            raise BadParameter(f"dial request has a bad port {port!r}")
        return cls(target=target, cluster=cluster, port=port)


@dataclass(frozen=True)
class NodeRoute:
    """A node a proxy may dial for a user: where it is, and which host it is."""

    addr: str  # host:port; "" for a node on a tunnel
    host_id: str
    tunnel: bool = False  # reached over the node's reverse tunnel (by host_id)


@dataclass(frozen=True)
class DialReply:
    error: str = ""  # "" = connected; bytes that follow belong to the session
    host_id: str = ""  # the node dialed; "" from a proxy older than this field

    @property
    def ok(self) -> bool:
        return not self.error

    def encode(self) -> bytes:
        body: dict[str, object] = {"ok": self.ok, "error": self.error}
        if self.ok:
            body["host_id"] = self.host_id
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> DialReply:
        try:
            raw = json.loads(line)
            ok, error, host_id = raw["ok"], raw.get("error") or "", raw.get("host_id") or ""
            if not isinstance(ok, bool) or not isinstance(error, str) \
                    or not isinstance(host_id, str):
                raise TypeError("ok must be a boolean, error and host_id strings")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise BadParameter(f"malformed reply from proxy: {exc}") from exc
        if not ok:
            return cls(error=error or "proxy refused the connection")
        return cls(host_id=host_id)
