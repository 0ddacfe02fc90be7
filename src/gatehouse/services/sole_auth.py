"""The claim of the one auth allowed on a backend whose audit log it cannot share.

With state in etcd and no ``storage.audit_conn_string``, each auth would keep the
audit trail its own way; so the first auth holds a claim item, renewed while it
runs, and a second auth refuses to start. The same auth restarted (same node name
and data directory) takes its claim back at once; another waits until the claim of
one that died lapses (TTL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from gatehouse.backend import Backend, Item, Write
from gatehouse.clock import Clock
from gatehouse.errors import AlreadyExists, BadParameter, CompareFailed, GatehouseError, NotFound

__all__ = ["TTL", "SoleAuth"]

log = logging.getLogger(__name__)

_KEY = b"/sole_auth"
TTL = dt.timedelta(seconds=15)
RENEW_EVERY = 5.0  # seconds of real time between renewals
ATTEMPTS = 5


class SoleAuth:
    """A held claim; ``release()`` stops renewing it and gives it up."""

    def __init__(self, backend: Backend, holder: str, clock: Clock, held: Item) -> None:
        self._backend = backend
        self._holder = holder
        self._clock = clock
        self._held = held
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def claim(cls, backend: Backend, holder: str, clock: Clock) -> SoleAuth:
        """Take the claim for holder, or BadParameter naming the auth that has it."""
        sole = cls(backend, holder, clock, await _take(backend, holder, clock))
        sole._task = asyncio.create_task(sole._renew(), name="sole-auth-claim")
        return sole

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
            try:  # only if it is still ours
                await self._backend.atomic_write([Write(_KEY, None, self._held.revision)])
            except GatehouseError as exc:
                log.warning("could not give up the sole-auth claim (%s); it lapses within "
                            "%ss", exc, TTL.seconds)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                self._held = await _take(self._backend, self._holder, self._clock)
            except BadParameter as exc:
                log.error("sole-auth claim lost (holder=%s): %s", self._holder, exc)
                return
            except GatehouseError as exc:
                log.warning("sole-auth claim not renewed (%s); retrying in %ss", exc,
                            RENEW_EVERY)


async def _take(backend: Backend, holder: str, clock: Clock) -> Item:
    """Create the claim, or renew it if holder has it; BadParameter if another has it."""
    mine = holder.encode()
    for _ in range(ATTEMPTS):
        fresh = Item(_KEY, mine, expires=clock.now() + TTL)
        try:
            current = await backend.get(_KEY)
        except NotFound:
            try:
                return await backend.create(fresh)
            except AlreadyExists:
                continue
        if current.value != mine:
            raise BadParameter(
                f"another auth ({current.value.decode(errors='replace')}) runs on this etcd "
                "prefix: several auths on etcd need gatehouse.storage.audit_conn_string so "
                f"that the audit trail is not split (a stopped auth's claim lapses within "
                f"{TTL.seconds}s)")
        try:
            return await backend.compare_and_swap(current, fresh)
        except CompareFailed:
            continue
    raise CompareFailed(f"the sole-auth claim kept changing; tried {ATTEMPTS} times")
