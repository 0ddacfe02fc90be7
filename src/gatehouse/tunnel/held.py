"""The tunnels a proxy holds, by the name of their far end (a leaf, or a node's host id).

An agent may hold more than one tunnel to this proxy for a while: it keeps one tunnel
to each proxy of a cluster, dialing through an address that may be a load balancer,
and closes a tunnel itself when it finds it reached a proxy it already holds. The
newest tunnel of a name serves new streams; an older one stays open until its agent
(or liveness) closes it, since closing it here would cut the sessions on it; but a name
holds at most ``most`` tunnels (tunnel.limits.MAX_TUNNELS_PER_PEER): ``add`` returns
the oldest ones past it, for the caller to close.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["HeldTunnels"]

S = TypeVar("S")


class HeldTunnels(Generic[S]):
    def __init__(self, most: int) -> None:
        self._most = most
        self._by_name: dict[str, list[S]] = {}  # oldest first

    def add(self, name: str, tunnel: S) -> tuple[bool, list[S]]:
        """Hold ``tunnel`` as the newest of ``name``: whether ``name`` had none, and the
        oldest tunnels of ``name`` past the most it may hold (no longer held: close them)."""
        held = self._by_name.setdefault(name, [])
        held.append(tunnel)
        excess, held[:] = held[:-self._most], held[-self._most:]
        return len(held) == 1, excess

    def discard(self, name: str, tunnel: S) -> bool:
        """Forget ``tunnel``; True if it was the last one of ``name``."""
        held = self._by_name.get(name)
        if held is None or tunnel not in held:
            return False
        held.remove(tunnel)
        if held:
            return False
        del self._by_name[name]
        return True

    def get(self, name: str) -> S | None:
        """The tunnel that serves ``name``: its newest."""
        held = self._by_name.get(name)
        return held[-1] if held else None

    def of(self, name: str) -> list[S]:
        return list(self._by_name.get(name, ()))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[S]:
        """Every tunnel held."""
        for held in list(self._by_name.values()):
            yield from held

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __bool__(self) -> bool:
        return bool(self._by_name)
