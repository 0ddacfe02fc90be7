"""When a node heartbeats: every ``period`` seconds on average, each pause drawn afresh
from (1 ± JITTER) x ``period`` and counted from when the last heartbeat began.

Both halves undo bunching. Nodes that beat together once (started together, or all
failed over to one auth at once) would beat together for ever with a fixed pause; and
a pause counted from a heartbeat's end moves each node on by its answer's delay, so
the nodes of a bunch, answered late together, stay a bunch and gather the nodes just
behind it. With 10,000 nodes on two auths, bunches of a second's worth of heartbeats
every period made the auth's event loop lag 100-300 ms once a period (bench
pg_cluster), and a login that fell in it waited that long.
"""

from __future__ import annotations

import random

__all__ = ["JITTER", "heartbeat_pause"]

JITTER = 0.1  # the mean pause stays the period; the longest is far below a node's TTL


def heartbeat_pause(period: float, *, began: float, now: float, rng: random.Random) -> float:
    """Seconds from ``now`` until the next heartbeat, the last having begun at ``began``
    (both on one monotonic clock). After a heartbeat that took longer than its pause
    (a busy auth, a call that timed out), a random part of JITTER x ``period``: the
    nodes it held up together do not all call again at once."""
    due = began + period * rng.uniform(1 - JITTER, 1 + JITTER) - now
    return due if due > 0 else period * JITTER * rng.random()
