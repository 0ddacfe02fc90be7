"""The joined leaves' names, indexed by DNS label from the right and without case.

A leaf's name is the host name suffix `gsh config` sends to it (``Host *.LEAF``), so no
two leaves may have names one of which ends with the other (``eu.us-east-1a`` beside
``us-east-1a``), or the same name but for case: OpenSSH would send the names they share
to whichever host block comes first. A root may hold thousands of leaves, and reading
them all at each join cost more than the join (docs/security.md): here a name is
checked in one point read per label and one range read of at most two items.

Key: ``/leaf_names/`` + the lowercased labels reversed, each followed by a dot
(``us-east-1a.eu.``), so that the leaves beneath a name are the keys its key begins.
Value: the leaf's name as it joined.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gatehouse.backend import Backend, Item, Write, prefix_end
from gatehouse.errors import NotFound

__all__ = ["LeafNames"]

PREFIX = b"/leaf_names/"
_INDEXED = b"/leaf_names_indexed"  # set once the leaves joined before the index are in it


def _key(name: str) -> bytes:
    return PREFIX + "".join(f"{label}." for label in reversed(name.lower().split("."))
                            ).encode()


class LeafNames:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def _holder(self, key: bytes) -> str | None:
        try:
            return (await self._backend.get(key)).value.decode()
        except NotFound:
            return None

    async def clash(self, name: str) -> str | None:
        """A joined leaf other than ``name`` whose name is ``name`` but for case, a DNS
        suffix of it, or ends with it; None if there is none."""
        labels = name.split(".")
        for i in range(len(labels)):  # the name itself, then each shorter suffix
            holder = await self._holder(_key(".".join(labels[i:])))
            if holder is not None and holder != name:
                return holder
        own = _key(name)
        for item in await self._backend.get_range(own, prefix_end(own), 2):
            if item.key != own:
                return item.value.decode()
        return None

    def write(self, name: str) -> Write:
        """The index entry of leaf ``name``, for the join's transaction."""
        key = _key(name)
        return Write(key, Item(key, name.encode()))

    async def removal(self, name: str) -> list[Write]:
        """What removing leaf ``name`` removes from the index: its entry, if it is its."""
        key = _key(name)
        return [Write(key)] if await self._holder(key) == name else []

    async def index_existing(self, joined: Callable[[], Awaitable[list[str]]]) -> int:
        """Enter the leaves joined before the index was kept (``joined()`` names them,
        read only the first time), once; of names alike but for case, the first keeps the
        entry. Returns how many were entered."""
        if await self._holder(_INDEXED) is not None:
            return 0
        entered = 0
        for name in await joined():
            if await self._holder(_key(name)) is None:
                await self._backend.atomic_write([self.write(name)])
                entered += 1
        await self._backend.put(Item(_INDEXED, b"1"))
        return entered
