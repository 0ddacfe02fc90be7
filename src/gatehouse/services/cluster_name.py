"""The name of the cluster a backend belongs to, stored when the auth first starts, so
that a data directory is never served under another cluster's name."""

from __future__ import annotations

from gatehouse.backend import Backend, Item
from gatehouse.errors import AlreadyExists, NotFound

__all__ = ["claim", "stored"]

_KEY = b"/cluster_name"


async def claim(backend: Backend, cluster: str) -> str:
    """The name the backend's cluster has: ``cluster`` if the backend had none yet
    (it has now), else the one stored first."""
    try:
        return (await backend.get(_KEY)).value.decode()
    except NotFound:
        pass
    try:
        await backend.create(Item(key=_KEY, value=cluster.encode()))
    except AlreadyExists:  # another auth on this backend claimed it meanwhile
        return (await backend.get(_KEY)).value.decode()
    return cluster


async def stored(backend: Backend) -> str:
    """The name stored (a read that needs the backend to answer: the auth's readiness)."""
    return (await backend.get(_KEY)).value.decode()
