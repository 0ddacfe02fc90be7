"""Which of many repeated failures to record: the first of a kind at once, the rest of a
window counted and recorded as one. A pure decision over plain numbers (the caller owns
the clock and the writing), bounded in memory.

A stranger who repeats a failing call (a login, a join, a dial without a certificate)
would otherwise write one audit event per call, each kept and scanned by every search.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["NAMES", "Repeated", "Repeats"]

T = TypeVar("T")

NAMES = 16  # distinct names (users, nodes) a count lists, at most


@dataclass
class Repeated(Generic[T]):
    """The failures of one key absorbed in a window, after the first (recorded alone)."""

    item: T  # the last of them
    count: int
    first: float  # when the first of them happened
    names: list[str] = field(default_factory=list)  # the distinct names among them


@dataclass
class _Window(Generic[T]):
    opened: float
    absorbed: Repeated[T] | None = None


class Repeats(Generic[T]):
    """Windows of ``window`` seconds per key; at most ``keys`` open at once (past that, a
    failure of a new key is recorded alone, as if not repeated: memory stays bounded,
    nothing is lost, and the callers' rate limits bound what is written).

    ``add`` says whether to record a failure now; ``due``, called periodically, hands
    back the counts of windows that ended; ``drain`` those of every window (at shutdown).
    """

    def __init__(self, window: float, keys: int) -> None:
        if window <= 0 or keys < 1:
            raise ValueError("window and keys must be positive")
        self._window = window
        self._keys = keys
        self._open: OrderedDict[Hashable, _Window[T]] = OrderedDict()  # in opening order

    def __len__(self) -> int:
        return len(self._open)

    def add(self, key: Hashable, item: T, now: float, name: str = "") -> bool:
        """True: record ``item`` now; False: it is counted, for ``due`` to hand back."""
        held = self._open.get(key)
        if held is None:
            if len(self._open) < self._keys:
                self._open[key] = _Window(now)
            return True
        if held.absorbed is None:
            held.absorbed = Repeated(item, 0, now)
        absorbed = held.absorbed
        absorbed.item = item
        absorbed.count += 1
        if name and name not in absorbed.names and len(absorbed.names) < NAMES:
            absorbed.names.append(name)
        return False

    def due(self, now: float) -> list[Repeated[T]]:
        """Close the windows that ended by ``now``; the counts of those that absorbed any."""
        out = []
        while self._open:
            key, held = next(iter(self._open.items()))
            if held.opened + self._window > now:
                break
            del self._open[key]
            if held.absorbed is not None:
                out.append(held.absorbed)
        return out

    def drain(self) -> list[Repeated[T]]:
        """Close every window; the counts of those that absorbed any."""
        out = [held.absorbed for held in self._open.values() if held.absorbed is not None]
        self._open.clear()
        return out
