"""What one source address may cost: a budget of attempts (token buckets) and a count of
open connections. Pure decisions over plain numbers; the callers own the clock.

A source is an IPv4 address, or an IPv6 /64 (one host commonly holds a whole /64,
as RFC 6177 recommends assigning it, so its addresses are one source). Both tables
are bounded, so that the limits cannot themselves be used to exhaust memory.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

__all__ = ["ConnectionCounts", "RateLimiter", "retry_after", "source_of"]


def source_of(addr: str) -> str:
    """The source an address counts as: ``"ip"``, ``"ip:port"`` or ``"[ip6]:port"`` give
    the IPv4 address or the IPv6 /64; anything else (an in-process caller) is itself."""
    host = addr
    if addr.startswith("["):
        host = addr[1:addr.find("]")]
    elif addr.count(":") == 1:
        host = addr.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """A token bucket per source: ``burst`` tokens at most, ``per_minute`` added back.

    At most ``sources`` buckets are kept: past that, the least recently used one is
    dropped, most likely refilled by then (if not, that source starts again with a
    full budget: a stranger needs more than ``sources`` addresses in use at once for
    that, and still spends each one's burst).
    """

    def __init__(self, burst: int, per_minute: float, sources: int) -> None:
        if burst < 1 or per_minute <= 0 or sources < 1:
            raise ValueError("burst, per_minute and sources must be positive")
        self._burst = float(burst)
        self._rate = per_minute / 60.0  # tokens per second
        self._sources = sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, source: str, now: float) -> float:
        held = self._buckets.get(source)
        if held is None:
            return self._burst
        tokens, at = held
        # A clock that stepped back adds nothing (and takes nothing away).
        return min(self._burst, tokens + max(0.0, now - at) * self._rate)

    def _keep(self, source: str, tokens: float, now: float) -> None:
        self._buckets[source] = (tokens, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self._sources:
            self._buckets.popitem(last=False)

    def _wait(self, tokens: float) -> float:
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._rate

    def wait(self, source: str, now: float) -> float:
        """Seconds until ``source`` has a token (0: it has one now); takes nothing."""
        return self._wait(self._tokens(source, now))

    def take(self, source: str, now: float) -> float:
        """Take a token: 0 when taken, else the seconds until one is there (none taken)."""
        tokens = self._tokens(source, now)
        if tokens < 1.0:
            return self._wait(tokens)
        self._keep(source, tokens - 1.0, now)
        return 0.0

    def charge(self, source: str, now: float) -> None:
        """Take a token if there is one: for a refusal already made."""
        tokens = self._tokens(source, now)
        self._keep(source, max(0.0, tokens - 1.0), now)


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (RFC 9110 §10.2.3): never 0."""
    return max(1, math.ceil(seconds))


class ConnectionCounts:
    """Open connections per source, at most ``per_source`` each and ``total`` in all; a
    source is kept only while it has one open."""

    def __init__(self, per_source: int, total: int) -> None:
        self.per_source = per_source
        self.total = total
        self._open: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def admit(self, source: str) -> str:
        """Count one more connection of ``source``; "" when admitted, else why not."""
        held = self._open.get(source, 0)
        if held >= self.per_source:
            return f"{held} connections of {source} are open (the most for one source)"
        if self._count >= self.total:
            return f"{self._count} connections are open (the most in all)"
        self._open[source] = held + 1
        self._count += 1
        return ""

    def release(self, source: str) -> None:
        """One connection of ``source`` admitted before has closed."""
        held = self._open.get(source, 0)
        if held <= 0:
            raise ValueError(f"no connection of {source} is open")
        self._count -= 1
        if held == 1:
            del self._open[source]
        else:
            self._open[source] = held - 1
