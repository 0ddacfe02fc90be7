"""What one peer may make a tunnel's far end hold, and for how long (all limits in one place).

A joined leaf is trusted with its own cluster, not with the root's memory (review
finding 3 of the hardening issue: forty event streams that never finished took a
root from 46 to 217 MiB). So each side bounds what its peer can make it keep:

- Streams the peer opens at once (MAX_PEER_STREAMS; a root's tunnel server takes
  MAX_STREAMS_FROM_LEAF): the excess is refused, with the reason, before any state
  is kept for it. A leaf serves its root's users, one stream per SSH session or
  relayed call, hence the generous default; a leaf's own streams on its root carry
  its audit events, one page at a time.
- Control frames (all but DATA) written while the transport is paused, that is while
  the peer does not read what it is sent: a peer that keeps provoking answers (PING,
  OPEN, RESET) without reading them is cut off past MAX_PAUSED_CONTROL bytes, as
  HTTP/2 servers cut off control-frame floods (CVE-2019-9512, -9514, -9515). DATA
  writers wait while the transport is paused (mux.py), so they add at most a frame.
"""

from __future__ import annotations

__all__ = [
    "MAX_PAUSED_CONTROL",
    "MAX_PEER_STREAMS",
    "MAX_STREAMS_FROM_LEAF",
]

MAX_PEER_STREAMS = 1024  # streams a peer may have open at once on one tunnel
MAX_STREAMS_FROM_LEAF = 4  # ... a leaf on its root (its event forwarder uses one)
MAX_PAUSED_CONTROL = 1 << 20  # bytes of control frames written while the peer does not read
