"""One TLS port, several protocols: hand each connection to the handler its ALPN names.

asyncio calls the application protocol's connection_made after the TLS
handshake, so the negotiated ALPN protocol and the client's certificate are known
there; the router then swaps itself out for the chosen handler's protocol on the same
transport, counted (proxy.anonymous) when the client showed no certificate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from gatehouse.pki.tls import peer_der
from gatehouse.proxy.anonymous import AnonymousConnections, Counted

__all__ = ["ALPNRouter"]

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[], asyncio.Protocol]


class ALPNRouter(asyncio.Protocol):
    def __init__(self, handlers: Mapping[str, ProtocolFactory], default: str,
                 anonymous: AnonymousConnections) -> None:
        self._handlers = handlers
        self._default = default
        self._anonymous = anonymous

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = (ssl_object.selected_alpn_protocol() if ssl_object else None) or self._default
        factory = self._handlers.get(alpn)
        if factory is None:
            log.warning("closing connection: unsupported ALPN protocol %r", alpn)
            transport.close()
            return
        protocol: asyncio.Protocol
        if peer_der(ssl_object):  # verified by the TLS handshake against the proxy's CAs
            protocol = factory()
        else:
            release = self._anonymous.admit(transport)
            if release is None:
                return
            protocol = Counted(factory(), release)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced before data
        raise RuntimeError("ALPN router received data before routing")
