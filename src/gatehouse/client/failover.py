"""Several addresses of one service (``gatehouse.auth_servers``): calls go to the one
that last answered; when it refuses or cannot be connected to, to the next.

Only a failed connection moves on: nothing was sent, so the call is not made twice.
A call that was sent and lost on the way (the server died while answering) fails to
its caller, who knows whether it may repeat it. Each call tries each address at most
once; before trying another, it waits a short random pause, so that the clients of a
dead auth do not all land on the next one in the same instant.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiohttp

__all__ = ["CONNECT_TIMEOUT", "MAX_PAUSE", "Failover"]

MAX_PAUSE = 0.2  # seconds; the random pause before trying the next address is below it
# Seconds a connection may take to open before the next address is tried (a dead
# machine, rather than a dead process, answers nothing).
CONNECT_TIMEOUT = 5.0

T = TypeVar("T")


def _not_connected(exc: BaseException) -> bool:
    """True if ``exc`` says the connection was never made (so no request went out).
    A certificate that fails verification is not a dead server: no other address is
    tried on it."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return False
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


class Failover:
    """The addresses, in the order given; sticky to the last one that answered."""

    def __init__(self, addrs: str | Sequence[str],
                 pause: Callable[[], float] = lambda: random.uniform(0, MAX_PAUSE)) -> None:
        self.addrs = [addrs] if isinstance(addrs, str) else list(addrs)
        if not self.addrs:
            raise ValueError("no address to connect to")
        self._at = 0
        self._pause = pause

    @property
    def current(self) -> str:
        """The address the next call goes to first."""
        return self.addrs[self._at]

    def describe(self) -> str:
        """The addresses for a message: "A" or "A (or B, C)"."""
        others = [a for a in self.addrs if a != self.current]
        return self.current + (f" (or {', '.join(others)})" if others else "")

    async def call(self, attempt: Callable[[str], Awaitable[T]]) -> T:
        """``attempt(addr)`` at the current address, then at each next one whose
        connection failed; the last connection error if none connected."""
        count = len(self.addrs)
        start = self._at
        for step in range(count):
            index = (start + step) % count
            if step:
                await asyncio.sleep(self._pause())
            try:
                result = await attempt(self.addrs[index])
            except Exception as exc:
                if not _not_connected(exc):
                    self._at = index  # it answered, if only with an error
                    raise
                if step == count - 1:
                    raise
                continue
            self._at = index
            return result
        raise AssertionError("unreachable: the loop returns or raises")
