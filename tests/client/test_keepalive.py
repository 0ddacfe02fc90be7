"""A direct node's heartbeats reuse one connection: the API client keeps an idle
connection longer than the longest pause between heartbeats (else each heartbeat would cost its
auth a TLS handshake) and shorter than the servers' default idle timeout (else a
server could close a connection just as the client reuses it)."""

from __future__ import annotations

from gatehouse.client.api import KEEPALIVE
from gatehouse.config import AuthLimits, ProxyLimits
from gatehouse.wire.cadence import JITTER
from gatehouse.wire.names import NODE_HEARTBEAT


def test_a_kept_connection_outlives_a_heartbeat_interval_but_not_the_servers_timeout() -> None:
    assert NODE_HEARTBEAT * (1 + JITTER) < KEEPALIVE
    assert AuthLimits().idle_timeout.total_seconds() > KEEPALIVE
    assert ProxyLimits().idle_timeout.total_seconds() > KEEPALIVE
