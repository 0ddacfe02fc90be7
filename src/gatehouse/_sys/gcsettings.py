"""The garbage collector of a long-running service process, once it has started.

With CPython's defaults (700, 10, 10) an auth heartbeated by 5,000 nodes (bench
pg_cluster: two auths on PostgreSQL, 10,000 nodes every 25 s) made a full collection
every 3-5 s, each 320-490 ms long and freeing nothing: a young collection came every
couple of milliseconds, so the objects of every request still in flight were promoted,
and the old generation (~400,000 objects, mostly the nodes' kept-alive connections)
filled with them. Logins waited behind those pauses (p99 over 2 s). ``settle()``
freezes what start-up made (modules, keys, configuration: never garbage, never
scanned again) and lets the young generation hold YOUNG objects, so that a request's
objects die before a collection sees them. Full collections became rare; with the
certificate cache of auth.identify sized for every node, the auths' CPU for those
heartbeats fell from 47 % to 27 % of a core and the login p99 from 2.2 s to 0.6 s.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG", "settle"]

YOUNG = 20_000  # allocations between young collections (CPython's default: 700)


def settle() -> None:
    """Call once the process' services are up."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
