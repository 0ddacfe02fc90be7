"""Passwords: the length rule, argon2id hashes, and the lock after repeated failures.

Every attempt is recorded BEFORE the password is verified, as its own expiring
item, and counted: parallel guesses cannot all slip past the lock before any
of them is counted. A verified attempt is taken back. The fifth failure within
LOCK_FOR sets a lock that lasts LOCK_FOR from that failure; attempts while
locked are refused without being counted (they do not extend the lock). What
is stored, and how, is services.passwords'.

A user name that is no name (NAME_RULE: ``bob/0``) is refused as an unknown user is,
at the cost of a check, before the store is touched: a key made of it would lie under
bob's, and its failures count toward bob's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import uuid

import argon2

from gatehouse.clock import Clock
from gatehouse.errors import AccessDenied, BadParameter, LimitExceeded
from gatehouse.services.passwords import PasswordStore
from gatehouse.types.resource import is_name

__all__ = ["DENIED", "LOCK_AFTER", "LOCK_FOR", "MIN_LENGTH", "Passwords", "login_name_shown"]

DENIED = "invalid user name or password"  # a wrong password, an unknown user, a non-name

MIN_LENGTH = 12
LOCK_AFTER = 5
LOCK_FOR = dt.timedelta(minutes=20)

# argon2id with the parameters OWASP's Password Storage Cheat Sheet lists first (46 MiB,
# one pass, one lane): ~60 ms a check on one core of these machines. argon2-cffi's
# default (RFC 9106's low-memory choice: 64 MiB, three passes, four lanes) took ~120 ms
# of both cores, and up to ~280 ms while the auth served 5,000 nodes' heartbeats: most
# of a login's time. A hash made with other parameters still checks, and is replaced
# by one made with these at the user's next login.
_hasher = argon2.PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password anyone has: " + uuid.uuid4().hex)


SHOWN_CHARS = 64  # of a login name that is no name, in the audit and the log


def login_name_shown(user: str) -> str:
    """A login's user name as audited and logged: a name as it is; anything else cut to
    SHOWN_CHARS characters, then quoted and escaped (a newline forges no log line)."""
    return user if is_name(user) else ascii(user[:SHOWN_CHARS])


class Passwords:
    def __init__(self, store: PasswordStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def set(self, user: str, password: str) -> None:
        if len(password) < MIN_LENGTH:
            raise BadParameter(f"password must be at least {MIN_LENGTH} characters")
        await self._store.set_hash(user, await asyncio.to_thread(_hasher.hash, password))
        await self.clear_failures(user)

    async def delete(self, user: str) -> None:
        await self._store.delete_hash(user)
        await self.clear_failures(user)

    async def check(self, user: str, password: str) -> None:
        """Raise AccessDenied (wrong) or LimitExceeded (locked); both say why in one line.

        Failures stay counted until ``clear_failures``: the caller clears once
        every factor has passed.
        """
        if not is_name(user):  # no user's, and no key may be made of it: bob/0 is under bob
            await self._cost_of_a_check(password)
            raise AccessDenied(DENIED)
        await self._refuse_if_locked(user)
        attempt = await self._store.add_attempt(user, self._clock.now() + LOCK_FOR)
        if await self._store.count_attempts(user) > LOCK_AFTER:
            await self._lock(user)
            await self._refuse_if_locked(user)
        stored = await self._store.hash(user)
        try:
            # Off the event loop; an unknown user costs the same hash (no timing oracle).
            await asyncio.to_thread(_hasher.verify, stored or _dummy_hash(), password)
            if not stored:
                raise argon2.exceptions.VerificationError("no such user")
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError) as exc:
            if await self._store.count_attempts(user) >= LOCK_AFTER:
                await self._lock(user)
            raise AccessDenied(DENIED) from exc
        await self._store.take_back_attempt(user, attempt)  # a right password is not a failure
        if _hasher.check_needs_rehash(stored):
            await self._store.replace_hash(user, stored,
                                           await asyncio.to_thread(_hasher.hash, password))

    @staticmethod
    async def _cost_of_a_check(password: str) -> None:
        """What checking an unknown user's password costs (no timing oracle)."""
        with contextlib.suppress(argon2.exceptions.VerificationError):
            await asyncio.to_thread(_hasher.verify, _dummy_hash(), password)

    async def record_failure(self, user: str) -> None:
        """Count a failure of another factor (a wrong one-time code) toward the lock."""
        await self._store.add_attempt(user, self._clock.now() + LOCK_FOR)
        if await self._store.count_attempts(user) >= LOCK_AFTER:
            await self._lock(user)

    async def clear_failures(self, user: str) -> None:
        await self._store.clear_attempts(user)

    async def _lock(self, user: str) -> None:
        await self._store.lock(user, self._clock.now() + LOCK_FOR)

    async def _refuse_if_locked(self, user: str) -> None:
        until = await self._store.locked_until(user)
        if until is not None:
            raise LimitExceeded(f"user {user} is locked after {LOCK_AFTER} failed logins "
                                f"until {until.isoformat(timespec='seconds')}; an admin's "
                                f"`gatectl users set-password {user}` unlocks it now")
