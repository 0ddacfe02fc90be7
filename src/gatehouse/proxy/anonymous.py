"""A TLS port's count of connections without a client certificate (the proxy's and the
auth's: config.ProxyLimits, config.AuthLimits): a source may hold so many, all sources
so many; past that a new one is closed at once.

A stranger's connections would otherwise be bounded only by the process's file
descriptors. Connections with a certificate the proxy's CAs verified are not counted
(their holder is known); the TLS handshake before either is bounded by its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from gatehouse.clock import Monotonic
from gatehouse.ratelimit import ConnectionCounts, source_of

__all__ = ["AnonymousConnections", "Counted"]

log = logging.getLogger(__name__)

LOG_EVERY = 1.0  # seconds between lines about closed connections (a flood is one line each)


class AnonymousConnections:
    def __init__(self, per_source: int, total: int, timer: Monotonic) -> None:
        self._counts = ConnectionCounts(per_source, total)
        self._timer = timer
        self._closed = 0  # since the last line logged
        self._logged = float("-inf")

    def __len__(self) -> int:
        return len(self._counts)

    def admit(self, transport: asyncio.BaseTransport) -> Callable[[], None] | None:
        """Count ``transport``'s connection: the call that uncounts it when it closes, or
        None when it is one too many (then it is closed)."""
        peer = transport.get_extra_info("peername")
        source = source_of(str(peer[0]) if peer else "")
        refused = self._counts.admit(source)
        if not refused:
            return lambda: self._counts.release(source)
        # A cast, not an isinstance check: uvloop's TLS transport is not a subclass.
        cast(asyncio.Transport, transport).abort()
        self._closed += 1
        now = self._timer.monotonic()
        if now - self._logged >= LOG_EVERY:
            log.warning("closed connections without a certificate closed=%d source=%s "
                        "reason=%r", self._closed, source, refused)
            self._closed, self._logged = 0, now
        return None


class Counted(asyncio.Protocol):
    """``inner`` as it is, calling ``release`` once when its connection is lost."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()
