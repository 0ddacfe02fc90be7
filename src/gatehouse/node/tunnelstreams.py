"""What a tunnel-mode node serves on the streams its proxy opens: its own SSH server,
and nothing else.

The proxy opens one stream per user connection. The node takes only "ssh" streams and
serves each with its SSH server, the stream as the connection's transport
(tunnel/streamtransport.py): it dials nothing and listens nowhere, so its tunnel relays
to no other address, whatever a stream asks for (ARCHITECTURE §4, no open relay). The
user's SSH session runs end to end with this server; the proxy sees only ciphertext.
"""

from __future__ import annotations

import logging

from gatehouse.node.sshserver import SSHFront
from gatehouse.tunnel.mux import MuxStream
from gatehouse.tunnel.streamtransport import StreamTransport

__all__ = ["TunnelStreams"]

log = logging.getLogger(__name__)


class TunnelStreams:
    """The ``on_open`` of a node's tunnel: each stream is one SSH connection to ``front``."""

    def __init__(self, front: SSHFront, host_id: str) -> None:
        self._front = front
        self._host_id = host_id

    async def __call__(self, stream: MuxStream) -> None:
        kind = stream.meta.get("kind")
        if kind != "ssh":
            reason = f"a node serves only its SSH server on its tunnel, not {str(kind)[:40]!r}"
            log.warning("tunnel stream refused kind=%r reason=%r", str(kind)[:40], reason)
            stream.refuse(reason)
            return
        remote = str(stream.meta.get("remote", ""))[:100]
        stream.accept({"host_id": self._host_id})  # what the user's client pins
        await StreamTransport(stream, self._front.over(remote)).run()
