"""The streams a root opens on a leaf's tunnel: SSH to a node, or an API call.

Both act in the name of the root user whose certificate the stream carries: the
leaf's auth resolves only its own registered nodes that the user's mapped roles
select (no open relay), and authorizes a relayed call itself. A stream without
a certificate, or of any other kind, is refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging

from gatehouse._sys.hostport import split_host_port
from gatehouse.clock import Monotonic, wait_for
from gatehouse.errors import GatehouseError
from gatehouse.tunnel.limits import MAX_CALL
from gatehouse.tunnel.mux import MuxStream, read_all, splice_stream
from gatehouse.tunnel.needs import Audit, AuthRelay, NodeResolver

__all__ = ["DIAL_TIMEOUT", "StreamServer"]

log = logging.getLogger(__name__)

DIAL_TIMEOUT = 10.0  # seconds to connect to a node


class StreamServer:
    """Serves each stream the root opens (the tunnel session's ``on_open``)."""

    def __init__(self, nodes: NodeResolver, relay: AuthRelay, audit: Audit,
                 clock: Monotonic) -> None:
        self._nodes = nodes
        self._relay = relay
        self._audit = audit
        self._clock = clock

    async def __call__(self, stream: MuxStream) -> None:
        kind = stream.meta.get("kind")
        if kind == "ssh":
            await self._serve_ssh(stream)
        elif kind == "api":
            await self._serve_api(stream)
        else:
            stream.refuse(f"unknown stream kind {kind!r}")

    async def _serve_ssh(self, stream: MuxStream) -> None:
        target = str(stream.meta.get("target", ""))
        user = str(stream.meta.get("user", ""))
        try:
            der = base64.b64decode(str(stream.meta.get("client_cert", "")), validate=True)
            route = await self._nodes.resolve_node(target, der or None,
                                                   str(stream.meta.get("remote", "")))
            host, port = split_host_port(route.addr)
            reader, writer = await wait_for(self._clock, asyncio.open_connection(host, port),
                                            DIAL_TIMEOUT)
        except (GatehouseError, OSError, TimeoutError, binascii.Error) as exc:
            reason = str(exc) or f"node {target} is unreachable"
            log.warning("tunnel dial refused user=%s target=%s reason=%r", user, target, reason)
            await self._audit("proxy.dial.denied", {"user": user, "message": reason,
                                                    "fields": {"target": target}})
            stream.refuse(reason)
            return
        stream.accept({"host_id": route.host_id})  # what the user's client pins
        await splice_stream(stream, reader, writer)

    async def _serve_api(self, stream: MuxStream) -> None:
        meta = stream.meta
        try:
            der = base64.b64decode(str(meta.get("client_cert", "")), validate=True)
        except binascii.Error:
            stream.refuse("malformed client certificate")
            return
        if not der:  # the root relays only its users' calls; never a stranger's
            log.warning("relayed call refused path=%r remote=%s reason=%r",
                        str(meta.get("path", ""))[:80], meta.get("remote", ""),
                        "no user certificate")
            stream.refuse("a relayed call needs the certificate of a root cluster user")
            return
        stream.accept()
        try:
            body = await read_all(stream, MAX_CALL)
        except GatehouseError as exc:  # stalled, reset, or too large
            log.warning("relayed call dropped path=%r remote=%s reason=%r",
                        str(meta.get("path", ""))[:80], meta.get("remote", ""), str(exc))
            return
        status, reply = await self._relay.relay(
            str(meta.get("method", "GET")), str(meta.get("path", "/")), body, der or None,
            str(meta.get("remote", "")))
        await stream.write(json.dumps(
            {"status": status, "body": base64.b64encode(reply).decode()}).encode())
        stream.write_eof()
