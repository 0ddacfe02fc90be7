"""Password hashes (argon2id) and the lock after repeated failures."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import argon2

from gatehouse.backend import Backend, Item
from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, BadParameter, LimitExceeded, NotFound

__all__ = ["LOCK_AFTER", "LOCK_FOR", "MIN_LENGTH", "PasswordStore"]

MIN_LENGTH = 12
LOCK_AFTER = 5
LOCK_FOR = dt.timedelta(minutes=20)

_hasher = argon2.PasswordHasher()


class PasswordStore:
    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock

    async def set(self, user: str, password: str) -> None:
        if len(password) < MIN_LENGTH:
            raise BadParameter(f"password must be at least {MIN_LENGTH} characters")
        await self._backend.put(
            Item(key=f"/passwords/{user}".encode(), value=_hasher.hash(password).encode())
        )
        await self.clear_failures(user)

    async def delete(self, user: str) -> None:
        for key in (f"/passwords/{user}", f"/login_failures/{user}"):
            with contextlib.suppress(NotFound):
                await self._backend.delete(key.encode())

    async def check(self, user: str, password: str) -> None:
        """Raise AccessDenied (wrong) or LimitExceeded (locked); both say why in one line.

        Success does not clear earlier failures: the caller does that with
        ``clear_failures`` once every factor has passed.
        """
        failures = await self._failures(user)
        if len(failures) >= LOCK_AFTER:
            until = failures[-1] + LOCK_FOR
            raise LimitExceeded(
                f"user {user} is locked after {LOCK_AFTER} failed logins until "
                f"{until.isoformat(timespec='seconds')}"
            )
        try:
            stored = (await self._backend.get(f"/passwords/{user}".encode())).value.decode()
            _hasher.verify(stored, password)
        except (NotFound, argon2.exceptions.VerificationError,
                argon2.exceptions.InvalidHashError) as exc:
            await self.record_failure(user)
            raise AccessDenied("invalid user name or password") from exc

    async def record_failure(self, user: str) -> None:
        now = self._clock.now()
        failures = [*await self._failures(user), now]
        await self._backend.put(
            Item(
                key=f"/login_failures/{user}".encode(),
                value=json.dumps([t.timestamp() for t in failures]).encode(),
                expires=now + LOCK_FOR,
            )
        )

    async def _failures(self, user: str) -> list[dt.datetime]:
        try:
            item = await self._backend.get(f"/login_failures/{user}".encode())
        except NotFound:
            return []
        return [dt.datetime.fromtimestamp(t, tz=dt.UTC) for t in json.loads(item.value)]

    async def clear_failures(self, user: str) -> None:
        with contextlib.suppress(NotFound):
            await self._backend.delete(f"/login_failures/{user}".encode())
