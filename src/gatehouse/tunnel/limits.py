"""What one peer may make a tunnel's far end hold, and for how long (all limits in one place).

A joined leaf is trusted with its own cluster, not with the root's memory (review
finding 3 of the hardening issue: forty event streams that never finished took a
root from 46 to 217 MiB). So each side bounds what its peer can make it keep:

- Streams the peer opens at once (MAX_PEER_STREAMS; a root's tunnel server takes
  MAX_STREAMS_FROM_LEAF): the excess is refused, with the reason, before any state
  is kept for it. A leaf serves its root's users, one stream per SSH session or
  relayed call, hence the generous default; a leaf's own streams on its root carry
  its audit events, one page at a time.
- A message read whole from a stream (an event batch, a relayed call, the reply to
  one, an acknowledgement) has a size limit and must arrive in full within
  MESSAGE_DEADLINE, else the stream is reset. Per tunnel, a root then holds at most
  MAX_STREAMS_FROM_LEAF x (MAX_EVENT_BATCH + the stream window) for a leaf's
  events, for at most MESSAGE_DEADLINE each.
- Tunnels one leaf or tunnel node holds to one proxy (MAX_TUNNELS_PER_PEER): each
  brings its own caps, so past it the oldest is closed. An honest agent holds one,
  two for a moment while it reconnects or finds it reached a proxy twice.
- Control frames (all but DATA) written while the transport is paused, that is while
  the peer does not read what it is sent: a peer that keeps provoking answers (PING,
  OPEN, RESET) without reading them is cut off past MAX_PAUSED_CONTROL bytes, as
  HTTP/2 servers cut off control-frame floods (CVE-2019-9512, -9514, -9515). DATA
  writers wait while the transport is paused (mux.py), so they add at most a frame.
"""

from __future__ import annotations

__all__ = [
    "MAX_ACK",
    "MAX_CALL",
    "MAX_EVENT_BATCH",
    "MAX_INVENTORY",
    "MAX_PAUSED_CONTROL",
    "MAX_PEER_STREAMS",
    "MAX_REPLY",
    "MAX_STREAMS_FROM_LEAF",
    "MAX_TUNNELS_PER_PEER",
    "MESSAGE_DEADLINE",
]

MAX_PEER_STREAMS = 1024  # streams a peer may have open at once on one tunnel
MAX_STREAMS_FROM_LEAF = 4  # ... a leaf on its root (its event forwarder uses one)
MAX_TUNNELS_PER_PEER = 4  # tunnels one leaf (or tunnel node) holds to one proxy at once
MESSAGE_DEADLINE = 30.0  # seconds for a message read whole to arrive (gsh waits 30 s too)
MAX_EVENT_BATCH = 4 << 20  # bytes of a leaf's page of events
MAX_INVENTORY = 16 << 20  # bytes of a leaf's inventory (~40,000 nodes)
MAX_CALL = 1 << 20  # bytes of a relayed call's body
MAX_REPLY = 64 << 20  # bytes of a leaf's reply to a relayed call
MAX_ACK = 1 << 20  # bytes of the root's acknowledgement of a page of events
MAX_PAUSED_CONTROL = 1 << 20  # bytes of control frames written while the peer does not read
