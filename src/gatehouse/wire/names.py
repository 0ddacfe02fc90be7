"""Names and sizes that processes agree on: ALPN protocols on the proxy's single TLS
port, the headers a proxy relays an identity in, the recording upload's chunk, the
size of a page of audit events, and how a node's SSH refusal names its reason."""

from __future__ import annotations

__all__ = [
    "ALPN_HTTP",
    "ALPN_SSH",
    "ALPN_TUNNEL",
    "CLIENT_CERT_HEADER",
    "CLUSTER_HEADER",
    "DENIED_BANNER",
    "EVENT_PAGE",
    "INVENTORY_PATH",
    "MAX_EVENT_PAGE",
    "NODE_HEARTBEAT",
    "RECORDING_CHUNK",
    "RECORDING_TAIL",
    "REMOTE_ADDR_HEADER",
    "TUNNEL_NODE_HEARTBEAT",
    "WATCH_KEEPALIVE",
    "WATCH_SILENCE",
]

ALPN_SSH = "gatehouse-ssh/1"  # a user's SSH session to a node (see wire.dial)
ALPN_TUNNEL = "gatehouse-tunnel/1"  # a reverse tunnel from a leaf proxy or a node
ALPN_HTTP = "http/1.1"  # the web/API front

# The auth writes an empty line on a quiet watch stream this often; a watcher that hears
# nothing for WATCH_SILENCE takes the stream for dead (a peer gone without a FIN, a
# partition) and dials again, instead of deciding with what it last heard forever.
WATCH_KEEPALIVE = 15.0
WATCH_SILENCE = 3 * WATCH_KEEPALIVE

# A direct node heartbeats its presence this often, in seconds, to an auth (its name,
# address and labels; its auth keeps it listed for three of these, auth.server.NODE_TTL).
# Each heartbeat is an HTTPS call on a kept connection (client.api.KEEPALIVE): 1.0-1.7 ms
# of an auth's CPU on PostgreSQL (less under load, when writes go together), 0.6 ms of
# it aiohttp's per-request work (measured with a handler that does nothing). 10,000
# nodes every 25 s cost two auths 26-28 % of a core (bench pg_cluster, with the
# heartbeats coalesced: services/_coalesce.py); every 10 s, 1.65 cores before that.
# Each pause is this ± wire.cadence.JITTER. (Teleport's nodes keep alive every minute.)
NODE_HEARTBEAT = 25.0

# A node on a tunnel heartbeats its presence (its hostname and labels) this often, in
# seconds; its auth keeps it listed for a few of these (auth.server.TUNNEL_NODE_TTL).
# Whether it is online is its proxy's word (the node tunnels each proxy reports, every
# few seconds, in one call for all), so its own heartbeat can be rare: each costs its
# auth a TLS connection and a write (about 5 ms of CPU measured): 10,000 nodes cost it
# 1.9 cores every 10 s, 0.85 every minute, and about 0.17 every 5 minutes.
TUNNEL_NODE_HEARTBEAT = 300.0

# A node refusing a certificate sends this and the reason as an SSH auth banner (RFC 4252
# §5.4) before the failure: gsh puts it in its one line, ssh(1) prints it on stderr.
DENIED_BANNER = "gatehouse: access denied: "

# A proxy relays its client's certificate (DER, base64) and address; the auth
# believes them only from a connection authenticated as a proxy of its cluster.
CLIENT_CERT_HEADER = "X-Gatehouse-Client-Cert"
REMOTE_ADDR_HEADER = "X-Gatehouse-Remote-Addr"
# A root proxy answers this itself, from its leaves' inventories (proxy/inventory.py):
# GET ?search=TEXT&labels=JSON -> the matching leaf nodes the caller may see.
INVENTORY_PATH = "/v1/inventory"
# Which cluster a call is for: another than the proxy's own goes through that leaf's tunnel.
CLUSTER_HEADER = "X-Gatehouse-Cluster"

# The most bytes of a recording one upload call carries: per GiB uploaded, 4 MiB calls
# cost the auth ~4.3 s of CPU and the node ~1.5 s, 1 MiB calls ~5.0 s and ~2.0 s.
RECORDING_CHUNK = 4 << 20
RECORDING_TAIL = 64 << 10  # the most a recording's completion carries of its last bytes

EVENT_PAGE = 1000  # the audit events a search returns unless asked for another number
MAX_EVENT_PAGE = 10_000  # the most one page of a search may hold
