"""The streams a root opens on a leaf's tunnel: SSH to a node (at its address, or over
the node's own tunnel to this leaf's proxy), an API call, or the root's word on its
cluster labels (``access``: this leaf's labels and the root roles' cluster_labels,
handed to this leaf's auth, which enforces them for the root's users).

The first two act in the name of the root user whose certificate the stream carries, and
only if this leaf takes that certificate from this root (relaycheck.py): one
StreamServer per root's tunnel. The leaf's auth then resolves only its own
registered nodes that the user's mapped roles select (no open relay), and
authorizes a relayed call itself. Any other stream is refused; every refusal is
logged and audited with its reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable

from gatehouse import __version__
from gatehouse._sys.hostport import split_host_port
from gatehouse.clock import Clock, Monotonic, wait_for
from gatehouse.errors import AccessDenied, GatehouseError
from gatehouse.pki import x509
from gatehouse.tunnel.limits import MAX_CALL
from gatehouse.tunnel.mux import MuxStream, read_all, splice_stream, splice_streams
from gatehouse.tunnel.needs import Audit, AuthRelay, NodeResolver, OpenNode, StoreAccess
from gatehouse.tunnel.relaycheck import check_relayed, claimed_user
from gatehouse.types.cluster_access import ClusterAccess
from gatehouse.wire.authapi import LeafInfo
from gatehouse.wire.trust import TrustSnapshot

__all__ = ["DIAL_TIMEOUT", "StreamServer"]

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 10.0  # seconds to connect to a node


class StreamServer:
    """Serves each stream ``root`` opens (its tunnel session's ``on_open``)."""

    def __init__(self, root: str, nodes: NodeResolver, relay: AuthRelay, audit: Audit, *,
                 trust: Callable[[], TrustSnapshot], clock: Clock, timer: Monotonic,
                 open_node: OpenNode, store_access: StoreAccess, proxy_addr: str = "") -> None:
        self._root = root
        self._proxy_addr = proxy_addr  # this proxy's public_addr, told to the root ("" = none)
        self._store_access = store_access
        self._nodes = nodes
        self._open_node = open_node
        self._relay = relay
        self._audit = audit
        self._trust = trust
        self._clock = clock
        self._timer = timer

    async def __call__(self, stream: MuxStream) -> None:
        kind = stream.meta.get("kind")
        if kind == "access":  # the tunnel itself says it comes from the root
            await self._serve_access(stream)
            return
        if kind not in ("ssh", "api"):
            stream.refuse(f"unknown stream kind {kind!r}")
            return
        target = str(stream.meta.get("target" if kind == "ssh" else "path", ""))
        remote = str(stream.meta.get("remote", ""))
        der = b""
        try:
            der = base64.b64decode(str(stream.meta.get("client_cert", "")), validate=True)
            user = check_relayed(der, self._root, self._trust(), self._clock.now())
        except (binascii.Error, AccessDenied) as exc:
            reason = str(exc) if isinstance(exc, AccessDenied) else "malformed client certificate"
            await self._refuse(stream, claimed_user(der), target, remote, reason)
            return
        if kind == "ssh":
            await self._serve_ssh(stream, der, user, target, remote)
        else:
            await self._serve_api(stream, der)

    async def _refuse(self, stream: MuxStream, user: str, target: str, remote: str,
                      reason: str) -> None:
        kind, target = stream.meta.get("kind"), target[:200]
        log.warning("tunnel stream refused root=%s kind=%s user=%s target=%r remote=%s "
                    "reason=%r", self._root, kind, user, target, remote, reason)
        await self._audit("proxy.dial.denied", {
            "user": user, "remote_addr": remote, "message": reason,
            "fields": {"root": self._root, "kind": kind, "target": target}})
        stream.refuse(reason)

    async def _serve_ssh(self, stream: MuxStream, der: bytes, user: x509.Identity,
                         target: str, remote: str) -> None:
        try:
            route = await self._nodes.resolve_node(target, der, remote)
        except GatehouseError as exc:
            await self._refuse(stream, user.name, target, remote, str(exc))
            return
        if route.tunnel:  # a tunnel node of this leaf: over its own tunnel to this proxy
            try:
                node = await self._open_node(route.host_id, {
                    "kind": "ssh", "target": target, "user": user.name, "remote": remote})
            except GatehouseError as exc:
                await self._refuse(stream, user.name, target, remote, str(exc))
                return
            stream.accept({"host_id": route.host_id})
            await splice_streams(stream, node)
            return
        try:
            host, port = split_host_port(route.addr)
            reader, writer = await wait_for(self._timer, asyncio.open_connection(host, port),
                                            DIAL_TIMEOUT)
        except (GatehouseError, OSError, TimeoutError):  # said as proxy/sshproxy.py says it
            await self._refuse(stream, user.name, target, remote,
                               f"node {target} at {route.addr} is unreachable")
            return
        stream.accept({"host_id": route.host_id})  # what the user's client pins
        await splice_stream(stream, reader, writer)

    async def _serve_access(self, stream: MuxStream) -> None:
        """Hand the root's word on its cluster labels to this cluster's auth; answer
        whether it is kept (the root sends it again until it is), and what this cluster
        says of itself (its session recording and version, for `gatectl get rc`; its
        proxy's public address, where the root's users may come while the root is down)."""
        stream.accept()
        reply: dict[str, object]
        try:
            access = ClusterAccess.model_validate_json(await read_all(stream, MAX_CALL))
            await self._store_access(self._root, access)
            leaf = LeafInfo(session_recording="node" if self._trust().record_sessions
                            else "off", version=__version__, proxy_addr=self._proxy_addr)
            reply = {"ok": True, "leaf": leaf.model_dump()}
        except (GatehouseError, ValueError) as exc:  # ValueError: malformed (pydantic)
            log.warning("cluster labels from root %s not kept: %s", self._root, exc)
            reply = {"ok": False, "error": str(exc)[:500]}
        await stream.write(json.dumps(reply).encode())
        stream.write_eof()

    async def _serve_api(self, stream: MuxStream, der: bytes) -> None:
        meta = stream.meta
        stream.accept()
        try:
            body = await read_all(stream, MAX_CALL)
        except GatehouseError as exc:  # stalled, reset, or too large
            log.warning("relayed call dropped path=%r remote=%s reason=%r",
                        str(meta.get("path", ""))[:80], meta.get("remote", ""), str(exc))
            return
        status, reply = await self._relay.relay(
            str(meta.get("method", "GET")), str(meta.get("path", "/")), body, der,
            str(meta.get("remote", "")))
        await stream.write(json.dumps(
            {"status": status, "body": base64.b64encode(reply).decode()}).encode())
        stream.write_eof()
