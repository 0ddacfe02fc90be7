"""Password hashes (argon2id) and the lock after repeated failures.

Every attempt is recorded BEFORE the password is verified, as its own expiring
item, and counted: parallel guesses cannot all slip past the lock before any
of them is counted. A verified attempt is taken back. The fifth failure within
LOCK_FOR sets a lock item that lasts LOCK_FOR from that failure; attempts
while locked are refused without being counted (they do not extend the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import uuid

import argon2

from gatehouse.backend import Backend, Item, prefix_end
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, AlreadyExists, BadParameter, LimitExceeded, NotFound

__all__ = ["LOCK_AFTER", "LOCK_FOR", "MIN_LENGTH", "PasswordStore"]

MIN_LENGTH = 12
LOCK_AFTER = 5
LOCK_FOR = dt.timedelta(minutes=20)

_hasher = argon2.PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password anyone has: " + uuid.uuid4().hex)


class PasswordStore:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock

    @staticmethod
    def _attempts(user: str) -> bytes:
        return f"/login_failures/{user}/".encode()

    @staticmethod
    def _lock_key(user: str) -> bytes:
        return f"/login_locks/{user}".encode()

    async def set(self, user: str, password: str) -> None:
        if len(password) < MIN_LENGTH:
            raise BadParameter(f"password must be at least {MIN_LENGTH} characters")
        hashed = await asyncio.to_thread(_hasher.hash, password)
        await self._backend.put(Item(key=f"/passwords/{user}".encode(), value=hashed.encode()))
        await self.clear_failures(user)

    async def delete(self, user: str) -> None:
        with contextlib.suppress(NotFound):
            await self._backend.delete(f"/passwords/{user}".encode())
        await self.clear_failures(user)

    async def check(self, user: str, password: str) -> None:
        """Raise AccessDenied (wrong) or LimitExceeded (locked); both say why in one line.

        Failures stay counted until ``clear_failures``: the caller clears once
        every factor has passed.
        """
        await self._refuse_if_locked(user)
        attempt = await self._record(user)
        if await self._failures(user) > LOCK_AFTER:
            await self._lock(user)
            await self._refuse_if_locked(user)
        try:
            stored = (await self._backend.get(f"/passwords/{user}".encode())).value.decode()
        except NotFound:
            stored = ""
        try:
            # Off the event loop; an unknown user costs the same hash (no timing oracle).
            await asyncio.to_thread(_hasher.verify, stored or _dummy_hash(), password)
            if not stored:
                raise argon2.exceptions.VerificationError("no such user")
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError) as exc:
            if await self._failures(user) >= LOCK_AFTER:
                await self._lock(user)
            raise AccessDenied("invalid user name or password") from exc
        await self._backend.delete(attempt)  # a right password is not a failure

    async def record_failure(self, user: str) -> None:
        """Count a failure of another factor (a wrong one-time code) toward the lock."""
        await self._record(user)
        if await self._failures(user) >= LOCK_AFTER:
            await self._lock(user)

    async def _record(self, user: str) -> bytes:
        now = self._clock.now()
        key = self._attempts(user) + str(uuid.uuid4()).encode()
        await self._backend.put(Item(key=key, value=b"", expires=now + LOCK_FOR))
        return key

    async def _failures(self, user: str) -> int:
        prefix = self._attempts(user)
        return len(await self._backend.get_range(prefix, prefix_end(prefix)))

    async def _lock(self, user: str) -> None:
        until = self._clock.now() + LOCK_FOR
        with contextlib.suppress(AlreadyExists):
            await self._backend.create(Item(key=self._lock_key(user), value=b"", expires=until))

    async def _refuse_if_locked(self, user: str) -> None:
        try:
            lock = await self._backend.get(self._lock_key(user))
        except NotFound:
            return
        until = lock.expires.isoformat(timespec="seconds") if lock.expires else "unlocked"
        raise LimitExceeded(
            f"user {user} is locked after {LOCK_AFTER} failed logins until {until}")

    async def clear_failures(self, user: str) -> None:
        prefix = self._attempts(user)
        await self._backend.delete_range(prefix, prefix_end(prefix))
        with contextlib.suppress(NotFound):
            await self._backend.delete(self._lock_key(user))
