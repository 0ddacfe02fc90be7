"""One-time code secrets in storage: each user's secret and the last time step used
(auth.totp verifies codes). Marking a step used is a compare-and-swap, so that two
logins racing with one code cannot both win."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

from gatehouse.backend import Backend, Item
from gatehouse.errors import CompareFailed, NotFound

__all__ = ["TOTPSecret", "TOTPStore"]


@dataclass(frozen=True)
class TOTPSecret:
    """A user's secret (base32) and the last time step a code of theirs was used at, as
    read from storage (``_stored``: what ``mark_used`` compares against)."""

    secret: str
    last: int
    _stored: Item = field(repr=False, compare=False)


class TOTPStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @staticmethod
    def _key(user: str) -> bytes:
        return f"/totp/{user}".encode()

    @staticmethod
    def _value(secret: str, last: int) -> bytes:
        return json.dumps({"secret": secret, "last": last}).encode()

    async def put(self, user: str, secret: str) -> None:
        """Give ``user`` this secret (replacing any old one), no step used yet."""
        await self._backend.put(Item(key=self._key(user), value=self._value(secret, 0)))

    async def get(self, user: str) -> TOTPSecret:
        """The user's secret; NotFound if they have none."""
        item = await self._backend.get(self._key(user))
        state = json.loads(item.value)
        return TOTPSecret(str(state["secret"]), int(state["last"]), item)

    async def remove(self, user: str) -> None:
        """Forget the user's secret; none is fine."""
        with contextlib.suppress(NotFound):
            await self._backend.delete(self._key(user))

    async def mark_used(self, read: TOTPSecret, step: int) -> bool:
        """Record ``step`` as used, if the secret is still as ``read`` (from ``get``);
        False if it changed in between (another login used a code, or re-enrolment)."""
        try:
            await self._backend.compare_and_swap(
                read._stored, Item(key=read._stored.key, value=self._value(read.secret, step)))
        except CompareFailed:
            return False
        return True
