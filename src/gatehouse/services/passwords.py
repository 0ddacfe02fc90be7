"""Password hashes, login attempts and login locks in storage (auth.passwords decides).

Each attempt is its own expiring item, so that parallel attempts are all counted
(none overwrites another); a lock is one expiring item, created only if absent,
so that its end is fixed by the failure that set it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

from gatehouse.backend import Backend, Item, prefix_end
from gatehouse.errors import AlreadyExists, BadParameter, CompareFailed, NotFound
from gatehouse.types.resource import NAME_RULE, is_name

__all__ = ["PasswordStore"]


class PasswordStore:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @staticmethod
    def _hash_key(user: str) -> bytes:
        return f"/passwords/{_named(user)}".encode()

    @staticmethod
    def _attempts(user: str) -> bytes:
        return f"/login_failures/{_named(user)}/".encode()

    @staticmethod
    def _lock_key(user: str) -> bytes:
        return f"/login_locks/{_named(user)}".encode()

    async def hash(self, user: str) -> str:
        """The user's stored hash; "" if they have no password."""
        try:
            return (await self._backend.get(self._hash_key(user))).value.decode()
        except NotFound:
            return ""

    async def set_hash(self, user: str, hashed: str) -> None:
        await self._backend.put(Item(key=self._hash_key(user), value=hashed.encode()))

    async def replace_hash(self, user: str, old: str, new: str) -> bool:
        """Store ``new`` only if ``old`` is still the user's hash (a password set
        meanwhile stays); whether it was stored."""
        key = self._hash_key(user)
        try:
            await self._backend.compare_and_swap(Item(key=key, value=old.encode()),
                                                 Item(key=key, value=new.encode()))
        except CompareFailed:
            return False
        return True

    async def delete_hash(self, user: str) -> None:
        """Forget the user's password; none is fine."""
        with contextlib.suppress(NotFound):
            await self._backend.delete(self._hash_key(user))

    async def add_attempt(self, user: str, until: dt.datetime) -> str:
        """Record one attempt, counted until ``until``; returns its id (to take it back)."""
        attempt = str(uuid.uuid4())
        await self._backend.put(Item(key=self._attempts(user) + attempt.encode(), value=b"",
                                     expires=until))
        return attempt

    async def take_back_attempt(self, user: str, attempt: str) -> None:
        with contextlib.suppress(NotFound):
            await self._backend.delete(self._attempts(user) + attempt.encode())

    async def count_attempts(self, user: str) -> int:
        prefix = self._attempts(user)
        return len(await self._backend.get_range(prefix, prefix_end(prefix)))

    async def lock(self, user: str, until: dt.datetime) -> None:
        """Lock the user until ``until``, unless a lock holds already (it keeps its end)."""
        with contextlib.suppress(AlreadyExists):
            await self._backend.create(Item(key=self._lock_key(user), value=b"", expires=until))

    async def locked_until(self, user: str) -> dt.datetime | None:
        """When the user's lock ends; None if they are not locked."""
        try:
            lock = await self._backend.get(self._lock_key(user))
        except NotFound:
            return None
        return lock.expires or dt.datetime.max.replace(tzinfo=dt.UTC)  # no end: for ever

    async def clear_attempts(self, user: str) -> None:
        """Forget the user's attempts and lift their lock. Each is looked for first and
        deleted only if there: every login clears, and most have nothing to clear (on
        a shared backend a write waits its turn behind the others; a read does not)."""
        prefix = self._attempts(user)
        if await self._backend.get_range(prefix, prefix_end(prefix)):
            await self._backend.delete_range(prefix, prefix_end(prefix))
        with contextlib.suppress(NotFound):
            await self._backend.get(self._lock_key(user))
            await self._backend.delete(self._lock_key(user))


def _named(user: str) -> str:
    """``user``, if it is a name: a key made of ``bob/0`` would lie under bob's."""
    if not is_name(user):
        cut = f"{user[:40]!r}..." if len(user) > 40 else repr(user)
        raise BadParameter(f"user name {cut}: {NAME_RULE}")
    return user
