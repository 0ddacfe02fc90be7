"""Which of a cluster's proxies a tunnel agent still lacks a tunnel to, and where its
dial loops dial next (pure: names, addresses and monotonic seconds in, decisions out).

A cluster may run several proxies, and a user lands on any of them (a DNS name or a
load balancer in front of them): each must hold a tunnel of every leaf and tunnel node,
or a user on a proxy without one sees it offline (Teleport issue #1354). So an agent
keeps one tunnel to each proxy. It learns them from the proxies themselves (each tells
its agents the proxies online, tunnel/server.py), and runs one dial loop per proxy.
A loop dials the configured address, which may be a TCP load balancer that picks a
proxy for it; the proxy it reached names itself in its certificate. A tunnel to a
proxy already held is redundant and closed at once, and the loop dials again after a
jittered back-off; after DIRECT_AFTER dials in a row that gave no new tunnel, every
other dial goes to a missing proxy's own advertised address instead (when it is not
the configured one), so that an agent reaches every proxy even when the balancer keeps
picking the same one.

Each announcement says when the auth read the proxies from its registry (``as_of``,
the auth's wall clock): an agent keeps the registry's newest word, so a proxy that
lost its auth (its list goes stale) or was removed with `gatectl rm proxy/NAME` (its
heartbeats are refused) cannot bring back, by announcing late, a proxy the registry
has since dropped: a removed or expired proxy is not dialed.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatehouse._sys.hostport import split_host_port
from gatehouse.errors import BadParameter

__all__ = ["DIRECT_AFTER", "FIRST_BACKOFF", "HEALTHY_AFTER", "MAX_BACKOFF", "MAX_PROXIES",
           "Announcement", "Backoff", "Coverage", "Redial", "parse_announcement"]

DIRECT_AFTER = 2  # dials without a new tunnel before a loop also dials proxies directly
MAX_PROXIES = 64  # proxies an announcement may name: one dial loop each
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
# A dial and the tunnel it made that lasted this long together start the backoff over:
# a dial that waited out its timeout (a proxy silently cut off) is no burst of redials,
# so the next follows it at once.
HEALTHY_AFTER = 5.0


class Backoff:
    """Delays between redials: FIRST_BACKOFF doubling up to MAX_BACKOFF, each scaled by
    a random factor in [0.5, 1.5) so that agents cut off together do not redial together."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._base = FIRST_BACKOFF

    def next(self) -> float:
        delay = self._base * self._rng.uniform(0.5, 1.5)
        self._base = min(self._base * 2, MAX_BACKOFF)
        return delay

    def reset(self) -> None:
        self._base = FIRST_BACKOFF


class Redial:
    """When one dial loop dials again, and how many dials in a row gave it no new
    tunnel (``misses``: a failed dial, or one that reached a proxy already held)."""

    def __init__(self, rng: random.Random) -> None:
        self._backoff = Backoff(rng)
        self.misses = 0

    def after(self, started: float, now: float, *, kept: bool) -> float:
        """Seconds to wait after a dial made at ``started`` (and the tunnel it kept, if
        ``kept``, until it closed) ended at ``now``."""
        self.misses = 0 if kept else self.misses + 1
        if now - started > HEALTHY_AFTER:
            self._backoff.reset()
        return self._backoff.next()


@dataclass(frozen=True)
class Announcement:
    """The proxies online (host id -> address) as the registry listed them at ``as_of``
    (None: a proxy of a version that does not say)."""

    proxies: Mapping[str, str]
    as_of: dt.datetime | None = None


class Coverage:
    """The proxies announced (host id -> address), those held, and what a loop does next.
    ``seed``: the configured address."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self._announced: dict[str, str] = {}
        self._as_of: dt.datetime | None = None
        self._held: set[str] = set()

    def announce(self, news: Announcement) -> bool:
        """The proxies online, as a proxy told it: taken (True) unless the registry's word
        it carries is older than one already taken (an undated word is taken only while
        no dated one was)."""
        if self._as_of is not None and (news.as_of is None or news.as_of < self._as_of):
            return False
        self._announced = dict(news.proxies)
        self._as_of = news.as_of
        return True

    def loops(self) -> int:
        """How many dial loops to run: one per proxy announced or held (a held proxy no
        longer announced keeps its tunnel while it lasts); one while none is known."""
        return max(1, len(self._announced.keys() | self._held))

    def missing(self) -> list[str]:
        """The proxies announced that no tunnel reaches."""
        return sorted(self._announced.keys() - self._held)

    def take(self, proxy: str) -> bool:
        """A dial reached ``proxy``: True to keep the tunnel (it is held from now), False
        when it is redundant (a tunnel to that proxy is held): close it."""
        if proxy in self._held:
            return False
        self._held.add(proxy)
        return True

    def lost(self, proxy: str) -> None:
        """The tunnel to ``proxy`` closed."""
        self._held.discard(proxy)

    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def address(self, misses: int) -> str:
        """Where a loop dials after ``misses`` dials in a row without a new tunnel: the
        configured address, and past DIRECT_AFTER misses every other dial a missing
        proxy's own address, each in turn."""
        direct = [addr for name in self.missing()
                  if (addr := self._announced[name]) != self.seed]
        extra = misses - DIRECT_AFTER
        if extra < 0 or extra % 2 == 1 or not direct:
            return self.seed
        return direct[(extra // 2) % len(direct)]


def parse_announcement(meta: Mapping[str, Any]) -> Announcement:
    """The proxies a "proxies" stream's OPEN names (host id -> host:port) and when the
    registry listed them; BadParameter if malformed or over MAX_PROXIES."""
    proxies = meta.get("proxies")
    if not isinstance(proxies, dict):
        raise BadParameter("an announcement of proxies needs a 'proxies' object")
    if len(proxies) > MAX_PROXIES:
        raise BadParameter(f"an announcement names {len(proxies)} proxies, over {MAX_PROXIES}")
    out = {}
    for name, addr in proxies.items():
        if not isinstance(addr, str) or not name or len(name) > 200:
            raise BadParameter(f"bad proxy in an announcement: {str(name)[:80]!r}")
        split_host_port(addr)
        out[name] = addr
    as_of = meta.get("as_of")
    if as_of is None:
        return Announcement(out)
    try:
        when = dt.datetime.fromisoformat(as_of) if isinstance(as_of, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadParameter(f"bad time in an announcement of proxies: {str(as_of)[:80]!r}")
    return Announcement(out, when)
